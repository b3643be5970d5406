# Control: plain fine-tuning with GFN's schedule (no perturbation, plain
# cross-entropy), to separate the effect of the extra epochs from GFN's.
_base_ = ['../gfn_vit-b_in1k.py']

data_preprocessor = dict(
    _delete_=True,
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='mmpretrain.CrossEntropyLoss',
            loss_weight=1.0)))
