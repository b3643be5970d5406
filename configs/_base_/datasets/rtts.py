# RTTS (RESIDE's 4,322 real hazy images, 5 classes), tested with a detector
# trained on COCO: training stays mmdet's COCO set, validation and test read
# RTTS and score the COCO predictions through the shared classes
# (mmgfn.ClassMappedCocoMetric; RTTS motorbike = COCO motorcycle).
# Annotations: python tools/dataset_converters/rtts_to_coco.py data/rtts
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

rtts_root = 'data/rtts/'
rtts_ann_file = 'rtts_coco.json'
rtts_classes = ('person', 'bicycle', 'car', 'motorbike', 'bus')

val_dataloader = dict(
    dataset=dict(
        type='CocoDataset',
        data_root=rtts_root,
        ann_file=rtts_ann_file,
        data_prefix=dict(img='JPEGImages/'),
        metainfo=dict(classes=rtts_classes),
        test_mode=True))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='mmgfn.ClassMappedCocoMetric',
    ann_file=rtts_root + rtts_ann_file,
    metric='bbox')
test_evaluator = val_evaluator
