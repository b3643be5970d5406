"""ImageNet-A and ImageNet-R: 200-class subsets of ImageNet-1k.

* ImageNet-A (Hendrycks et al., "Natural Adversarial Examples", CVPR 2021):
  7,500 real photos that fool ResNet-50.
* ImageNet-R (Hendrycks et al., "The Many Faces of Robustness", ICCV 2021):
  30,000 renditions (art, cartoons, sketches, toys, ...).

Both are laid out as an ImageFolder ``<data_root>/<wnid>/*.jpg`` over 200
ImageNet-1k classes. Evaluate a 1000-way ImageNet-1k classifier by keeping
only the 200 logits of these wnids (:func:`mmgfn.datasets.indices_in_1k`
``('imagenet-a')`` / ``('imagenet-r')``, e.g. with
:class:`mmgfn.evaluation.SubsetAccuracy`) and scoring top-1 against the
labels 0..199 of the dataset (sorted-wnid order).
"""
from typing import Union

from mmgfn.registry import DATASETS
from .wnid_folder import WnidFolderDataset


class _Subset200(WnidFolderDataset):
    """A wnid folder tree whose classes are fixed to :attr:`SUBSET`.

    Args:
        data_root (str): The folder that holds the 200 wnid folders.
        data_prefix (str | dict): Sub-folder of ``data_root``. Defaults to
            ''.
        **kwargs: Passed to :class:`~mmgfn.datasets.WnidFolderDataset`
            (``pipeline``, ``test_mode``, ...); ``classes`` is ignored.

    Raises:
        ValueError: If a folder is not one of the subset's 200 wnids.
    """
    SUBSET = ''

    def __init__(self,
                 data_root: str,
                 data_prefix: Union[str, dict] = '',
                 **kwargs) -> None:
        kwargs.pop('classes', None)
        super().__init__(
            data_root=data_root,
            data_prefix=data_prefix,
            classes=self.SUBSET,
            **kwargs)


@DATASETS.register_module()
class ImageNetA(_Subset200):
    """ImageNet-A: 200 classes, labels 0..199 in sorted-wnid order."""
    SUBSET = 'imagenet-a'


@DATASETS.register_module()
class ImageNetR(_Subset200):
    """ImageNet-R: 200 classes, labels 0..199 in sorted-wnid order."""
    SUBSET = 'imagenet-r'
