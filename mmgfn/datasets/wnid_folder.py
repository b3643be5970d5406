"""An ImageFolder whose labels come from a fixed class list.

mmpretrain's ``CustomDataset`` numbers the sub-folders it finds, so a copy
of a dataset that lacks one class folder (a tiny ImageNet-C tree, one
ImageNet-C cell where a class is missing) silently shifts every later
label. :class:`WnidFolderDataset` instead maps each folder name to its
position in a fixed list of class names (by default the 1000 ImageNet-1k
wnids in standard order), so labels always mean the same logit; folders
that are not in the list are refused by name.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.fileio import get_file_backend
from mmpretrain.datasets import CustomDataset
from mmpretrain.datasets.custom import get_samples

from mmgfn.registry import DATASETS
from .wnids import resolve_classes


def folder_labels(root: str, folders: Sequence[str],
                  classes: Optional[Sequence[str]]
                  ) -> Tuple[Tuple[str, ...], Dict[str, int]]:
    """Labels of class folders under a fixed (or folder-derived) list.

    Args:
        root (str): The folder that holds ``folders`` (for messages).
        folders (Sequence[str]): Class folder names found under ``root``.
        classes (Sequence[str], optional): The class list that fixes the
            labels, or None to number the sorted ``folders``.

    Returns:
        tuple: ``(classes, folder_to_idx)``: the class names in label order
        and a map from each folder name to its label.

    Raises:
        ValueError: If a folder is not one of ``classes`` (names it).
    """
    if classes is None:
        classes = tuple(sorted(folders))
    classes = tuple(classes)
    position = {name: i for i, name in enumerate(classes)}
    unknown = [name for name in folders if name not in position]
    if unknown:
        raise ValueError(
            f'folder "{osp.join(root, unknown[0])}" is not one of the '
            f'{len(classes)} classes of this dataset ({len(unknown)} unknown '
            'folder(s)); use classes=None to take the classes from the '
            'folders')
    return classes, {name: position[name] for name in folders}


@DATASETS.register_module()
class WnidFolderDataset(CustomDataset):
    """``<data_root>/<data_prefix>/<class folder>/**/<image>`` with fixed
    labels.

    Each sample is ``dict(img_path=..., gt_label=int)``; ``gt_label`` is
    the position of the image's class folder in ``classes`` (0..K-1 for a
    list of K classes).

    Args:
        data_root (str): Root folder. Defaults to ''.
        data_prefix (str | dict): Folder under ``data_root`` that holds the
            class folders. Defaults to ''.
        classes (str | Sequence[str] | None): The class list that fixes the
            labels: ``'imagenet1k'`` (the 1000 ImageNet-1k wnids),
            ``'imagenet-a'`` / ``'imagenet-r'`` (their 200 wnids, labels
            0..199), an explicit sequence of folder names, or None for
            mmpretrain's behaviour (the sorted folders found on disk).
            Class folders may be missing (their labels are simply unused).
            Defaults to ``'imagenet1k'``.
        **kwargs: Passed to mmpretrain's ``CustomDataset`` (``pipeline``,
            ``extensions``, ``test_mode``, ...).

    Raises:
        FileNotFoundError: If the image folder does not exist.
        ValueError: If a class folder is not one of ``classes`` (the message
            names it), or if no image is found.
    """

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 classes: Union[str, Sequence[str], None] = 'imagenet1k',
                 **kwargs) -> None:
        self.fixed_classes: Optional[Tuple[str, ...]] = resolve_classes(
            classes)
        metainfo = kwargs.pop('metainfo', None) or {}
        if self.fixed_classes is not None:
            metainfo = {**metainfo, 'classes': self.fixed_classes}
        super().__init__(
            data_root=data_root,
            data_prefix=data_prefix,
            metainfo=metainfo,
            **kwargs)

    def _find_samples(self) -> List[Tuple[str, int]]:
        """Pair every image below the class folders with its label."""
        root = self.img_prefix
        if not osp.isdir(root):
            raise FileNotFoundError(f'image folder "{root}" does not exist')
        folders = sorted(entry.name for entry in os.scandir(root)
                         if entry.is_dir())
        classes, folder_to_idx = folder_labels(root, folders,
                                               self.fixed_classes)
        self._metainfo['classes'] = classes
        self.folder_to_idx = folder_to_idx
        samples, _ = get_samples(
            root,
            folder_to_idx,
            is_valid_file=self.is_valid_file,
            backend=get_file_backend(root, enable_singleton=True))
        if not samples:
            raise ValueError(
                f'no image ({", ".join(sorted(self.extensions))}) found in '
                f'the class folders of "{root}"')
        return samples
