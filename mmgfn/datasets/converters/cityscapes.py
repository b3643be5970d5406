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

with these differences: images are in sorted order (mmdet's follow
``glob``), and image and annotation ids start at 1 (mmdet's start at 0).
pycocotools' ``COCOeval`` records a match as the id of the matched
annotation and reads 0 as "no match", so a detection matched to an
annotation with id 0 counts as a false positive and that object as missed:
with 0-based ids, perfect detections do not reach AP 1. Foggy Cityscapes
uses the same json: see :class:`mmgfn.datasets.FoggyCityscapesDataset`.

Writing is all or nothing: every split is converted (and every unreadable
ground-truth image listed) before any json is put in place; each json is
written to a temporary ``.part`` file, and the files are renamed into place
only once every split has succeeded.

Only the validation split is needed to test a detector (Foggy Cityscapes
included): with only ``leftImg8bit/val`` and ``gtFine/val`` downloaded, pass
``splits=('val', )`` (``--splits val`` on the command line).

``gtFine_instanceIds.png`` stores ``label_id * 1000 + instance`` for
individual objects and the bare ``label_id`` (< 1000) for crowd regions.
"""
import glob
import json
import os
import os.path as osp
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .common import fail_or_report

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


def _image_info(
        files: Tuple[str, str, str]) -> Tuple[Optional[dict], Optional[str]]:
    """Image entry and its annotations from one ``instanceIds`` image.

    Returns:
        Tuple[Optional[dict], Optional[str]]: ``(info, None)``, or ``(None,
        problem)`` if the ``instanceIds`` file is not a readable
        single-channel image (the problem names the file).
    """
    import pycocotools.mask as mask_utils
    from PIL import Image, UnidentifiedImageError
    img_file, inst_file, segm_file = files
    try:
        with Image.open(inst_file) as img:
            inst_img = np.array(img)
    except UnidentifiedImageError:
        return None, f'{inst_file}: not an image file'
    except (OSError, ValueError) as exc:  # e.g. a truncated PNG
        return None, f'{inst_file}: unreadable image ({exc})'
    if inst_img.ndim != 2:
        return None, (f'{inst_file}: has {inst_img.shape[2]} channels; an '
                      'instanceIds image has one (label_id * 1000 + '
                      'instance, 16-bit)')
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
        segm_file=osp.join(city, osp.basename(segm_file))), None


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


def _coco_dict(infos: List[dict]) -> dict:
    """The COCO dict of one split; image and annotation ids start at 1."""
    out = dict(images=[], annotations=[], categories=[])
    for img_id, info in enumerate(infos, 1):
        anns = info.pop('anno_info')
        out['images'].append(dict(id=img_id, **info))
        for ann in anns:
            out['annotations'].append(
                dict(image_id=img_id, id=len(out['annotations']) + 1, **ann))
    out['categories'] = [
        dict(id=label_id, name=name)
        for label_id, name in CITYSCAPES_INSTANCE_LABELS
    ]
    return out


def _remove(paths: Sequence[str]) -> None:
    for path in paths:
        if osp.exists(path):
            os.remove(path)


def convert_cityscapes(data_root: str,
                       out_dir: Optional[str] = None,
                       splits: Sequence[str] = ('train', 'val'),
                       img_dir: str = 'leftImg8bit',
                       gt_dir: str = 'gtFine',
                       nproc: int = 1) -> Dict[str, str]:
    """Write ``instancesonly_filtered_gtFine_<split>.json`` for each split.

    All or nothing: if any split has a problem (missing folder, image
    without ground truth, unreadable ``instanceIds`` file), no json is
    written or replaced, not even that of a split that converted fine.

    Args:
        data_root (str): The Cityscapes folder.
        out_dir (str, optional): Where the json files go. Defaults to
            ``<data_root>/annotations`` (where mmdet's configs look).
        splits (Sequence[str]): Splits to convert. Defaults to
            ``('train', 'val')`` (test has no public ground truth). Testing
            a detector needs only ``('val', )``.
        img_dir (str): Image folder relative to ``data_root``. Defaults to
            ``'leftImg8bit'``.
        gt_dir (str): Ground-truth folder relative to ``data_root``.
            Defaults to ``'gtFine'``.
        nproc (int): Worker processes. Defaults to 1.

    Returns:
        Dict[str, str]: Split -> written json path.

    Raises:
        FileNotFoundError: If a split's image folder is missing or empty.
        AnnotationError: Images without ground truth, unexpected names and
            unreadable ``instanceIds`` images, each named by file.
    """
    out_dir = out_dir or osp.join(data_root, 'annotations')
    todo = {}
    problems: List[str] = []
    for split in splits:
        split_img_dir = osp.join(data_root, img_dir, split)
        if not osp.isdir(split_img_dir):
            hint = '' if split == 'val' else (
                '; to convert only the validation split, the one detectors '
                'are tested on, pass splits=("val", )')
            raise FileNotFoundError(
                f'Cityscapes folder "{split_img_dir}" does not exist{hint}')
        files, split_problems = collect_files(
            split_img_dir, osp.join(data_root, gt_dir, split))
        if not files and not split_problems:
            raise FileNotFoundError(
                f'no "<city>/*{IMG_SUFFIX}" image in "{split_img_dir}"')
        problems += split_problems
        todo[split] = files
    fail_or_report(problems, 'Cityscapes ground truth', None)

    paths = {
        split: osp.join(out_dir, f'instancesonly_filtered_gtFine_{split}.json')
        for split in todo
    }
    temps = {split: f'{path}.{os.getpid()}.part'
             for split, path in paths.items()}
    try:
        for split, files in todo.items():
            if nproc > 1:
                with Pool(nproc) as pool:
                    results = pool.map(_image_info, files, chunksize=8)
            else:
                results = [_image_info(f) for f in files]
            problems += [why for _, why in results if why is not None]
            if problems:
                continue  # keep listing problems; nothing will be written
            os.makedirs(out_dir, exist_ok=True)
            with open(temps[split], 'w') as f:
                json.dump(_coco_dict([info for info, _ in results]), f)
        fail_or_report(problems, 'Cityscapes ground truth', None)
    except BaseException:
        _remove(temps.values())
        raise
    for split, path in paths.items():
        os.replace(temps[split], path)
    return dict(paths)
