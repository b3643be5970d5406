"""The README's config-inheritance example is a real, working config, and
every config and tool the README names exists."""
import glob
import os.path as osp
import re

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope, init_default_scope

from conftest import ROOT
from mmgfn.models import (NeighborAdversarialDataPreprocessor,
                          NeighborWeightedCELoss)
from mmgfn.registry import MODELS

README = osp.join(ROOT, 'README.md')
SECTION = "## Using mmgfn's components from another project's config"


def _example() -> str:
    with open(README, encoding='utf-8') as f:
        text = f.read()
    section = text[text.index(SECTION):]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_inheritance_example_builds_and_trains_a_step(tmp_path):
    path = tmp_path / 'gfn_resnet50_cifar100.py'
    path.write_text(_example())
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmpretrain'  # a host project's config
    DefaultScope._instance_dict.clear()
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    model_cfg.data_preprocessor = cfg.data_preprocessor
    model = MODELS.build(model_cfg)
    pre, loss = model.data_preprocessor, model.head.loss_module
    assert isinstance(pre, NeighborAdversarialDataPreprocessor)
    assert isinstance(loss, NeighborWeightedCELoss)
    assert pre.num_classes == 100 and pre.eta == 0.01
    # the head starts from random weights here (the example fine-tunes a
    # checkpoint); one real training step through the model
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8,
                              generator=g) for _ in range(4)],
        data_samples=[DataSample().set_gt_label(i * 7) for i in range(4)])
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log = model.train_step(data, wrapper)
    assert torch.isfinite(log['loss'])
    assert loss.neighbor_table is pre.neighbor_table
    assert bool(pre.neighbor_table.built)


def test_paths_named_in_readme_exist():
    with open(README, encoding='utf-8') as f:
        text = f.read()
    paths = set(re.findall(r'((?:configs|tools)/[\w./{},*-]+\.(?:py|sh))',
                           text))
    assert len(paths) > 20
    for p in paths:
        for alt in _expand(p):
            assert glob.glob(osp.join(ROOT, alt)), f'README names {alt}'


def _expand(path: str) -> list:
    m = re.search(r'\{([^}]*)\}', path)
    if not m:
        return [path]
    return [a for part in m.group(1).split(',')
            for a in _expand(path[:m.start()] + part + path[m.end():])]
