# GFN fine-tuning of DeiT-B (mmpretrain's deit-base, same data recipe as
# ViT-B/16) with the paper's settings of gfn_vit-b_in1k.py.
_base_ = ['./gfn_vit-b_in1k.py']

model = dict(backbone=dict(arch='deit-base'))
load_from = 'checkpoints/deit-base_3rdparty_pt-16xb64_in1k_20211124-6f40c188.pth'
neighbor_file = 'data/neighbors/deit-b_in1k_top20.json'
data_preprocessor = dict(neighbor_file=neighbor_file)
