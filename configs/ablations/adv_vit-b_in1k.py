# Table 3 "Adv.": untargeted adversarial fine-tuning (Eq. 3,
# x' = x + eta * sign(grad CE(f(x), y))) with plain cross-entropy; no
# neighbour table is used.
_base_ = ['../gfn_vit-b_in1k.py']

data_preprocessor = dict(
    mode='untargeted', neighbor_source='head', neighbor_file=None)
model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='mmpretrain.CrossEntropyLoss',
            loss_weight=1.0)))
