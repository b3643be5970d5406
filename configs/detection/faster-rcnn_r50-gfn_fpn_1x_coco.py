# Faster R-CNN with the GFN classifier's backbone, trained on COCO with
# background-targeted RoI perturbations (mmgfn.BackgroundRoIPerturbationHook).
# COCO-C: tools/test_robustness.py this config CHECKPOINT --suite corrupt
_base_ = [
    '../_base_/models/faster-rcnn_r50-gfn_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py', '../_base_/gfn_detection.py'
]
default_scope = 'mmgfn'
