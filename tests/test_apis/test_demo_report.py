"""What a difference means in the demo's report: intervals and chance cells.

Wilson bounds are checked against published values and, independently of
the closed form, as the roots of the score equation
``(p - pi)^2 = z^2 pi (1 - pi) / n``.
"""
import json
import math
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import (DIGITS_CONFIG, build_digits_model, digits_options,
                      run_tool, save_checkpoint, train_digits)

from mmgfn.evaluation.functional import (chance_level_cells,
                                         difference_interval, mean_interval,
                                         wilson_interval)

Z = 1.959963984540054  # Phi^-1(0.975)


@pytest.fixture(scope='module')
def demo():
    """The demo's report functions (tools/run_demo.py runs them)."""
    from mmgfn.apis import demo_report
    return demo_report


def score_roots(wrong, total, z=Z):
    """The two solutions pi of (p - pi)^2 = z^2 pi (1 - pi) / n."""
    p, n = wrong / total, total
    roots = np.roots([1 + z * z / n, -(2 * p + z * z / n), p * p])
    return tuple(sorted(float(np.real(r)) for r in roots))


def ci_text(lo, hi):
    return f'[{100 * lo:.1f}, {100 * hi:.1f}]'


# --------------------------------------------------------------- numbers ---
@pytest.mark.parametrize('wrong,total,expected', [
    # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (Wilson score)
    (81, 263, (0.2553, 0.3662)),
    (15, 148, (0.0624, 0.1605)),
    (0, 20, (0.0, 0.1611)),
    (1, 29, (0.0061, 0.1718)),
])
def test_wilson_interval_matches_published_values(wrong, total, expected):
    lo, hi = wilson_interval(wrong, total)
    assert (lo, hi) == pytest.approx(expected, abs=6e-5)
    assert (lo, hi) == pytest.approx(score_roots(wrong, total), abs=1e-12)


def test_wilson_difference_and_mean_by_hand():
    # the demo's sizes: 4 wrong of 449 (99.11 % clean accuracy)
    lo, hi = wilson_interval(4, 449)
    assert (lo, hi) == pytest.approx(score_roots(4, 449), abs=1e-12)
    assert lo < 4 / 449 < hi
    # all wrong: the interval ends at 1, not above
    assert wilson_interval(449, 449)[1] == 1.0
    assert wilson_interval(449, 449)[0] == pytest.approx(
        score_roots(449, 449)[0])

    # Newcombe (1998), Stat. Med. 17:873, Table II, example (a): 56/70 -
    # 48/80, method 10 (hybrid score): 0.0524 to 0.3339
    assert difference_interval((56, 70), (48, 80)) == pytest.approx(
        (0.0524, 0.3339), abs=6e-5)
    # by hand from the two score-equation roots
    (la, ua), (lb, ub) = score_roots(30, 100), score_roots(45, 120)
    d = 0.30 - 0.375
    assert difference_interval((30, 100), (45, 120)) == pytest.approx(
        (d - math.hypot(0.30 - la, ub - 0.375),
         d + math.hypot(ua - 0.30, 0.375 - lb)), abs=1e-12)

    assert mean_interval([(0.1, 0.3), (0.2, 0.6)]) == pytest.approx(
        (0.15, 0.45))
    for bad in [(5, 4), (-1, 4), (1, 0), (1.5, 4)]:
        with pytest.raises(ValueError, match='wrong'):
            wilson_interval(*bad)


# --------------------------------------------------------- chance level ---
N = 449


def test_chance_level_cells_on_a_constructed_table(demo, tmp_path):
    # 10 classes: chance error 0.9. Upper Wilson bounds by hand (n = 449):
    # 400 wrong (0.891) -> 0.9165 >= 0.9: at chance;
    # 384 wrong (0.855) -> 0.8848 < 0.9: not at chance;
    # 440 wrong (0.980) -> above chance: at chance;
    # the boundary: 392 wrong -> 0.9007, 391 wrong -> 0.8987.
    assert score_roots(400, N)[1] >= 0.9 > score_roots(384, N)[1]
    assert score_roots(392, N)[1] >= 0.9 > score_roots(391, N)[1]
    grid = {
        # every model at chance, GFN errs significantly less than Adv.
        ('fog', 5): dict(baseline=400, plain=404, gfn=400, adv=440),
        # every model at chance: the boundary count 390 included
        ('gaussian_noise', 5): dict(baseline=392, plain=420, gfn=405,
                                    adv=400),
        # one model (GFN) above chance: informative
        ('fog', 1): dict(baseline=404, plain=404, gfn=384, adv=404),
        # one model 1 wrong below the boundary: informative
        ('gaussian_noise', 1): dict(baseline=391, plain=400, gfn=400,
                                    adv=400),
    }
    counts = {name: {cell: (w[name], N) for cell, w in grid.items()}
              for name in ('baseline', 'plain', 'gfn', 'adv')}
    assert chance_level_cells(counts, 10) == [('fog', 5),
                                              ('gaussian_noise', 5)]
    # 4 classes: chance error 0.75, every cell here is at chance
    assert len(chance_level_cells(counts, 4)) == 4

    del counts['adv'][('fog', 1)]
    with pytest.raises(ValueError, match='"adv" lacks cell .*fog'):
        chance_level_cells(counts, 10)
    with pytest.raises(ValueError, match='num_classes'):
        chance_level_cells({'a': {('fog', 1): (1, 4)}}, 1)

    # the real report on this table
    evals = {
        name: dict(
            cells={cell: w[name] / N for cell, w in grid.items()},
            counts={cell: (w[name], N) for cell, w in grid.items()},
            clean_error=2 / N, clean_counts=(2, N))
        for name in ('baseline', 'plain', 'gfn', 'adv')
    }
    args = SimpleNamespace(corruptions=['gaussian_noise', 'fog'],
                           severities=[1, 5], epochs=6, finetune_epochs=10)
    content = demo.report(args, evals, str(tmp_path), 1.0, 10)
    assert content['chance_error'] == pytest.approx(90.0)
    assert content['chance_cells'] == ['gaussian_noise/5', 'fog/5']
    with open(tmp_path / 'report.md') as f:
        md = f.read()
    per_cell = md[md.index('## Error per cell'):]
    for cell, marked in [('fog/5', True), ('gaussian_noise/5', True),
                         ('fog/1', False), ('gaussian_noise/1', False)]:
        row = next(r for r in per_cell.splitlines()
                   if r.startswith(f'| {cell} |'))
        assert row.endswith('| chance |') is marked, row
    per_corruption = md[md.index('## Error relative'):md.index(
        '## What a difference')]
    assert '| severities at chance level |' in per_corruption
    assert [r for r in per_corruption.splitlines()
            if r.startswith('| fog |')][0].endswith('| 5 |')
    assert 'Cells where every model is at chance level (2 of 4; ' in md
    assert 'gaussian_noise/5, fog/5.' in md

    # fog/5: GFN's interval is below Adv.'s, but the cell is at chance level
    # and is not counted; fog/1 (384 vs 404 wrong) is counted
    assert difference_interval((400, N), (440, N))[1] < 0
    ua, lb = score_roots(384, N)[1], score_roots(404, N)[0]
    assert (384 - 404) / N + math.hypot(ua - 384 / N, 404 / N - lb) < 0
    adv = content['comparisons']['adv']
    assert adv['gfn_errs_less'] == ['fog/1'] and adv['gfn_errs_more'] == []
    assert adv['num_informative_cells'] == 2
    assert ('- vs Adv. fine-tuning (untargeted): mean corruption error '
            'not distinguishable; GFN errs significantly less in 1 and '
            'more in 0 of the 2 informative cells (2 chance-level cells '
            'left out): less in fog/1.') in md
    # the mean over the informative cells: fog/1 and gaussian_noise/1
    d_inf = ((384 - 404) + (400 - 400)) / 2 / N
    assert adv['informative_mean_difference'] == pytest.approx(100 * d_inf)
    bounds = [difference_interval((384, N), (404, N)),
              difference_interval((400, N), (400, N))]
    assert adv['informative_mean_difference_ci95'] == pytest.approx(
        [100 * sum(b[0] for b in bounds) / 2,
         100 * sum(b[1] for b in bounds) / 2])
    with open(tmp_path / 'report.json') as f:
        assert json.load(f)['chance_cells'] == content['chance_cells']


# ---------------------------------------------------------- real report ---
def _constant_model(path, num_classes=4):
    """A real digits ResNet that predicts class 0 for every image."""
    model = build_digits_model(num_classes)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.bias[0] = 10.0
    return save_checkpoint(model, path)


def test_report_on_real_evaluations(demo, tmp_path):
    """A trained model (as GFN) and a constant one (as the baseline),
    evaluated by test_robustness.py on real corrupted images; the report's
    intervals and chance marks are recomputed from results.json."""
    images, work = train_digits(tmp_path)
    opts = digits_options(images, max_epochs=2)
    const = _constant_model(str(tmp_path / 'const.pth'))
    out = str(tmp_path / 'robustness')
    proc = run_tool([
        'tools/test_robustness.py', DIGITS_CONFIG,
        osp.join(work, 'epoch_2.pth'), '--suite', 'corrupt', '--corruptions',
        'gaussian_noise', 'fog', '--severities', '0', '1', '5',
        '--allow-partial', '--baseline-checkpoint', const, '--work-dir', out,
        '--cfg-options', *opts
    ])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(out, 'results.json')) as f:
        results = json.load(f)
    with open(tmp_path / 'baseline.json', 'w') as f:
        json.dump(dict(cells=results['baseline_cells']), f)
    evals = dict(baseline=demo.cell_errors(str(tmp_path / 'baseline.json')),
                 gfn=demo.cell_errors(osp.join(out, 'results.json')))
    assert demo.count_classes(images) == 4
    args = SimpleNamespace(corruptions=['gaussian_noise', 'fog'],
                           severities=[1, 5], epochs=2, finetune_epochs=2)
    content = demo.report(args, evals, str(tmp_path), 3.0, 4)
    with open(tmp_path / 'report.md') as f:
        md = f.read()

    raw = {name: {(c['corruption'], c['severity']): (c['wrong'], c['total'])
                  for c in cells}
           for name, cells in (('gfn', results['cells']),
                               ('baseline', results['baseline_cells']))}
    # the constant model: 8 of 32 images are class 0, error 24/32 = chance
    assert set(raw['baseline'].values()) == {(24, 32)}
    grid = [(c, s) for c in args.corruptions for s in args.severities]
    hand_chance = [cell for cell in grid if all(
        score_roots(*raw[m][cell])[1] >= 0.75 for m in raw)]
    assert content['chance_cells'] == [f'{c}/{s}' for c, s in hand_chance]

    rows = {r.split(' | ')[0][2:]: r for r in md[md.index(
        '## Error per cell'):].splitlines() if r.startswith('| ')}
    for c, s in grid:
        row = rows[f'{c}/{s}']
        for name in ('baseline', 'gfn'):
            w, n = raw[name][(c, s)]
            assert f'{100 * w / n:.1f} {ci_text(*score_roots(w, n))}' in row
        assert row.endswith('| chance |') is ((c, s) in hand_chance), row

    summary = md[md.index('## Summary'):md.index('## Error relative')]
    for name, label in (('baseline', 'baseline (no fine-tuning)'),
                        ('gfn', 'GFN fine-tuning')):
        row = next(r for r in summary.splitlines()
                   if r.startswith(f'| {label} |'))
        w, n = raw[name][('clean', 0)]
        assert f'{100 * w / n:.2f} {ci_text(*score_roots(w, n))}' in row
        roots = [score_roots(*raw[name][cell]) for cell in grid]
        mean = sum(raw[name][cell][0] / raw[name][cell][1]
                   for cell in grid) / len(grid)
        assert (f'{100 * mean:.2f} ' + ci_text(
            sum(r[0] for r in roots) / 4, sum(r[1] for r in roots) / 4)) \
            in row

    # GFN minus the baseline, per informative cell, by hand
    informative = [cell for cell in grid if cell not in hand_chance]
    less, more = [], []
    for cell in informative:
        (wa, na), (wb, nb) = raw['gfn'][cell], raw['baseline'][cell]
        (la, ua), (lb, ub) = score_roots(wa, na), score_roots(wb, nb)
        d = wa / na - wb / nb
        if d + math.hypot(ua - wa / na, wb / nb - lb) < 0:
            less.append(f'{cell[0]}/{cell[1]}')
        if d - math.hypot(wa / na - la, ub - wb / nb) > 0:
            more.append(f'{cell[0]}/{cell[1]}')
    comparison = content['comparisons']['baseline']
    assert comparison['gfn_errs_less'] == less
    assert comparison['gfn_errs_more'] == more
    n_inf = len(informative)
    assert '| baseline (no fine-tuning) | ' in md[md.index(
        '## What a difference'):]
    assert (f'GFN errs significantly less in {len(less)} and more in '
            f'{len(more)} of the {n_inf} informative cells '
            f'({len(hand_chance)} chance-level cells left out)') in md
    assert 'the sampling of the 32 held-out images' in md


# --------------------------------------------------------- seed spread ---
def test_seed_spread_by_hand(demo, tmp_path):
    """Two training seeds: each model's mean corruption error per seed,
    its mean, sample sd and range, and GFN's per-seed difference."""
    cells = [('fog', 1), ('fog', 3)]

    def ev(clean, errors):
        return dict(cells=dict(zip(cells, errors)),
                    counts={c: (round(e * 100), 100)
                            for c, e in zip(cells, errors)},
                    clean_error=clean, clean_counts=(round(clean * 100),
                                                     100))

    base = ev(0.02, [0.30, 0.50])
    runs = {0: dict(baseline=base, gfn=ev(0.03, [0.20, 0.40]),
                    plain=ev(0.02, [0.25, 0.45])),
            1: dict(baseline=base, gfn=ev(0.04, [0.22, 0.30]),
                    plain=ev(0.01, [0.24, 0.46]))}
    spread = demo.seed_spread(runs, ['fog'], [1, 3])
    assert spread['seeds'] == [0, 1]
    gfn = spread['models']['gfn']['mean_corruption_error']
    assert gfn['values'] == pytest.approx([30.0, 26.0])
    assert gfn['mean'] == pytest.approx(28.0)
    assert gfn['sd'] == pytest.approx(math.sqrt(8.0))  # (2^2 + 2^2) / 1
    assert gfn['range'] == pytest.approx([26.0, 30.0])
    assert spread['models']['gfn']['clean_error']['values'] == \
        pytest.approx([3.0, 4.0])
    diff = spread['gfn_minus']['plain']
    assert diff['values'] == pytest.approx([30.0 - 35.0, 26.0 - 35.0])
    assert spread['gfn_minus']['baseline']['sd'] == pytest.approx(
        math.sqrt(8.0))

    args = SimpleNamespace(corruptions=['fog'], severities=[1, 3], epochs=6,
                           finetune_epochs=10)
    demo.report(args, runs[0], str(tmp_path), 1.0, 10, None, spread)
    with open(tmp_path / 'report.md') as f:
        md = f.read()
    assert '## Spread between training seeds (2 seeds: 0, 1)' in md
    assert '| GFN fine-tuning | 3.50 (0.71) [3.00, 4.00] | 28.00 (2.83) ' \
        '[26.00, 30.00] |' in md
    assert ('- GFN minus plain fine-tuning, mean corruption error per seed '
            '(points): -5.00, -9.00; mean (sd) [range] -7.00 (2.83) '
            '[-9.00, -5.00].') in md
    with open(tmp_path / 'report.json') as f:
        assert json.load(f)['seed_spread']['seeds'] == [0, 1]


# ------------------------------------------------------ the whole report ---
def _write_sweep(folder: str, wrong: dict) -> str:
    """A sweep's results.json as test_robustness.py writes it, with the
    per-image outcomes ``wrong`` (``{(corruption, severity): (N,) bool}``)
    of the same N images in every cell."""
    from mmgfn.evaluation.robustness_sweep import encode_outcomes
    ids = [f'{i % 10}/{i:04d}.png|{i % 10}' for i in range(40)]
    cells = [
        dict(corruption=c, severity=s, quantity='error',
             value=float(w.mean()), wrong=int(w.sum()), total=w.size,
             outcomes=encode_outcomes(w, ids))
        for (c, s), w in wrong.items()
    ]
    os.makedirs(folder, exist_ok=True)
    with open(osp.join(folder, 'results.json'), 'w') as f:
        json.dump(dict(suite='corrupt', cells=cells), f)
    return folder


def test_write_demo_report_on_constructed_sweeps(demo, tmp_path):
    """The paired comparisons (one per other model, their files), the seed
    spread (two seeds) and the class count read from ``<data>/val``."""
    rng = np.random.default_rng(0)
    grid = [('clean', 0), ('fog', 1), ('fog', 3)]
    rates = dict(baseline=0.6, plain=0.5, gfn=0.3, adv=0.45)
    data = tmp_path / 'digits'
    for label in range(10):
        (data / 'val' / str(label)).mkdir(parents=True)
    (data / 'val' / 'README.txt').write_text('not a class')
    evals, sweeps = {0: {}, 1: {}}, {}
    for seed in (0, 1):
        for name, rate in rates.items():
            if seed and name == 'baseline':
                evals[1][name] = evals[0][name]
                continue
            folder = _write_sweep(
                str(tmp_path / f'seed{seed}' / name),
                {cell: rng.random(40) < rate + 0.1 * seed for cell in grid})
            evals[seed][name] = demo.cell_errors(
                osp.join(folder, 'results.json'))
            if not seed:
                sweeps[name] = folder
    args = SimpleNamespace(data=str(data), corruptions=['fog'],
                           severities=[1, 3], epochs=6, finetune_epochs=10)
    out = str(tmp_path / 'work')
    os.makedirs(out)
    content = demo.write_demo_report(args, evals, sweeps, out, 0.0)

    assert content['num_classes'] == 10  # class folders only
    assert list(content['paired']) == ['baseline', 'plain', 'adv']
    with open(osp.join(out, 'report.md')) as f:
        md = f.read()
    for other, result in content['paired'].items():
        folder = osp.join(out, 'comparisons', f'gfn_vs_{other}')
        with open(osp.join(folder, 'comparison.json')) as f:
            comparison = json.load(f)
        assert comparison['names'] == ['GFN', demo.LABELS[other]]
        assert comparison['baseline'].startswith(sweeps['baseline'])
        assert result['sentence'] == comparison['sentence']
        assert result['sentence'] in md
        assert result['num_cells'] == 2 and result['num_images'] == 40
    spread = content['seed_spread']
    assert spread['seeds'] == [0, 1]
    gfn = [100 * np.mean([evals[s]['gfn']['cells'][c]
                          for c in (('fog', 1), ('fog', 3))])
           for s in (0, 1)]
    assert spread['models']['gfn']['mean_corruption_error']['values'] == \
        pytest.approx(gfn)
    assert '## Spread between training seeds (2 seeds: 0, 1)' in md
    with open(osp.join(out, 'report.json')) as f:
        assert json.load(f)['seed_spread']['seeds'] == [0, 1]

    # one seed: no spread
    content = demo.write_demo_report(args, {0: evals[0]}, sweeps, out, 0.0)
    assert content['seed_spread'] is None
