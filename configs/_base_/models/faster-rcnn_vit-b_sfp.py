# Faster R-CNN on the GFN-fine-tuned ViT-B/16 (GFN, Sec. 4.3: the detector's
# backbone is the GFN classifier). mmpretrain's VisionTransformer gives its
# stride-16 patch-token map; mmgfn.SimpleFPN (ViTDet's simple pyramid) makes
# strides 4-64 for mmdet's RPN and RoI head. The backbone weights are read
# from the classification checkpoint (its `backbone.` entries).
_base_ = 'mmdet::_base_/models/faster-rcnn_r50_fpn.py'

gfn_classifier = 'work_dirs/gfn_vit-b_in1k/epoch_10.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='base',
        img_size=224,  # the classifier's; positions are resized per input
        patch_size=16,
        drop_path_rate=0.1,
        out_type='featmap',
        out_indices=[-1],
        init_cfg=dict(
            type='Pretrained', checkpoint=gfn_classifier,
            prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='mmgfn.SimpleFPN',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5))
