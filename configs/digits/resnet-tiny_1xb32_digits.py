# A small ResNet trained from scratch on the handwritten digits that ship with
# scikit-learn (1,797 real 8x8 scans, upsampled to 32x32 RGB by
# tools/dataset_converters/digits_to_imagefolder.py). Trains in about a minute
# on 2 CPU cores; the base classifier of the demo (tools/run_demo.py).
_base_ = [
    'mmpretrain::_base_/models/resnet18_cifar.py',
    'mmpretrain::_base_/default_runtime.py',
]

# Dicts inherited from `mmpretrain::` bases keep mmpretrain's scope (the model
# comes from one); dicts written here resolve in mmgfn's scope, so host
# components carry the `mmpretrain.` prefix. A prefix finds the class only: a
# host model written here would also need `_scope_='mmpretrain'`, for the
# children it builds by bare names (README: "Using mmgfn's components from
# another project's config").
default_scope = 'mmgfn'

# ResNet-18 (CIFAR stem) at 1/4 width: 0.7 M parameters.
model = dict(
    backbone=dict(stem_channels=16, base_channels=16),
    head=dict(num_classes=10, in_channels=128))

data_preprocessor = dict(
    num_classes=10,
    # pixel mean and std of the converted training images
    mean=[77.9, 77.9, 77.9],
    std=[82.5, 82.5, 82.5],
    to_rgb=False)

dataset_type = 'mmpretrain.CustomDataset'
data_root = 'data/digits'
train_pipeline = [
    dict(type='mmpretrain.LoadImageFromFile'),
    dict(type='mmpretrain.RandomCrop', crop_size=32, padding=2),
    dict(type='mmpretrain.PackInputs'),
]
test_pipeline = [
    dict(type='mmpretrain.LoadImageFromFile'),
    dict(type='mmpretrain.PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=6)
train_cfg = dict(by_epoch=True, max_epochs=6, val_interval=2)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
