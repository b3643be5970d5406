# A plain ViT backbone trains with AdamW (ViTDet's choice), not mmdet's
# SGD 0.02: mmdet's 1x schedule with this optimiser.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0, norm_type=2))
