"""Cityscapes fine annotations -> the COCO json of mmdet's Cityscapes
configs.

mmdet's ``configs/_base_/datasets/cityscapes_detection.py`` reads
``annotations/instancesonly_filtered_gtFine_<split>.json``, written by
``tools/dataset_converters/cityscapes.py`` of the mmdetection repository,
which is not part of the mmdet wheel and needs ``cityscapesscripts``. This
module writes the same json (same keys, category ids, boxes from the
instance masks, crowd regions as ``iscrowd=1``) from::

    data/cityscapes/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    data/cityscapes/gtFine/<split>/<city>/<name>_gtFine_instanceIds.png

with two differences: images are in sorted order (mmdet's follow ``glob``)
and image ids therefore may differ. Foggy Cityscapes uses the same json: see
:class:`mmgfn.datasets.FoggyCityscapesDataset`.

``gtFine_instanceIds.png`` stores ``label_id * 1000 + instance`` for
individual objects and the bare ``label_id`` (< 1000) for crowd regions.
"""
import glob
import os.path as osp
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import fail_or_report, write_coco_json

#: Cityscapes label ids of the 8 instance classes that are evaluated
#: (``hasInstances and not ignoreInEval`` in cityscapesscripts), in the order
#: of mmdet's ``CityscapesDataset`` classes.
CITYSCAPES_INSTANCE_LABELS = ((24, 'person'), (25, 'rider'), (26, 'car'),
                              (27, 'truck'), (28, 'bus'), (31, 'train'),
                              (32, 'motorcycle'), (33, 'bicycle'))
_LABEL_IDS = {label_id for label_id, _ in CITYSCAPES_INSTANCE_LABELS}
IMG_SUFFIX = '_leftImg8bit.png'
INST_SUFFIX = '_gtFine_instanceIds.png'
LABEL_SUFFIX = '_gtFine_labelIds.png'


def _image_info(files: Tuple[str, str, str]) -> dict:
    """Image entry and its annotations from one ``instanceIds`` image."""
    import cv2
    import pycocotools.mask as mask_utils
    img_file, inst_file, segm_file = files
    inst_img = cv2.imread(inst_file, cv2.IMREAD_UNCHANGED)
    if inst_img is None:
        raise ValueError(f'{inst_file} is not a readable image')
    anns = []
    for inst_id in np.unique(inst_img[inst_img >= 24]):
        inst_id = int(inst_id)
        label_id = inst_id // 1000 if inst_id >= 1000 else inst_id
        if label_id not in _LABEL_IDS:
            continue
        mask = np.asarray(inst_img == inst_id, dtype=np.uint8, order='F')
        rle = mask_utils.encode(mask[:, :, None])[0]
        area = mask_utils.area(rle)
        bbox = mask_utils.toBbox(rle)
        rle['counts'] = rle['counts'].decode()
        anns.append(
            dict(
                iscrowd=int(inst_id < 1000),
                category_id=label_id,
                bbox=bbox.tolist(),
                area=area.tolist(),
                segmentation=rle))
    city = osp.basename(osp.dirname(img_file))
    return dict(
        file_name=osp.join(city, osp.basename(img_file)),
        height=int(inst_img.shape[0]),
        width=int(inst_img.shape[1]),
        anno_info=anns,
        segm_file=osp.join(city, osp.basename(segm_file)))


def collect_files(img_dir: str,
                  gt_dir: str) -> Tuple[List[Tuple[str, str, str]], List[str]]:
    """``(image, instanceIds, labelIds)`` paths of one split, and the
    problems found (images without ground truth, unexpected names)."""
    files, problems = [], []
    for img_file in sorted(glob.glob(osp.join(img_dir, '*', '*.png'))):
        if not img_file.endswith(IMG_SUFFIX):
            problems.append(f'{img_file}: not a "*{IMG_SUFFIX}" image')
            continue
        stem = osp.relpath(img_file, img_dir)[:-len(IMG_SUFFIX)]
        inst_file = osp.join(gt_dir, stem + INST_SUFFIX)
        if not osp.isfile(inst_file):
            problems.append(f'{img_file}: no ground truth {inst_file}')
            continue
        files.append((img_file, inst_file,
                      osp.join(gt_dir, stem + LABEL_SUFFIX)))
    return files, problems


def convert_cityscapes(data_root: str,
                       out_dir: Optional[str] = None,
                       splits: Sequence[str] = ('train', 'val'),
                       img_dir: str = 'leftImg8bit',
                       gt_dir: str = 'gtFine',
                       nproc: int = 1) -> Dict[str, str]:
    """Write ``instancesonly_filtered_gtFine_<split>.json`` for each split.

    Args:
        data_root (str): The Cityscapes folder.
        out_dir (str, optional): Where the json files go. Defaults to
            ``<data_root>/annotations`` (where mmdet's configs look).
        splits (Sequence[str]): Splits to convert. Defaults to
            ``('train', 'val')`` (test has no public ground truth).
        img_dir (str): Image folder relative to ``data_root``. Defaults to
            ``'leftImg8bit'``.
        gt_dir (str): Ground-truth folder relative to ``data_root``.
            Defaults to ``'gtFine'``.
        nproc (int): Worker processes. Defaults to 1.

    Returns:
        Dict[str, str]: Split -> written json path.

    Raises:
        FileNotFoundError: If a split's image folder is missing or empty.
        AnnotationError: Images without ground truth, or unexpected names.
    """
    out_dir = out_dir or osp.join(data_root, 'annotations')
    todo = {}
    problems: List[str] = []
    for split in splits:
        split_img_dir = osp.join(data_root, img_dir, split)
        if not osp.isdir(split_img_dir):
            raise FileNotFoundError(
                f'Cityscapes folder "{split_img_dir}" does not exist')
        files, split_problems = collect_files(
            split_img_dir, osp.join(data_root, gt_dir, split))
        if not files and not split_problems:
            raise FileNotFoundError(
                f'no "<city>/*{IMG_SUFFIX}" image in "{split_img_dir}"')
        problems += split_problems
        todo[split] = files
    fail_or_report(problems, 'Cityscapes ground truth', None)

    written = {}
    for split, files in todo.items():
        if nproc > 1:
            with Pool(nproc) as pool:
                infos = pool.map(_image_info, files, chunksize=8)
        else:
            infos = [_image_info(f) for f in files]
        out = dict(images=[], annotations=[], categories=[])
        for img_id, info in enumerate(infos):
            anns = info.pop('anno_info')
            out['images'].append(dict(id=img_id, **info))
            for ann in anns:
                out['annotations'].append(
                    dict(
                        image_id=img_id,
                        id=len(out['annotations']),
                        **ann))
        out['categories'] = [
            dict(id=label_id, name=name)
            for label_id, name in CITYSCAPES_INSTANCE_LABELS
        ]
        path = osp.join(out_dir, f'instancesonly_filtered_gtFine_{split}.json')
        write_coco_json(out, path)
        written[split] = path
    return written
