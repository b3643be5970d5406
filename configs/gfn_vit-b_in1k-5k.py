# GFN on the 5,000-image subset of ImageNet-1k (Sec. 5.3: results similar to
# 10 epochs on all of ImageNet-1k): 5 training images per class, drawn once
# with a fixed seed; same settings as gfn_vit-b_in1k.py (10 epochs over the
# subset, 105 iterations each at batch 48).
_base_ = ['./gfn_vit-b_in1k.py']

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='mmgfn.ClassBalancedSubset',
        per_class=5,
        seed=0,
        dataset={{_base_.train_dataloader.dataset}}))
