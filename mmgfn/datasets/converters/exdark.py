"""ExDark (Loh & Chan, CVIU 2019) -> COCO json.

ExDark holds 7,363 low-light images in 12 class folders, annotated in Piotr
Dollar's ``bbGt`` text format::

    data/exdark/images/<Class>/<img>.<jpg|JPG|png|...>
    data/exdark/annotations/<Class>/<img>.<ext>.txt

Each annotation file starts with the header ``% bbGt version=3``, then has
one object per line::

    <Class> <left> <top> <width> <height> 0 0 0 0 0 0 0

Quirks handled here: class names vary in case (``people``, ``People``);
extensions are mixed and the extension inside the annotation file name may
differ in case from the image's; folder names may differ in case between
``images/`` and ``annotations/``.

Files are read as UTF-8 (a byte-order mark is allowed) and decoded
strictly: a byte that is not UTF-8 is a problem named by file and offset,
never replaced. The first line must be the header ``% bbGt version=3``
(whitespace aside); later lines starting with ``%`` are comments. A file with
no object line (0 bytes, or the header only) is refused unless
``keep_empty``: an image without ground truth makes every detection on it a
false positive.

Box convention: ``left top width height`` are taken as the COCO box
``[left, top, width, height]`` in pixels of the image *as stored*: ExDark's
boxes ignore EXIF orientation, so sizes are read without applying it, and
the dataset config loads images with
``LoadImageFromFile(color_type='color_ignore_orientation')``.

Splits: ExDark's ``imageclasslist.txt`` (from the dataset's Groundtruth
folder) lists every image with its experiment set in the 5th column
(1 = training, 2 = validation, 3 = testing); pass it with ``split`` to
convert one set.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Set, Tuple

from mmgfn.utils.errors import ConfigError
from .common import (class_lookup, fail_or_report, image_size, index_images,
                     make_coco, normalise_class_name, write_coco_json)

#: ExDark's classes in the order of the written category ids (1..12).
EXDARK_CLASSES = ('Bicycle', 'Boat', 'Bottle', 'Bus', 'Car', 'Cat', 'Chair',
                  'Cup', 'Dog', 'Motorbike', 'People', 'Table')
#: The first line of every bbGt annotation file (whitespace normalised).
BBGT_HEADER = '% bbGt version=3'
#: The 5th column of ``imageclasslist.txt``.
EXDARK_SPLITS = {'train': '1', 'val': '2', 'test': '3'}


def read_split_file(path: str, split: str) -> Set[str]:
    """The lower-case image names of one experiment set.

    Args:
        path (str): ExDark's ``imageclasslist.txt``: ``<image name> <class>
            <lighting> <indoor/outdoor> <set>`` per line, set 1 (training),
            2 (validation) or 3 (testing); a header line is allowed.
        split (str): ``'train'``, ``'val'`` or ``'test'``.

    Returns:
        Set[str]: Image file names (no folder), lower case.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ConfigError: For an unknown ``split`` or a malformed line (named by
            file and line).
    """
    if split not in EXDARK_SPLITS:
        raise ConfigError(f'unknown ExDark split "{split}"; expected one of '
                         f'{", ".join(EXDARK_SPLITS)}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'ExDark split file "{path}" does not exist')
    names = set()
    with open(path, encoding='utf-8-sig') as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 5 or fields[4] not in EXDARK_SPLITS.values():
                if lineno == 1:
                    continue  # header
                raise ConfigError(f'{path}:{lineno}: expected "<image> <class>'
                                 f' <light> <in/out> <1|2|3>", got '
                                 f'"{line.strip()}"')
            if fields[4] == EXDARK_SPLITS[split]:
                names.add(fields[0].lower())
    return names


def read_bbgt_lines(ann_file: str) -> List[str]:
    """The lines of a bbGt file, decoded strictly as UTF-8.

    Args:
        ann_file (str): The annotation file.

    Returns:
        List[str]: Its lines (a leading byte-order mark removed).

    Raises:
        ValueError: ``"<file>: not UTF-8 text (byte 0x.. at offset N)"``.
    """
    with open(ann_file, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as exc:
        # the error counts from after a byte-order mark; report file offsets
        offset = exc.start + len(data) - len(exc.object)
        raise ValueError(f'{ann_file}: not UTF-8 text (byte '
                         f'0x{data[offset]:02x} at offset {offset})')
    return text.splitlines()


def _parse_annotation(
        ann_file: str,
        width: int,
        height: int,
        lookup: Dict[str, int],
        keep_empty: bool = False,
        clip_boxes: bool = False) -> Tuple[List[dict], List[str], List[str]]:
    """Objects, problems and clip messages of one bbGt file."""
    anns, problems, clipped = [], [], []
    try:
        lines = read_bbgt_lines(ann_file)
    except ValueError as exc:
        return [], [str(exc)], []
    if not any(line.strip() for line in lines):
        if keep_empty:
            return [], [], []
        return [], [f'{ann_file}: empty file (no header, no object); an '
                    'image without ground truth makes every detection on it '
                    'a false positive (pass keep_empty=True to keep it)'], []
    header = ' '.join(lines[0].split())
    if header != BBGT_HEADER:
        return [], [f'{ann_file}:1: expected the header "{BBGT_HEADER}", '
                    f'got "{lines[0].strip()[:80]}"'], []
    for lineno, line in enumerate(lines[1:], 2):
        fields = line.split()
        if not fields or fields[0].startswith('%'):
            continue
        where = f'{ann_file}:{lineno}'
        label = lookup.get(normalise_class_name(fields[0]))
        if label is None:
            problems.append(f'{where}: unknown class "{fields[0]}" (expected '
                            f'one of {", ".join(EXDARK_CLASSES)}, any case)')
            continue
        try:
            left, top, w, h = (float(v) for v in fields[1:5])
        except ValueError:
            left = None
        if len(fields) < 5 or left is None:
            problems.append(f'{where}: expected "<class> <left> <top> '
                            f'<width> <height> ...", got "{line.strip()}"')
            continue
        if not (w > 0 and h > 0 and left >= 0 and top >= 0
                and left + w <= width and top + h <= height):
            x1, y1 = max(left, 0.0), max(top, 0.0)
            x2, y2 = min(left + w, width), min(top + h, height)
            clippable = w > 0 and h > 0 and x1 < x2 and y1 < y2
            box = (f'{where}: box (left, top, width, height) = ({fields[1]}, '
                   f'{fields[2]}, {fields[3]}, {fields[4]})')
            if not (clip_boxes and clippable):
                hint = ('; pass clip_boxes=True to clip it to the image'
                        if clippable else '')
                problems.append(f'{box} is empty or outside the '
                                f'{width}x{height} image{hint}')
                continue
            left, top, w, h = x1, y1, x2 - x1, y2 - y1
            inside = ', '.join(_fmt(v) for v in (left, top, w, h))
            clipped.append(f'{box} clipped to ({inside}) inside the '
                           f'{width}x{height} image')
        anns.append(
            dict(category_id=label + 1, bbox=[left, top, w, h], iscrowd=0))
    if not anns and not problems and not keep_empty:
        problems.append(f'{ann_file}: no object, only the header; an image '
                        'without ground truth makes every detection on it a '
                        'false positive (pass keep_empty=True to keep it)')
    return anns, problems, clipped


def _fmt(v: float) -> str:
    """``12`` for 12.0, ``12.5`` for 12.5."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _as_number(v: float):
    """Integers as ``int`` in the json, other values as ``float``."""
    return int(v) if float(v).is_integer() else float(v)


def convert_exdark(data_root: str,
                   out_file: Optional[str] = None,
                   img_dir: str = 'images',
                   ann_dir: str = 'annotations',
                   split_file: Optional[str] = None,
                   split: Optional[str] = None,
                   skip_invalid: bool = False,
                   keep_empty: bool = False,
                   clip_boxes: bool = False) -> dict:
    """Convert ExDark's bbGt annotations to one COCO json.

    Every annotation file must have its image and every image (of the
    split) its annotation file; images are ordered by relative path.

    Args:
        data_root (str): The ExDark folder.
        out_file (str, optional): Where to write the json; None writes
            nothing (the dict is still returned). Defaults to None.
        img_dir (str): Image folder, relative to ``data_root``; the json's
            ``file_name`` entries (``<Class>/<img>``) are relative to it.
            Defaults to ``'images'``.
        ann_dir (str): Annotation folder, relative to ``data_root``.
            Defaults to ``'annotations'``.
        split_file (str, optional): ExDark's ``imageclasslist.txt``; with
            ``split``, only that set's images are converted. Defaults to
            None.
        split (str, optional): ``'train'``, ``'val'`` or ``'test'``.
            Defaults to None (all images).
        skip_invalid (bool): Drop every image that has a problem (each
            problem is still reported, see Returns) instead of failing. A
            whole image is dropped rather than one bad box, so that a correct
            detection of that object never counts as a false positive.
            Defaults to False.
        keep_empty (bool): Keep images whose annotation file has no object
            (0 bytes, or the header only) as images without ground truth
            instead of refusing them. Defaults to False.
        clip_boxes (bool): Clip a box that reaches outside the image but
            overlaps it to the image border (each clip is listed, see
            Returns) instead of refusing it. Boxes that are empty or lie
            wholly outside are refused either way. Defaults to False.

    Returns:
        dict: The COCO dict; its ``'problems'`` key lists what was dropped
        with ``skip_invalid`` and its ``'clipped'`` key every box clipped
        with ``clip_boxes`` (``"<file>:<line>: box ... clipped to ..."``);
        neither key is written to the json.

    Raises:
        FileNotFoundError: If a folder or the split file is missing.
        ConfigError: If only one of ``split_file`` and ``split`` is given,
            or the split file is malformed.
        AnnotationError: Every unknown class name, malformed line,
            missing header, undecodable byte, empty or out-of-image box
            (file and line), file without objects, annotation without image
            and image without annotation (unless ``skip_invalid``).
    """
    img_path = osp.join(data_root, img_dir)
    ann_path = osp.join(data_root, ann_dir)
    for folder in (img_path, ann_path):
        if not osp.isdir(folder):
            raise FileNotFoundError(f'ExDark folder "{folder}" does not exist')
    if (split_file is None) != (split is None):
        raise ConfigError('give both split_file and split, or neither')
    wanted = read_split_file(split_file, split) if split else None

    index = index_images(img_path)
    by_name: Dict[str, List[str]] = {}
    for rels in index.values():
        for rel in rels:
            by_name.setdefault(osp.basename(rel).lower(), []).append(rel)

    problems: List[str] = []
    ann_of: Dict[str, str] = {}  # image relative path -> annotation file
    for root, dirs, files in os.walk(ann_path):
        dirs.sort()
        for name in sorted(files):
            if not name.lower().endswith('.txt'):
                continue
            ann_file = osp.join(root, name)
            rel = osp.relpath(ann_file, ann_path).replace(os.sep, '/')[:-4]
            if wanted is not None and \
                    osp.basename(rel).lower() not in wanted:
                continue
            matches = index.get(rel.lower()) or by_name.get(
                osp.basename(rel).lower(), [])
            if len(matches) != 1:
                why = 'no image' if not matches else 'several images (' + \
                    ', '.join(matches) + ')'
                problems.append(f'{ann_file}:1: {why} for this annotation '
                                f'under {img_path} (looked for "{rel}", any '
                                'case, in any class folder)')
                continue
            if matches[0] in ann_of:
                problems.append(f'{ann_file}:1: image {matches[0]} already '
                                f'annotated by {ann_of[matches[0]]}')
                continue
            ann_of[matches[0]] = ann_file

    for rels in index.values():
        for rel in rels:
            in_split = wanted is None or osp.basename(rel).lower() in wanted
            if in_split and rel not in ann_of:
                problems.append(f'{osp.join(img_path, rel)}: image without '
                                f'annotation file under {ann_path}')
    if wanted is not None:
        missing = wanted - set(by_name)
        problems += [
            f'{split_file}: listed image "{name}" not found under {img_path}'
            for name in sorted(missing)
        ]

    lookup = class_lookup(EXDARK_CLASSES)
    images: List[dict] = []
    annotations: List[dict] = []
    clipped: List[str] = []
    for rel in sorted(ann_of, key=str.lower):
        try:
            width, height = image_size(osp.join(img_path, rel))
        except ValueError as exc:
            problems.append(f'{ann_of[rel]}:1: {exc}')
            continue
        anns, ann_problems, ann_clips = _parse_annotation(
            ann_of[rel], width, height, lookup, keep_empty, clip_boxes)
        problems += ann_problems
        if ann_problems:
            continue  # dropped; without skip_invalid the problems raise below
        clipped += ann_clips
        for ann in anns:
            ann['image_index'] = len(images)
            ann['bbox'] = [_as_number(v) for v in ann['bbox']]
        annotations += anns
        images.append(dict(file_name=rel, width=width, height=height))

    fail_or_report(problems, 'ExDark annotations', skip_invalid)
    coco = make_coco(images, annotations, EXDARK_CLASSES,
                     'ExDark converted by mmgfn')
    if out_file is not None:
        write_coco_json(coco, out_file)
    coco['problems'] = problems
    coco['clipped'] = clipped
    return coco
