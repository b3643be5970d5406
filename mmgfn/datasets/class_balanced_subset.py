"""A fixed, class-balanced subset of a classification dataset.

GFN (CVPR 2025), Sec. 5.3 fine-tunes on a 5,000-image subset of
ImageNet-1k; :class:`ClassBalancedSubset` with ``per_class=5`` draws one
(5 images of each of the 1,000 classes) reproducibly from ``seed``.
"""
import copy
from collections import defaultdict
from typing import List, Union

import numpy as np
from mmengine.dataset import BaseDataset

from mmgfn.registry import DATASETS


@DATASETS.register_module()
class ClassBalancedSubset:
    """``per_class`` samples of every class of ``dataset``.

    The samples of each class are drawn without replacement with a
    ``numpy.random.default_rng(seed)`` generator, so every process and run
    gets the same subset; their order follows the wrapped dataset.

    Args:
        dataset (dict | BaseDataset): The wrapped dataset (any mmpretrain
            dataset with single-label ``gt_label``), or its config.
        per_class (int): Samples per class (>= 1).
        seed (int): Seed of the draw. Defaults to 0.

    Raises:
        ValueError: If a class has fewer than ``per_class`` samples (names
            the class and both numbers).
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 per_class: int,
                 seed: int = 0) -> None:
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        if not isinstance(per_class, int) or per_class < 1:
            raise ValueError(
                f'per_class must be an integer >= 1, got {per_class!r}')
        self.dataset = dataset
        self.per_class = per_class
        self.seed = seed
        self.metainfo = copy.deepcopy(dataset.metainfo)
        self.indices = self._draw()

    def _draw(self) -> List[int]:
        by_class = defaultdict(list)
        for i in range(len(self.dataset)):
            labels = self.dataset.get_cat_ids(i)
            by_class[int(labels[0])].append(i)
        classes = self.metainfo.get('classes') or []
        num_classes = len(classes) or (max(by_class) + 1 if by_class else 0)
        rng = np.random.default_rng(self.seed)
        chosen = []
        for c in range(num_classes):
            items = by_class.get(c, [])
            if len(items) < self.per_class:
                name = f' ("{classes[c]}")' if classes else ''
                raise ValueError(
                    f'class {c}{name} has {len(items)} samples, fewer than '
                    f'per_class={self.per_class}')
            chosen += rng.choice(items, self.per_class, replace=False).tolist()
        return sorted(chosen)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> dict:
        return self.dataset[self.indices[idx]]

    def get_data_info(self, idx: int) -> dict:
        """The wrapped dataset's data info of subset item ``idx``."""
        return self.dataset.get_data_info(self.indices[idx])

    def get_cat_ids(self, idx: int) -> List[int]:
        """The category ids of subset item ``idx``."""
        return self.dataset.get_cat_ids(self.indices[idx])
