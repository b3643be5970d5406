"""tools/test_robustness.py sweeps: what a rerun reuses, exact errors,
baselines from an earlier run, summary names, both detection APs, class
count checks of detectors and the plots. Real models, files and runs."""
import csv
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import (DIGITS_CONFIG, digits_options, make_image,
                      run_tool_in_process, train_digits, write_coco,
                      write_det_config)
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from PIL import Image

from mmgfn.datasets.transforms.corruption import ALL_CORRUPTIONS

TOOL = 'tools/test_robustness.py'


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _refusal(proc):
    """The one line a refused run ends with."""
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('test_robustness.py: error: '), last
    return last


def _results(work):
    with open(osp.join(work, 'results.json')) as f:
        return json.load(f)


def _cells(work):
    with open(osp.join(work, 'cells.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


def _by_cell(records):
    return {(r['corruption'], r['severity']): r for r in records}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 4-class digits ResNet trained 2 epochs (checkpoints of both), and
    a copy of it whose head always answers class 0."""
    root = tmp_path_factory.mktemp('sweep_trained')
    images, work = train_digits(root)
    ckpt = osp.join(work, 'epoch_2.pth')
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    weights = state['state_dict']
    weights['head.fc.weight'].zero_()
    weights['head.fc.bias'].zero_()
    weights['head.fc.bias'][0] = 10.0
    constant = str(root / 'constant.pth')
    torch.save(dict(state_dict=weights, meta=dict()), constant)
    return dict(images=images, ckpt=ckpt,
                early=osp.join(work, 'epoch_1.pth'), constant=constant)


def _digits_run(ckpt, images, work, *extra, options=()):
    return run_tool_in_process([
        TOOL, DIGITS_CONFIG, ckpt, '--suite', 'corrupt', '--work-dir', work,
        *extra, '--cfg-options', *digits_options(images), *options
    ])


# ------------------------------------------------------------- resume ---
def test_rerun_with_another_preprocessor_evaluates_again(trained, tmp_path):
    """A different data_preprocessor (--cfg-options) changes every cell's
    numbers: a rerun must evaluate them again, not return the old ones."""
    work = str(tmp_path / 'work')
    grid = ['--corruptions', 'fog', '--severities', '0', '1',
            '--allow-partial']
    raw = ['data_preprocessor.mean=[0,0,0]', 'data_preprocessor.std=[1,1,1]']
    _check_ok(_digits_run(trained['ckpt'], trained['images'], work, *grid))
    normalised = _by_cell(_results(work)['cells'])

    proc = _digits_run(trained['ckpt'], trained['images'], work, *grid,
                       options=raw)
    _check_ok(proc)
    assert 'main model: skipping 0 finished cells, 2 to evaluate (2 of ' \
        'them finished before' in proc.stdout
    rerun = _by_cell(_results(work)['cells'])
    assert len(_cells(work)) == 4

    # the same options in a fresh work dir: the numbers the rerun must give
    fresh_work = str(tmp_path / 'fresh')
    _check_ok(_digits_run(trained['ckpt'], trained['images'], fresh_work,
                          *grid, options=raw))
    fresh = _by_cell(_results(fresh_work)['cells'])
    for cell in fresh:
        assert rerun[cell]['value'] == fresh[cell]['value']
        assert rerun[cell]['metrics'] == fresh[cell]['metrics']
    # unnormalised inputs do change the model's answers
    assert any(normalised[c]['value'] != fresh[c]['value'] for c in fresh)


# ------------------------------------------------------- exact errors ---
def test_errors_are_exact_fractions_of_the_image_count(trained, tmp_path):
    """60 images, the model always answers class 0, 3 images are of other
    classes: every error is exactly 3 / 60, not a float32 percentage."""
    images = str(tmp_path / 'images')
    rng = np.random.default_rng(0)
    counts = {0: 57, 1: 1, 2: 1, 3: 1}
    for split in ('train', 'val'):
        for label, count in counts.items():
            folder = osp.join(images, split, f'class_{label}')
            os.makedirs(folder)
            for i in range(count):
                cv2.imwrite(osp.join(folder, f'{i}.png'),
                            make_image(label, rng))
    work = str(tmp_path / 'work')
    _check_ok(_digits_run(trained['constant'], images, work, '--corruptions',
                          'fog', '--severities', '0', '1',
                          '--allow-partial'))
    results = _results(work)
    for cell in results['cells']:
        assert cell['num_samples'] == 60
        assert (cell['wrong'], cell['total']) == (3, 60)
        assert cell['value'] == 3 / 60
    assert results['summary']['clean_error'] == 3 / 60
    assert results['summary']['mean_corruption_error'] == 3 / 60
    with open(osp.join(work, 'results.csv')) as f:
        rows = list(csv.reader(f))
    assert ['main', 'fog', '1', 'error', repr(3 / 60)] in rows


# ------------------------------------------ baseline from earlier run ---
@pytest.fixture(scope='module')
def baseline_run(trained, tmp_path_factory):
    """The early checkpoint's sweep, then the trained one's with
    --baseline-results pointing at the first results.json."""
    root = tmp_path_factory.mktemp('baseline_run')
    grid = ['--corruptions', 'fog', 'gaussian_noise', '--severities', '0',
            '1', '2', '--allow-partial']
    base_work = str(root / 'early')
    _check_ok(_digits_run(trained['early'], trained['images'], base_work,
                          *grid))
    work = str(root / 'main')
    proc = _digits_run(trained['ckpt'], trained['images'], work, *grid,
                       '--baseline-results',
                       osp.join(base_work, 'results.json'))
    return dict(proc=proc, work=work, base_work=base_work)


def test_baseline_results_give_every_report(baseline_run):
    _check_ok(baseline_run['proc'])
    work = baseline_run['work']
    results = _results(work)
    base = _by_cell(_results(baseline_run['base_work'])['cells'])
    assert _by_cell(results['baseline_cells']).keys() == base.keys()
    for cell, record in _by_cell(results['baseline_cells']).items():
        assert record['value'] == base[cell]['value']
        assert record['quantity'] == 'error'
    with open(osp.join(work, 'results.csv')) as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 + 5 + 5
    assert ['baseline', 'fog', '2', 'error',
            repr(base[('fog', 2)]['value'])] in rows
    md = open(osp.join(work, 'results.md')).read()
    assert 'CE (baseline)' in md and '## Summary' in md
    for name in ('error_vs_severity.png', 'ce_vs_baseline.png'):
        img = cv2.imread(osp.join(work, name))
        assert img is not None and img.shape[0] > 100


def test_summary_keys_say_what_they_are_normalised_by(baseline_run):
    _check_ok(baseline_run['proc'])
    results = _results(baseline_run['work'])
    s = results['summary']
    err = {c: r['value'] for c, r in _by_cell(results['cells']).items()}
    ref = {c: r['value']
           for c, r in _by_cell(results['baseline_cells']).items()}
    for key in ('mCE', 'relative_mCE', 'mCE_normalized_by'):
        assert key not in s
    assert s['mCE_alexnet'] is None  # not ImageNet-C
    ce = [(err[(c, 1)] + err[(c, 2)]) / (ref[(c, 1)] + ref[(c, 2)])
          for c in ('fog', 'gaussian_noise')]
    assert s['mCE_vs_baseline'] == pytest.approx(sum(ce) / 2)
    dens = [ref[(c, 1)] + ref[(c, 2)] - 2 * ref[('clean', 0)]
            for c in ('fog', 'gaussian_noise')]
    if min(dens) > 0:
        rel = [(err[(c, 1)] + err[(c, 2)] - 2 * err[('clean', 0)]) / d
               for c, d in zip(('fog', 'gaussian_noise'), dens)]
        assert s['relative_mCE_vs_baseline'] == pytest.approx(sum(rel) / 2)
    else:  # the baseline is not hurt by a corruption: undefined
        assert s['relative_mCE_vs_baseline'] is None
    md = open(osp.join(baseline_run['work'], 'results.md')).read()
    value = s['mCE_vs_baseline']
    assert f'- mCE_vs_baseline: {value:.4f}' in md
    assert '- mCE_vs_baseline = mean_c [sum_s err(c, s) / sum_s ' \
        'err_baseline(c, s)]' in md
    assert '- relative_mCE_vs_baseline = mean_c [sum_s (err(c, s) - ' \
        'clean_error) / sum_s (err_baseline(c, s) - clean_error_baseline)]' \
        in md
    assert '- mCE:' not in md and '- relative_mCE:' not in md


# -------------------------------------------------------------- plots ---
def test_plots_name_model_suite_and_partial(baseline_run, trained):
    _check_ok(baseline_run['proc'])
    work = baseline_run['work']
    for name in ('error_vs_severity.png', 'ce_vs_baseline.png'):
        title = Image.open(osp.join(work, name)).text['Title']
        assert title == 'resnet-tiny_1xb32_digits / epoch_2.pth, corrupt, ' \
            'partial'
    for line in open(osp.join(work, 'results.md')).read().splitlines():
        assert '||' not in line, line


def test_severity_plot_separates_19_corruptions_and_baselines():
    from mmgfn.visualization import severity_figure
    names = list(ALL_CORRUPTIONS)
    assert len(names) == 19
    cells = {('clean', 0): 0.1}
    base = {('clean', 0): 0.2}
    for i, c in enumerate(names):
        for s in (1, 2, 3, 4, 5):
            cells[(c, s)] = 0.1 + 0.15 * s
            base[(c, s)] = 0.2 + 0.15 * s  # every corruption the same
    fig = severity_figure(names, [1, 2, 3, 4, 5], cells, base,
                          'top-1 error', 'model.py / a.pth, corrupt')
    ax = fig.axes[0]
    assert 'model.py / a.pth, corrupt' in ax.get_title()
    assert list(ax.get_xticks()) == [0, 1, 2, 3, 4, 5]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        '0', '1', '2', '3', '4', '5']
    lines = ax.get_lines()
    main = [ln for ln in lines if not ln.get_label().endswith('(baseline)')]
    baseline = [ln for ln in lines if ln.get_label().endswith('(baseline)')]
    assert len(main) == len(baseline) == 19
    assert len({ln.get_color() for ln in main}) == 19
    # equal values: the lines differ in position, so none hides another
    assert len({tuple(ln.get_xdata()) for ln in main}) == 19
    assert len({tuple(ln.get_xdata()) for ln in baseline}) == 19
    for ln in baseline:
        assert ln.get_linestyle() == '--' and ln.get_marker() == 's'
    for ln in main:
        assert ln.get_linestyle() == '-' and ln.get_marker() == 'o'
    import matplotlib.pyplot as plt
    plt.close(fig)


# ---------------------------------------------------------- detection ---
@pytest.fixture(scope='module')
def detector(tmp_path_factory):
    """A 2-class COCO folder, a Faster R-CNN (ResNet-18) config for it, the
    initialised detector's checkpoint and a 5-class one's."""
    root = tmp_path_factory.mktemp('sweep_det')
    coco = write_coco(str(root / 'coco'), num_images=4)
    ckpts = {}
    for n in (2, 5):
        folder = root / f'cfg{n}'
        folder.mkdir()
        path = write_det_config(folder, coco, num_classes=n)
        DefaultScope._instance_dict.clear()
        cfg = Config.fromfile(path)
        cfg.work_dir = str(root / f'build{n}')
        torch.manual_seed(0)
        model = Runner.from_cfg(cfg).model
        model.init_weights()
        ckpts[n] = str(root / f'faster-rcnn_{n}-classes.pth')
        torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpts[n])
        if n == 2:
            config = path
    DefaultScope._instance_dict.clear()
    return dict(config=config, ckpt=ckpts[2], ckpt5=ckpts[5])


def _det_run(detector, work, *extra, ckpt=None):
    return run_tool_in_process([
        TOOL, detector['config'], ckpt or detector['ckpt'], '--suite',
        'corrupt', '--corruptions', 'fog', '--severities', '0', '1',
        '--allow-partial', '--work-dir', work, *extra, '--cfg-options',
        'model.test_cfg.rcnn.score_thr=0.0'
    ])


@pytest.fixture(scope='module')
def det_sweep(detector, tmp_path_factory):
    work = str(tmp_path_factory.mktemp('det_sweep') / 'work')
    proc = _det_run(detector, work)
    _check_ok(proc)
    return work


def test_detection_reports_both_aps(det_sweep):
    results = _results(det_sweep)
    s = results['summary']
    cells = _by_cell(results['cells'])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50'):
        name = key.split('/')[1]
        clean = cells[('clean', 0)]['metrics'][key]
        fog = cells[('fog', 1)]['metrics'][key]
        assert s[f'P_{name}'] == clean
        assert s[f'mPC_{name}'] == fog
        assert s[f'rPC_{name}'] == (fog / clean if clean > 0 else None)
    assert s['metric_key'] == 'coco/bbox_mAP'
    assert s['paper_metric']['COCO-C'].startswith('coco/bbox_mAP')
    assert s['paper_metric']['RTTS'] == 'coco/bbox_mAP_50'
    md = open(osp.join(det_sweep, 'results.md')).read()
    assert '- mPC_bbox_mAP_50: ' in md and '- mPC_bbox_mAP: ' in md
    assert 'COCO-C column is compared with mPC_bbox_mAP' in md
    with open(osp.join(det_sweep, 'results.csv')) as f:
        rows = list(csv.reader(f))
    assert [r[3] for r in rows[1:]] == ['coco/bbox_mAP', 'coco/bbox_mAP_50'
                                        ] * 2


def test_detection_metric_key_is_read_from_the_stored_metrics(
        detector, det_sweep):
    stored = _by_cell(_cells(det_sweep))
    proc = _det_run(detector, det_sweep, '--metric-key', 'coco/bbox_mAP_75')
    _check_ok(proc)
    assert 'main model: skipping 2 finished cells, 0 to evaluate' in \
        proc.stdout
    results = _results(det_sweep)
    s = results['summary']
    assert s['metric_key'] == 'coco/bbox_mAP_75'
    for cell, record in _by_cell(results['cells']).items():
        assert record['metric_key'] == 'coco/bbox_mAP_75'
        assert record['value'] == stored[cell]['metrics']['coco/bbox_mAP_75']
    assert s['P_bbox_mAP_75'] == \
        stored[('clean', 0)]['metrics']['coco/bbox_mAP_75']
    assert len(_cells(det_sweep)) == 2  # nothing evaluated again

    last = _refusal(_det_run(detector, det_sweep, '--metric-key',
                             'coco/segm_mAP'))
    assert '--metric-key coco/segm_mAP is not among the metrics stored ' \
        'for the finished cell clean in ' in last
    assert 'cells.jsonl' in last and 'coco/bbox_mAP_50' in last


def test_detector_with_another_class_count_is_refused(detector, tmp_path):
    work = str(tmp_path / 'work')
    last = _refusal(_det_run(detector, work, ckpt=detector['ckpt5']))
    assert 'roi_head.bbox_head.fc_cls.weight has shape [6, 1024] in the ' \
        'checkpoint and [3, 1024] in the model' in last
    assert 'model.roi_head.bbox_head.num_classes=2' in last
    assert not osp.exists(osp.join(work, 'cells.jsonl'))


def teardown_module():
    DefaultScope._instance_dict.clear()
