# COCO-C (Michaelis et al., 2019) of the GFN Faster R-CNN R-50: COCO val2017
# corrupted on the fly, 15 corruptions x severities 0-5, P / mPC / rPC of
# coco/bbox_mAP and coco/bbox_mAP_50 (results.md says which the paper uses).
#   tools/test.py configs/robustness/faster-rcnn_r50-gfn_fpn_coco-c.py CKPT
#   tools/dist_test.sh configs/robustness/faster-rcnn_r50-gfn_fpn_coco-c.py \
#       CKPT 8
_base_ = [
    '../detection/faster-rcnn_r50-gfn_fpn_1x_coco.py', './_base_/corrupt.py'
]
test_cfg = _base_.robustness_test_cfg
