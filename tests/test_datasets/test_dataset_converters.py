"""What the detection-set converters refuse and what they let a user keep:
Cityscapes ids that pycocotools scores correctly and all-or-nothing writes;
RTTS image sizes, non-images and duplicate XML files; empty annotations,
boxes over the border and ExDark's encoding and header."""
import contextlib
import io
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_tool, run_tool_in_process
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_detection_datasets import (_image, _voc, _write, write_exdark,
                                     write_rtts)

from mmgfn.apis.cli import flag_wording
from mmgfn.datasets.converters import (AnnotationError, convert_cityscapes,
                                       convert_exdark, convert_rtts,
                                       write_digits)

CS_TOOL = 'tools/dataset_converters/cityscapes_to_coco.py'
RTTS_TOOL = 'tools/dataset_converters/rtts_to_coco.py'
EXDARK_TOOL = 'tools/dataset_converters/exdark_to_coco.py'


def _convert(tool, root, out, *flags):
    """Run the converter ``tool`` on ``root`` writing ``out``; returns the
    ``clipped: `` lines it printed on stderr and the COCO dict it wrote
    (in this process: the tools' exit status on bad input is checked as a
    process below and in test_detection_datasets.py)."""
    proc = run_tool_in_process([tool, root, '--out', out, *flags])
    assert proc.returncode == 0, proc.stderr[-3000:]
    clipped = [line for line in proc.stderr.splitlines()
               if line.startswith('clipped: ')]
    with open(out) as f:
        return clipped, json.load(f)


def _cityscapes_image(root, split, name, inst):
    """One ``<name>_leftImg8bit.png`` and its 16-bit instanceIds PNG."""
    city = name.split('_')[0]
    gt = osp.join(root, 'gtFine', split, city,
                  f'{name}_gtFine_instanceIds.png')
    os.makedirs(osp.dirname(gt), exist_ok=True)
    assert cv2.imwrite(gt, inst)
    _image(osp.join(root, 'leftImg8bit', split, city,
                    f'{name}_leftImg8bit.png'), inst.shape[1], inst.shape[0])
    return gt


def _instances(objects, h=64, w=128):
    """A road instanceIds map with ``(value, x, y, w, h)`` rectangles."""
    inst = np.full((h, w), 7, np.uint16)
    for value, x, y, bw, bh in objects:
        inst[y:y + bh, x:x + bw] = value
    return inst


# (instanceIds value, x, y, w, h): label_id * 1000 + instance, or a bare
# label id for a crowd region (24 person, 25 rider, 26 car)
CS_IMAGES = {
    'aachen_000000_000019': [(24000, 70, 35, 10, 25), (26000, 20, 10, 40,
                                                        20)],
    'aachen_000001_000019': [(24001, 5, 5, 12, 30), (25000, 40, 20, 15, 30),
                             (26, 100, 40, 20, 10)],
}


def test_cityscapes_ids_start_at_1_so_perfect_detections_score_ap_1(
        tmp_path):
    root = str(tmp_path / 'cityscapes')
    for name, objects in CS_IMAGES.items():
        _cityscapes_image(root, 'val', name, _instances(objects))
    ann_file = convert_cityscapes(root, splits=['val'])['val']
    with open(ann_file) as f:
        coco = json.load(f)

    # one detection per non-crowd object, its box written down by hand
    img_id = {i['file_name'].split('/')[1][:-len('_leftImg8bit.png')]:
              i['id'] for i in coco['images']}
    dets = [dict(image_id=img_id[name], category_id=value // 1000,
                 bbox=[x, y, w, h], score=0.9)
            for name, objects in CS_IMAGES.items()
            for value, x, y, w, h in objects if value >= 1000]
    assert len(dets) == 4
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
        ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == 1.0 and ev.stats[1] == 1.0  # AP, AP50
    assert sorted(a['id'] for a in coco['annotations']) == [1, 2, 3, 4, 5]
    assert sorted(i['id'] for i in coco['images']) == [1, 2]


def test_cityscapes_unreadable_instance_ids_writes_no_split(tmp_path):
    root = str(tmp_path / 'cityscapes')
    objects = CS_IMAGES['aachen_000000_000019']
    _cityscapes_image(root, 'train', 'aachen_000000_000019',
                      _instances(objects))
    bad = _cityscapes_image(root, 'val', 'bonn_000000_000019',
                            _instances(objects))
    with open(bad, 'rb') as f:
        data = f.read()
    with open(bad, 'wb') as f:  # cut short, as by an interrupted download
        f.write(data[:len(data) // 2])
    out = osp.join(root, 'annotations')
    train_json = _write(osp.join(out, 'instancesonly_filtered_gtFine_'
                                 'train.json'), '{"earlier": "run"}')

    proc = run_tool([CS_TOOL, root])
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert errors == [
        'cityscapes_to_coco.py: error: 1 problem in the Cityscapes ground '
        f'truth, nothing was written: {bad}: unreadable image (image file is '
        'truncated)'
    ]
    assert 'Traceback' not in proc.stderr
    # neither split written: the earlier train json is untouched, no val
    # json, no temporary file left
    assert sorted(os.listdir(out)) == ['instancesonly_filtered_gtFine_'
                                       'train.json']
    with open(train_json) as f:
        assert json.load(f) == {'earlier': 'run'}

    # a colour image in place of the instanceIds map is refused too
    _image(bad, 128, 64)
    with pytest.raises(AnnotationError, match=f'{bad}: has 3 channels'):
        convert_cityscapes(root)


def test_cityscapes_val_only_download(tmp_path):
    root = str(tmp_path / 'cityscapes')
    _cityscapes_image(root, 'val', 'aachen_000000_000019',
                      _instances(CS_IMAGES['aachen_000000_000019']))
    with pytest.raises(FileNotFoundError,
                       match='leftImg8bit/train" does not exist; to convert '
                       r'only the validation split.*pass splits=\("val", \)$'):
        convert_cityscapes(root)
    assert not osp.exists(osp.join(root, 'annotations'))
    assert list(convert_cityscapes(root, splits=['val'])) == ['val']
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        assert f'{CS_TOOL} data/cityscapes --splits val' in f.read()


def test_rtts_size_from_the_image_non_images_and_duplicate_xml(tmp_path):
    root = write_rtts(str(tmp_path / 'rtts'))
    ann, img = osp.join(root, 'Annotations'), osp.join(root, 'JPEGImages')
    # <size> twice the real 64x48: the image's size is written
    _write(osp.join(ann, 'hazy_001.xml'),
           _voc([('person', 6, 6, 25, 41)], 'hazy_001.jpg', (128, 96)))
    # a box inside the claimed <size> but outside the real image
    _image(osp.join(img, 'hazy_007.png'), 64, 48)
    _write(osp.join(ann, 'hazy_007.xml'),
           _voc([('car', 6, 6, 100, 41)], 'hazy_007.png', (128, 96)))
    # a file named like an image that is not one
    _write(osp.join(img, 'hazy_004.jpeg'), 'not an image\n')
    _write(osp.join(ann, 'hazy_004.xml'),
           _voc([('car', 1, 1, 9, 9)], 'hazy_004.jpeg', (64, 48)))
    # a second XML file for hazy_003 whose name differs in case
    _write(osp.join(ann, 'HAZY_003.XML'),
           _voc([('bus', 5, 5, 61, 41)], None, (64, 64)))

    with pytest.raises(AnnotationError) as err:
        convert_rtts(root, str(tmp_path / 'x.json'))
    problems = err.value.problems
    dup = (f'{osp.join(img, "hazy_003.JPG")}: annotated by 2 XML files '
           f'({osp.join(ann, "HAZY_003.XML")}, '
           f'{osp.join(ann, "hazy_003.xml")}); keep the right one')
    assert problems[0] == dup
    assert problems[1].startswith(
        f'{osp.join(ann, "hazy_004.xml")}:1: '
        f'{osp.join(img, "hazy_004.jpeg")} is not a readable image')
    assert problems[2].startswith(
        f'{osp.join(ann, "hazy_007.xml")}:12: box (xmin, ymin, xmax, ymax) '
        '= (6, 6, 100, 41) is empty or outside the 64x48 image')
    assert len(problems) == 3 and not osp.exists(tmp_path / 'x.json')

    coco = convert_rtts(root, None, skip_invalid=True)
    assert [(i['file_name'], i['width'], i['height'])
            for i in coco['images']] == [('hazy_001.jpg', 64, 48),
                                         ('hazy_002.png', 80, 60)]


def test_rtts_empty_xml_and_boxes_over_the_border(tmp_path):
    root = write_rtts(str(tmp_path / 'rtts'))
    ann = osp.join(root, 'Annotations')
    _image(osp.join(root, 'JPEGImages', 'hazy_005.png'), 40, 30)
    empty = _write(osp.join(ann, 'hazy_005.xml'),
                   _voc([], 'hazy_005.png', (40, 30)))
    # the car reaches one pixel over the 64-pixel-wide image
    over = _write(osp.join(ann, 'hazy_001.xml'),
                  _voc([('person', 6, 6, 25, 41), ('car', 31, 11, 65, 41)],
                       'hazy_001.jpg', (64, 48)))
    with pytest.raises(AnnotationError) as err:
        convert_rtts(root, None)
    assert err.value.problems == [
        f'{over}:22: box (xmin, ymin, xmax, ymax) = (31, 11, 65, 41) is '
        'empty or outside the 64x48 image (1-based corners must satisfy '
        '1 <= xmin < xmax <= 64, 1 <= ymin < ymax <= 48); pass '
        'clip_boxes=True to clip it to the image',
        f'{empty}:1: no <object>: an image without ground truth makes every '
        'detection on it a false positive (pass keep_empty=True to keep it)'
    ]

    clipped, coco = _convert(RTTS_TOOL, root, str(tmp_path / 'rtts.json'),
                             '--keep-empty', '--clip-boxes')
    assert clipped == [
        f'clipped: {over}:22: box (xmin, ymin, xmax, ymax) = (31, 11, 65, '
        '41) clipped to (31, 11, 64, 41) inside the 64x48 image']
    images = {i['file_name']: i['id'] for i in coco['images']}
    assert list(images) == ['hazy_001.jpg', 'hazy_002.png', 'hazy_003.JPG',
                            'hazy_005.png']
    boxes = [a['bbox'] for a in coco['annotations']
             if a['image_id'] == images['hazy_001.jpg']]
    assert boxes == [[5, 5, 19, 35], [30, 10, 33, 30]]  # VOC corners - 1
    assert not [a for a in coco['annotations']
                if a['image_id'] == images['hazy_005.png']]

    # a box wholly outside the image is refused even with clip_boxes
    _write(over, _voc([('car', 70, 11, 90, 41)], 'hazy_001.jpg'))
    with pytest.raises(AnnotationError, match=r'\(70, 11, 90, 41\) is empty '
                       r'or outside the 64x48 image \(1-based[^;]*$'):
        convert_rtts(root, None, keep_empty=True, clip_boxes=True)


def test_exdark_empty_files_refused_unless_kept(tmp_path):
    root = write_exdark(str(tmp_path / 'exdark'))
    img, ann = osp.join(root, 'images'), osp.join(root, 'annotations')
    _image(osp.join(img, 'Cat', '2015_00010.png'), 40, 40)
    zero = _write(osp.join(ann, 'Cat', '2015_00010.png.txt'), '')
    _image(osp.join(img, 'Dog', '2015_00011.jpg'), 40, 40)
    header = _write(osp.join(ann, 'Dog', '2015_00011.jpg.txt'),
                    '% bbGt version=3\n')
    with pytest.raises(AnnotationError) as err:
        convert_exdark(root, str(tmp_path / 'x.json'))
    assert err.value.problems == [
        f'{zero}: empty file (no header, no object); an image without '
        'ground truth makes every detection on it a false positive (pass '
        'keep_empty=True to keep it)',
        f'{header}: no object, only the header; an image without ground '
        'truth makes every detection on it a false positive (pass '
        'keep_empty=True to keep it)'
    ]
    assert not osp.exists(tmp_path / 'x.json')

    coco = convert_exdark(root, None, keep_empty=True)
    assert [i['file_name'] for i in coco['images']] == [
        'Bicycle/2015_00001.jpg', 'Cat/2015_00010.png',
        'Dog/2015_00011.jpg', 'People/2015_00002.JPG', 'Table/2015_00003.png'
    ]
    assert sorted({a['image_id'] for a in coco['annotations']}) == [1, 4, 5]


def test_exdark_decoding_header_and_clip_boxes(tmp_path):
    root = write_exdark(str(tmp_path / 'exdark'))
    ann = osp.join(root, 'annotations')
    tail = b' 0 0 0 0 0 0 0\n'
    # a byte-order mark before the header (as Windows editors save)
    bom = osp.join(ann, 'Bicycle', '2015_00001.jpg.txt')
    with open(bom, 'wb') as f:
        f.write(b'\xef\xbb\xbf% bbGt version=3\nBicycle 5 6 20 30' + tail +
                b'people 30 2 10 40' + tail)
    # a Latin-1 byte in a class name, after a byte-order mark: file offset
    # 3 (mark) + 17 (header line) + 2
    latin = osp.join(ann, 'people', '2015_00002.jpg.txt')
    with open(latin, 'wb') as f:
        f.write(b'\xef\xbb\xbf% bbGt version=3\nPe\xf6ple 50 5 25 30' + tail)
    # no header line
    headless = _write(osp.join(ann, 'Table', '2015_00003.png.txt'),
                      'Table 0 0 50 50 0 0 0 0 0 0 0\n')
    with pytest.raises(AnnotationError) as err:
        convert_exdark(root, None)
    assert err.value.problems == [
        f'{latin}: not UTF-8 text (byte 0xf6 at offset 22)',
        f'{headless}:1: expected the header "% bbGt version=3", got "Table 0 '
        '0 50 50 0 0 0 0 0 0 0"'
    ]
    coco = convert_exdark(root, None, skip_invalid=True)
    assert [(i['file_name'], [a['bbox'] for a in coco['annotations']])
            for i in coco['images']] == [
        ('Bicycle/2015_00001.jpg', [[5, 6, 20, 30], [30, 2, 10, 40]])]

    # one pixel over the 64-pixel-wide image: refused, or clipped and listed
    with open(latin, 'wb') as f:
        f.write(b'% bbGt version=3\nPeople 50 5 25 30' + tail)
    _write(headless, '% bbGt version=3\nTable 0 0 50 50 0 0 0 0 0 0 0\n')
    with open(bom, 'ab') as f:
        f.write(b'Bicycle 50 6 15 30' + tail)
    with pytest.raises(AnnotationError, match=f'{bom}:4: box .left, top, '
                       r'width, height. = \(50, 6, 15, 30\) is empty or '
                       'outside the 64x48 image; pass clip_boxes=True'):
        convert_exdark(root, None)
    clipped, coco = _convert(EXDARK_TOOL, root,
                             str(tmp_path / 'exdark.json'), '--clip-boxes')
    assert clipped == [
        f'clipped: {bom}:4: box (left, top, width, height) = (50, 6, 15, 30) '
        'clipped to (50, 6, 14, 30) inside the 64x48 image']
    assert [a['bbox'] for a in coco['annotations'] if a['image_id'] == 1] \
        == [[5, 6, 20, 30], [30, 2, 10, 40], [50, 6, 14, 30]]


def test_digits_below_32_pixels_are_refused(tmp_path):
    """imagecorruptions needs 32 x 32: the function names its argument,
    the tool its flag (one line, status 2), and nothing is written."""
    out = str(tmp_path / 'digits')
    with pytest.raises(ValueError, match='size must be at least 32, got 31'):
        write_digits(out, 31)
    proc = run_tool_in_process([
        'tools/dataset_converters/digits_to_imagefolder.py', out, '--size',
        '31'
    ])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        'error: --size must be at least 32, got 31')
    assert not os.path.exists(out)


def test_flag_wording():
    """Argument names become the tool's flags, values included; names
    inside config keys, longer identifiers and flags are left alone."""
    assert flag_wording('ann_file "a.json" does not exist; workers must '
                        'be at least 1', ['ann_file', 'workers']) == \
        '--ann-file "a.json" does not exist; --workers must be at least 1'
    assert flag_wording('(pass skip_invalid=True to drop them)',
                        ['skip_invalid']) == \
        '(pass --skip-invalid to drop them)'
    assert flag_wording('pass splits=("val", )', ['splits']) == \
        'pass --splits val'
    assert flag_wording('pass size=31.', ['size']) == 'pass --size 31.'
    assert flag_wording("pass split='val';", ['split']) == \
        'pass --split val;'
    kept = 'data.ann_file, ann_files, my_ann_file, --ann-file, ann_file.x'
    assert flag_wording(kept, ['ann_file']) == kept
    assert flag_wording('workers', []) == 'workers'


def test_library_problems_name_arguments_the_tools_their_flags(tmp_path):
    """The converters' messages suggest keyword arguments (what a Python
    caller passes); the tools print the same suggestions as flags, in their
    error line and in the problems they skip."""
    root = write_rtts(str(tmp_path / 'rtts'))
    ann = osp.join(root, 'Annotations')
    _image(osp.join(root, 'JPEGImages', 'hazy_005.png'), 40, 30)
    empty = _write(osp.join(ann, 'hazy_005.xml'),
                   _voc([], 'hazy_005.png', (40, 30)))
    over = _write(osp.join(ann, 'hazy_001.xml'),
                  _voc([('car', 31, 11, 65, 41)], 'hazy_001.jpg', (64, 48)))
    with pytest.raises(AnnotationError) as err:
        convert_rtts(root, None)
    msg = str(err.value)
    assert '(pass skip_invalid=True to drop the images concerned' in msg
    assert 'pass clip_boxes=True to clip it' in msg
    assert 'pass keep_empty=True to keep it' in msg
    assert '--' not in msg

    proc = run_tool_in_process([RTTS_TOOL, root, '--out',
                                str(tmp_path / 'rtts.json')])
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert errors == [
        'rtts_to_coco.py: error: 2 problem(s) in the RTTS annotations; '
        'nothing was written (pass --skip-invalid to drop the images '
        'concerned and convert the rest):']
    clip, keep = err.value.problems
    assert f'{over}:' in clip and f'{empty}:' in keep
    assert '  ' + clip.replace('clip_boxes=True', '--clip-boxes') \
        in proc.stderr.splitlines()
    assert '  ' + keep.replace('keep_empty=True', '--keep-empty') \
        in proc.stderr.splitlines()
    assert '=True' not in proc.stderr

    proc = run_tool_in_process([RTTS_TOOL, root, '--out',
                                str(tmp_path / 'rtts.json'), '--skip-invalid',
                                '--clip-boxes'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line for line in proc.stderr.splitlines()
            if line.startswith('skipped: ')] == [
        f'skipped: {empty}:1: no <object>: an image without ground truth '
        'makes every detection on it a false positive (pass --keep-empty to '
        'keep it)']

    cs_root = str(tmp_path / 'cityscapes')
    _cityscapes_image(cs_root, 'val', 'aachen_000000_000019',
                      _instances(CS_IMAGES['aachen_000000_000019']))
    proc = run_tool_in_process([CS_TOOL, cs_root])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        'to convert only the validation split, the one detectors are tested '
        'on, pass --splits val')
