# ExDark (7,363 low-light images, 12 classes), tested with a detector trained
# on COCO: training stays mmdet's COCO set, validation and test read ExDark
# and score the COCO predictions through the shared classes
# (mmgfn.ClassMappedCocoMetric; People = person, Motorbike = motorcycle,
# Table = dining table).
# Annotations: python tools/dataset_converters/exdark_to_coco.py data/exdark
# (one experiment set: add --split-file data/exdark/imageclasslist.txt
# --split test and set exdark_ann_file = 'exdark_test_coco.json').
# ExDark's boxes refer to the pixels as stored, so its images are loaded
# without applying their EXIF orientation.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

exdark_root = 'data/exdark/'
exdark_ann_file = 'exdark_coco.json'
exdark_classes = ('Bicycle', 'Boat', 'Bottle', 'Bus', 'Car', 'Cat', 'Chair',
                  'Cup', 'Dog', 'Motorbike', 'People', 'Table')

exdark_test_pipeline = [
    dict(
        type='LoadImageFromFile',
        color_type='color_ignore_orientation',
        backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
val_dataloader = dict(
    dataset=dict(
        type='CocoDataset',
        data_root=exdark_root,
        ann_file=exdark_ann_file,
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=exdark_classes),
        test_mode=True,
        pipeline=exdark_test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='mmgfn.ClassMappedCocoMetric',
    ann_file=exdark_root + exdark_ann_file,
    metric='bbox')
test_evaluator = val_evaluator
