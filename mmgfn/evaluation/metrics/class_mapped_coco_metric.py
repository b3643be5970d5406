"""COCO-style mAP of a detector whose classes differ from the dataset's.

GFN's detection benchmarks (Sec. 4.3) train a detector on COCO (80 classes)
and test it on RTTS (5 classes) and ExDark (12 classes) through the classes
the two share. :class:`ClassMappedCocoMetric` is mmdet's ``CocoMetric`` with
that step in front: every predicted label (an index into the model's
classes) is mapped to the dataset class of the same name, and predictions of
model classes the dataset does not have are dropped, as the protocol
requires: a COCO ``dog`` detection on RTTS is neither right nor wrong, the
dataset simply does not annotate dogs. The mapped predictions are then scored
against the dataset's own annotations exactly as ``CocoMetric`` scores them.

Names are matched ignoring case, surrounding whitespace and ``_``/``-``,
after an alias table (:data:`DEFAULT_CLASS_ALIASES`) that covers RTTS and
ExDark: ``motorbike`` -> ``motorcycle``, ``people`` -> ``person``,
``table`` -> ``dining table``.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.evaluation import CocoMetric
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmgfn.registry import METRICS

#: Dataset class name -> model (COCO) class name, for names that differ.
DEFAULT_CLASS_ALIASES = {
    'motorbike': 'motorcycle',
    'people': 'person',
    'table': 'dining table',
}


def _normalise(name: str) -> str:
    return ' '.join(name.replace('_', ' ').replace('-', ' ').lower().split())


def build_class_mapping(
        dataset_classes: Sequence[str],
        model_classes: Sequence[str],
        class_aliases: Optional[Dict[str, str]] = None) -> Dict[int, int]:
    """Map model labels to dataset labels by class name.

    Args:
        dataset_classes (Sequence[str]): The dataset's classes; label ``j``
            is ``dataset_classes[j]``.
        model_classes (Sequence[str]): The detector's classes; predicted
            label ``i`` is ``model_classes[i]``.
        class_aliases (dict, optional): Dataset name -> model name for names
            that differ; merged over :data:`DEFAULT_CLASS_ALIASES`. Defaults
            to None.

    Returns:
        Dict[int, int]: Model label -> dataset label, for the shared
        classes only.

    Raises:
        ValueError: If a dataset class has no model counterpart (naming it),
            an alias names a class the model does not have, or two dataset
            classes map to the same model class.
    """
    aliases = {
        _normalise(k): _normalise(v)
        for k, v in {**DEFAULT_CLASS_ALIASES, **(class_aliases or {})}.items()
    }
    model_index = {_normalise(name): i for i, name in enumerate(model_classes)}
    mapping: Dict[int, int] = {}
    missing: List[str] = []
    for j, name in enumerate(dataset_classes):
        key = _normalise(name)
        target = aliases.get(key, key)
        if target not in model_index:
            missing.append(f'"{name}"' + (f' (alias "{target}")'
                                          if target != key else ''))
            continue
        i = model_index[target]
        if i in mapping:
            raise ValueError(
                f'dataset classes "{dataset_classes[mapping[i]]}" and '
                f'"{name}" both map to the model class "{model_classes[i]}"')
        mapping[i] = j
    if missing:
        raise ValueError(
            f'dataset class(es) {", ".join(missing)} have no counterpart '
            f'among the model\'s {len(model_classes)} classes; add them to '
            'class_aliases (dataset name -> model name) or evaluate a model '
            'trained on these classes with CocoMetric')
    return mapping


@METRICS.register_module()
class ClassMappedCocoMetric(CocoMetric):
    """``CocoMetric`` for a detector trained on other classes (COCO's).

    Predicted labels index ``model_classes``; the dataset's classes come from
    the dataset (``dataset_meta['classes']``, set by the Runner) and the
    annotations from ``ann_file`` (or the data samples, as ``CocoMetric``).
    Predictions of model classes that the dataset lacks are dropped before
    scoring; every dataset class must have a model counterpart.

    Where no prediction of a shared class remains, ``CocoMetric`` logs an
    error and returns no number at all; this metric reports 0.0 for every
    bbox/segm item instead (the AP of an empty detection list), so that a
    sweep over corruptions never loses a row.

    In a config that inherits mmdet's bases::

        test_evaluator = dict(
            type='mmgfn.ClassMappedCocoMetric',
            ann_file='data/rtts/rtts_coco.json', metric='bbox')

    Args:
        ann_file (str, optional): The dataset's COCO json. Defaults to None.
        model_classes (Sequence[str], optional): The detector's classes in
            label order. Defaults to None: COCO's 80 classes
            (``mmdet.datasets.CocoDataset.METAINFO['classes']``).
        class_aliases (dict, optional): Dataset name -> model name, merged
            over :data:`DEFAULT_CLASS_ALIASES`. Defaults to None.
        **kwargs: The other arguments of mmdet's ``CocoMetric``.

    Raises:
        ValueError: When the dataset meta is set, if a dataset class has no
            model counterpart (see :func:`build_class_mapping`).
    """

    def __init__(self,
                 ann_file: Optional[str] = None,
                 model_classes: Optional[Sequence[str]] = None,
                 class_aliases: Optional[Dict[str, str]] = None,
                 **kwargs) -> None:
        super().__init__(ann_file=ann_file, **kwargs)
        self.model_classes = tuple(
            model_classes or CocoDataset.METAINFO['classes'])
        self.class_aliases = dict(class_aliases or {})

    @BaseMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        """Set the dataset meta and check that every class maps."""
        BaseMetric.dataset_meta.fset(self, dataset_meta)
        if dataset_meta and 'classes' in dataset_meta:
            build_class_mapping(dataset_meta['classes'], self.model_classes,
                                self.class_aliases)

    def _label_mapping(self) -> Dict[int, int]:
        """Model label -> dataset label, through the names of the
        categories that dataset labels stand for (``self.cat_ids``, the
        order ``CocoMetric`` writes ``category_id`` in)."""
        names = [self._coco_api.cats[c]['name'] for c in self.cat_ids]
        return build_class_mapping(names, self.model_classes,
                                   self.class_aliases)

    def results2json(self, results: Sequence[dict],
                     outfile_prefix: str) -> dict:
        """Map labels to the dataset's, drop unmapped predictions, then
        dump as ``CocoMetric`` does.

        Args:
            results (Sequence[dict]): Per image: ``labels`` (N, int, model
                labels), ``bboxes`` (N x 4, x1 y1 x2 y2 pixels), ``scores``
                (N) and optionally ``masks``/``mask_scores``.
            outfile_prefix (str): Prefix of the written json files.

        Returns:
            dict: Metric type -> written json path.
        """
        mapping = self._label_mapping()
        lut = np.full(len(self.model_classes), -1, dtype=np.int64)
        for i, j in mapping.items():
            lut[i] = j
        mapped, total, kept = [], 0, 0
        for result in results:
            labels = np.asarray(result['labels'], dtype=np.int64)
            if labels.size and (labels.min() < 0
                                or labels.max() >= len(lut)):
                raise ValueError(
                    f'predicted label {int(labels.max())} is outside the '
                    f'{len(lut)} model classes; set model_classes to the '
                    "detector's classes")
            keep = lut[labels] >= 0 if labels.size else np.zeros(0, bool)
            new = dict(result)
            new['labels'] = lut[labels[keep]] if labels.size else labels
            for key in ('bboxes', 'scores', 'mask_scores'):
                if key in result:
                    new[key] = np.asarray(result[key])[keep]
            if 'masks' in result:
                new['masks'] = [m for m, k in zip(result['masks'], keep) if k]
            mapped.append(new)
            total += labels.size
            kept += int(keep.sum())
        MMLogger.get_current_instance().info(
            f'{kept} of {total} predictions are of the {len(mapping)} classes '
            'the model shares with the dataset; the rest are not scored')
        self._num_mapped = kept
        return super().results2json(mapped, outfile_prefix)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """``CocoMetric.compute_metrics`` on the mapped predictions, with
        0.0 for every item when none remains.

        Args:
            results (list): ``(gt, prediction)`` pairs from :meth:`process`.

        Returns:
            Dict[str, float]: As ``CocoMetric`` (``bbox_mAP``,
            ``bbox_mAP_50``, ...).
        """
        self._num_mapped = None
        eval_results = super().compute_metrics(results)
        if self._num_mapped == 0 and not self.format_only:
            items = self.metric_items or [
                'mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l'
            ]
            for metric in self.metrics:
                if metric in ('bbox', 'segm'):
                    for item in items:
                        eval_results.setdefault(f'{metric}_{item}', 0.0)
        return eval_results
