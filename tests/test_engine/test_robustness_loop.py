"""mmgfn.RobustnessTestLoop: a robustness sweep from a config through
tools/test.py and tools/dist_test.sh (2 gloo processes give the numbers of
1), from Python on a built model, and the configs in configs/robustness/.
Real models, image files and runs."""
import json
import os.path as osp
import re
import sys

import pytest
import torch
from conftest import (DIGITS_CONFIG, ROOT, build_digits_model,
                      digits_options, load_tool, run_tool,
                      run_tool_in_process, save_checkpoint,
                      write_image_folder)
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmgfn.apis import run_robustness_sweep
from mmgfn.evaluation.robustness_sweep import (RobustnessSettings, Suite,
                                               check_robustness_config)
from mmgfn.utils.errors import ConfigError

DIGITS_C = osp.join(ROOT, 'configs', 'robustness',
                    'resnet-tiny_1xb32_digits-c.py')
#: 4 classes x 8 validation images (conftest.write_image_folder)
NUM_VAL = 32
CELLS = [('clean', 0), ('fog', 2), ('gaussian_noise', 2)]


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _results(work):
    with open(osp.join(work, 'results.json')) as f:
        return json.load(f)


def _cells(records):
    """The evaluated content of cell records (not when they finished)."""
    return [{k: v for k, v in r.items() if k != 'finished_at'}
            for r in records]


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
    """A sweep config inheriting configs/robustness/, two checkpoints of
    the digits ResNet, and its run through ``tools/test.py``."""
    root = tmp_path_factory.mktemp('loop')
    images = write_image_folder(str(root / 'images'))
    ckpt = save_checkpoint(build_digits_model(4, seed=0),
                           str(root / 'model.pth'))
    base = save_checkpoint(build_digits_model(4, seed=1),
                           str(root / 'base.pth'))
    config = root / 'sweep.py'
    config.write_text(
        f'_base_ = [{DIGITS_C!r}]\n'
        'test_cfg = dict(corruptions=["fog", "gaussian_noise"], '
        f'severities=[0, 2], baseline_checkpoint={base!r})\n')
    work = str(root / 'one')
    out = str(root / 'metrics.json')
    proc = run_tool_in_process([
        'tools/test.py', str(config), ckpt, '--work-dir', work,
        '--out-metrics', out, '--cfg-options', *digits_options(images)])
    _check_ok(proc)
    with open(out) as f:
        metrics = json.load(f)
    return dict(root=root, images=images, ckpt=ckpt, base=base,
                config=str(config), work=work, metrics=metrics)


def test_test_py_runs_the_sweep_of_a_config(sweep):
    results = _results(sweep['work'])
    assert results['suite'] == 'corrupt'
    for records in (results['cells'], results['baseline_cells']):
        assert [(r['corruption'], r['severity']) for r in records] == CELLS
        for r in records:
            assert r['total'] == NUM_VAL, r
            assert r['value'] == r['wrong'] / NUM_VAL
    summary = results['summary']
    assert summary['partial'] is True
    # the numbers tools/test.py returns are the summary's headline
    assert sweep['metrics']['partial'] is True
    assert sweep['metrics']['mean_corruption_error'] == pytest.approx(
        summary['mean_corruption_error'])
    assert sweep['metrics']['mCE_vs_baseline'] == pytest.approx(
        summary['mCE_vs_baseline'])
    # by hand: mean over fog/2 and gaussian_noise/2 of err / err_baseline
    err = {(r['corruption'], r['severity']): r['value']
           for r in results['cells']}
    base = {(r['corruption'], r['severity']): r['value']
            for r in results['baseline_cells']}
    ces = [err[c] / base[c] for c in CELLS[1:]]
    assert summary['mCE_vs_baseline'] == pytest.approx(sum(ces) / 2)
    for name in ('cells.jsonl', 'results.csv', 'results.md',
                 'error_vs_severity.png', 'ce_vs_baseline.png'):
        assert osp.isfile(osp.join(sweep['work'], name)), name


def test_two_gloo_processes_give_the_numbers_of_one(sweep):
    """tools/dist_test.sh with 2 processes: each rank scores half of each
    cell's images, the evaluator gathers them; cells and summary must be
    those of the single-process run."""
    work = str(sweep['root'] / 'two')
    proc = run_tool([
        'tools/dist_test.sh', sweep['config'], sweep['ckpt'], '2',
        '--work-dir', work, '--cfg-options', *digits_options(sweep['images'])
    ], env={'PORT': '29531'})
    _check_ok(proc)
    assert 'Distributed launcher: pytorch' in proc.stdout + proc.stderr
    one, two = _results(sweep['work']), _results(work)
    # per-image outcomes too: gathered from both ranks, in dataset order
    assert all('outcomes' in c for c in two['cells'] + two['baseline_cells'])
    assert _cells(two['cells']) == _cells(one['cells'])
    assert _cells(two['baseline_cells']) == _cells(one['baseline_cells'])
    assert two['summary'] == one['summary']
    # rank 0 alone wrote the cells: one line per cell and model
    with open(osp.join(work, 'cells.jsonl')) as f:
        assert len(f.read().splitlines()) == 2 * len(CELLS)


def test_python_call_on_a_built_model(sweep, tmp_path):
    """mmgfn.apis.run_robustness_sweep on a model built in this process
    gives the cells of tools/test.py, leaves the model's weights as they
    were (also after the baseline's) and resumes from its work dir."""
    model = build_digits_model(4, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = Config.fromfile(DIGITS_CONFIG)
    cfg.merge_from_dict(dict(
        o.split('=', 1) for o in digits_options(sweep['images'])
        if o.startswith('test_dataloader')))
    cfg.test_dataloader.batch_size = 8
    cfg.test_dataloader.num_workers = 0
    work = str(tmp_path / 'api')
    settings = dict(suite='corrupt', corruptions=['fog', 'gaussian_noise'],
                    severities=[0, 2], allow_partial=True,
                    baseline_checkpoint=sweep['base'])
    try:
        results = run_robustness_sweep(model, cfg, work, **settings)
        one = _results(sweep['work'])
        assert _cells(results['cells']) == _cells(one['cells'])
        assert _cells(results['baseline_cells']) == _cells(
            one['baseline_cells'])
        assert results['summary'] == one['summary']
        assert results['checkpoint'].startswith('weights:ImageClassifier:')
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key
        # a second call finds every cell finished
        with open(osp.join(work, 'cells.jsonl')) as f:
            lines = f.read()
        again = run_robustness_sweep(model, cfg, work, **settings)
        with open(osp.join(work, 'cells.jsonl')) as f:
            assert f.read() == lines
        assert again['summary'] == results['summary']
        # other weights are other cells
        with torch.no_grad():
            model.head.fc.bias.add_(1.0)
        run_robustness_sweep(model, cfg, work, **settings)
        with open(osp.join(work, 'cells.jsonl')) as f:
            assert len(f.read().splitlines()) == 3 * len(CELLS)
    finally:
        DefaultScope._instance_dict.clear()


def test_sweep_settings_are_refused_in_one_line(sweep, tmp_path):
    cfg = Config.fromfile(sweep['config'])
    cfg.merge_from_dict(dict(
        o.split('=', 1) for o in digits_options(sweep['images'])
        if o.startswith('test_dataloader.dataset.data_root')))
    cfg.model.head.num_classes = 4
    cfg.load_from = sweep['ckpt']
    check_robustness_config(cfg)
    bad = Config(cfg.to_dict())
    bad.test_cfg = dict(cfg.test_cfg, severities=[0, 7])
    with pytest.raises(ConfigError, match=r'severities must be in 0-5'):
        check_robustness_config(bad)
    bad.test_cfg = dict(cfg.test_cfg, corruption=['fog'])
    with pytest.raises(ConfigError, match="unexpected keyword argument "
                       "'corruption'"):
        check_robustness_config(bad)
    bad.test_cfg = dict(cfg.test_cfg, corruptions=['smoke'])
    with pytest.raises(ConfigError, match='unknown corruption.*smoke'):
        check_robustness_config(bad)
    bad.model.head.num_classes = 10
    bad.test_cfg = cfg.test_cfg
    with pytest.raises(ConfigError, match='has 4 classes.*num_classes is '
                       '10'):
        check_robustness_config(bad)
    # tools/test.py checks before the Runner starts: one line, no log
    config = tmp_path / 'bad.py'
    config.write_text(f'_base_ = [{sweep["config"]!r}]\n'
                      'test_cfg = dict(suite="imagenet-q")\n')
    proc = run_tool(['tools/test.py', str(config), sweep['ckpt'],
                     '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                     *digits_options(sweep['images'])])
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith('test.py: error: unknown robustness suite '
                              '"imagenet-q"'), err[-1]
    assert 'Traceback' not in proc.stderr
    assert 'Environment' not in proc.stdout + proc.stderr


@pytest.mark.parametrize('name', [
    'gfn_vit-b_in1k_imagenet-c', 'gfn_vit-b_in1k_imagenet-p',
    'gfn_vit-b_in1k_imagenet-a', 'gfn_vit-b_in1k_imagenet-r',
    'faster-rcnn_r50-gfn_fpn_coco-c', 'resnet-tiny_1xb32_digits-c'
])
def test_robustness_configs_inherit_the_model_and_set_the_loop(name):
    """Each config keeps its model config's model and data and names the
    loop with settings the loop accepts (data roots are not checked: the
    data is not here)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'robustness',
                                   f'{name}.py'))
    model_config = {
        'gfn_vit-b_in1k': 'gfn_vit-b_in1k.py',
        'faster-rcnn_r50-gfn_fpn': 'detection/faster-rcnn_r50-gfn_fpn_1x_coco.py',
        'resnet-tiny_1xb32_digits': 'digits/resnet-tiny_1xb32_digits.py',
    }
    parent = next(v for k, v in model_config.items() if name.startswith(k))
    parent = Config.fromfile(osp.join(ROOT, 'configs', parent))
    assert cfg.model == parent.model
    assert cfg.test_dataloader == parent.test_dataloader
    assert cfg.test_cfg.type == 'mmgfn.RobustnessTestLoop'
    fields = {k: v for k, v in cfg.test_cfg.items()
              if k not in ('type', '_scope_')}
    settings = RobustnessSettings(**fields)
    suite = name.split('_')[-1]
    assert settings.suite == ('corrupt' if suite.endswith('-c') and not
                              suite.startswith('imagenet') else suite)
    if settings.suite == 'corrupt':
        Suite(settings, cfg)  # the cells of the config's own test set


def test_readme_sweep_config_inherits_a_suite_base(tmp_path):
    """The README's own-sweep example, as written, from any folder."""
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    example = re.search(r'```python\n(_base_ = .*?robustness_test_cfg.*?)```',
                        text, re.S).group(1)
    config = tmp_path / 'my_sweep.py'
    config.write_text(example)
    cfg = Config.fromfile(str(config))
    assert cfg.test_cfg.type == 'mmgfn.RobustnessTestLoop'
    fields = {k: v for k, v in cfg.test_cfg.items()
              if k not in ('type', '_scope_')}
    settings = RobustnessSettings(**fields)
    assert settings.suite == 'imagenet-c'
    assert settings.severities == [0, 1, 2, 3, 4, 5]
    assert settings.test_pipeline == 'reference'
    assert cfg.model.type == 'ImageClassifier'


def test_out_pickle_is_refused_for_a_sweep(sweep, tmp_path, monkeypatch):
    """``tools/test.py --out`` dumps one test set's predictions; a sweep has
    one per cell, so the flag is refused instead of overwriting the file
    at every cell."""
    test = load_tool('tools/test.py', 'test_py_for_out')
    monkeypatch.setattr(sys, 'argv', [
        'test.py', sweep['config'], sweep['ckpt'], '--out',
        str(tmp_path / 'preds.pkl')])
    args = test.parse_args()
    with pytest.raises(ConfigError, match='--out does not apply to a '
                       'robustness sweep'):
        test.merge_args(test.load_config(sweep['config']), args)
    plain = Config.fromfile(DIGITS_CONFIG)
    cfg = test.merge_args(plain, args)
    assert cfg.test_evaluator[-1]['type'] == 'DumpResults'
