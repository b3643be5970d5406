# Table 3 "Nbr.": neighbour perturbation (Eq. 5) with plain cross-entropy.
# NeighborWeightedCELoss with scale 0 is exactly cross-entropy (soft targets
# from Mixup/CutMix included), so only the loss weights differ from GFN.
_base_ = ['../gfn_vit-b_in1k.py']

model = dict(head=dict(loss=dict(scale=0.0)))
