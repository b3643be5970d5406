# A small Vision Transformer (4 layers, 64 dims, 4x4 patches) on the 32x32
# digits: the ViT counterpart of resnet-tiny_1xb32_digits.py, used by the
# tests and by tools/analysis_tools/benchmark_gfn_step.py.
_base_ = ['./resnet-tiny_1xb32_digits.py']

model = dict(
    _delete_=True,
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=64,
            num_layers=4,
            num_heads=4,
            feedforward_channels=128),
        img_size=32,
        patch_size=4,
        drop_rate=0.0),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=10,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

optim_wrapper = dict(
    _delete_=True,
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
