"""RTTS / ExDark / Cityscapes converters, Foggy Cityscapes, the detection
base configs and the COCO -> dataset class-mapped metric."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, TEST_ONLY, run_tool
from mmengine.config import Config
from mmengine.registry import DATASETS, METRICS, DefaultScope
from mmengine.runner import Runner
from PIL import Image

from mmgfn.datasets import FoggyCityscapesDataset
from mmgfn.datasets.converters import (AnnotationError, convert_cityscapes,
                                       convert_exdark, convert_rtts)
from mmgfn.evaluation.metrics import ClassMappedCocoMetric
from mmgfn.evaluation.metrics.class_mapped_coco_metric import \
    build_class_mapping

BASE = osp.join(ROOT, 'configs', '_base_', 'datasets')
# label indices of mmdet's 80 COCO classes
COCO = dict(person=0, bicycle=1, car=2, motorcycle=3, bus=5, dog=16,
            chair=56, dining_table=60)


def _image(path, w, h, seed=0):
    os.makedirs(osp.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)
    assert cv2.imwrite(path, img)


def _write(path, text):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def _voc(objects, filename=None, size=None):
    """A VOC XML string; objects: (name, xmin, ymin, xmax, ymax[,
    difficult])."""
    parts = ['<annotation>', '  <folder>RTTS</folder>']
    if filename:
        parts.append(f'  <filename>{filename}</filename>')
    if size:
        parts += ['  <size>', f'    <width>{size[0]}</width>',
                  f'    <height>{size[1]}</height>', '    <depth>3</depth>',
                  '  </size>']
    for name, x1, y1, x2, y2, *diff in objects:
        parts += ['  <object>', f'    <name>{name}</name>',
                  f'    <difficult>{diff[0] if diff else 0}</difficult>',
                  '    <bndbox>', f'      <xmin>{x1}</xmin>',
                  f'      <ymin>{y1}</ymin>', f'      <xmax>{x2}</xmax>',
                  f'      <ymax>{y2}</ymax>', '    </bndbox>', '  </object>']
    return '\n'.join(parts + ['</annotation>']) + '\n'


def write_rtts(root):
    """Three hazy images with RTTS's quirks: extensions .jpg/.png/.JPG,
    a <filename> with the wrong extension, <size> missing or zero, class
    names in other case and padded, a difficult object."""
    _image(osp.join(root, 'JPEGImages', 'hazy_001.jpg'), 64, 48, 1)
    _image(osp.join(root, 'JPEGImages', 'hazy_002.png'), 80, 60, 2)
    _image(osp.join(root, 'JPEGImages', 'hazy_003.JPG'), 64, 64, 3)
    ann = osp.join(root, 'Annotations')
    _write(osp.join(ann, 'hazy_001.xml'),
           _voc([('person', 6, 6, 25, 41), ('car', 31, 11, 61, 41)],
                'hazy_001.jpg', (64, 48)))
    _write(osp.join(ann, 'hazy_002.xml'),
           _voc([(' Car ', 11, 11, 51, 51), ('MOTORBIKE', 53, 6, 76, 31)],
                'hazy_002.jpg'))
    _write(osp.join(ann, 'hazy_003.xml'),
           _voc([('Bus', 5, 5, 61, 41), ('bicycle', 11, 46, 31, 61, 1)],
                None, (0, 0)))
    return root


# the RTTS set above in mmdet's corner boxes (VOC corners minus 1)
RTTS_GT = {
    1: [('person', [5, 5, 24, 40]), ('car', [30, 10, 60, 40])],
    2: [('car', [10, 10, 50, 50]), ('motorcycle', [52, 5, 75, 30])],
    3: [('bus', [4, 4, 60, 40])],
}


def test_rtts_converter_handles_extensions_sizes_and_names(tmp_path):
    root = write_rtts(str(tmp_path / 'rtts'))
    out = str(tmp_path / 'rtts.json')
    coco = convert_rtts(root, out)
    with open(out) as f:
        written = json.load(f)
    assert written['images'] == [
        dict(id=1, file_name='hazy_001.jpg', width=64, height=48),
        dict(id=2, file_name='hazy_002.png', width=80, height=60),
        dict(id=3, file_name='hazy_003.JPG', width=64, height=64),
    ]
    assert [c['name'] for c in written['categories']] == [
        'person', 'bicycle', 'car', 'motorbike', 'bus'
    ]
    boxes = [(a['image_id'], a['category_id'], a['bbox'], a['iscrowd'])
             for a in written['annotations']]
    assert boxes == [(1, 1, [5, 5, 19, 35], 0), (1, 3, [30, 10, 30, 30], 0),
                     (2, 3, [10, 10, 40, 40], 0), (2, 4, [52, 5, 23, 25], 0),
                     (3, 5, [4, 4, 56, 36], 0), (3, 2, [10, 45, 20, 15], 1)]
    assert coco['problems'] == []


def test_rtts_boxes_match_mmdet_voc_loader(tmp_path):
    """mmdet's XMLDataset (VOC loader) and CocoDataset on the converted json
    give the same boxes for the same XML."""
    root = write_rtts(str(tmp_path / 'rtts'))
    convert_rtts(root, osp.join(root, 'rtts.json'))
    _write(osp.join(root, 'list.txt'), 'hazy_001\n')
    classes = ('person', 'bicycle', 'car', 'motorbike', 'bus')
    voc = DATASETS.build(
        dict(type='mmdet.XMLDataset', data_root=root, ann_file='list.txt',
             data_prefix=dict(sub_data_root=''), metainfo=dict(
                 classes=classes), test_mode=True, pipeline=[]))
    coco = DATASETS.build(
        dict(type='mmdet.CocoDataset', data_root=root, ann_file='rtts.json',
             data_prefix=dict(img='JPEGImages/'), metainfo=dict(
                 classes=classes), test_mode=True, pipeline=[]))
    voc_boxes = [i['bbox'] for i in voc.get_data_info(0)['instances']]
    coco_boxes = [i['bbox'] for i in coco.get_data_info(0)['instances']]
    assert voc_boxes == coco_boxes == [[5, 5, 24, 40], [30, 10, 60, 40]]
    assert coco.get_data_info(1)['img_path'].endswith('hazy_002.png')


def test_rtts_bad_input_lists_every_problem_by_file_and_line(tmp_path):
    root = write_rtts(str(tmp_path / 'rtts'))
    ann = osp.join(root, 'Annotations')
    _write(osp.join(ann, 'hazy_001.xml'),
           _voc([('person', 6, 6, 25, 41), ('truck', 31, 11, 61, 41),
                 ('car', 31, 11, 70, 41)], 'hazy_001.jpg', (64, 48)))
    _write(osp.join(ann, 'hazy_004.xml'), _voc([('car', 1, 1, 9, 9)]))
    _image(osp.join(root, 'JPEGImages', 'hazy_005.png'), 40, 40)  # no XML
    _image(osp.join(root, 'JPEGImages', 'hazy_006.jpg'), 40, 40)
    _write(osp.join(ann, 'hazy_006.xml'), '<annotation>\n<object>\n')
    out = str(tmp_path / 'rtts.json')
    with pytest.raises(AnnotationError) as err:
        convert_rtts(root, out)
    msg = str(err.value)
    bad_xml = osp.join(ann, 'hazy_001.xml')
    # <name> of the 2nd object is on line 20, <bndbox> of the 3rd on line 32
    assert f'{bad_xml}:20: unknown class "truck"' in msg
    assert f'{bad_xml}:32: box (xmin, ymin, xmax, ymax) = (31, 11, 70, 41)' \
        in msg and 'outside the 64x48 image' in msg
    assert f'{osp.join(ann, "hazy_004.xml")}:1: no image "hazy_004.*"' in msg
    assert 'hazy_005.png: image without annotation file' in msg
    assert f'{osp.join(ann, "hazy_006.xml")}:3: malformed XML' in msg
    assert len(err.value.problems) == 5
    assert not osp.exists(out)

    # the tool: one line "<tool>: error: ..." and exit status 2
    proc = run_tool(['tools/dataset_converters/rtts_to_coco.py', root,
                     '--out', out])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'rtts_to_coco.py: error: 5 problem(s)' in proc.stderr
    assert f"{bad_xml}:20" in proc.stderr
    assert 'Traceback' not in proc.stderr and not osp.exists(out)

    # --skip-invalid drops the images concerned and says which
    coco = convert_rtts(root, out, skip_invalid=True)
    assert [i['file_name'] for i in coco['images']] == [
        'hazy_002.png', 'hazy_003.JPG'
    ]
    assert len(coco['problems']) == 5 and osp.isfile(out)


def _exif_jpeg(path, w, h, orientation=6):
    os.makedirs(osp.dirname(path), exist_ok=True)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(path, exif=exif)


def write_exdark(root):
    """ExDark's quirks: class names in any case, .jpg/.JPG/.png, the
    annotation file's extension in another case, folders in another case,
    an EXIF-rotated photo whose boxes refer to the stored pixels."""
    img, ann = osp.join(root, 'images'), osp.join(root, 'annotations')
    _image(osp.join(img, 'Bicycle', '2015_00001.jpg'), 64, 48, 1)
    _exif_jpeg(osp.join(img, 'People', '2015_00002.JPG'), 80, 40)
    _image(osp.join(img, 'Table', '2015_00003.png'), 50, 50, 3)
    tail = ' 0 0 0 0 0 0 0\n'
    _write(osp.join(ann, 'Bicycle', '2015_00001.jpg.txt'),
           '% bbGt version=3\nBicycle 5 6 20 30' + tail +
           'people 30 2 10 40' + tail)
    _write(osp.join(ann, 'people', '2015_00002.jpg.txt'),
           '% bbGt version=3\nPEOPLE 50 5 25 30' + tail)
    _write(osp.join(ann, 'Table', '2015_00003.png.txt'),
           '% bbGt version=3\nTable 0 0 50 50' + tail + 'cup 10 10 5 5' +
           tail)
    return root


def test_exdark_converter_handles_case_extensions_and_exif(tmp_path):
    root = write_exdark(str(tmp_path / 'exdark'))
    coco = convert_exdark(root, str(tmp_path / 'exdark.json'))
    assert [(i['file_name'], i['width'], i['height'])
            for i in coco['images']] == [('Bicycle/2015_00001.jpg', 64, 48),
                                         ('People/2015_00002.JPG', 80, 40),
                                         ('Table/2015_00003.png', 50, 50)]
    names = {c['id']: c['name'] for c in coco['categories']}
    assert len(names) == 12
    got = [(a['image_id'], names[a['category_id']], a['bbox'])
           for a in coco['annotations']]
    assert got == [(1, 'Bicycle', [5, 6, 20, 30]), (1, 'People',
                                                    [30, 2, 10, 40]),
                   (2, 'People', [50, 5, 25, 30]),
                   (3, 'Table', [0, 0, 50, 50]), (3, 'Cup', [10, 10, 5, 5])]


def test_exdark_bad_input_and_split_file(tmp_path):
    root = write_exdark(str(tmp_path / 'exdark'))
    ann = osp.join(root, 'annotations')
    bad = _write(osp.join(ann, 'Bicycle', '2015_00001.jpg.txt'),
                 '% bbGt version=3\nBicycle 5 6 20 30 0 0 0 0 0 0 0\n'
                 'Truck 1 1 5 5 0 0 0 0 0 0 0\n'
                 'Bicycle 50 6 20 30 0 0 0 0 0 0 0\n')
    _write(osp.join(ann, 'Dog', '2015_00009.jpg.txt'), '% bbGt version=3\n')
    _image(osp.join(root, 'images', 'Cat', '2015_00010.png'), 40, 40)
    with pytest.raises(AnnotationError) as err:
        convert_exdark(root, str(tmp_path / 'x.json'))
    msg = str(err.value)
    assert f'{bad}:3: unknown class "Truck"' in msg
    assert f'{bad}:4: box (left, top, width, height) = (50, 6, 20, 30)' in msg
    assert 'outside the 64x48 image' in msg
    assert f'{osp.join(ann, "Dog", "2015_00009.jpg.txt")}:1: no image' in msg
    assert 'Cat/2015_00010.png: image without annotation file' in msg
    assert len(err.value.problems) == 4
    assert not osp.exists(tmp_path / 'x.json')

    # imageclasslist.txt: header, then <name> <class> <light> <io> <set>
    split_file = _write(
        osp.join(root, 'imageclasslist.txt'),
        'Name Class Light In/Out Train/Val/Test\n'
        '2015_00001.jpg 1 2 1 1\n2015_00002.JPG 11 1 2 3\n'
        '2015_00003.png 12 3 1 3\n2015_00009.jpg 9 1 1 1\n'
        '2015_00010.png 6 1 1 2\n')
    coco = convert_exdark(root, None, split_file=split_file, split='test')
    assert [i['file_name'] for i in coco['images']] == [
        'People/2015_00002.JPG', 'Table/2015_00003.png'
    ]

    # the tool with --skip-invalid converts the rest and lists the problems
    out = str(tmp_path / 'exdark.json')
    proc = run_tool(['tools/dataset_converters/exdark_to_coco.py', root,
                     '--out', out, '--skip-invalid'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count('skipped: ') == 4
    assert 'wrote 2 images and 3 objects' in proc.stdout
    with open(out) as f:
        assert len(json.load(f)['images']) == 2


def write_cityscapes(root, betas=('0.02', )):
    """One 64x128 val image: a car, a person, a crowd of cars, road."""
    inst = np.full((64, 128), 7, np.uint16)  # road (stuff)
    inst[10:30, 20:60] = 26001  # car 1: x 20..59, y 10..29
    inst[35:60, 70:80] = 24000  # person 0
    inst[40:50, 100:120] = 26  # crowd of cars (label id only)
    city = 'aachen'
    name = f'{city}_000000_000019'
    os.makedirs(osp.join(root, 'gtFine', 'val', city))
    cv2.imwrite(
        osp.join(root, 'gtFine', 'val', city,
                 f'{name}_gtFine_instanceIds.png'), inst)
    _image(osp.join(root, 'leftImg8bit', 'val', city,
                    f'{name}_leftImg8bit.png'), 128, 64)
    for beta in betas:
        _image(osp.join(root, 'leftImg8bit_foggy', 'val', city,
                        f'{name}_leftImg8bit_foggy_beta_{beta}.png'), 128,
               64, seed=5)
    return root


def test_cityscapes_converter_and_foggy_config(tmp_path):
    root = write_cityscapes(str(tmp_path / 'cityscapes'))
    written = convert_cityscapes(root, splits=('val', ))
    ann_file = osp.join(root, 'annotations',
                        'instancesonly_filtered_gtFine_val.json')
    assert written == {'val': ann_file}
    with open(ann_file) as f:
        coco = json.load(f)
    assert [c['id'] for c in coco['categories']] == [24, 25, 26, 27, 28, 31,
                                                     32, 33]
    assert coco['images'][0]['file_name'] == \
        'aachen/aachen_000000_000019_leftImg8bit.png'
    anns = sorted((a['category_id'], a['bbox'], a['iscrowd'], a['area'])
                  for a in coco['annotations'])
    assert anns == [(24, [70, 35, 10, 25], 0, 250),
                    (26, [20, 10, 40, 20], 0, 800),
                    (26, [100, 40, 20, 10], 1, 200)]

    cfg = Config.fromfile(osp.join(BASE, 'foggy_cityscapes.py'))
    ds_cfg = cfg.test_dataloader.dataset
    assert ds_cfg.type == 'mmgfn.FoggyCityscapesDataset'
    ds_cfg.data_root = root + '/'
    ds_cfg.pipeline = [dict(type='LoadImageFromFile'),
                       dict(type='LoadAnnotations', with_bbox=True),
                       dict(type='PackDetInputs')]
    dataset = DATASETS.build(ds_cfg)
    assert isinstance(dataset, FoggyCityscapesDataset)
    info = dataset.get_data_info(0)
    assert info['img_path'] == osp.join(
        root, 'leftImg8bit_foggy', 'val', 'aachen',
        'aachen_000000_000019_leftImg8bit_foggy_beta_0.02.png')
    item = dataset[0]
    assert tuple(item['inputs'].shape) == (3, 64, 128)
    foggy = cv2.imread(info['img_path'])
    assert torch.equal(item['inputs'], torch.from_numpy(
        foggy).permute(2, 0, 1))
    assert item['data_samples'].gt_instances.bboxes.tensor.tolist() == [
        [70, 35, 80, 60], [20, 10, 60, 30]
    ]
    assert dataset.metainfo['classes'][2] == 'car'

    ds_cfg.beta = 0.01  # not rendered in this tree
    with pytest.raises(FileNotFoundError,
                       match='1 of 1 Foggy Cityscapes images .beta 0.01. '
                       'are missing, e.g. ".*_leftImg8bit_foggy_beta_0.01'):
        DATASETS.build(ds_cfg)


def test_base_configs_build_rtts_and_exdark(tmp_path):
    rtts = write_rtts(str(tmp_path / 'rtts'))
    convert_rtts(rtts, osp.join(rtts, 'rtts_coco.json'))
    exdark = write_exdark(str(tmp_path / 'exdark'))
    convert_exdark(exdark, osp.join(exdark, 'exdark_coco.json'))
    for name, root, n in (('rtts', rtts, 3), ('exdark', exdark, 3)):
        cfg = Config.fromfile(osp.join(BASE, f'{name}.py'))
        ds_cfg = cfg.test_dataloader.dataset
        ds_cfg.data_root = root + '/'
        dataset = DATASETS.build(ds_cfg)
        assert len(dataset) == n
        assert dataset.metainfo['classes'] == cfg[f'{name}_classes']
        ev_cfg = cfg.test_evaluator
        assert ev_cfg.ann_file == cfg[f'{name}_root'] + \
            cfg[f'{name}_ann_file']
        ev_cfg.ann_file = osp.join(root, cfg[f'{name}_ann_file'])
        metric = METRICS.build(ev_cfg)
        assert isinstance(metric, ClassMappedCocoMetric)
        metric.dataset_meta = dataset.metainfo  # every class maps to COCO
        item = dataset[1]
        if name == 'rtts':
            assert item['data_samples'].img_path.endswith('hazy_002.png')
            assert item['data_samples'].ori_shape == (60, 80)
        else:
            # stored 80x40 with EXIF "rotate 90": loaded as stored (not
            # 40x80), so the box (50, 5, 25, 30) lies inside the image
            assert item['data_samples'].ori_shape == (40, 80)
            # (the test pipeline loads boxes after Resize: original pixels)
            assert item['data_samples'].gt_instances.bboxes.tensor.tolist(
            ) == [[50, 5, 75, 35]]


def test_class_mapping_coco_to_rtts_and_exdark():
    from mmdet.datasets import CocoDataset
    coco = CocoDataset.METAINFO['classes']
    rtts = ('person', 'bicycle', 'car', 'motorbike', 'bus')
    assert build_class_mapping(rtts, coco) == {
        COCO['person']: 0, COCO['bicycle']: 1, COCO['car']: 2,
        COCO['motorcycle']: 3, COCO['bus']: 4
    }
    exdark = ('Bicycle', 'Boat', 'Bottle', 'Bus', 'Car', 'Cat', 'Chair',
              'Cup', 'Dog', 'Motorbike', 'People', 'Table')
    mapping = build_class_mapping(exdark, coco)
    assert {coco[i]: exdark[j] for i, j in mapping.items()} == {
        'bicycle': 'Bicycle', 'boat': 'Boat', 'bottle': 'Bottle',
        'bus': 'Bus', 'car': 'Car', 'cat': 'Cat', 'chair': 'Chair',
        'cup': 'Cup', 'dog': 'Dog', 'motorcycle': 'Motorbike',
        'person': 'People', 'dining table': 'Table'
    }
    with pytest.raises(ValueError, match='"rider" have no counterpart'):
        build_class_mapping(('person', 'rider', 'car'), coco)
    assert build_class_mapping(('person', 'rider'), coco,
                               dict(rider='bicycle')) == {0: 0, 1: 1}
    with pytest.raises(ValueError, match='both map to the model class'):
        build_class_mapping(('person', 'people'), coco)
    metric = ClassMappedCocoMetric()
    with pytest.raises(ValueError, match='"rider"'):
        metric.dataset_meta = dict(classes=('person', 'rider'))


def _sample(img_id, shape, preds):
    """A data sample as the detector's test step gives it; preds:
    (COCO class, x1 y1 x2 y2, score)."""
    boxes = [p[1] for p in preds] or np.zeros((0, 4))
    return dict(
        img_id=img_id,
        ori_shape=shape,
        pred_instances=dict(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor([p[2] for p in preds], dtype=torch.float32),
            labels=torch.tensor([COCO[p[0]] for p in preds],
                                dtype=torch.int64)))


def _evaluate(ann_file, preds_per_image):
    metric = ClassMappedCocoMetric(ann_file=ann_file)
    metric.dataset_meta = dict(
        classes=('person', 'bicycle', 'car', 'motorbike', 'bus'))
    shapes = {1: (48, 64), 2: (60, 80), 3: (64, 64)}
    metric.process({}, [
        _sample(i, shapes[i], preds_per_image.get(i, [])) for i in (1, 2, 3)
    ])
    return metric.evaluate(3)


def test_class_mapped_metric_hand_computed(tmp_path):
    """GT: person 1, car 2, motorbike 1, bus 1 (+ a difficult bicycle,
    ignored). COCO mAP = mean over the 4 classes with GT of the 101-point
    interpolated AP, averaged over IoU 0.5:0.95."""
    root = write_rtts(str(tmp_path / 'rtts'))
    ann_file = osp.join(root, 'rtts_coco.json')
    convert_rtts(root, ann_file)
    perfect = {
        i: [(cls, box, 0.9) for cls, box in objs]
        for i, objs in RTTS_GT.items()
    }
    # predictions carry COCO labels: motorcycle 3 -> motorbike, bus 5 -> bus
    assert _evaluate(ann_file, perfect)['coco/bbox_mAP'] == 1.0

    # COCO classes RTTS does not annotate are dropped, not false positives
    extra = {i: p + [('dog', [0, 0, 30, 30], 0.99),
                     ('chair', [5, 5, 24, 40], 0.95)]
             for i, p in perfect.items()}
    assert _evaluate(ann_file, extra)['coco/bbox_mAP'] == 1.0

    # only unmapped classes: nothing left to score -> 0.0, not missing
    unmapped = {i: [('dog', box, 0.9) for _, box in objs]
                for i, objs in RTTS_GT.items()}
    res = _evaluate(ann_file, unmapped)
    assert res['coco/bbox_mAP'] == 0.0 and res['coco/bbox_mAP_50'] == 0.0

    # one of the two cars found: precision 1 up to recall 0.5, then no
    # more detections, so car AP = 51 of the 101 recall points at every
    # IoU threshold; the other 3 classes are perfect
    one_car = dict(perfect)
    one_car[2] = [p for p in perfect[2] if p[0] != 'car']
    expected = round((3 + 51 / 101) / 4, 3)  # 0.876
    res = _evaluate(ann_file, one_car)
    assert res['coco/bbox_mAP'] == expected
    assert res['coco/bbox_mAP_50'] == expected


def test_coco_detector_on_rtts_through_runner(tmp_path):
    """A real mmdet Faster R-CNN with COCO's 80 classes, tested by the real
    Runner on the converted RTTS set through the rtts base config and the
    class-mapped metric."""
    root = write_rtts(str(tmp_path / 'rtts'))
    convert_rtts(root, osp.join(root, 'rtts_coco.json'))
    cfg_path = _write(
        str(tmp_path / 'faster-rcnn_rtts.py'), f"""
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    {osp.join(BASE, 'rtts.py')!r},
    'mmdet::_base_/default_runtime.py',
]
model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512]),
    test_cfg=dict(rcnn=dict(score_thr=0.0)))
test_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(
        data_root={root + '/'!r},
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(64, 64), keep_ratio=True),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                            'scale_factor')),
        ]))
test_evaluator = dict(ann_file={osp.join(root, 'rtts_coco.json')!r})
""" + TEST_ONLY)
    cfg = Config.fromfile(cfg_path)
    assert cfg.model.roi_head.bbox_head.num_classes == 80
    assert cfg.test_evaluator.type == 'mmgfn.ClassMappedCocoMetric'
    cfg.work_dir = str(tmp_path / 'work')
    cfg.randomness = dict(seed=0)  # the untrained detector's weights
    runner = Runner.from_cfg(cfg)
    # an untrained head, biased toward the 5 classes RTTS shares with COCO
    # (person, bicycle, car, motorcycle, bus) so that detections reach the
    # metric through the class mapping
    with torch.no_grad():
        runner.model.roi_head.bbox_head.fc_cls.bias[[0, 1, 2, 3, 5]] += 5.0
    metrics = runner.test()
    assert set(metrics) >= {'coco/bbox_mAP', 'coco/bbox_mAP_50'}
    # by hand: the same model's detections, COCO labels mapped to RTTS's
    # categories by name (other classes dropped), scored by pycocotools
    from mmdet.datasets import CocoDataset
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(osp.join(root, 'rtts_coco.json'))
    rtts_id = {c['name']: c['id'] for c in gt.loadCats(gt.getCatIds())}
    rtts_id['motorcycle'] = rtts_id['motorbike']
    coco_classes = CocoDataset.METAINFO['classes']
    model = runner.model.eval()
    detections = []
    for batch in runner.test_dataloader:
        with torch.no_grad():
            for sample in model.test_step(batch):
                pred = sample.pred_instances
                for box, score, label in zip(pred.bboxes.tolist(),
                                             pred.scores.tolist(),
                                             pred.labels.tolist()):
                    name = coco_classes[label]
                    if name in rtts_id:
                        x1, y1, x2, y2 = box
                        detections.append(dict(
                            image_id=sample.img_id, category_id=rtts_id[name],
                            bbox=[x1, y1, x2 - x1, y2 - y1], score=score))
    assert detections
    evaluator = COCOeval(gt, gt.loadRes(detections), 'bbox')
    evaluator.params.maxDets = [100, 300, 1000]  # as mmdet's CocoMetric
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert metrics['coco/bbox_mAP'] == pytest.approx(evaluator.stats[0],
                                                     abs=5e-4)
    assert metrics['coco/bbox_mAP_50'] == pytest.approx(evaluator.stats[1],
                                                        abs=5e-4)


def teardown_function():
    DefaultScope._instance_dict.clear()
