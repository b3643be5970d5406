"""tools/run_demo.py end to end at the smallest size that runs every stage
(1 epoch, 2 corruptions x 1 severity, 2 training seeds, 1 corruption
process), run once as the user runs it and checked by several tests."""
import json
import os.path as osp

import pytest
from conftest import run_tool

CORRUPTIONS, SEVERITIES = ('gaussian_noise', 'fog'), (3, )
CELLS = [(c, s) for c in CORRUPTIONS for s in SEVERITIES]
OTHERS = {
    'baseline': 'baseline (no fine-tuning)',
    'plain': 'plain fine-tuning',
    'adv': 'Adv. fine-tuning (untargeted)'
}


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The process, its work dir, report.md and report.json."""
    tmp = tmp_path_factory.mktemp('demo')
    work, data = str(tmp / 'demo'), str(tmp / 'digits')
    proc = run_tool([
        'tools/run_demo.py', '--work-dir', work, '--data', data, '--epochs',
        '1', '--finetune-epochs', '1', '--corruptions', *CORRUPTIONS,
        '--severities', *map(str, SEVERITIES), '--seeds', '2', '--workers',
        '1'  # corrupted here: no worker processes to start
    ], timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(work, 'report.md')) as f:
        md = f.read()
    with open(osp.join(work, 'report.json')) as f:
        report = json.load(f)
    return proc, work, md, report


def errors(work: str, name: str, seed: int = 0) -> dict:
    """``{(corruption, severity): error}`` of a model's results.json."""
    sub = f'seed{seed}' if seed else ''
    with open(osp.join(work, sub, 'robustness', name, 'results.json')) as f:
        cells = json.load(f)['cells']
    return {(c['corruption'], c['severity']): c['value'] for c in cells}


def test_demo_progress_and_stage_output(demo):
    proc, _, _, _ = demo
    for i in range(1, 7):  # progress output
        assert f'[{i}/6]' in proc.stdout
    # the lines echoed from the stages' logs
    assert 'cell gaussian_noise/3' in proc.stdout and 'demo finished' in \
        proc.stdout
    assert 'Epoch(val)' in proc.stdout


def test_demo_report_sections_and_tables(demo):
    _, work, md, _ = demo
    for section in ('# GFN on the digits: robustness report', '## Summary',
                    '## Error relative to the baseline, per corruption',
                    'a reduced run'):
        assert section in md
    summary = md[md.index('## Summary'):md.index('## Error relative')]
    for label in ('GFN fine-tuning', *OTHERS.values()):
        assert summary.count(f'\n| {label} | ') == 1  # a summary row
        assert f' {label} |' in md[md.index('## Error relative'):]
    assert '| gaussian_noise |' in md and '| fog |' in md
    assert osp.getsize(osp.join(work, 'report.png')) > 1000


def test_demo_paired_comparisons(demo):
    """One sentence per other model, with numbers, and its files."""
    _, work, md, report = demo
    paired = md[md.index('## Paired comparisons'):md.index(
        '## What a difference')]
    for other, label in OTHERS.items():
        sentence = next(r for r in paired.splitlines()
                        if r.startswith(f'- vs {label}: '))
        assert 'mean corruption error' in sentence and \
            'cells differ after Holm' in sentence, sentence
        files = osp.join(work, 'comparisons', f'gfn_vs_{other}')
        assert osp.getsize(osp.join(files, 'comparison.png')) > 1000
        with open(osp.join(files, 'comparison.json')) as f:
            comparison = json.load(f)
        assert comparison['sentence'] in sentence
        assert comparison['num_cells'] == len(CELLS)
        assert comparison['num_images'] == 449
    assert report['complete_benchmark'] is False
    assert set(report['paired']) == set(OTHERS)


def test_demo_seed_spread(demo):
    """--seeds 2: the fine-tunings again with seed 1, the baseline once."""
    _, work, md, report = demo
    spread = report['seed_spread']
    assert spread['seeds'] == [0, 1]
    assert osp.isfile(osp.join(work, 'seed1', 'gfn', 'epoch_1.pth'))
    assert not osp.exists(osp.join(work, 'seed1', 'baseline'))
    seed1 = errors(work, 'gfn', seed=1)
    gfn = spread['models']['gfn']['mean_corruption_error']['values']
    assert gfn[0] == pytest.approx(
        report['models']['gfn']['mean_corruption_error'])
    assert gfn[1] == pytest.approx(100 * sum(seed1[c] for c in CELLS) /
                                   len(CELLS))
    assert '## Spread between training seeds (2 seeds: 0, 1)' in md


def test_demo_summary_numbers_by_hand(demo):
    """Clean accuracy, mean error and CE relative to the baseline,
    recomputed from each model's results.json."""
    _, work, _, report = demo
    assert set(report['models']) == {'baseline', 'plain', 'gfn', 'adv'}
    base = errors(work, 'baseline')
    for name, model in report['models'].items():
        err = errors(work, name)
        assert model['clean_accuracy'] == pytest.approx(
            100 * (1 - err[('clean', 0)]))
        assert model['mean_corruption_error'] == pytest.approx(
            100 * sum(err[c] for c in CELLS) / len(CELLS))
        ce = {
            c: sum(err[(c, s)] for s in SEVERITIES) /
            sum(base[(c, s)] for s in SEVERITIES)
            for c in CORRUPTIONS
        }
        assert model['relative_ce'] == pytest.approx(ce)
        assert model['relative_mCE'] == pytest.approx(
            sum(ce.values()) / len(ce))
    assert report['models']['baseline']['relative_mCE'] == pytest.approx(1.0)
