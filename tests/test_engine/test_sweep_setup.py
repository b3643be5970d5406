"""What a robustness sweep builds once: the checkpoint read and inspected
in one place, the setup shared by the preflight and the loop, the hooks of
one sweep (before_test / after_test once), and the names derived from the
code instead of kept by hand. Real models, checkpoints, images and runs."""
import dataclasses
import json
import os.path as osp
from collections import Counter

import pytest
import torch
from conftest import (DIGITS_CONFIG, ROOT, build_digits_model,
                      digits_options, load_tool, run_tool_in_process,
                      save_checkpoint, write_image_folder)
from mmengine.hooks import Hook
from mmengine.runner.checkpoint import CheckpointLoader

from mmgfn.registry import HOOKS, MODELS
from mmgfn.utils.checkpoint import Checkpoint
from mmgfn.utils.errors import ConfigError

DIGITS_C = osp.join(ROOT, 'configs', 'robustness',
                    'resnet-tiny_1xb32_digits-c.py')


@HOOKS.register_module(force=True)
class SweepCallCounter(Hook):
    """Counts the test hook points a Runner calls."""
    calls: Counter = Counter()

    def before_test(self, runner) -> None:
        self.calls['before_test'] += 1

    def after_test(self, runner) -> None:
        self.calls['after_test'] += 1

    def before_test_epoch(self, runner) -> None:
        self.calls['before_test_epoch'] += 1

    def after_test_epoch(self, runner, metrics=None) -> None:
        self.calls['after_test_epoch'] += 1


@pytest.fixture
def read_counter(monkeypatch):
    """``{absolute path: times read}`` of every checkpoint read through
    mmengine's CheckpointLoader (the Runner's and mmgfn's)."""
    reads = Counter()
    load = CheckpointLoader.load_checkpoint

    def counting(cls, filename, *args, **kwargs):
        reads[osp.abspath(filename)] += 1
        return load(filename, *args, **kwargs)

    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint',
                        classmethod(counting))
    return reads


def test_the_sweep_tool_reads_each_checkpoint_once(tmp_path, read_counter):
    images = write_image_folder(str(tmp_path / 'images'))
    ckpt = save_checkpoint(build_digits_model(4, seed=0),
                           str(tmp_path / 'model.pth'))
    base = save_checkpoint(build_digits_model(4, seed=1),
                           str(tmp_path / 'base.pth'))
    work = str(tmp_path / 'work')
    proc = run_tool_in_process([
        'tools/test_robustness.py', DIGITS_CONFIG, ckpt, '--suite',
        'corrupt', '--corruptions', 'fog', '--severities', '0', '1',
        '--allow-partial', '--baseline-checkpoint', base, '--work-dir',
        work, '--cfg-options', *digits_options(images)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_counter == {osp.abspath(ckpt): 1, osp.abspath(base): 1}
    assert len(_results(work)['baseline_cells']) == 2


def _results(work):
    with open(osp.join(work, 'results.json')) as f:
        return json.load(f)


def test_a_sweep_reads_each_checkpoint_once_and_calls_test_hooks_once(
        tmp_path, read_counter, trained_digits):
    images, train = trained_digits
    ckpt = osp.join(train, 'epoch_2.pth')
    base = osp.join(train, 'epoch_1.pth')
    config = tmp_path / 'sweep.py'
    config.write_text(
        f'_base_ = [{DIGITS_C!r}]\n'
        'test_cfg = dict(corruptions=["fog", "gaussian_noise"], '
        f'severities=[0, 2], baseline_checkpoint={base!r})\n'
        'custom_hooks = [dict(type="mmgfn.SweepCallCounter")]\n')
    SweepCallCounter.calls.clear()
    work = str(tmp_path / 'work')
    proc = run_tool_in_process(
        ['tools/test.py', str(config), ckpt, '--work-dir', work,
         '--cfg-options', *digits_options(images)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert read_counter == {osp.abspath(ckpt): 1,
                            osp.abspath(base): 1}, read_counter
    # 3 cells for the model and 3 for the baseline: one epoch each
    assert SweepCallCounter.calls == dict(
        before_test=1, after_test=1, before_test_epoch=6,
        after_test_epoch=6), SweepCallCounter.calls
    results = _results(work)
    assert len(results['cells']) == len(results['baseline_cells']) == 3
    # the loop loads load_from itself: the cells are the trained weights'
    # (an untrained model predicts one class: 24 of the 32 images wrong)
    clean = results['cells'][0]
    assert clean['corruption'] == 'clean' and clean['wrong'] <= 8, clean
    with open(osp.join(work, 'results.md')) as f:
        md = f.read()
    # the pipeline line marks the inserted corruption as each cell's own
    assert 'ImageCorruption(corruption=per cell, severity=per cell)' in md
    assert '--baseline' not in md


def test_checkpoint_strips_the_wrapper_prefix_once_and_checks_fit(
        tmp_path):
    model = build_digits_model(4, seed=0)
    state = {f'module.{k}': v for k, v in model.state_dict().items()}
    path = str(tmp_path / 'wrapped.pth')
    torch.save(dict(state_dict=state, meta=dict(x=1)), path)
    ckpt = Checkpoint(path)
    assert ckpt.head_rows == 4
    assert set(ckpt.state_dict) == set(model.state_dict())
    assert ckpt.meta == dict(x=1)
    ckpt.check_fits(model)
    other = build_digits_model(10, seed=0)
    with pytest.raises(ConfigError, match=r'head\.fc\.weight has shape '
                       r'\[4, .*the checkpoint has 4 classes, the config\'s '
                       r'model\.head\.num_classes is 10'):
        ckpt.check_fits(other)
    assert ckpt.check_num_classes(dict(head=dict(num_classes=4))) == 4
    with pytest.raises(ConfigError, match='has 4 classes.*num_classes is 3'):
        ckpt.check_num_classes(dict(head=dict(num_classes=3)))


def test_tool_settings_are_the_fields_of_the_settings():
    from mmgfn.evaluation.robustness_sweep import RobustnessSettings
    tool = load_tool('tools/test_robustness.py', 'sweep_setup_tool')
    fields = [f.name for f in dataclasses.fields(RobustnessSettings)]
    assert list(tool.SETTINGS) == fields
    assert tool.flag_wording(
        'test_cfg.metric_key x is not among; test_cfg.fp16; use another '
        'work_dir') == ('--metric-key x is not among; test_cfg.fp16; use '
                        'another --work-dir')


def test_plain_preprocessor_drops_every_gfn_argument():
    from mmengine.config import Config

    from mmgfn.apis.inference import plain_preprocessor_cfg
    pre = dict(type='mmgfn.NeighborAdversarialDataPreprocessor',
               num_classes=4, eta=0.01, topk=2, similarity='dot',
               grad_scaler=dict(min_scale=1.0), mean=[0.0] * 3,
               std=[1.0] * 3)
    cfg = Config(dict(model=dict(data_preprocessor=pre)))
    plain = plain_preprocessor_cfg(cfg)
    assert plain['type'] == 'mmpretrain.ClsDataPreprocessor'
    assert 'similarity' not in plain and 'grad_scaler' not in plain
    assert plain['num_classes'] == 4
    assert type(MODELS.build(plain)).__name__ == 'ClsDataPreprocessor'
