"""tools/run_demo.py end to end at a reduced size, report checked."""
import json
import os.path as osp

import pytest

from conftest import run_tool


def test_demo_pipeline_and_report(tmp_path):
    work, data = str(tmp_path / 'demo'), str(tmp_path / 'digits')
    proc = run_tool([
        'tools/run_demo.py', '--work-dir', work, '--data', data, '--epochs',
        '2', '--finetune-epochs', '1', '--corruptions', 'gaussian_noise',
        'fog', '--severities', '1', '3', '--seeds', '2'
    ], timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for i in range(1, 7):  # progress output
        assert f'[{i}/6]' in out
    assert 'cell gaussian_noise/3' in out and 'demo finished' in out

    with open(osp.join(work, 'report.md')) as f:
        md = f.read()
    for section in ('# GFN on the digits: robustness report', '## Summary',
                    '## Error relative to the baseline, per corruption',
                    'a reduced run'):
        assert section in md
    summary = md[md.index('## Summary'):md.index('## Error relative')]
    for label in ('baseline (no fine-tuning)', 'plain fine-tuning',
                  'GFN fine-tuning', 'Adv. fine-tuning (untargeted)'):
        assert summary.count(f'\n| {label} | ') == 1  # a summary row
        assert f' {label} |' in md[md.index('## Error relative'):]
    assert '| gaussian_noise |' in md and '| fog |' in md
    # the paired comparisons: one sentence per other model, with numbers
    paired = md[md.index('## Paired comparisons'):md.index(
        '## What a difference')]
    for label in ('baseline (no fine-tuning)', 'plain fine-tuning',
                  'Adv. fine-tuning (untargeted)'):
        sentence = next(r for r in paired.splitlines()
                        if r.startswith(f'- vs {label}: '))
        assert 'mean corruption error' in sentence and \
            'cells differ after Holm' in sentence, sentence
        files = osp.join(work, 'comparisons', 'gfn_vs_' + {
            'baseline (no fine-tuning)': 'baseline',
            'plain fine-tuning': 'plain',
            'Adv. fine-tuning (untargeted)': 'adv'}[label])
        assert osp.getsize(osp.join(files, 'comparison.png')) > 1000
        with open(osp.join(files, 'comparison.json')) as f:
            comparison = json.load(f)
        assert comparison['sentence'] in sentence
        assert comparison['num_cells'] == 4 and comparison['num_images'] \
            == 449
    assert osp.getsize(osp.join(work, 'report.png')) > 1000

    with open(osp.join(work, 'report.json')) as f:
        report = json.load(f)
    assert report['complete_benchmark'] is False
    assert set(report['paired']) == {'baseline', 'plain', 'adv'}
    # --seeds 2: the fine-tunings again with seed 1, the baseline once
    spread = report['seed_spread']
    assert spread['seeds'] == [0, 1]
    assert osp.isfile(osp.join(work, 'seed1', 'gfn', 'epoch_1.pth'))
    assert not osp.exists(osp.join(work, 'seed1', 'baseline'))
    with open(osp.join(work, 'seed1', 'robustness', 'gfn',
                       'results.json')) as f:
        seed1 = {(c['corruption'], c['severity']): c['value']
                 for c in json.load(f)['cells']}
    gfn = spread['models']['gfn']['mean_corruption_error']['values']
    assert gfn[0] == pytest.approx(
        report['models']['gfn']['mean_corruption_error'])
    assert gfn[1] == pytest.approx(100 * sum(
        v for k, v in seed1.items() if k[1]) / 4)
    assert '## Spread between training seeds (2 seeds: 0, 1)' in md
    assert set(report['models']) == {'baseline', 'plain', 'gfn', 'adv'}

    def errors(name):
        with open(osp.join(work, 'robustness', name, 'results.json')) as f:
            cells = json.load(f)['cells']
        return {(c['corruption'], c['severity']): c['value'] for c in cells}

    base = errors('baseline')
    for name, model in report['models'].items():
        err = errors(name)
        # by hand: clean accuracy, mean error, CE relative to the baseline
        assert model['clean_accuracy'] == pytest.approx(
            100 * (1 - err[('clean', 0)]))
        corrupted = [err[(c, s)] for c in ('gaussian_noise', 'fog')
                     for s in (1, 3)]
        assert model['mean_corruption_error'] == pytest.approx(
            100 * sum(corrupted) / 4)
        ce = {c: (err[(c, 1)] + err[(c, 3)]) / (base[(c, 1)] + base[(c, 3)])
              for c in ('gaussian_noise', 'fog')}
        assert model['relative_ce'] == pytest.approx(ce)
        assert model['relative_mCE'] == pytest.approx(
            (ce['gaussian_noise'] + ce['fog']) / 2)
    assert report['models']['baseline']['relative_mCE'] == pytest.approx(1.0)
