# Test the COCO-trained faster-rcnn_vit-b-gfn_sfp_1x_coco.py on RTTS through the
# classes it shares with COCO (mmgfn.ClassMappedCocoMetric):
#   tools/test.py configs/detection/faster-rcnn_vit-b-gfn_sfp_rtts.py \
#       work_dirs/faster-rcnn_vit-b-gfn_sfp_1x_coco/epoch_12.pth
_base_ = [
    '../_base_/models/faster-rcnn_vit-b_sfp.py', '../_base_/datasets/rtts.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
default_scope = 'mmgfn'
