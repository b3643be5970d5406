"""Converters of detection test sets to the COCO json that mmdet reads, and
of scikit-learn's digits to the image folder of the demo.

The command-line tools are ``tools/dataset_converters/<name>_to_coco.py``.
"""
from .cityscapes import CITYSCAPES_INSTANCE_LABELS, convert_cityscapes
from .common import ANNOTATION_SWITCHES, AnnotationError
from .digits import MIN_DIGIT_SIZE, write_digits
from .exdark import EXDARK_CLASSES, convert_exdark, read_split_file
from .rtts import RTTS_CLASSES, convert_rtts

__all__ = [
    'ANNOTATION_SWITCHES', 'AnnotationError', 'CITYSCAPES_INSTANCE_LABELS',
    'EXDARK_CLASSES', 'MIN_DIGIT_SIZE', 'RTTS_CLASSES', 'convert_cityscapes',
    'convert_exdark', 'convert_rtts', 'read_split_file', 'write_digits'
]
