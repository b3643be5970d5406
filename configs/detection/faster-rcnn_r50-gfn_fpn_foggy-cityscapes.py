# Foggy Cityscapes: fine-tune the COCO-trained faster-rcnn_r50-gfn_fpn_1x_coco.py on
# clear Cityscapes (8 classes, mmdet's Cityscapes schedule) with the GFN hook,
# evaluate on the foggy images (beta 0.02).
_base_ = [
    '../_base_/models/faster-rcnn_r50-gfn_fpn.py',
    '../_base_/datasets/foggy_cityscapes.py',
    '../_base_/schedules/schedule_cityscapes_8e.py',
    'mmdet::_base_/default_runtime.py', '../_base_/gfn_detection.py'
]
default_scope = 'mmgfn'

model = dict(
    backbone=dict(init_cfg=None),  # all weights come from load_from
    roi_head=dict(bbox_head=dict(num_classes=8)))
load_from = 'work_dirs/faster-rcnn_r50-gfn_fpn_1x_coco/epoch_12.pth'
