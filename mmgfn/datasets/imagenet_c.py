"""ImageNet-C (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019).

The released data is laid out ``<data_root>/<corruption>/<severity>/<wnid>/
*.JPEG`` (15 benchmark corruptions plus 4 held-out ones, severities 1-5,
50,000 validation images per cell). One :class:`ImageNetC` dataset is one
(corruption, severity) cell; ``tools/test_robustness.py --suite
imagenet-c`` sweeps the cells with one model.
"""
import os
import os.path as osp
from typing import Sequence, Union

from mmgfn.registry import DATASETS
from .wnid_folder import WnidFolderDataset


def _listing(folder: str) -> str:
    """Comma-separated sub-folders of ``folder`` (for error messages)."""
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    return ', '.join(names) if names else 'none'


@DATASETS.register_module()
class ImageNetC(WnidFolderDataset):
    """One (corruption, severity) cell of ImageNet-C.

    Labels are positions in ``classes``; with the default
    ``classes='imagenet1k'`` they are the 0..999 ImageNet-1k labels of the
    wnid folders (the logit order of any ImageNet-1k checkpoint), even in a
    tree that holds only some of the 1000 folders. For a tree of another
    dataset (e.g. CIFAR-like class folders), pass the class list or None.

    Args:
        data_root (str): The ImageNet-C root that holds the corruption
            folders.
        corruption (str): Corruption folder name, e.g. ``'fog'``.
        severity (int): Severity folder, 1-5.
        classes (str | Sequence[str] | None): See
            :class:`~mmgfn.datasets.WnidFolderDataset`. Defaults to
            ``'imagenet1k'``.
        **kwargs: Passed to :class:`~mmgfn.datasets.WnidFolderDataset`
            (``pipeline``, ``test_mode``, ...); a ``data_prefix`` (e.g.
            inherited from a base config) is ignored: the cell sets it.

    Raises:
        FileNotFoundError: If ``data_root``, the corruption folder or the
            severity folder is missing; the message names the missing
            corruption/severity and what the folder holds instead.
        ValueError: For a severity outside 1-5.
    """

    def __init__(self,
                 data_root: str,
                 corruption: str,
                 severity: int,
                 classes: Union[str, Sequence[str], None] = 'imagenet1k',
                 **kwargs) -> None:
        if isinstance(severity, bool) or not isinstance(
                severity, int) or not 1 <= severity <= 5:
            raise ValueError(
                f'ImageNet-C severity must be an integer in 1-5, got '
                f'{severity!r}')
        root = osp.expanduser(data_root)
        if not osp.isdir(root):
            raise FileNotFoundError(
                f'ImageNet-C root "{data_root}" does not exist')
        if not osp.isdir(osp.join(root, corruption)):
            raise FileNotFoundError(
                f'corruption "{corruption}" is missing: "'
                f'{osp.join(data_root, corruption)}" does not exist '
                f'(found: {_listing(root)})')
        if not osp.isdir(osp.join(root, corruption, str(severity))):
            raise FileNotFoundError(
                f'severity {severity} of corruption "{corruption}" is '
                f'missing: "{osp.join(data_root, corruption, str(severity))}'
                f'" does not exist (found severities: '
                f'{_listing(osp.join(root, corruption))})')
        kwargs.pop('data_prefix', None)  # set by the cell
        self.corruption = corruption
        self.severity = severity
        super().__init__(
            data_root=data_root,
            data_prefix=f'{corruption}/{severity}',
            classes=classes,
            **kwargs)

    def load_data_list(self) -> list:
        """Image paths and labels, each tagged with the cell."""
        data_list = super().load_data_list()
        for info in data_list:
            info['corruption'] = self.corruption
            info['severity'] = self.severity
        return data_list
