"""Paired comparisons of two sweeps: McNemar, its interval, Holm, the
bootstrap over images, the outcomes every classification cell keeps and
tools/analysis_tools/compare_sweeps.py on real sweeps."""
import json
import os.path as osp
import shutil

import numpy as np
import pytest
from conftest import (DIGITS_CONFIG, build_digits_model, digits_options,
                      run_tool, run_tool_in_process, save_checkpoint,
                      write_image_folder)

from mmgfn.evaluation.functional import (corruption_error_ratio,
                                         holm_adjust, mcnemar_exact_p,
                                         mcnemar_table, paired_bootstrap,
                                         paired_difference_interval)
from mmgfn.evaluation.robustness_sweep import (compare_sweeps,
                                               decode_outcomes,
                                               encode_outcomes)
from mmgfn.utils.errors import ConfigError


# ------------------------------------------------------------ McNemar ---
def test_mcnemar_table_and_exact_p_by_hand():
    # 20 images: 7 both right, 2 A right / B wrong, 8 A wrong / B right,
    # 3 both wrong
    wrong_a = np.array([0] * 7 + [0] * 2 + [1] * 8 + [1] * 3, dtype=bool)
    wrong_b = np.array([0] * 7 + [1] * 2 + [0] * 8 + [1] * 3, dtype=bool)
    table = mcnemar_table(wrong_a, wrong_b)
    assert table == dict(both_right=7, b=2, c=8, both_wrong=3, n=20)
    # P(X <= 2), X ~ Bin(10, 1/2) = (1 + 10 + 45) / 1024; two-sided: twice
    assert mcnemar_exact_p(2, 8) == pytest.approx(112 / 1024, rel=1e-12)
    assert mcnemar_exact_p(8, 2) == mcnemar_exact_p(2, 8)
    assert mcnemar_exact_p(0, 5) == pytest.approx(2 / 32, rel=1e-12)
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64, rel=1e-12)
    assert mcnemar_exact_p(5, 5) == 1.0  # 2 P(X <= 5) > 1, capped
    assert mcnemar_exact_p(0, 0) == 1.0
    # a large table: close to the continuity-corrected normal approximation
    b, c = 400, 480
    z = (abs(b - c) - 1) / np.sqrt(b + c)
    from math import erfc, sqrt
    assert mcnemar_exact_p(b, c) == pytest.approx(erfc(z / sqrt(2)),
                                                  rel=0.02)
    with pytest.raises(ValueError, match='non-negative'):
        mcnemar_exact_p(-1, 3)
    with pytest.raises(ValueError, match='same images'):
        mcnemar_table(wrong_a, wrong_b[:5])


def test_paired_interval_is_clopper_pearson_and_agrees_with_the_test():
    # 8 of 10 discordant images are A's errors: Clopper-Pearson 95 % of
    # 8/10 is [0.44390, 0.97479] (published tables); the difference is
    # (10 / 20) (2 theta - 1)
    low, high = paired_difference_interval(2, 8, 20)
    assert low == pytest.approx(0.5 * (2 * 0.443904 - 1), abs=1e-5)
    assert high == pytest.approx(0.5 * (2 * 0.974789 - 1), abs=1e-5)
    assert low < (8 - 2) / 20 < high
    assert paired_difference_interval(0, 0, 20) == (0.0, 0.0)
    # the interval excludes 0 exactly when the exact p is below 0.05
    for b in range(0, 13):
        for c in range(0, 13):
            if b + c == 0:
                continue
            lo, hi = paired_difference_interval(b, c, 30)
            assert (lo > 0 or hi < 0) == (mcnemar_exact_p(b, c) < 0.05), \
                (b, c)
    with pytest.raises(ValueError, match='2 x 2'):
        paired_difference_interval(5, 6, 10)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06,
    # 1 * 0.04); returned in the input order
    assert holm_adjust([0.04, 0.01, 0.03]) == pytest.approx(
        [0.06, 0.03, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm_adjust([]) == []


# ----------------------------------------------------------- bootstrap ---
def _direct_bootstrap(stat, outcomes, resamples, seed, level=0.95):
    """The bootstrap written out: draw image indices, keep every cell of
    each drawn image, recompute the errors from the drawn images."""
    rng = np.random.default_rng(seed)
    n = outcomes[0].shape[1]
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        values.append(stat(*[o[:, idx].mean(axis=1) for o in outcomes]))
    values = np.array(values)
    values = values[np.isfinite(values)]
    tail = 100 * (1 - level) / 2
    return np.percentile(values, [tail, 100 - tail])


def test_bootstrap_matches_a_direct_reimplementation():
    rng = np.random.default_rng(7)
    # 6 cells (3 corruptions x 2 severities) of 50 images; B errs more
    a = rng.random((6, 50)) < 0.3
    b = rng.random((6, 50)) < 0.4
    base = rng.random((6, 50)) < 0.5
    groups = np.array([0, 0, 1, 1, 2, 2])

    def mean_diff(ea, eb):
        return ea.mean() - eb.mean()

    out = paired_bootstrap(mean_diff, [a, b], num_resamples=300, seed=3)
    assert out['estimate'] == pytest.approx(a.mean() - b.mean())
    assert out['ci'] == pytest.approx(
        list(_direct_bootstrap(mean_diff, [a, b], 300, 3)), abs=1e-12)
    assert out['num_undefined'] == 0 and out['seed'] == 3

    def ratio_diff(ea, eb, eb0):
        return (corruption_error_ratio(ea, eb0, groups) -
                corruption_error_ratio(eb, eb0, groups))

    out = paired_bootstrap(ratio_diff, [a, b, base], 200, seed=11)
    hand = np.mean([(a[2 * g:2 * g + 2].mean(1).sum() -
                     b[2 * g:2 * g + 2].mean(1).sum()) /
                    base[2 * g:2 * g + 2].mean(1).sum() for g in range(3)])
    assert out['estimate'] == pytest.approx(hand)
    assert out['ci'] == pytest.approx(
        list(_direct_bootstrap(ratio_diff, [a, b, base], 200, 11)),
        abs=1e-12)
    # another seed, another interval; the same seed, the same one
    assert paired_bootstrap(ratio_diff, [a, b, base], 200, seed=12)['ci'] \
        != out['ci']
    assert paired_bootstrap(ratio_diff, [a, b, base], 200,
                            seed=11)['ci'] == out['ci']
    with pytest.raises(ValueError, match='one shape'):
        paired_bootstrap(mean_diff, [a, b[:, :10]])


def test_relative_ratio_subtracts_clean_errors():
    err = np.array([0.3, 0.5, 0.2, 0.4])
    base = np.array([0.6, 0.8, 0.5, 0.5])
    groups = np.array([0, 0, 1, 1])
    assert corruption_error_ratio(err, base, groups) == pytest.approx(
        (0.8 / 1.4 + 0.6 / 1.0) / 2)
    assert corruption_error_ratio(err, base, groups, (0.1, 0.2)) == \
        pytest.approx((0.6 / 1.0 + 0.4 / 0.6) / 2)
    assert np.isnan(corruption_error_ratio(err, 0 * base, groups))


def test_outcomes_round_trip_and_count_check():
    wrong = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    ids = [f'c/{i}.png|0' for i in range(11)]
    record = dict(corruption='fog', severity=1, wrong=5,
                  outcomes=encode_outcomes(wrong, ids))
    back, key = decode_outcomes(record, 'x')
    assert back.tolist() == wrong.tolist()
    assert key == encode_outcomes(wrong, ids)['images']
    assert key != encode_outcomes(wrong, ids[::-1])['images']
    record['wrong'] = 4
    with pytest.raises(ConfigError, match='fog/1 has 4 wrong images'):
        decode_outcomes(record, 'x')
    with pytest.raises(ConfigError, match='keeps no per-image outcomes'):
        decode_outcomes(dict(corruption='fog', severity=1), 'x')


# ------------------------------------------------------- real sweeps ---
def _constant(path, label, num_classes=4):
    """A real digits ResNet that predicts ``label`` for every image."""
    import torch
    model = build_digits_model(num_classes)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.bias[label] = 10.0
    return save_checkpoint(model, path)


def _sweep(images, checkpoint, out):
    proc = run_tool_in_process([
        'tools/test_robustness.py', DIGITS_CONFIG, checkpoint, '--suite',
        'corrupt', '--corruptions', 'gaussian_noise', 'fog',
        '--severities', '0', '1', '--allow-partial', '--work-dir', out,
        '--cfg-options', *digits_options(images),
        'test_dataloader.num_workers=0'
    ])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_compare_real_sweeps_of_models_that_differ_on_known_images(
        tmp_path):
    # 4 classes x 8 val images. A predicts class 0, B class 1, the
    # baseline class 2: on every cell A is right on the 8 class-0 images
    # (where B errs) and B on the 8 class-1 images: b = c = 8
    images = write_image_folder(str(tmp_path / 'images'))
    ckpts = {name: _constant(str(tmp_path / f'{name}.pth'), label)
             for name, label in (('a', 0), ('b', 1), ('base', 2))}
    outs = {name: str(tmp_path / name) for name in ckpts}
    for name in ckpts:
        _sweep(images, ckpts[name], outs[name])
    with open(osp.join(outs['a'], 'results.json')) as f:
        cells = json.load(f)['cells']
    labels = np.repeat(np.arange(4), 8)  # dataset order: class folders
    for c in cells:  # the kept bits are the images a class-0 guess misses
        wrong, _ = decode_outcomes(c)
        assert wrong.tolist() == (labels != 0).tolist()
    # resumed cells keep theirs
    proc = _sweep(images, ckpts['a'], outs['a'])
    assert 'skipping 3 finished cells, 0 to evaluate' in proc.stdout + \
        proc.stderr
    with open(osp.join(outs['a'], 'results.json')) as f:
        assert [c['outcomes'] for c in json.load(f)['cells']] == \
            [c['outcomes'] for c in cells]

    result = compare_sweeps(outs['a'], outs['b'], outs['base'],
                            num_resamples=200, seed=5)
    for r in result['cells']:
        assert r['table'] == dict(both_right=0, b=8, c=8, both_wrong=16,
                                  n=32)
        assert r['p'] == 1.0 and r['difference'] == 0.0
    assert [r['p_holm'] is None for r in result['cells']] == \
        [True, False, False]
    assert result['num_differ'] == 0 and result['num_cells'] == 2
    mean = result['benchmark']['mean_corruption_error']
    assert mean['a'] == mean['b'] == pytest.approx(24 / 32)

    wa = np.stack([labels != 0] * 2)
    wb = np.stack([labels != 1] * 2)
    wbase = np.stack([labels != 2] * 2)
    hand = _direct_bootstrap(lambda x, y: x.mean() - y.mean(), [wa, wb],
                             200, 5)
    assert mean['ci'] == pytest.approx(list(hand), abs=1e-12)
    groups = np.array([0, 1])
    rel = result['benchmark']['mCE_vs_baseline']
    assert rel['a'] == pytest.approx(1.0) and rel['difference'] == 0.0
    hand = _direct_bootstrap(
        lambda x, y, z: corruption_error_ratio(x, z, groups) -
        corruption_error_ratio(y, z, groups), [wa, wb, wbase], 200, 5)
    assert rel['ci'] == pytest.approx(list(hand), abs=1e-12)
    assert 'relative_mCE_vs_baseline' in result['benchmark']

    # the tool: report files and the sentence
    proc = run_tool_in_process([
        'tools/analysis_tools/compare_sweeps.py', outs['a'], outs['b'],
        '--baseline', outs['base'], '--names', 'zero', 'one',
        '--resamples', '50', '--out-dir', str(tmp_path / 'cmp')])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'zero and one cannot be told apart' in proc.stdout
    assert '0 of 2 cells differ after Holm' in proc.stdout
    with open(tmp_path / 'cmp' / 'comparison.md') as f:
        md = f.read()
    assert '| fog/1 | 75.00 | 75.00 | +0.00 |' in md
    assert osp.getsize(tmp_path / 'cmp' / 'comparison.png') > 1000

    # another image list is refused in one line
    other = str(tmp_path / 'other')
    shutil.copytree(images, other)
    import os
    os.remove(osp.join(other, 'val', 'class_3', '007.jpg'))
    _sweep(other, ckpts['b'], str(tmp_path / 'b_other'))
    proc = run_tool(['tools/analysis_tools/compare_sweeps.py', outs['a'],
                     str(tmp_path / 'b_other')])
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and 'the image lists differ' in err[0], err
    assert 'Traceback' not in proc.stderr
