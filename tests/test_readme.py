"""The README's config-inheritance example is a real, working config, and
every config and tool the README names exists."""
import copy
import glob
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from conftest import ROOT, write_image_folder
from mmgfn.models import (NeighborAdversarialDataPreprocessor,
                          NeighborWeightedCELoss)

README = osp.join(ROOT, 'README.md')
SECTION = "## Using mmgfn's components from another project's config"


def _example() -> str:
    with open(README, encoding='utf-8') as f:
        text = f.read()
    section = text[text.index(SECTION):]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


# the CIFAR-100 normalisation of the example's mmpretrain base
CIFAR100_MEAN = [129.304, 124.070, 112.434]
CIFAR100_STD = [68.170, 65.392, 70.418]


def test_inheritance_example_fine_tunes_a_step_on_real_images(tmp_path):
    """The README's example, trained one step by the real Runner on real
    image files through the base's own training transforms, fine-tuning a
    checkpoint whose head pairs the classes (2i, 2i+1): the mmgfn
    preprocessor keeps the base's normalisation, the table comes from the
    loaded head (each class's nearest neighbour is its pair, 20 each), the
    step moves the batch by at most eta and the loss is the
    neighbour-weighted loss of the example's alpha and topk, computed here
    from the table."""
    path = tmp_path / 'gfn_resnet50_cifar100.py'
    path.write_text(_example())
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope == 'mmpretrain'  # a host project's config

    # a checkpoint of the head: rows 2i and 2i+1 are near one direction
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(50, 2048, generator=g)
    weight = directions.repeat_interleave(2, 0) + 0.05 * torch.randn(
        100, 2048, generator=g)
    ckpt = str(tmp_path / 'paired_head.pth')
    torch.save(dict(state_dict={'head.fc.weight': weight,
                                'head.fc.bias': torch.zeros(100)}), ckpt)

    images = write_image_folder(str(tmp_path / 'images'), per_class=1)
    cfg.load_from = ckpt
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader = dict(
        batch_size=4, num_workers=0, persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=images,
                     data_prefix='train',
                     pipeline=[dict(type='LoadImageFromFile')] +
                     cfg.train_pipeline))
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    DefaultScope._instance_dict.clear()
    runner = Runner.from_cfg(cfg)
    model = runner.model
    pre, loss = model.data_preprocessor, model.head.loss_module
    assert isinstance(pre, NeighborAdversarialDataPreprocessor)
    assert isinstance(loss, NeighborWeightedCELoss)
    assert model.backbone.depth == 50 and pre.num_classes == 100
    assert pre.mean.flatten().tolist() == pytest.approx(CIFAR100_MEAN)
    assert pre.std.flatten().tolist() == pytest.approx(CIFAR100_STD)

    batches, outputs, losses = [], [], []
    pre.register_forward_pre_hook(
        lambda m, args: batches.append(copy.deepcopy(args[0])))
    pre.register_forward_hook(
        lambda m, args, out: outputs.append(out['inputs'].clone()))
    loss.register_forward_hook(lambda m, args, out: losses.append(
        (args[0].detach().clone(), args[1].clone(), out.detach())))
    runner.train()
    assert len(batches) == len(outputs) == len(losses) == 1

    table = pre.neighbor_table.neighbors
    assert loss.neighbor_table is pre.neighbor_table
    assert tuple(table.shape) == (100, 20)
    assert table[:, 0].tolist() == [c ^ 1 for c in range(100)]

    clean = pre(batches[0], False)['inputs']
    assert 0 < (outputs[0] - clean).abs().max() <= 0.01 + 1e-6

    score, label, value = losses[0]
    margins = torch.zeros(len(label), 100)
    for i, c in enumerate(label.tolist()):
        for rank, j in enumerate(table[c].tolist(), start=1):
            margins[i, j] = math.log(1 + 0.5**rank)
    expected = (torch.logsumexp(score + margins, 1) -
                score.gather(1, label[:, None])[:, 0]).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


def test_paths_named_in_readme_exist():
    with open(README, encoding='utf-8') as f:
        text = f.read()
    paths = set(
        re.findall(r'(?<![\w./])((?:configs|tools|tests|\.dev_scripts)/'
                   r'[\w./{},*-]+\.(?:py|sh))', text))
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
