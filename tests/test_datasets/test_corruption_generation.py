"""tools/misc/generate_corrupted_dataset.py: layout, pixels equal to the
on-the-fly transform, resuming (incomplete outputs redone, stale ``.part``
files removed), stopping at a failed write, workers that die with the
caller, bad input; resuming and stopping on the ImageNet-C recipe path too.

The tool runs in this process (:func:`conftest.run_tool_in_process`) but
where the process is what is checked: its exit status and error line for
bad input, and its workers' end when it is killed."""
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_tool, run_tool_in_process
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from mmgfn.datasets.corruption_generation import (OutputWriteError,
                                                  corrupted_image_path,
                                                  generate_corrupted_images)
from mmgfn.datasets.transforms import ImageCorruption
from mmgfn.utils.errors import ConfigError

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
    proc = run_tool_in_process([
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
        [osp.join(c, str(s), rel) for c in corruptions for s in (1, 3)
         for rel in rels] + ['generation.json'])
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


def test_resume_with_other_settings_is_refused(tmp_path):
    """The files of a folder keep the settings they were made with: a rerun
    with another seed, format, seed root or source would mix two kinds of
    images under one name, so it is refused, naming what differs, and
    writes nothing; the same settings resume."""
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    write_sources(src)
    kwargs = dict(corruptions=['fog'], severities=[2], progress=False)
    assert generate_corrupted_images(src, out, **kwargs).written == 3
    with open(osp.join(out, 'generation.json')) as f:
        record = json.load(f)
    assert record == dict(color_type='color', jpeg_quality=None, seed=0,
                          source=osp.abspath(src), seed_path_root=src,
                          backend='imagecorruptions')
    before = sorted(os.listdir(osp.join(out, 'fog', '2')))
    for change, what in ((dict(seed=1), 'seed: 0 there, 1 now'),
                         (dict(jpeg_quality=85),
                          'jpeg_quality: None there, 85 now'),
                         (dict(seed_path_root='data/x'), 'seed_path_root'),
                         (dict(backend='torch'),
                          "backend: 'imagecorruptions' there, 'torch' now"),
                         (dict(corruptions=['snow'], seed=2),
                          'seed: 0 there, 2 now')):
        with pytest.raises(ConfigError, match=re.escape(what)):
            generate_corrupted_images(src, out, **dict(kwargs, **change))
    assert not osp.exists(osp.join(out, 'snow'))
    assert sorted(os.listdir(osp.join(out, 'fog', '2'))) == before
    other = str(tmp_path / 'other')
    write_sources(other)
    with pytest.raises(ConfigError, match='source: '):
        generate_corrupted_images(other, out, **kwargs)
    again = generate_corrupted_images(src, out, **kwargs)
    assert (again.written, again.skipped) == (0, 3)


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
    with pytest.raises(ConfigError,
                       match='^workers must be at least 1, got 0$'):
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



def test_messages_name_arguments_the_tool_its_flags(tmp_path):
    """The generator's messages name its keyword arguments (what a Python
    caller passes); the tool prints the same messages with its flags."""
    src = str(tmp_path / 'images')
    write_sources(src)
    out = str(tmp_path / 'out')
    not_coco = str(tmp_path / 'not_coco.json')
    with open(not_coco, 'w') as f:
        json.dump(dict(annotations=[]), f)
    missing = str(tmp_path / 'missing.json')
    cases = [
        (dict(workers=0), 'workers must be at least 1, got 0',
         ['--workers', '0']),
        (dict(jpeg_quality=101), 'jpeg_quality must be in 1-100, got 101',
         ['--jpeg-quality', '101']),
        (dict(ann_file=missing), f'ann_file "{missing}" does not exist',
         ['--ann-file', missing]),
        (dict(ann_file=not_coco), f'ann_file "{not_coco}" is not a COCO json '
         "with images[].file_name ('images')", ['--ann-file', not_coco]),
    ]
    for kwargs, msg, flags in cases:
        with pytest.raises((ConfigError, FileNotFoundError)) as err:
            generate_corrupted_images(src, out, ['fog'], [1], progress=False,
                                      **kwargs)
        assert str(err.value) == msg and '--' not in msg
        proc = run_tool_in_process([TOOL, src, out, '--corruptions', 'fog',
                                    '--severities', '1', '--no-progress',
                                    *flags])
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.strip().splitlines()[-1] == \
            'generate_corrupted_dataset.py: error: --' + \
            msg.replace('_', '-', 1)


def _dead_pid():
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_resume_redoes_incomplete_outputs_and_removes_stale_parts(tmp_path):
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    rels = write_sources(src)
    kwargs = dict(corruptions=['brightness'], severities=[1, 2],
                  progress=False)
    assert generate_corrupted_images(src, out, **kwargs).written == 6
    cut = corrupted_image_path(out, 'brightness', 1, rels[0])
    empty = corrupted_image_path(out, 'brightness', 2, rels[1])
    originals = {}
    for path in (cut, empty):
        with open(path, 'rb') as f:
            originals[path] = f.read()
    with open(cut, 'r+b') as f:  # cut short, as by a full disk
        f.truncate(len(originals[cut]) // 2)
    open(empty, 'wb').close()  # 0 bytes
    folder = osp.dirname(corrupted_image_path(out, 'brightness', 1, 'x'))
    stale = osp.join(folder, f'b.PNG.{_dead_pid()}.part')
    live = osp.join(folder, f'c.JPG.{os.getpid()}.part')  # a running writer
    for path in (stale, live):
        with open(path, 'wb') as f:
            f.write(b'partial')

    again = generate_corrupted_images(src, out, **kwargs)
    assert (again.written, again.skipped, again.redone) == (2, 4, 2)
    assert again.removed_parts == 1
    assert ('(4 already present, 2 redone as incomplete or of another '
            'format, 1 stale .part files removed, 0 failed)' in again.line())
    for path, data in originals.items():
        with open(path, 'rb') as f:
            assert f.read() == data  # the same pixels again (seeded)
    assert not osp.exists(stale) and osp.exists(live)
    os.remove(live)

    # a file of another format than the run writes (here: one from a
    # folder made before settings records, or copied in) is redone
    with open(cut, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0' + b'\x00' * 16 + b'\xff\xd9')
    again = generate_corrupted_images(src, out, **kwargs)
    assert (again.written, again.skipped, again.redone) == (1, 5, 1)
    with open(cut, 'rb') as f:
        assert f.read() == originals[cut]


def _stop_at_a_full_disk(generate, src, out, rel, kwargs):
    """Call ``generate(src, out, **kwargs)`` with the temporary file of its
    first output (brightness 1 of ``rel``) linked to /dev/full, where every
    write fails with ENOSPC; check the one-line error that names that
    output and return the files then under ``out`` (relative paths)."""
    first = corrupted_image_path(out, 'brightness', 1, rel)
    os.makedirs(osp.dirname(first))
    os.symlink('/dev/full', f'{first}.{os.getpid()}.part')
    with pytest.raises(OutputWriteError) as err:
        generate(src, out, **kwargs)
    msg = str(err.value)
    assert msg.startswith(f'cannot write "{first}": No space left on device '
                          '(ENOSPC); stopped at the first failed write')
    assert '\n' not in msg
    return [osp.relpath(osp.join(r, n), out) for r, _, files in os.walk(out)
            for n in files]


@pytest.mark.skipif(not osp.exists('/dev/full'), reason='needs /dev/full')
def test_full_disk_stops_at_the_first_failed_write(tmp_path):
    """The first output is written through /dev/full, where every write
    fails with ENOSPC: the run stops there, nothing else is corrupted."""
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    rels = write_sources(src)
    kwargs = dict(corruptions=['brightness', 'contrast'], severities=[1, 2],
                  progress=False)
    left = _stop_at_a_full_disk(generate_corrupted_images, src, out,
                                rels[0], kwargs)
    # no image written, the temporary file removed; the settings record
    assert left == ['generation.json']

    # space freed: the same call writes everything
    assert generate_corrupted_images(src, out, **kwargs).written == 12


def test_workers_stop_on_an_unwritable_output(tmp_path):
    """With a pool, a failed write in a worker stops the whole run with the
    same one-line error."""
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    write_sources(src)
    os.makedirs(out)
    with open(osp.join(out, 'contrast'), 'w') as f:  # not a folder
        f.write('x')
    with pytest.raises(OutputWriteError) as err:
        generate_corrupted_images(src, out, ['brightness', 'contrast'], [1],
                                  workers=2, progress=False)
    msg = str(err.value)
    assert msg.startswith(
        f'cannot write "{osp.join(out, "contrast", "1")}')
    assert 'stopped at the first failed write' in msg and '\n' not in msg


def _descendants(pid):
    """Ids of the live (not zombie) processes below ``pid``, from /proc."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if fields[0] != 'Z':
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='reads /proc')
def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    """SIGKILL the tool while its 2 workers have plenty of queued work
    (about 30 CPU-seconds: 16 images x 10 slow variants): every process of
    the run is gone within seconds."""
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    os.makedirs(src)
    rng = np.random.default_rng(0)
    for i in range(16):
        cv2.imwrite(osp.join(src, f'{i:02d}.png'), cv2.GaussianBlur(
            rng.integers(0, 255, (320, 320, 3), np.uint8), (9, 9), 0))
    proc = subprocess.Popen(
        [sys.executable, TOOL, src, out, '--corruptions', 'glass_blur',
         'zoom_blur', '--workers', '2', '--no-progress'],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # workers started and writing
            if osp.isdir(out) and any(  # an image, not the record
                    files for r, _, files in os.walk(out) if r != out):
                break
            time.sleep(0.2)
        pids = _descendants(proc.pid)
        assert len(pids) >= 3, pids  # fork server and 2 workers (+ tracker)
        assert proc.poll() is None, 'the run ended before it was killed'
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        assert [p for p in pids if _alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def write_imagenet_val(root):
    """Two small ImageNet-val-like photos, ``<wnid>/<name>.JPEG``, one
    wider and one taller than high; returns relative paths."""
    rng = np.random.default_rng(2)
    rels = ['n01440764/ILSVRC2012_val_00000001.JPEG',
            'n01443537/ILSVRC2012_val_00000002.JPEG']
    for rel, (h, w) in zip(rels, [(50, 60), (64, 48)]):
        path = osp.join(root, rel)
        os.makedirs(osp.dirname(path), exist_ok=True)
        assert cv2.imwrite(path, cv2.GaussianBlur(
            rng.integers(0, 255, (h, w, 3), np.uint8), (5, 5), 0))
    return rels


def test_imagenet_c_recipe_resumes_with_the_marker_check(tmp_path):
    """The recipe path resumes as the generator does: a cut-short JPEG and
    a complete file of another format (PNG) are redone, stale ``.part``
    files are removed, complete JPEG files are kept."""
    from mmgfn.datasets.imagenet_c import RECIPE_FILE, regenerate_imagenet_c
    src, out = str(tmp_path / 'val'), str(tmp_path / 'imagenet-c')
    rels = write_imagenet_val(src)
    kwargs = dict(corruptions=['brightness', 'contrast'], severities=[1, 2],
                  progress=False)
    regenerate_imagenet_c(src, out, **kwargs)
    outputs = [corrupted_image_path(out, c, s, rel) for rel in rels
               for c in ('brightness', 'contrast') for s in (1, 2)]
    originals = {}
    for path in outputs:
        with open(path, 'rb') as f:
            originals[path] = f.read()
        assert originals[path][:3] == b'\xff\xd8\xff'  # JPEG data
    cut = corrupted_image_path(out, 'brightness', 2, rels[0])
    with open(cut, 'r+b') as f:  # cut short, as by a full disk
        f.truncate(len(originals[cut]) // 2)
    png = corrupted_image_path(out, 'contrast', 1, rels[1])
    # complete PNG data, as the generator's default would write it
    assert cv2.imwrite(str(tmp_path / 'x.png'), cv2.imread(png))
    os.replace(str(tmp_path / 'x.png'), png)
    kept = corrupted_image_path(out, 'contrast', 2, rels[0])
    os.utime(kept, (1, 1))
    stale = f'{corrupted_image_path(out, "contrast", 1, rels[0])}.' \
        f'{_dead_pid()}.part'
    with open(stale, 'wb') as f:
        f.write(b'partial')

    # two workers: the recipe travels to the pool's processes
    again = regenerate_imagenet_c(src, out, workers=2, **kwargs)
    for path in outputs:
        with open(path, 'rb') as f:
            assert f.read() == originals[path], path  # the same bytes again
    assert os.stat(kept).st_mtime == 1  # complete: untouched
    assert not osp.exists(stale)
    assert (again.written, again.skipped, again.redone,
            again.removed_parts, again.failures) == (2, 6, 2, 1, [])
    assert again.workers == 2
    with open(osp.join(out, RECIPE_FILE)) as f:
        assert json.load(f)['jpeg_quality'] == 85


@pytest.mark.skipif(not osp.exists('/dev/full'), reason='needs /dev/full')
def test_imagenet_c_recipe_stops_at_the_first_failed_write(tmp_path):
    """The recipe path stops at its first failed write with the
    generator's one-line error, in the function (through /dev/full) and in
    the tool (a file where a folder is needed); once the folder is fixed the
    same call writes what is missing."""
    from mmgfn.datasets.imagenet_c import (IMAGENET_C_RECIPE, RECIPE_FILE,
                                           regenerate_imagenet_c)
    src, out = str(tmp_path / 'val'), str(tmp_path / 'imagenet-c')
    rels = write_imagenet_val(src)
    kwargs = dict(corruptions=['brightness', 'contrast'], severities=[1, 2],
                  progress=False)
    with pytest.raises(ConfigError, match='imagenet-c recipe fixes the '
                       'loading and the format'):
        generate_corrupted_images(src, out, jpeg_quality=90,
                                  recipe=IMAGENET_C_RECIPE, **kwargs)
    assert not osp.exists(out)
    left = _stop_at_a_full_disk(regenerate_imagenet_c, src, out, rels[0],
                                kwargs)
    assert left == [RECIPE_FILE]  # no image written, the .part removed

    # the tool: one error line, exit status 2 (here a file stands where a
    # folder is needed, since the tool's pid is not known beforehand)
    with open(osp.join(out, 'contrast'), 'w') as f:
        f.write('x')
    args = [TOOL, src, out, '--recipe', 'imagenet-c', '--corruptions',
            'brightness', 'contrast', '--severities', '1', '2', '--workers',
            '1', '--no-progress']
    proc = run_tool_in_process(args)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if 'error' in line]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr
    assert errors[0].startswith(
        'generate_corrupted_dataset.py: error: cannot write "'
        f'{corrupted_image_path(out, "contrast", 1, rels[0])}": ')
    assert 'stopped at the first failed write' in errors[0]

    os.remove(osp.join(out, 'contrast'))  # fixed: the same call resumes
    again = regenerate_imagenet_c(src, out, **kwargs)
    assert (again.written, again.skipped, again.failures) == (6, 2, [])
    assert again.line('ImageNet-C images by the reference recipe').startswith(
        'wrote 6 ImageNet-C images by the reference recipe (2 already '
        'present, 0 failed)')
    done = sorted(osp.relpath(osp.join(r, n), out)
                  for r, _, files in os.walk(out) for n in files)
    assert done == sorted([RECIPE_FILE] + [
        osp.join(c, str(s), rel) for c in ('brightness', 'contrast')
        for s in (1, 2) for rel in rels])


def test_tool_with_the_torch_backend(tmp_path):
    """--backend torch --device cpu writes the same images as the reference
    backend within one grey level, records its backend, and a resume with
    the other backend is refused in one line, writing nothing."""
    src = str(tmp_path / 'images')
    rels = write_sources(src)
    outs = {}
    for backend in ('imagecorruptions', 'torch'):
        out = outs[backend] = str(tmp_path / backend)
        proc = run_tool_in_process([
            TOOL, src, out, '--corruptions', 'glass_blur', 'snow',
            'pixelate', 'saturate', '--severities', '2', '--backend',
            backend, '--device', 'cpu', '--no-progress'
        ])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert 'wrote 12 corrupted images' in proc.stdout
        with open(osp.join(out, 'generation.json')) as f:
            assert json.load(f)['backend'] == backend
    differ = 0
    for corruption in ('glass_blur', 'snow', 'pixelate', 'saturate'):
        for rel in rels:
            ref, new = (cv2.imread(corrupted_image_path(
                outs[b], corruption, 2, rel)).astype(int)
                for b in ('imagecorruptions', 'torch'))
            assert np.abs(ref - new).max() <= 1, (corruption, rel)
            assert np.abs(ref - cv2.imread(osp.join(src, rel))).mean() > 1
            differ += int((ref != new).sum())
    # the torch backend did run: float32 rounding moves a few values of
    # saturate's HSV round trip by one grey level
    assert differ > 0
    proc = run_tool_in_process([
        TOOL, src, outs['torch'], '--corruptions', 'fog', '--severities',
        '2', '--no-progress'
    ])
    assert proc.returncode == 2
    assert proc.stderr.strip().count('\n') == 0, proc.stderr
    assert "backend: 'torch' there, 'imagecorruptions' now" in proc.stderr
    assert not osp.exists(osp.join(outs['torch'], 'fog'))


def test_records_without_a_backend_were_made_by_imagecorruptions(tmp_path):
    src, out = str(tmp_path / 'images'), str(tmp_path / 'out')
    write_sources(src)
    kwargs = dict(corruptions=['contrast'], severities=[1], progress=False)
    assert generate_corrupted_images(src, out, **kwargs).written == 3
    path = osp.join(out, 'generation.json')
    with open(path) as f:
        record = json.load(f)
    del record['backend']  # a folder written before backends existed
    with open(path, 'w') as f:
        json.dump(record, f)
    assert generate_corrupted_images(src, out, **kwargs).skipped == 3
    with pytest.raises(ConfigError, match="backend: 'imagecorruptions' "
                       "there, 'torch' now"):
        generate_corrupted_images(src, out, backend='torch', **kwargs)
    with pytest.raises(ConfigError, match='unknown corruption backend'):
        generate_corrupted_images(src, out, backend='cupy', **kwargs)
