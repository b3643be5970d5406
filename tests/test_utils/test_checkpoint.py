"""Saving, ``load_from`` and resuming with mmengine 0.10.7 on torch >= 2.6."""
import copy
import os.path as osp
import pickle

import pytest
import torch
from conftest import DIGITS_CONFIG
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import mmgfn  # noqa: F401


def _cfg(data_root: str, work_dir: str, max_epochs: int) -> Config:
    """The digits config on a 4-class folder, without random augmentation
    (so an interrupted and an uninterrupted run see the same batches)."""
    cfg = Config.fromfile(DIGITS_CONFIG)
    cfg.work_dir = work_dir
    cfg.model.head.num_classes = 4
    cfg.data_preprocessor.num_classes = 4
    cfg.train_dataloader.dataset.pipeline = copy.deepcopy(
        cfg.test_dataloader.dataset.pipeline)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = data_root
        cfg[key].num_workers = 0
        cfg[key].batch_size = 8
        cfg[key].persistent_workers = False
    cfg.train_cfg = dict(by_epoch=True, max_epochs=max_epochs,
                         val_interval=100)
    cfg.param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True,
                               T_max=4)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.randomness = dict(seed=0, deterministic=True)
    return cfg


def _train(cfg: Config, hook: Hook = None) -> Runner:
    DefaultScope._instance_dict.clear()
    runner = Runner.from_cfg(cfg)
    if hook is not None:
        runner.register_hook(hook)
    runner.train()
    return runner


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class StartOfTraining(Hook):
    """Records the counters, weights and optimizer state the training loop
    starts from (after ``load_from``/resume has run)."""

    def before_train(self, runner) -> None:
        self.iter, self.epoch = runner.iter, runner.epoch
        self.params = _params(runner.model)
        self.optim_state = runner.optim_wrapper.state_dict()['state']


def test_plain_torch_load_fails_without_mmgfn_loader(image_folder, tmp_path):
    """The failure mmgfn fixes: torch's weights_only default rejects the
    checkpoints that mmengine writes."""
    runner = _train(_cfg(image_folder, str(tmp_path / 'a'), 1))
    ckpt = osp.join(runner.work_dir, 'epoch_1.pth')
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ckpt)
    assert 'message_hub' in mmgfn.utils.load_from_local(ckpt)


def test_resume_continues_iterations_and_weights(image_folder, tmp_path):
    """An interrupted run resumed from its epoch-2 checkpoint ends where the
    uninterrupted run ends: same counters, same weights."""
    straight = _train(_cfg(image_folder, str(tmp_path / 'straight'), 4))
    final_straight = _params(straight.model)
    assert straight.iter == 16  # 32 images / batch 8 * 4 epochs
    ckpt = osp.join(straight.work_dir, 'epoch_2.pth')
    saved = mmgfn.utils.load_from_local(ckpt)['state_dict']

    cfg = _cfg(image_folder, str(tmp_path / 'resumed'), 4)
    cfg.resume = True
    cfg.load_from = ckpt
    start = StartOfTraining()
    resumed = _train(cfg, start)
    assert start.iter == 8 and start.epoch == 2
    for k, v in start.params.items():
        assert torch.equal(v, saved[k]), k
    assert start.optim_state, 'momentum buffers were not restored'
    assert resumed.iter == 16 and resumed.epoch == 4
    for k, v in _params(resumed.model).items():
        assert torch.allclose(v.float(), final_straight[k].float(),
                              atol=1e-5), k
    # training went on: the weights moved after the resume
    assert not torch.equal(final_straight['head.fc.weight'],
                           saved['head.fc.weight'])


def test_load_from_loads_weights_and_starts_at_zero(image_folder, tmp_path):
    first = _train(_cfg(image_folder, str(tmp_path / 'a'), 1))
    saved = _params(first.model)

    cfg = _cfg(image_folder, str(tmp_path / 'b'), 1)
    cfg.load_from = osp.join(first.work_dir, 'epoch_1.pth')
    start = StartOfTraining()
    _train(cfg, start)
    assert start.iter == 0 and start.epoch == 0
    for k, v in start.params.items():
        assert torch.equal(v, saved[k]), k
    assert not start.optim_state  # load_from restores weights only


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        mmgfn.utils.load_from_local(missing, map_location='cpu')
