"""The detection configs read their backbone from a GFN classifier."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from conftest import ROOT, digits_options, run_tool_in_process, write_coco
from mmgfn.registry import MODELS
from mmgfn.utils import load_from_local

VIT_TINY = osp.join(ROOT, 'configs', 'digits', 'vit-tiny_1xb32_digits.py')
DET = osp.join(ROOT, 'configs', 'detection',
               'faster-rcnn_vit-b-gfn_sfp_1x_coco.py')


def test_vit_sfp_detector_loads_classifier_backbone_and_trains(
        image_folder, tmp_path):
    # a (tiny) GFN classifier checkpoint, written by tools/train.py
    # (in this process, see conftest.run_tool_in_process)
    # (ViT heads start at zero: train plainly first, then fine-tune with GFN)
    plain, work = str(tmp_path / 'plain'), str(tmp_path / 'cls')
    proc = run_tool_in_process([
        'tools/train.py', VIT_TINY, '--work-dir', plain, '--cfg-options',
        *digits_options(image_folder, 1)
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_tool_in_process([
        'tools/train.py', VIT_TINY, '--work-dir', work, '--cfg-options',
        *digits_options(image_folder, 1),
        f'load_from={osp.join(plain, "epoch_1.pth")}',
        'data_preprocessor.type=mmgfn.NeighborAdversarialDataPreprocessor',
        'data_preprocessor.topk=2'
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = osp.join(work, 'epoch_1.pth')
    assert 'data_preprocessor.neighbor_table.neighbors' in load_from_local(
        ckpt)['state_dict']

    cfg = Config.fromfile(DET)
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'
    # the same detector at the tiny classifier's width
    cfg.model.backbone.arch = dict(
        embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128)
    cfg.model.backbone.patch_size = 4
    cfg.model.backbone.img_size = 32
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    cfg.model.neck.update(
        backbone_channel=64, in_channels=[16, 32, 64, 64],
        norm_cfg=dict(type='GN', num_groups=8))
    cfg.model.roi_head.bbox_head.num_classes = 2
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    model = MODELS.build(cfg.model)
    model.init_weights()
    saved = load_from_local(ckpt)['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in saved.items()
                if k.startswith('backbone.')}
    own = model.backbone.state_dict()
    assert backbone and set(backbone) <= set(own)
    for key, value in backbone.items():
        assert torch.equal(own[key], value), key

    # a training step on real images of another size (positions resized)
    root = write_coco(str(tmp_path / 'coco'), num_images=2, size=64)
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    import cv2
    inputs, samples = [], []
    ann = __import__('json').load(open(osp.join(root, 'annotations.json')))
    for img, a in zip(ann['images'], ann['annotations']):
        im = cv2.imread(osp.join(root, 'images', img['file_name']))
        inputs.append(torch.from_numpy(im).permute(2, 0, 1))
        s = DetDataSample(metainfo=dict(img_shape=(64, 64),
                                        ori_shape=(64, 64)))
        x, y, w, h = a['bbox']
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[x, y, x + w, y + h]], dtype=torch.float),
            labels=torch.tensor([a['category_id'] - 1]))
        samples.append(s)
    model.train()
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples),
                                   True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
