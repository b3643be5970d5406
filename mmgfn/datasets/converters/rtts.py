"""RTTS (RESIDE, Li et al., TIP 2019) -> COCO json.

RTTS holds 4,322 real hazy images annotated in Pascal VOC XML with 5
classes::

    data/rtts/Annotations/<name>.xml
    data/rtts/JPEGImages/<name>.<jpg|png|JPG|...>

mmdet's ``XMLDataset`` assumes ``<name>.jpg``; RTTS mixes extensions, so this
converter finds the real file of every annotation, whatever its extension or
case, and writes a COCO json that mmdet's ``CocoDataset`` reads.

Box convention: VOC corners are 1-based and inclusive. The converter does
exactly what mmdet's VOC loader (``mmdet/datasets/xml_style.py``) does:
``int(float(v))`` on each corner, then subtracts 1 from all four, giving the
corner box ``[xmin - 1, ymin - 1, xmax - 1, ymax - 1]``, written as the COCO
box ``[xmin - 1, ymin - 1, xmax - xmin, ymax - ymin]``. A detector evaluated
on this json therefore sees the same boxes as on the XML files through
``VOCDataset``.

``<difficult>1</difficult>`` objects are written with ``iscrowd=1``, which
``CocoDataset`` loads as ``ignore_flag=1`` and COCO evaluation ignores, as
mmdet's VOC loader and metric ignore difficult objects.

What is refused (each problem named by file, nothing written, unless
``skip_invalid`` drops the images concerned):

* image size: taken from the image file as stored, never from the XML's
  ``<size>`` (which can be wrong); a file with an image extension that is not
  a readable image is refused;
* two XML files for one image (e.g. ``a.xml`` and ``A.XML`` on a
  case-sensitive file system): both are named, the image is not converted;
* an XML file without ``<object>``: an image without ground truth turns
  every detection on it into a false positive; ``keep_empty`` keeps such
  images;
* a box that is empty or reaches outside the image; ``clip_boxes`` clips a
  box that overlaps the image to its border instead, and records each clip.
"""
import os
import os.path as osp
import xml.parsers.expat
from typing import Dict, List, Optional, Tuple

from .common import (class_lookup, fail_or_report, image_size, index_images,
                     make_coco, normalise_class_name, write_coco_json)

#: RTTS's classes in the order of the written category ids (1..5).
RTTS_CLASSES = ('person', 'bicycle', 'car', 'motorbike', 'bus')


class _Node:
    """An XML element with the line it starts on."""

    __slots__ = ('tag', 'line', 'children', 'text')

    def __init__(self, tag: str, line: int) -> None:
        self.tag = tag
        self.line = line
        self.children: List['_Node'] = []
        self.text = ''

    def find(self, tag: str) -> Optional['_Node']:
        for child in self.children:
            if child.tag == tag:
                return child
        return None

    def findall(self, tag: str) -> List['_Node']:
        return [c for c in self.children if c.tag == tag]

    def findtext(self, tag: str) -> Optional[str]:
        node = self.find(tag)
        return None if node is None else node.text.strip()


def parse_xml_with_lines(path: str) -> _Node:
    """Parse an XML file keeping the line number of every element.

    Args:
        path (str): The XML file.

    Returns:
        _Node: The root element.

    Raises:
        ValueError: ``"<path>:<line>: <expat message>"`` for malformed XML.
    """
    parser = xml.parsers.expat.ParserCreate()
    stack: List[_Node] = []
    root: List[_Node] = []

    def start(tag, attrs):
        node = _Node(tag, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def text(data):
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    with open(path, 'rb') as f:
        try:
            parser.ParseFile(f)
        except xml.parsers.expat.ExpatError as exc:
            reason = xml.parsers.expat.ErrorString(exc.code)
            raise ValueError(f'{path}:{exc.lineno}: malformed XML ({reason})')
    return root[0]


def _positive_int(text: Optional[str]) -> int:
    """``int(float(text))`` if that is > 0, else 0."""
    try:
        value = int(float(text))
    except (TypeError, ValueError):
        return 0
    return max(value, 0)


def _find_image(stem: str, filename: Optional[str],
                index: Dict[str, List[str]],
                by_stem: Dict[str, List[str]]) -> Tuple[Optional[str], str]:
    """The image of an annotation: ``(relative path, '')`` or ``(None,
    why)``.

    ``index`` maps lower-case relative paths to real ones, ``by_stem``
    lower-case paths without extension to real ones.
    """
    candidates = by_stem.get(stem.lower(), [])
    if filename:
        exact = [r for r in candidates if r.lower() == filename.lower()]
        if len(exact) == 1:
            return exact[0], ''
        named = index.get(filename.lower(), [])
        if not candidates and len(named) == 1:
            return named[0], ''
    if len(candidates) == 1:
        return candidates[0], ''
    if not candidates:
        return None, f'no image "{stem}.*" (nor <filename> ' \
                     f'"{filename}") in the image folder'
    return None, (f'several images match: {", ".join(sorted(candidates))}; '
                  'set <filename> to the right one')


def _parse_object(
        obj: _Node,
        xml_path: str,
        width: int,
        height: int,
        lookup: Dict[str, int],
        clip_boxes: bool = False
) -> Tuple[Optional[dict], List[str], Optional[str]]:
    """One ``<object>`` -> ``(annotation dict or None, problems, clip
    message or None)``."""
    name_node = obj.find('name')
    if name_node is None or not name_node.text.strip():
        return None, [f'{xml_path}:{obj.line}: <object> without <name>'], None
    raw_name = name_node.text.strip()
    label = lookup.get(normalise_class_name(raw_name))
    problems = []
    if label is None:
        problems.append(f'{xml_path}:{name_node.line}: unknown class '
                        f'"{raw_name}" (expected one of '
                        f'{", ".join(RTTS_CLASSES)})')
    box = obj.find('bndbox')
    coords = []
    if box is None:
        problems.append(f'{xml_path}:{obj.line}: <object> without <bndbox>')
    else:
        for key in ('xmin', 'ymin', 'xmax', 'ymax'):
            try:
                coords.append(int(float(box.findtext(key))))
            except (TypeError, ValueError):
                problems.append(f'{xml_path}:{box.line}: <bndbox> has no '
                                f'numeric <{key}>')
                break
    clipped = None
    if len(coords) == 4:
        xmin, ymin, xmax, ymax = coords
        if not (1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height):
            inside = (max(xmin, 1), max(ymin, 1), min(xmax, width),
                      min(ymax, height))
            clippable = (xmin < xmax and ymin < ymax
                         and inside[0] < inside[2] and inside[1] < inside[3])
            where = (f'{xml_path}:{box.line}: box (xmin, ymin, xmax, ymax) = '
                     f'({xmin}, {ymin}, {xmax}, {ymax})')
            if clip_boxes and clippable:
                coords = list(inside)
                corners = ', '.join(map(str, inside))
                clipped = (f'{where} clipped to ({corners}) inside the '
                           f'{width}x{height} image')
            else:
                hint = ('; pass clip_boxes=True to clip it to the image'
                        if clippable else '')
                problems.append(
                    f'{where} is empty or outside the {width}x{height} image '
                    f'(1-based corners must satisfy 1 <= xmin < xmax <= '
                    f'{width}, 1 <= ymin < ymax <= {height}){hint}')
    if problems:
        return None, problems, None
    difficult = _positive_int(obj.findtext('difficult'))
    xmin, ymin, xmax, ymax = coords
    return dict(
        category_id=label + 1,
        bbox=[xmin - 1, ymin - 1, xmax - xmin, ymax - ymin],
        iscrowd=1 if difficult else 0), [], clipped


def convert_rtts(data_root: str,
                 out_file: Optional[str] = None,
                 ann_dir: str = 'Annotations',
                 img_dir: str = 'JPEGImages',
                 skip_invalid: bool = False,
                 keep_empty: bool = False,
                 clip_boxes: bool = False) -> dict:
    """Convert RTTS's VOC XML annotations to one COCO json.

    Class names are matched ignoring case, surrounding whitespace and
    ``_``/``-`` (``" Motorbike"`` is ``motorbike``). The image size is read
    from the image file as stored (EXIF orientation ignored); the XML's
    ``<size>`` is not used.

    Args:
        data_root (str): The RTTS folder.
        out_file (str, optional): Where to write the json; None writes
            nothing (the dict is still returned). Defaults to None.
        ann_dir (str): XML folder, relative to ``data_root``. Defaults to
            ``'Annotations'``.
        img_dir (str): Image folder, relative to ``data_root``; the json's
            ``file_name`` entries are relative to it. Defaults to
            ``'JPEGImages'``.
        skip_invalid (bool): Drop every image that has a problem (each
            problem is still reported, see Returns) instead of failing. A
            whole image is dropped rather than one bad box, so that a correct
            detection of that object never counts as a false positive.
            Defaults to False.
        keep_empty (bool): Keep images whose XML has no ``<object>`` (as
            images without ground truth) instead of refusing them. Defaults
            to False.
        clip_boxes (bool): Clip a box that reaches outside the image but
            overlaps it to the image border (each clip is listed, see
            Returns) instead of refusing it. Boxes that are empty or lie
            wholly outside are refused either way. Defaults to False.

    Returns:
        dict: The COCO dict; its ``'problems'`` key lists what was dropped
        with ``skip_invalid`` and its ``'clipped'`` key every box clipped
        with ``clip_boxes`` (``"<xml>:<line>: box ... clipped to ..."``);
        neither key is written to the json.

    Raises:
        FileNotFoundError: If a folder is missing or holds no XML file.
        AnnotationError: Every unknown class name, empty or out-of-image box,
            malformed XML file, XML without objects, unreadable image, image
            with several XML files, annotation without image and image
            without annotation, each with its file (and line) (unless
            ``skip_invalid``).
    """
    ann_path = osp.join(data_root, ann_dir)
    img_path = osp.join(data_root, img_dir)
    for folder in (ann_path, img_path):
        if not osp.isdir(folder):
            raise FileNotFoundError(f'RTTS folder "{folder}" does not exist')
    xml_files = sorted(n for n in os.listdir(ann_path)
                       if n.lower().endswith('.xml'))
    if not xml_files:
        raise FileNotFoundError(f'no .xml annotation file in "{ann_path}"')
    index = index_images(img_path)
    by_stem: Dict[str, List[str]] = {}
    for key, rels in index.items():
        by_stem.setdefault(osp.splitext(key)[0], []).extend(rels)
    lookup = class_lookup(RTTS_CLASSES)

    problems: List[str] = []
    parsed: List[Tuple[str, _Node, str]] = []  # (xml path, root, image)
    xml_of: Dict[str, List[str]] = {}  # image -> the XML files naming it
    matched = set()  # images that some XML file names
    for xml_name in xml_files:
        xml_path = osp.join(ann_path, xml_name)
        stem = osp.splitext(xml_name)[0]
        try:
            root = parse_xml_with_lines(xml_path)
        except ValueError as exc:
            problems.append(str(exc))
            matched.update(by_stem.get(stem.lower(), []))  # reported here
            continue
        rel, why = _find_image(stem, root.findtext('filename'), index,
                               by_stem)
        if rel is None:
            problems.append(f'{xml_path}:1: {why}')
            continue
        matched.add(rel)
        xml_of.setdefault(rel, []).append(xml_path)
        parsed.append((xml_path, root, rel))

    images: List[dict] = []
    annotations: List[dict] = []
    clipped: List[str] = []
    for xml_path, root, rel in parsed:
        owners = xml_of[rel]
        if len(owners) > 1:
            if xml_path == owners[0]:
                problems.append(
                    f'{osp.join(img_path, rel)}: annotated by '
                    f'{len(owners)} XML files ({", ".join(owners)}); keep '
                    'the right one')
            continue
        try:
            width, height = image_size(osp.join(img_path, rel))
        except ValueError as exc:
            problems.append(f'{xml_path}:1: {exc}')
            continue
        objects = root.findall('object')
        if not objects and not keep_empty:
            problems.append(
                f'{xml_path}:1: no <object>: an image without ground truth '
                'makes every detection on it a false positive (pass '
                'keep_empty=True to keep it)')
            continue
        anns, image_problems, image_clips = [], [], []
        for obj in objects:
            ann, obj_problems, clip = _parse_object(obj, xml_path, width,
                                                    height, lookup,
                                                    clip_boxes)
            image_problems += obj_problems
            if clip is not None:
                image_clips.append(clip)
            if ann is not None:
                anns.append(ann)
        problems += image_problems
        if image_problems:
            continue  # dropped; without skip_invalid the problems raise below
        clipped += image_clips
        for ann in anns:
            ann['image_index'] = len(images)
        annotations += anns
        images.append(dict(file_name=rel, width=width, height=height))

    for rels in index.values():
        problems += [
            f'{osp.join(img_path, rel)}: image without annotation file '
            f'under {ann_path}' for rel in rels if rel not in matched
        ]
    fail_or_report(problems, 'RTTS annotations', skip_invalid)
    coco = make_coco(images, annotations, RTTS_CLASSES,
                     'RTTS (RESIDE) converted by mmgfn')
    if out_file is not None:
        write_coco_json(coco, out_file)
    coco['problems'] = problems
    coco['clipped'] = clipped
    return coco
