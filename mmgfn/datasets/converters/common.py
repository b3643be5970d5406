"""What the detection-set converters share: finding image files whatever
the case of their names, reading image sizes the way the boxes were drawn,
collecting every annotation problem before failing, and writing the COCO
json that mmdet's ``CocoDataset`` and ``CocoMetric`` read.
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mmgfn.utils.errors import ConfigError

#: File extensions (lower case) that count as images.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class AnnotationError(ConfigError):
    """Annotations that cannot be converted as they are.

    The message lists every problem found, one per line, each starting with
    the annotation file (and line) it concerns, so that a user fixes them
    all in one pass; a single problem gives a one-line message. Nothing is
    written when this is raised.

    Args:
        problems (Sequence[str]): One ``"<file>:<line>: <what>"`` per
            problem.
        what (str): What was being converted, e.g. ``'RTTS annotations'``.
        skippable (bool): Whether the message suggests
            ``skip_invalid=True``.
            Defaults to True.
    """

    def __init__(self,
                 problems: Sequence[str],
                 what: str,
                 skippable: bool = True) -> None:
        self.problems = list(problems)
        hint = (' (pass skip_invalid=True to drop the images concerned and '
                'convert the rest)') if skippable else ''
        if len(self.problems) == 1:
            super().__init__(f'1 problem in the {what}, nothing was '
                             f'written{hint}: {self.problems[0]}')
            return
        lines = '\n  '.join(self.problems)
        super().__init__(f'{len(self.problems)} problem(s) in the {what}; '
                         f'nothing was written{hint}:\n  {lines}')


def is_image_file(name: str) -> bool:
    """Whether ``name`` ends with one of :data:`IMG_EXTENSIONS`, in any
    case."""
    return osp.splitext(name)[1].lower() in IMG_EXTENSIONS


def index_images(img_dir: str) -> Dict[str, List[str]]:
    """Index the images under ``img_dir`` by lower-case relative path.

    Args:
        img_dir (str): Folder searched recursively.

    Returns:
        Dict[str, List[str]]: Lower-case relative path (``/``-separated) ->
        the real relative paths that match it (more than one only on a
        case-sensitive file system holding e.g. ``a.jpg`` and ``a.JPG``).
    """
    index: Dict[str, List[str]] = {}
    for root, dirs, files in os.walk(img_dir):
        dirs.sort()
        for name in sorted(files):
            if not is_image_file(name):
                continue
            rel = osp.relpath(osp.join(root, name), img_dir).replace(
                os.sep, '/')
            index.setdefault(rel.lower(), []).append(rel)
    return index


def image_size(path: str) -> Tuple[int, int]:
    """The stored size of an image, ignoring any EXIF orientation.

    Boxes of RTTS and ExDark refer to the pixels as stored in the file, so
    the size must not be that of the image rotated by its EXIF tag (which is
    what ``cv2.imread`` and mmcv's default ``color`` flag give).

    Args:
        path (str): An image file.

    Returns:
        Tuple[int, int]: ``(width, height)`` in pixels.

    Raises:
        ValueError: If the file is not a readable image.
    """
    try:
        from PIL import Image
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except Exception:  # noqa: BLE001 - fall back on OpenCV's decoders
        import cv2
        img = cv2.imread(path,
                         cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            raise ValueError(f'{path} is not a readable image')
        return int(img.shape[1]), int(img.shape[0])


def coco_categories(classes: Sequence[str]) -> List[dict]:
    """COCO ``categories`` for ``classes``: ids 1..C in the given order."""
    return [dict(id=i + 1, name=name) for i, name in enumerate(classes)]


def write_coco_json(coco: dict, out_file: str) -> None:
    """Write a COCO dict to ``out_file`` (folders created), atomically.

    Args:
        coco (dict): With ``images``, ``annotations`` and ``categories``.
        out_file (str): Destination ``.json`` path.
    """
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    tmp = f'{out_file}.{os.getpid()}.part'
    try:
        with open(tmp, 'w') as f:
            json.dump(coco, f)
        os.replace(tmp, out_file)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def make_coco(images: List[dict], annotations: List[dict],
              classes: Sequence[str], description: str) -> dict:
    """Assemble a COCO detection dict.

    Args:
        images (List[dict]): ``file_name``, ``width``, ``height`` each; ids
            are assigned here (1..N in the given order).
        annotations (List[dict]): ``image_index`` (position in ``images``),
            ``category_id``, ``bbox`` (``[x, y, w, h]``, pixels) and
            ``iscrowd`` each; ids are assigned here (1..M).
        classes (Sequence[str]): Category names, ids 1..C.
        description (str): Written to ``info.description``.

    Returns:
        dict: The COCO dict.
    """
    out_images = [dict(id=i + 1, **img) for i, img in enumerate(images)]
    out_anns = []
    for j, ann in enumerate(annotations):
        x, y, w, h = ann['bbox']
        out_anns.append(
            dict(
                id=j + 1,
                image_id=ann['image_index'] + 1,
                category_id=ann['category_id'],
                bbox=[x, y, w, h],
                area=w * h,
                iscrowd=ann.get('iscrowd', 0)))
    return dict(
        info=dict(description=description),
        images=out_images,
        annotations=out_anns,
        categories=coco_categories(classes))


def normalise_class_name(name: str) -> str:
    """Lower case, single spaces, ``_``/``-`` read as spaces."""
    return ' '.join(name.replace('_', ' ').replace('-', ' ').lower().split())


def class_lookup(classes: Sequence[str]) -> Dict[str, int]:
    """Normalised class name -> 0-based index into ``classes``."""
    return {normalise_class_name(c): i for i, c in enumerate(classes)}


def fail_or_report(problems: List[str], what: str,
                   skip_invalid: Optional[bool]) -> List[str]:
    """Raise :class:`AnnotationError` for ``problems`` unless
    ``skip_invalid``; return the problems to report otherwise.

    ``skip_invalid=None`` means that skipping is not offered: any problem
    raises, with no ``skip_invalid=True`` hint.
    """
    if problems and not skip_invalid:
        raise AnnotationError(problems, what, skip_invalid is not None)
    return problems


#: The switches of the converters that read annotations by hand (RTTS,
#: ExDark) for bad annotations, all off by default (bad annotations are
#: refused, see :class:`AnnotationError`): argument name -> what it does.
ANNOTATION_SWITCHES = {
    'skip_invalid':
    'drop images with bad annotations (listed on stderr) '
    'instead of failing',
    'keep_empty':
    'keep images whose annotation has no object (refused by '
    'default: every detection on such an image is a false positive)',
    'clip_boxes':
    'clip boxes that reach over the image border (each clip is '
    'listed on stderr) instead of refusing them',
}


def print_conversion_summary(
        coco: dict,
        classes: Sequence[str],
        out_file: str,
        wording: Optional[Callable[[str], str]] = None) -> None:
    """What a converter tool prints: each skipped problem and each clipped
    box (stderr), then the image, object and per-class counts it wrote.

    ``wording``, if given, rewords each problem (e.g. the tool's flags for
    the argument names the problems suggest)."""
    import sys
    from collections import Counter
    for problem in coco['problems']:
        if wording is not None:
            problem = wording(problem)
        print(f'skipped: {problem}', file=sys.stderr)
    for clip in coco.get('clipped', []):
        print(f'clipped: {clip}', file=sys.stderr)
    counts = Counter(a['category_id'] for a in coco['annotations'])
    per_class = ', '.join(f'{name} {counts[i + 1]}'
                          for i, name in enumerate(classes))
    print(f'wrote {len(coco["images"])} images and '
          f'{len(coco["annotations"])} objects ({per_class}) to {out_file}')
