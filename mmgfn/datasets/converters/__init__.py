"""Converters of detection test sets to the COCO json that mmdet reads.

The command-line tools are ``tools/dataset_converters/<name>_to_coco.py``.
"""
from .cityscapes import CITYSCAPES_INSTANCE_LABELS, convert_cityscapes
from .common import AnnotationError
from .exdark import EXDARK_CLASSES, convert_exdark, read_split_file
from .rtts import RTTS_CLASSES, convert_rtts

__all__ = [
    'AnnotationError', 'CITYSCAPES_INSTANCE_LABELS', 'EXDARK_CLASSES',
    'RTTS_CLASSES', 'convert_cityscapes', 'convert_exdark', 'convert_rtts',
    'read_split_file'
]
