"""Foggy Cityscapes (Sakaridis et al., IJCV 2018) through the Cityscapes
json.

Foggy Cityscapes renders fog of three densities into every Cityscapes image
and keeps Cityscapes' annotations::

    data/cityscapes/annotations/instancesonly_filtered_gtFine_val.json
    data/cityscapes/leftImg8bit/val/<city>/<name>_leftImg8bit.png
    data/cityscapes/leftImg8bit_foggy/val/<city>/
        <name>_leftImg8bit_foggy_beta_0.02.png

The json (written by ``tools/dataset_converters/cityscapes_to_coco.py`` or
by mmdet's own Cityscapes converter) names the clear images;
:class:`FoggyCityscapesDataset` reads it as mmdet's ``CityscapesDataset``
(8 classes) does and points each image at its foggy rendering with
attenuation coefficient ``beta`` (0.005, 0.01 or 0.02; the benchmark uses
0.02, the densest fog).
"""
import os.path as osp
from typing import List, Optional, Union

from mmdet.datasets import CityscapesDataset

from mmgfn.registry import DATASETS

CLEAR_SUFFIX = '_leftImg8bit.png'
#: The attenuation coefficients Foggy Cityscapes is distributed with.
FOGGY_BETAS = ('0.005', '0.01', '0.02')


def foggy_image_path(path: str, beta: Union[float, str] = 0.02) -> str:
    """``<x>_leftImg8bit.png`` -> ``<x>_leftImg8bit_foggy_beta_<beta>.png``.

    Args:
        path (str): A Cityscapes image path (the folder is kept).
        beta (float | str): Fog attenuation coefficient, written as in the
            Foggy Cityscapes file names (``0.02`` -> ``'0.02'``). Defaults to
            0.02.

    Returns:
        str: The foggy image's path.

    Raises:
        ValueError: If ``path`` does not end with ``_leftImg8bit.png``.
    """
    if not path.endswith(CLEAR_SUFFIX):
        raise ValueError(f'{path} is not a Cityscapes "*{CLEAR_SUFFIX}" image '
                         'name')
    return (f'{path[:-len(CLEAR_SUFFIX)]}_leftImg8bit_foggy_beta_'
            f'{format_beta(beta)}.png')


def format_beta(beta: Union[float, str]) -> str:
    """The text of ``beta`` in Foggy Cityscapes file names (``'0.02'``)."""
    return beta if isinstance(beta, str) else f'{float(beta):g}'


@DATASETS.register_module()
class FoggyCityscapesDataset(CityscapesDataset):
    """Cityscapes detection (8 classes) on the Foggy Cityscapes images.

    Takes every argument of mmdet's ``CityscapesDataset``. ``data_prefix``
    must point at the foggy images, e.g.
    ``dict(img='leftImg8bit_foggy/val/')``; ``ann_file`` is the clear
    images' json, whose ``*_leftImg8bit.png`` names are rewritten to
    ``*_leftImg8bit_foggy_beta_<beta>.png``. Boxes, classes, image ids and
    sizes are Cityscapes' own, so ``CocoMetric`` with the same ``ann_file``
    evaluates it.

    Args:
        beta (float | str): Fog density: 0.005, 0.01 or 0.02. Defaults to
            0.02 (the setting of the robustness benchmarks).
        *args, **kwargs: Passed to ``CityscapesDataset``.

    Raises:
        ValueError: If the json names an image that is not a
            ``*_leftImg8bit.png`` file.
        FileNotFoundError: If foggy images are missing (local files only);
            the message names the first ones and how many are missing.
    """

    def __init__(self,
                 *args,
                 beta: Union[float, str] = 0.02,
                 **kwargs) -> None:
        self.beta = format_beta(beta)
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Load the clear images' annotations and point them at the foggy
        images.

        Returns:
            List[dict]: mmdet's data infos with foggy ``img_path``.
        """
        data_list = super().load_data_list()
        for info in data_list:
            info['img_path'] = foggy_image_path(info['img_path'], self.beta)
        self._check_files(data_list)
        return data_list

    def _check_files(self, data_list: List[dict]) -> None:
        """Raise FileNotFoundError naming missing local foggy images."""
        backend_args: Optional[dict] = self.backend_args
        if backend_args or not data_list or \
                '://' in data_list[0]['img_path']:
            return
        missing = [
            info['img_path'] for info in data_list
            if not osp.isfile(info['img_path'])
        ]
        if not missing:
            return
        hint = ''
        if self.beta not in FOGGY_BETAS:
            hint = (f' Foggy Cityscapes has beta {", ".join(FOGGY_BETAS)}; '
                    f'got {self.beta}.')
        raise FileNotFoundError(
            f'{len(missing)} of {len(data_list)} Foggy Cityscapes images '
            f'(beta {self.beta}) are missing, e.g. "{missing[0]}". '
            f'data_prefix.img must point at the leftImg8bit_foggy/<split>/ '
            f'folder (now "{self.data_prefix.get("img")}").{hint}')
