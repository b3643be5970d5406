# Foggy Cityscapes: mmdet's Cityscapes detection (8 classes), trained on the
# clear images as mmdet's base does, validated and tested on the foggy
# renderings (beta 0.02, the densest fog) with Cityscapes' own annotations.
# Annotations (the clear images' json serves both):
#   python tools/dataset_converters/cityscapes_to_coco.py data/cityscapes
# Images: data/cityscapes/leftImg8bit_foggy/<split>/<city>/
#   <name>_leftImg8bit_foggy_beta_0.02.png
_base_ = 'mmdet::_base_/datasets/cityscapes_detection.py'

foggy_beta = 0.02

val_dataloader = dict(
    dataset=dict(
        type='mmgfn.FoggyCityscapesDataset',
        beta=foggy_beta,
        data_prefix=dict(img='leftImg8bit_foggy/val/')))
test_dataloader = val_dataloader
