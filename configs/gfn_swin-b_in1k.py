# GFN fine-tuning of Swin-B with the paper's settings of gfn_vit-b_in1k.py
# (mmpretrain's swin-base_16xb64_in1k model; same data recipe).
_base_ = ['./gfn_vit-b_in1k.py']

model = dict(
    _delete_=True,
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(
        type='SwinTransformer', arch='base', img_size=224,
        drop_path_rate=0.5),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        init_cfg=None,
        loss=dict(
            type='mmgfn.NeighborWeightedCELoss', alpha=0.5, topk=20,
            scale=1.0),
        cal_acc=False),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.)
    ],
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
load_from = ('checkpoints/swin_base_224_b16x64_300e_imagenet_20210616_190742'
             '-93230b0d.pth')
neighbor_file = 'data/neighbors/swin-b_in1k_top20.json'
data_preprocessor = dict(neighbor_file=neighbor_file)
