# Test the COCO-trained faster-rcnn_r50-gfn_fpn_1x_coco.py on RTTS through the
# classes it shares with COCO (mmgfn.ClassMappedCocoMetric):
#   tools/test.py configs/detection/faster-rcnn_r50-gfn_fpn_rtts.py \
#       work_dirs/faster-rcnn_r50-gfn_fpn_1x_coco/epoch_12.pth
_base_ = [
    '../_base_/models/faster-rcnn_r50-gfn_fpn.py', '../_base_/datasets/rtts.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
default_scope = 'mmgfn'
