# mmdet's Cityscapes fine-tuning schedule (faster-rcnn_r50_fpn_1x_cityscapes):
# 8 epochs, linear warm-up, lr x0.1 after epoch 7, SGD lr 0.01.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR', begin=0, end=8, by_epoch=True, milestones=[7],
        gamma=0.1)
]
train_cfg = dict(max_epochs=8)
optim_wrapper = dict(optimizer=dict(lr=0.01))
