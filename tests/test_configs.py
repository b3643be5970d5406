"""Every config builds: model, dataset pipelines and optimizer."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope

from conftest import ROOT, run_tool_in_process
from mmgfn.models import (NeighborAdversarialDataPreprocessor,
                          NeighborWeightedCELoss)
from mmgfn.models.utils import NeighborTable
from mmgfn.registry import MODELS, TRANSFORMS

# configs/robustness/ inherit these and change test_cfg only (their loop
# settings are checked in test_robustness_loop.py)
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True)
    if '_base_' not in p and f'{osp.sep}robustness{osp.sep}' not in p)
IN1K = [p for p in CONFIGS if p.endswith('_in1k.py') or '_in1k-' in p]


@pytest.fixture(scope='module')
def neighbor_file(tmp_path_factory):
    table = NeighborTable(1000, topk=20)
    table.update_from_embeddings(
        torch.randn(1000, 16, generator=torch.Generator().manual_seed(0)))
    path = str(tmp_path_factory.mktemp('nbrs') / 'in1k.json')
    table.save(path)
    return path


def _load(path, neighbor_file):
    cfg = Config.fromfile(path)
    pre = cfg.get('data_preprocessor') or {}
    if pre.get('neighbor_source') == 'file':
        num_classes = pre.get('num_classes', 1000)
        if num_classes != 1000:  # a table for the config's classes
            table = NeighborTable(num_classes, topk=pre.topk)
            table.update_from_embeddings(torch.randn(
                num_classes, 16, generator=torch.Generator().manual_seed(0)))
            neighbor_file = neighbor_file.replace(
                '.json', f'_{num_classes}.json')
            table.save(neighbor_file)
        cfg.data_preprocessor.neighbor_file = neighbor_file
    return cfg


def _pipelines(cfg):
    """``(scope, pipeline)`` of each dataloader's dataset: the dataset
    builds its pipeline in its own scope."""
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[key].dataset
        scope = dataset.get('_scope_')
        while 'pipeline' not in dataset:
            dataset = dataset.dataset
            scope = dataset.get('_scope_', scope)
        yield scope, dataset.pipeline


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds(path, neighbor_file):
    cfg = _load(path, neighbor_file)
    DefaultScope._instance_dict.clear()
    init_default_scope(cfg.get('default_scope', 'mmgfn'))
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    for scope, pipeline in _pipelines(cfg):
        with DefaultScope.overwrite_default_scope(scope):
            for step in pipeline:
                TRANSFORMS.build(step)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert wrapper.optimizer.param_groups
    if isinstance(model.data_preprocessor,
                  NeighborAdversarialDataPreprocessor):
        # one model, one neighbour table: the loss uses the preprocessor's
        model.data_preprocessor.bind(model)
        loss = model.head.loss_module
        if isinstance(loss, NeighborWeightedCELoss):
            assert loss.neighbor_table is \
                model.data_preprocessor.neighbor_table


def test_headline_config_has_the_papers_settings(neighbor_file):
    cfg = _load(osp.join(ROOT, 'configs', 'gfn_vit-b_in1k.py'), neighbor_file)
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ('SGD', 1e-3,
                                                                  0.9, 5e-4)
    assert 'paramwise_cfg' not in cfg.optim_wrapper
    assert [s.type for s in cfg.param_scheduler] == ['CosineAnnealingLR']
    assert cfg.train_cfg.max_epochs == 10
    assert cfg.train_dataloader.batch_size * 4 == 48
    assert cfg.auto_scale_lr.base_batch_size == 48
    pre = cfg.data_preprocessor
    assert (pre.eta, pre.eta_unit, pre.topk, pre.mode) == (
        0.01, 'normalized', 20, 'neighbor')
    loss = cfg.model.head.loss
    assert (loss.alpha, loss.topk, loss.scale) == (0.5, 20, 1.0)
    assert cfg.load_from.endswith('vit-base-p16_32xb128-mae_in1k_20220623'
                                  '-4c544545.pth')
    assert cfg.custom_hooks == []


def test_ablations_differ_from_gfn_only_where_they_should(neighbor_file):
    gfn = _load(osp.join(ROOT, 'configs', 'gfn_vit-b_in1k.py'), neighbor_file)
    nbr = _load(
        osp.join(ROOT, 'configs', 'ablations', 'nbr_vit-b_in1k.py'),
        neighbor_file)
    adv = _load(
        osp.join(ROOT, 'configs', 'ablations', 'adv_vit-b_in1k.py'),
        neighbor_file)
    assert nbr.model.head.loss.scale == 0.0
    assert nbr.data_preprocessor == gfn.data_preprocessor
    assert adv.data_preprocessor.mode == 'untargeted'
    assert adv.model.head.loss.type == 'mmpretrain.CrossEntropyLoss'
    for cfg in (nbr, adv):
        assert cfg.optim_wrapper == gfn.optim_wrapper
        assert cfg.train_cfg == gfn.train_cfg
    subset = Config.fromfile(osp.join(ROOT, 'configs',
                                      'gfn_vit-b_in1k-5k.py'))
    ds = subset.train_dataloader.dataset
    assert (ds.type, ds.per_class) == ('mmgfn.ClassBalancedSubset', 5)
    assert ds.dataset.type == 'ImageNet'
    assert ds.dataset.pipeline == gfn.train_dataloader.dataset.pipeline


def test_headline_command_reaches_the_data(tmp_path):
    """`tools/dist_train.sh configs/gfn_vit-b_in1k.py 4` on a machine without
    the checkpoint/ImageNet stops at once, naming what is missing (the tool
    in this process; test_tools.py checks its exit status as a process)."""
    proc = run_tool_in_process(['tools/train.py',
                                'configs/gfn_vit-b_in1k.py', '--work-dir',
                                str(tmp_path)])
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith('train.py: error:')
    assert ('data/imagenet' in err or 'vit-base-p16_32xb128-mae' in err
            or 'vit-b16_in1k_top20.json' in err), err
