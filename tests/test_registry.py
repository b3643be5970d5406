"""mmgfn's registry tree, and its components inside host configs."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
from mmengine.runner import Runner

from conftest import TEST_ONLY
from mmgfn.datasets.transforms import ImageCorruption
from mmgfn.registry import MODELS, OPTIM_WRAPPERS, TRANSFORMS
from mmgfn.utils import register_all_modules


def test_registries_are_children_of_mmengine_roots():
    assert TRANSFORMS.parent is ROOT_TRANSFORMS
    assert MODELS.parent is ROOT_MODELS
    assert TRANSFORMS.scope == 'mmgfn'
    assert ROOT_TRANSFORMS.get('mmgfn.ImageCorruption') is ImageCorruption
    assert OPTIM_WRAPPERS.get('DeviceAmpOptimWrapper') is not None


def test_register_all_modules_sets_scope():
    register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'mmgfn'
    assert 'ImageCorruption' in TRANSFORMS.module_dict


def test_bare_names_resolve_in_mmgfn_scope():
    init_default_scope('mmgfn')
    t = TRANSFORMS.build(
        dict(type='ImageCorruption', corruption='fog', severity=2))
    assert isinstance(t, ImageCorruption)
    # host components are reached with the scope prefix
    pack = TRANSFORMS.build(dict(type='mmpretrain.PackInputs'))
    assert type(pack).__module__.startswith('mmpretrain')




def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return path


def _first_input(dataset) -> torch.Tensor:
    item = dataset[0]
    return item['inputs']


def test_component_inside_mmpretrain_config(image_folder, tmp_path):
    """A user's mmpretrain config (default scope mmpretrain, bases from
    ``mmpretrain::``) uses ``mmgfn.ImageCorruption`` in its test pipeline;
    the real Runner tests a real mmpretrain ResNet through it."""
    cfg_path = _write(
        str(tmp_path / 'cls_cfg.py'), f"""
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(head=dict(num_classes=4))
data_preprocessor = dict(num_classes=4)
corrupt = dict(type='mmgfn.ImageCorruption', corruption='gaussian_noise',
               severity=3)
test_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(
        _delete_=True, type='CustomDataset', data_root={image_folder!r},
        data_prefix='val',
        pipeline=[dict(type='LoadImageFromFile'), corrupt,
                  dict(type='PackInputs')]))
test_evaluator = dict(type='Accuracy', topk=(1, ))
"""
    + TEST_ONLY)
    cfg = Config.fromfile(cfg_path)
    assert cfg.default_scope == 'mmpretrain'
    cfg.work_dir = str(tmp_path / 'work')

    runner = Runner.from_cfg(cfg)
    dataset = runner.test_dataloader.dataset
    assert isinstance(dataset.pipeline.transforms[1], ImageCorruption)
    corrupted = _first_input(dataset)
    dataset.pipeline.transforms.pop(1)
    clean = _first_input(dataset)
    assert corrupted.shape == clean.shape == (3, 32, 32)
    assert (corrupted.float() - clean.float()).abs().mean() > 5
    dataset.pipeline.transforms.insert(
        1, ImageCorruption('gaussian_noise', 3))
    metrics = runner.test()
    # the same model on the same corrupted images, one at a time, by hand
    model = runner.model.eval()
    correct = 0
    for i in range(len(dataset)):
        item = dataset[i]
        data = model.data_preprocessor(
            dict(inputs=[item['inputs']],
                 data_samples=[item['data_samples']]), False)
        with torch.no_grad():
            pred = model(data['inputs'], mode='tensor').argmax(1).item()
        correct += pred == item['data_samples'].gt_label.item()
    assert metrics['accuracy/top1'] == pytest.approx(
        100 * correct / len(dataset))


def test_component_inside_mmdet_config(coco_folder, tmp_path):
    """A user's mmdet config (bases from ``mmdet::``) uses
    ``mmgfn.ImageCorruption``; the real Runner evaluates a real Faster R-CNN
    (mmcv's compiled RoIAlign and nms on the CPU) on the corrupted images."""
    cfg_path = _write(
        str(tmp_path / 'det_cfg.py'), f"""
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]),
    roi_head=dict(bbox_head=dict(num_classes=2)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmgfn.ImageCorruption', corruption='fog', severity=4),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'corruption', 'severity')),
]
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root={coco_folder!r}, ann_file='annotations.json',
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=('person', 'car')),
        pipeline=test_pipeline))
test_evaluator = dict(
    ann_file={osp.join(coco_folder, 'annotations.json')!r})
"""
    + TEST_ONLY)
    cfg = Config.fromfile(cfg_path)
    assert cfg.default_scope == 'mmdet'
    cfg.work_dir = str(tmp_path / 'work')

    runner = Runner.from_cfg(cfg)
    dataset = runner.test_dataloader.dataset
    item = dataset[0]
    assert item['data_samples'].corruption == 'fog'
    assert item['data_samples'].severity == 4
    corrupted = item['inputs']
    dataset.pipeline.transforms.pop(1)
    clean = dataset[0]['inputs']
    assert corrupted.shape == clean.shape
    assert (corrupted.float() - clean.float()).abs().mean() > 5
    dataset.pipeline.transforms.insert(1, ImageCorruption('fog', 4))
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
    assert np.isfinite(metrics['coco/bbox_mAP'])


def teardown_function():
    # leave no default scope behind for the next test
    DefaultScope._instance_dict.clear()
