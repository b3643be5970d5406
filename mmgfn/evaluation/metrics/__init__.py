"""Metrics of mmgfn (registered in :data:`mmgfn.registry.METRICS`)."""
from .class_mapped_coco_metric import ClassMappedCocoMetric  # noqa: F401
from .flip_rate import FlipRate  # noqa: F401
from .subset_accuracy import SubsetAccuracy  # noqa: F401
