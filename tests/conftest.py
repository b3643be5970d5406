"""Shared fixtures: real image files written to temporary folders."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIGITS_CONFIG = osp.join(ROOT, 'configs', 'digits',
                         'resnet-tiny_1xb32_digits.py')

# Each class: a colour (BGR) and a stripe orientation, so that a tiny model
# separates the classes within a few iterations.
CLASS_STYLES = [((40, 40, 220), 'h'), ((220, 60, 40), 'v'),
                ((40, 200, 40), 'h'), ((200, 200, 200), 'v')]


def make_image(label: int, rng: np.random.Generator, size: int = 32):
    """A ``size x size x 3`` uint8 BGR image of class ``label``."""
    colour, orient = CLASS_STYLES[label]
    img = np.zeros((size, size, 3), np.float32)
    stripes = (np.arange(size) // 4) % 2 == 0
    mask = stripes[:, None] if orient == 'h' else stripes[None, :]
    img[np.broadcast_to(mask, (size, size))] = colour
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image_folder(root: str, num_classes: int = 4, per_class: int = 8,
                       seed: int = 0) -> str:
    """Write ``root/{train,val}/<class>/<i>.{png,jpg}`` and return root."""
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        for label in range(num_classes):
            folder = osp.join(root, split, f'class_{label}')
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                ext = 'png' if i % 2 == 0 else 'jpg'
                cv2.imwrite(
                    osp.join(folder, f'{i:03d}.{ext}'), make_image(label, rng))
    return root


@pytest.fixture
def image_folder(tmp_path):
    """A 4-class ImageFolder of real PNG and JPEG files (8 per class and
    split)."""
    return write_image_folder(str(tmp_path / 'images'))


def write_coco(root: str, num_images: int = 4, size: int = 64,
               seed: int = 0, width: int = None) -> str:
    """Write a small COCO-format detection set: ``root/images/*.jpg`` and
    ``root/annotations.json`` with two classes (``person``, ``car``);
    images are ``size x size``, or ``size x width`` (height x width)."""
    rng = np.random.default_rng(seed)
    width = width or size
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img = rng.integers(0, 60, (size, width, 3)).astype(np.uint8)
        x, y, h = 8 + 4 * i, 10, 30
        w = min(24, width - x - 2)
        img[y:y + h, x:x + w] = (30, 30, 220) if i % 2 else (220, 120, 30)
        name = f'{i:03d}.jpg'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=i, file_name=name, width=width, height=size))
        annotations.append(
            dict(id=i, image_id=i, category_id=1 + i % 2, bbox=[x, y, w, h],
                 area=w * h, iscrowd=0))
    categories = [dict(id=1, name='person'), dict(id=2, name='car')]
    with open(osp.join(root, 'annotations.json'), 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f)
    return root


@pytest.fixture
def coco_folder(tmp_path):
    return write_coco(str(tmp_path / 'coco'))


# appended to a host config: a test-only Runner (no training or validation)
TEST_ONLY = """
test_cfg = dict()
val_dataloader = None
val_evaluator = None
val_cfg = None
train_dataloader = None
train_cfg = None
optim_wrapper = None
"""


def digits_options(data_root: str, max_epochs: int = 2) -> list:
    """``--cfg-options`` that point the digits config at ``data_root`` (a
    4-class image folder) and shrink it for tests."""
    opts = [
        'model.head.num_classes=4', 'data_preprocessor.num_classes=4',
        f'train_cfg.max_epochs={max_epochs}', 'train_cfg.val_interval=1',
        f'param_scheduler.T_max={max_epochs}',
        'default_hooks.logger.interval=1'
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [
            f'{loader}.dataset.data_root={data_root}',
            f'{loader}.num_workers=0', f'{loader}.batch_size=8'
        ]
    return opts


def run_tool(args: list, env: dict = None, timeout: int = 600):
    """Run ``args`` (a tool path and its arguments) with this interpreter
    from the repository root; return the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    cmd = args if args[0].endswith('.sh') else [sys.executable, *args]
    if args[0].endswith('.sh'):
        full_env['PYTHON'] = sys.executable
        cmd = ['bash', *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
        timeout=timeout)


def load_tool(path: str, name: str):
    """Import the tool script ``path`` (relative to the repository root) as
    the module ``name``, for tests of its functions."""
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# a small mmdet detector (ResNet-18 backbone) on a write_coco() folder, with
# BackgroundRoIPerturbationHook; format with write_det_config()
DET_CFG = """
_base_ = [
    'mmdet::_base_/models/{model}.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(backbone=dict(depth=18, init_cfg=None),
             neck=dict(in_channels=[64, 128, 256, 512]), {head})
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
dataset = dict(data_root={root!r}, ann_file='annotations.json',
               data_prefix=dict(img='images/'),
               metainfo=dict(classes=('person', 'car')),
               filter_cfg=dict(filter_empty_gt=True), pipeline=pipeline)
train_dataloader = dict(batch_size=4, num_workers=0,
                        persistent_workers=False, dataset=dataset)
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(dataset, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={ann!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval=100)
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=100))
custom_hooks = [dict(type='mmgfn.BackgroundRoIPerturbationHook', eta=0.01,
                     seed=0)]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
"""


def _head(model_name, n):
    if 'retinanet' in model_name:
        return f'bbox_head=dict(num_classes={n})'
    if 'cascade' in model_name:  # a list of stages: set after loading
        return ''
    return f'roi_head=dict(bbox_head=dict(num_classes={n}))'


def write_det_config(tmp_path, root, model='faster-rcnn_r50_fpn', epochs=3,
                     num_classes=2, extra=''):
    """Write a detector config for the COCO folder ``root``; return its
    path."""
    path = tmp_path / f'{model}.py'
    path.write_text(
        DET_CFG.format(model=model, root=root,
                       ann=osp.join(root, 'annotations.json'),
                       epochs=epochs, head=_head(model, num_classes)) +
        extra)
    return str(path)
