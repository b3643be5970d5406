# Faster R-CNN with the GFN classifier's backbone, trained on COCO with
# background-targeted RoI perturbations (mmgfn.BackgroundRoIPerturbationHook).
# COCO-C: tools/test_robustness.py this config CHECKPOINT --suite corrupt
_base_ = [
    '../_base_/models/faster-rcnn_vit-b_sfp.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/adamw_vit_1x.py',
    'mmdet::_base_/default_runtime.py', '../_base_/gfn_detection.py'
]
default_scope = 'mmgfn'

