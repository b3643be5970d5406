# mmdet's Faster R-CNN R-50 FPN whose backbone is read from the GFN-fine-tuned
# ResNet-50 classifier (configs/gfn_resnet-50_in1k.py): the cheaper variant of
# faster-rcnn_vit-b_sfp.py.
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'

gfn_classifier = 'work_dirs/gfn_resnet-50_in1k/epoch_10.pth'

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=gfn_classifier,
            prefix='backbone.')))
