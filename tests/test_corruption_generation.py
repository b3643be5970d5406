"""tools/misc/generate_corrupted_dataset.py: layout, pixels equal to the
on-the-fly transform, resuming, bad input."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from conftest import run_tool
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from mmgfn.datasets.corruption_generation import (corrupted_image_path,
                                                  generate_corrupted_images)
from mmgfn.datasets.transforms import ImageCorruption
from mmgfn.utils.preflight import ConfigError

TOOL = 'tools/misc/generate_corrupted_dataset.py'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def write_sources(root):
    """Three small photos-like images: two JPEG (one in a sub-folder, one
    with an upper-case extension) and one PNG; returns relative paths."""
    rng = np.random.default_rng(0)
    rels = ['a/000001.jpg', 'b.PNG', 'c.JPG']
    for i, rel in enumerate(rels):
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        img = cv2.GaussianBlur(
            rng.integers(0, 255, (40 + 4 * i, 48, 3), np.uint8), (5, 5), 0)
        assert cv2.imwrite(path, img)
    return rels


def on_the_fly(path, corruption, severity, seed=0,
               color_type='color'):
    """What LoadImageFromFile + mmgfn.ImageCorruption give in a pipeline."""
    results = LoadImageFromFile(color_type=color_type)(dict(img_path=path))
    return ImageCorruption(corruption, severity, seed)(results)['img']


def test_tool_layout_and_pixels_equal_the_transform(tmp_path):
    src, out = str(tmp_path / 'images'), str(tmp_path / 'images-c')
    rels = write_sources(src)
    corruptions = ('gaussian_noise', 'frost', 'glass_blur')
    proc = run_tool([
        TOOL, src, out, '--corruptions', *corruptions, '--severities', '1',
        '3', '--workers', '2'
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'wrote 18 corrupted images (0 already present, 0 failed)' in \
        proc.stdout and 'images/s with 2 worker(s)' in proc.stdout
    written = sorted(
        osp.relpath(osp.join(r, n), out) for r, _, files in os.walk(out)
        for n in files)
    assert written == sorted(
        osp.join(c, str(s), rel) for c in corruptions for s in (1, 3)
        for rel in rels)
    for corruption in corruptions:
        for rel in rels:
            path = corrupted_image_path(out, corruption, 3, rel)
            with open(path, 'rb') as f:
                assert f.read(8) == PNG_MAGIC  # lossless under any name
            # read back as a dataset would, compared with the transform on
            # the clean image (same seed, same image path)
            pre = LoadImageFromFile()(dict(img_path=path))['img']
            fly = on_the_fly(osp.join(src, rel), corruption, 3)
            assert pre.shape == fly.shape
            assert np.array_equal(pre, fly), (corruption, rel)
    clean = cv2.imread(osp.join(src, rels[0]))
    noisy = cv2.imread(corrupted_image_path(out, 'gaussian_noise', 3,
                                            rels[0]))
    assert np.abs(noisy.astype(int) - clean).mean() > 5


def test_resume_skips_finished_files(tmp_path):
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    rels = write_sources(src)
    kwargs = dict(corruptions=['fog', 'shot_noise'], severities=[2, 5],
                  progress=False)
    first = generate_corrupted_images(src, out, **kwargs)
    assert (first.written, first.skipped, first.failures) == (12, 0, [])
    done = corrupted_image_path(out, 'fog', 2, rels[1])
    redo = corrupted_image_path(out, 'shot_noise', 5, rels[0])
    with open(redo, 'rb') as f:
        redo_bytes = f.read()
    os.utime(done, (1, 1))
    # an interrupted run leaves only a partial temporary file
    os.replace(redo, f'{redo}.4242.part')
    with open(f'{redo}.4242.part', 'r+b') as f:
        f.truncate(100)

    second = generate_corrupted_images(src, out, **kwargs)
    assert (second.written, second.skipped) == (1, 11)
    assert os.stat(done).st_mtime == 1  # untouched
    with open(redo, 'rb') as f:
        assert f.read() == redo_bytes  # same pixels again (seeded)

    third = generate_corrupted_images(
        src, out, corruptions=['fog', 'shot_noise', 'snow'],
        severities=[2, 5], workers=2, progress=False)
    assert (third.written, third.skipped) == (6, 12)
    assert 'with 2 worker(s)' in third.line()


def test_ann_file_seed_root_color_type_and_jpeg(tmp_path):
    src = str(tmp_path / 'images')
    rels = write_sources(src)
    # EXIF "rotate 90" photo, stored 64 wide and 40 high
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.random.default_rng(1).integers(
        0, 255, (40, 64, 3), np.uint8)).save(
            osp.join(src, 'exif.jpg'), exif=exif)
    ann = str(tmp_path / 'ann.json')
    with open(ann, 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name=rels[0]),
                               dict(id=2, file_name='exif.jpg')]), f)

    out = str(tmp_path / 'out')
    s = generate_corrupted_images(
        src, out, ['shot_noise'], [4], ann_file=ann,
        color_type='color_ignore_orientation', seed=3,
        seed_path_root='data/my_set/images', progress=False)
    assert s.written == 2  # only the json's images
    assert not osp.exists(corrupted_image_path(out, 'shot_noise', 4,
                                               rels[1]))
    pre = cv2.imread(corrupted_image_path(out, 'shot_noise', 4, 'exif.jpg'))
    assert pre.shape == (40, 64, 3)  # as stored, not rotated
    # the seed comes from the path the dataset will use, not the source's
    results = LoadImageFromFile(color_type='color_ignore_orientation')(
        dict(img_path=osp.join(src, 'exif.jpg')))
    results['img_path'] = 'data/my_set/images/exif.jpg'
    assert np.array_equal(pre, ImageCorruption('shot_noise', 4, 3)(
        results)['img'])

    jpeg_out = str(tmp_path / 'jpeg')
    generate_corrupted_images(src, jpeg_out, ['contrast'], [2],
                              jpeg_quality=90, progress=False)
    with open(corrupted_image_path(jpeg_out, 'contrast', 2, rels[0]),
              'rb') as f:
        assert f.read(2) == b'\xff\xd8'  # JPEG
    with open(corrupted_image_path(jpeg_out, 'contrast', 2, rels[1]),
              'rb') as f:
        assert f.read(8) == PNG_MAGIC  # PNG sources stay lossless
    lossy = cv2.imread(corrupted_image_path(jpeg_out, 'contrast', 2,
                                            rels[0]))
    exact = on_the_fly(osp.join(src, rels[0]), 'contrast', 2)
    assert 0 < np.abs(lossy.astype(int) - exact).mean() < 3


@pytest.mark.parametrize('corruption', ['glass_blur', 'impulse_noise'])
def test_glass_blur_and_impulse_noise_are_seeded(tmp_path, corruption):
    """The two corruptions that draw from their own generator (seeded
    through their ``seed`` argument) are reproduced too."""
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    rels = write_sources(src)
    generate_corrupted_images(src, out, [corruption], [2], progress=False)
    pre = cv2.imread(corrupted_image_path(out, corruption, 2, rels[0]))
    fly = on_the_fly(osp.join(src, rels[0]), corruption, 2)
    assert np.array_equal(pre, fly)


def test_bad_input(tmp_path):
    src = str(tmp_path / 'images')
    rels = write_sources(src)
    out = str(tmp_path / 'out')
    with pytest.raises(ConfigError, match='unknown corruption.*fogg'):
        generate_corrupted_images(src, out, ['fogg'], [1])
    with pytest.raises(ConfigError, match='severities must be among 1-5'):
        generate_corrupted_images(src, out, ['fog'], [0, 1])
    with pytest.raises(ConfigError, match='--workers must be at least 1'):
        generate_corrupted_images(src, out, ['fog'], [1], workers=0)
    with pytest.raises(ConfigError, match='is inside the image folder'):
        generate_corrupted_images(src, osp.join(src, 'c'), ['fog'], [1])
    ann = str(tmp_path / 'ann.json')
    with open(ann, 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name=rels[0]),
                               dict(id=2, file_name='missing.jpg')]), f)
    with pytest.raises(ConfigError, match='1 image.s. listed in .*missing'):
        generate_corrupted_images(src, out, ['fog'], [1], ann_file=ann)

    # an image too small to corrupt is reported, the others are written
    cv2.imwrite(osp.join(src, 'tiny.png'), np.zeros((16, 16, 3), np.uint8))
    s = generate_corrupted_images(src, out, ['fog'], [1], progress=False)
    assert s.written == 3 and len(s.failures) == 1
    assert 'tiny.png (fog 1)' in s.failures[0] and '16x16' in s.failures[0]

    # the tool: "<tool>: error: ..." and exit status 2, no traceback
    proc = run_tool([TOOL, str(tmp_path / 'nowhere'), out])
    assert proc.returncode == 2
    assert ('generate_corrupted_dataset.py: error: image folder "'
            f'{tmp_path / "nowhere"}" does not exist') in proc.stderr
    assert 'Traceback' not in proc.stderr
