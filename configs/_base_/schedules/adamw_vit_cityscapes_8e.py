# mmdet's Cityscapes schedule (schedule_cityscapes_8e.py) with the AdamW
# optimiser of a plain ViT backbone (adamw_vit_1x.py).
_base_ = './schedule_cityscapes_8e.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2))
