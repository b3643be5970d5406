# GFN fine-tuning of mmpretrain's ResNet-50 with the paper's settings of
# gfn_vit-b_in1k.py: the cheaper backbone for the detection configs
# (configs/detection/*_r50-gfn_*). Data recipe as gfn_vit-b_in1k.py.
_base_ = ['./gfn_vit-b_in1k.py']

model = dict(
    _delete_=True,
    _scope_='mmpretrain',
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(
            type='mmgfn.NeighborWeightedCELoss', alpha=0.5, topk=20,
            scale=1.0),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
load_from = 'checkpoints/resnet50_8xb32_in1k_20210831-ea4938fc.pth'
neighbor_file = 'data/neighbors/resnet-50_in1k_top20.json'
data_preprocessor = dict(neighbor_file=neighbor_file)
train_dataloader = dict(batch_size=12)
