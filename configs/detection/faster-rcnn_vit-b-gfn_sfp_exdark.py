# Test the COCO-trained faster-rcnn_vit-b-gfn_sfp_1x_coco.py on EXDARK through the
# classes it shares with COCO (mmgfn.ClassMappedCocoMetric):
#   tools/test.py configs/detection/faster-rcnn_vit-b-gfn_sfp_exdark.py \
#       work_dirs/faster-rcnn_vit-b-gfn_sfp_1x_coco/epoch_12.pth
_base_ = [
    '../_base_/models/faster-rcnn_vit-b_sfp.py', '../_base_/datasets/exdark.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
default_scope = 'mmgfn'
