"""mmgfn.datasets.corruptions: every corruption against imagecorruptions on
real image files with shared random draws (within one grey level), torch
draws reproducible and with the noise statistics computed by hand, the
transform's torch backend, bad input."""
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from conftest import make_image, run_tool, run_tool_in_process
from imagecorruptions import corrupt as reference_corrupt
from mmcv.transforms import LoadImageFromFile

from mmgfn.datasets.corruptions import (CORRUPTION_FUNCTIONS,
                                        SEEDED_CORRUPTIONS, corrupt,
                                        to_uint8)
from mmgfn.datasets.corruptions.digital import pixelate_torch
from mmgfn.datasets.corruptions.glass_shuffle import shuffle_pixels
from mmgfn.datasets.corruptions.ops import gaussian_filter, host_map
from mmgfn.datasets.transforms import ImageCorruption
from mmgfn.datasets.transforms.corruption import ALL_CORRUPTIONS


@pytest.fixture(scope='module')
def image_files(tmp_path_factory):
    """A 32 x 32 striped image and a 64 x 96 photo, written as PNG files;
    returns their paths."""
    import skimage.data
    root = tmp_path_factory.mktemp('corruption_images')
    small = make_image(1, np.random.default_rng(3), size=32)
    photo = cv2.resize(
        np.ascontiguousarray(skimage.data.coffee()[..., ::-1]), (96, 64),
        interpolation=cv2.INTER_AREA)
    paths = [str(root / 'digit.png'), str(root / 'photo.png')]
    for path, img in zip(paths, (small, photo)):
        assert cv2.imwrite(path, img)
    return paths


def read_rgb(path):
    return np.ascontiguousarray(cv2.imread(path)[..., ::-1])


def both(rgb, name, severity, dtype=torch.float64, np_seed=11):
    """(reference, torch) uint8 outputs with the same numpy draws."""
    kwargs = dict(seed=5) if name in SEEDED_CORRUPTIONS else {}
    np.random.seed(np_seed)
    ref = reference_corrupt(rgb, corruption_name=name, severity=severity,
                            **kwargs)
    np.random.seed(np_seed)
    images = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    out = corrupt(images, name, severity, draws='numpy', dtype=dtype,
                  **kwargs)
    return ref, to_uint8(out)[0].permute(1, 2, 0).numpy()


def test_names_and_order_match_the_transform():
    assert tuple(CORRUPTION_FUNCTIONS) == ALL_CORRUPTIONS


@pytest.mark.parametrize('name', ALL_CORRUPTIONS)
def test_every_corruption_matches_imagecorruptions(image_files, name):
    """Every severity on the 32 x 32 file and on the 64 x 96 photo: at
    most one grey level apart (float rounding before the uint8 cast), and
    on fewer than 1% of the values."""
    for path in image_files:
        rgb = read_rgb(path)
        for severity in (1, 2, 3, 4, 5):
            ref, out = both(rgb, name, severity)
            assert out.shape == ref.shape == rgb.shape
            diff = np.abs(out.astype(int) - ref)
            where = f'{name} severity {severity} on {osp.basename(path)}'
            assert diff.max() <= 1, where
            assert (diff > 0).mean() < 0.01, where
            if name not in ('brightness', 'contrast', 'saturate'):
                # the corruption did something (not the identity)
                assert np.abs(ref.astype(int) - rgb).mean() > 0.5, where


@pytest.mark.parametrize('name', ('defocus_blur', 'saturate', 'frost',
                                  'elastic_transform'))
def test_float32_stays_within_one_grey_level(image_files, name):
    rgb = read_rgb(image_files[1])
    ref, out = both(rgb, name, 3, dtype=torch.float32)
    assert np.abs(out.astype(int) - ref).max() <= 1


def test_batches_draw_image_after_image(image_files):
    """draws='numpy' on a batch = the reference on each image in turn."""
    rgb = read_rgb(image_files[0])
    batch = torch.from_numpy(np.stack([rgb, rgb[::-1].copy()])).permute(
        0, 3, 1, 2)
    np.random.seed(4)
    refs = [reference_corrupt(img, corruption_name='snow', severity=2)
            for img in (rgb, rgb[::-1].copy())]
    np.random.seed(4)
    out = to_uint8(corrupt(batch, 'snow', 2, draws='numpy',
                           dtype=torch.float64)).permute(0, 2, 3, 1).numpy()
    for i in range(2):
        assert np.abs(out[i].astype(int) - refs[i]).max() <= 1


def test_pixelate_and_jpeg_are_exact(image_files):
    """Pixelate (Pillow on the CPU) and JPEG (Pillow encode, OpenCV decode)
    equal imagecorruptions bit for bit, from uint8 and from float input,
    and pixelate's torch twin (what runs off the CPU) does too, on the
    files and on an odd-sized crop of the photo."""
    photo = read_rgb(image_files[1])
    for rgb in (read_rgb(image_files[0]), photo,
                np.ascontiguousarray(photo[3:56, 5:80])):
        images = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        for severity in (1, 2, 3, 4, 5):
            for name in ('pixelate', 'jpeg_compression'):
                ref = torch.from_numpy(np.array(reference_corrupt(
                    rgb, corruption_name=name, severity=severity))).permute(
                        2, 0, 1)[None].float()
                where = f'{name} severity {severity} on {rgb.shape}'
                for x in (images, images.float()):
                    out = corrupt(x, name, severity)
                    assert out.dtype == torch.float32
                    assert torch.equal(out, ref), where
                    if name == 'pixelate':
                        assert torch.equal(pixelate_torch(x, severity),
                                           ref), where


@pytest.mark.parametrize('mode', ('nearest', 'symmetric'))
def test_gaussian_filter_is_scipy_bit_for_bit(mode):
    """In float64 the separable filter sums its taps in scipy's order
    (centre, then symmetric pairs from the outside in): bit-identical to
    scipy.ndimage.gaussian_filter, across CPU chunks (three 600 x 620
    float64 planes of 2.9 MB: one plane per chunk)."""
    from scipy import ndimage
    x = np.random.default_rng(0).random((3, 600, 620))
    scipy_mode = dict(nearest='nearest', symmetric='reflect')[mode]
    for sigma in (0.7, 3.0, (1.5, 2.5)):
        ref = np.stack([
            ndimage.gaussian_filter(p, sigma, mode=scipy_mode, truncate=4.0)
            for p in x
        ])
        out = gaussian_filter(torch.from_numpy(x), sigma, mode=mode)
        assert out.is_contiguous()
        assert np.array_equal(out.numpy(), ref), sigma


def test_glass_shuffle_is_the_forks_kernel_in_threads(image_files):
    """mmgfn's nogil version of the fork's numba loop (on C x H x W
    planes), run on a batch in threads, shuffles every image exactly as the
    fork's kernel does with the same seed; a batch through glass blur equals the reference image
    by image with its own seed."""
    from imagecorruptions.corruptions import \
        _shuffle_pixels_njit_glass_blur as fork_kernel
    rgb = read_rgb(image_files[1])
    host = np.stack([rgb, rgb[::-1], rgb[:, ::-1], rgb]).copy()
    seeds = [1, 2**62 + 5, 7, 8]
    for c in ((0.7, 1, 2), (1, 2, 3), (1.5, 4, 2)):
        refs = [fork_kernel(64, 96, img.copy(), c, s)
                for img, s in zip(host, seeds)]
        mine = np.ascontiguousarray(host.transpose(0, 3, 1, 2))
        host_map(lambda i: shuffle_pixels(mine[i], c[1], c[2], seeds[i]),
                 range(4))
        mine = mine.transpose(0, 2, 3, 1)
        for i in range(4):
            assert np.array_equal(mine[i], refs[i]), (c, i)
        assert not np.array_equal(mine[0], mine[3])  # seeds 1 and 8
    batch = torch.from_numpy(host[:2]).permute(0, 3, 1, 2)
    out = to_uint8(corrupt(batch, 'glass_blur', 3, draws='numpy',
                           seed=[5, 6], dtype=torch.float64))
    for i, s in enumerate((5, 6)):
        ref = reference_corrupt(host[i], corruption_name='glass_blur',
                                severity=3, seed=s)
        diff = np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, i
    # torch draws: one seed per image of the batch
    twins = torch.from_numpy(np.stack([rgb, rgb])).permute(0, 3, 1, 2)
    out = corrupt(twins, 'glass_blur', 3, torch.Generator().manual_seed(0))
    assert not torch.equal(out[0], out[1])


def _host_map_in_child(queue):
    queue.put(host_map(lambda i: i * i, range(6)))


def test_host_map_works_in_a_forked_child():
    """The host threads' pool is made anew in a forked child (the
    generator's workers): a pool inherited from the parent has no threads
    and would wait forever."""
    import multiprocessing as mp
    if torch.get_num_threads() < 2:
        pytest.skip('host_map runs inline with one torch thread')
    assert host_map(lambda i: i + 1, range(4)) == [1, 2, 3, 4]  # the pool
    ctx = mp.get_context('fork')
    queue = ctx.Queue()
    child = ctx.Process(target=_host_map_in_child, args=(queue, ))
    child.start()
    child.join(20)
    if child.is_alive():
        child.kill()
        pytest.fail('host_map hung in a forked child')
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [0, 1, 4, 9, 16, 25]


def test_torch_draws_are_reproducible_from_the_generator(image_files):
    images = torch.from_numpy(read_rgb(image_files[1])).permute(2, 0,
                                                                1)[None]
    images = images.repeat(2, 1, 1, 1)
    for name in ALL_CORRUPTIONS:
        outs = [corrupt(images, name, 3, torch.Generator().manual_seed(s))
                for s in (1, 1, 2)]
        assert torch.equal(outs[0], outs[1]), name
        random = name not in ('defocus_blur', 'zoom_blur', 'brightness',
                              'contrast', 'pixelate', 'jpeg_compression',
                              'gaussian_blur', 'saturate')
        assert (not torch.equal(outs[0], outs[2])) == random, name
        if name == 'gaussian_noise':  # two images, two different draws
            assert not torch.equal(outs[0][0], outs[0][1])


def test_torch_draws_do_not_depend_on_the_thread_count(image_files):
    """The host threads (glass blur's swaps, the CPU Poisson blocks) do not
    change what a seeded generator gives; the Poisson blocks draw from
    generators of their own (a grey 3 x 512 x 512 image is three blocks)."""
    photo = torch.from_numpy(read_rgb(image_files[1])).permute(2, 0, 1)
    grey = torch.full((1, 3, 512, 512), 128, dtype=torch.uint8)
    cases = (('shot_noise', grey), ('glass_blur', photo[None].repeat(
        3, 1, 1, 1)), ('fog', photo[None].repeat(3, 1, 1, 1)))
    before = torch.get_num_threads()
    outs = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, images in cases:
                outs[name, threads] = corrupt(
                    images, name, 2, torch.Generator().manual_seed(7))
    finally:
        torch.set_num_threads(before)
    for name, _ in cases:
        assert torch.equal(outs[name, 1], outs[name, 2]), name
    blocks = outs['shot_noise', 1].reshape(3, -1)
    assert not torch.equal(blocks[0], blocks[1])


def test_torch_draws_have_the_noise_statistics():
    """On a grey 128 image (x = 128/255): gaussian noise of severity 1 has
    std 0.08 * 255 = 20.4; shot noise of severity 1 (c = 60) has std
    sqrt(x / c) * 255 = sqrt(0.50196 / 60) * 255 = 23.32; impulse noise of
    severity 5 flips 27% of the values, half to 0 and half to 255."""
    grey = torch.full((2, 3, 128, 128), 128, dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    gauss = corrupt(grey, 'gaussian_noise', 1, gen) - 128
    assert abs(gauss.std().item() - 20.4) < 0.3
    assert abs(gauss.mean().item()) < 0.3
    shot = corrupt(grey, 'shot_noise', 1, gen)
    assert abs(shot.std().item() - 23.32) < 0.4
    assert abs(shot.mean().item() - 128) < 0.4
    imp = corrupt(grey, 'impulse_noise', 5, gen)
    assert abs((imp == 255).float().mean().item() - 0.135) < 0.01
    assert abs((imp == 0).float().mean().item() - 0.135) < 0.01


@pytest.mark.parametrize('name', ('gaussian_noise', 'glass_blur',
                                  'impulse_noise', 'fog', 'pixelate'))
def test_transform_torch_backend_matches_the_reference(image_files, name):
    """ImageCorruption(backend='torch') seeds and draws as the reference
    backend: the same image within one grey level."""
    results = LoadImageFromFile()(dict(img_path=image_files[1]))
    ref = ImageCorruption(name, 4)(dict(results))['img']
    torch_t = ImageCorruption(name, 4, backend='torch')
    out = torch_t(dict(results))['img']
    assert out.dtype == np.uint8 and out.shape == ref.shape
    assert np.abs(out.astype(int) - ref).max() <= 1
    assert np.abs(ref.astype(int) - results['img']).mean() > 0.5
    assert "backend='torch'" in repr(torch_t)


def test_transform_torch_backend_is_what_runs(image_files):
    """float32 rounding of saturate's HSV round trip moves some values of
    the photo by one grey level: the torch backend's output is its own."""
    results = LoadImageFromFile()(dict(img_path=image_files[1]))
    ref = ImageCorruption('saturate', 3)(dict(results))['img'].astype(int)
    out = ImageCorruption('saturate', 3, backend='torch')(
        dict(results))['img']
    diff = np.abs(out - ref)
    assert diff.max() == 1 and (diff > 0).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_the_reference(image_files):
    rgb = read_rgb(image_files[1])
    for name in ALL_CORRUPTIONS:
        kwargs = dict(seed=5) if name in SEEDED_CORRUPTIONS else {}
        np.random.seed(3)
        ref = reference_corrupt(rgb, corruption_name=name, severity=3,
                                **kwargs)
        np.random.seed(3)
        images = torch.from_numpy(rgb).permute(2, 0, 1)[None].cuda()
        out = to_uint8(corrupt(images, name, 3, draws='numpy', **kwargs))
        assert out.is_cuda
        out = out[0].permute(1, 2, 0).cpu().numpy()
        assert np.abs(out.astype(int) - ref).max() <= 1, name


def test_bad_input():
    img = torch.zeros((1, 3, 32, 32), dtype=torch.uint8)
    cases = (
        (dict(images=img, corruption='rain', severity=1),
         'unknown corruption "rain"'),
        (dict(images=img, corruption='fog', severity=6), 'severity must be'),
        (dict(images=img, corruption='fog', severity=1, draws='np'),
         'draws must be one of'),
        (dict(images=img[:, :1], corruption='fog', severity=1),
         r'N x 3 x H x W \(RGB\), got shape \(1, 1, 32, 32\)'),
        (dict(images=img[..., :31], corruption='fog', severity=1),
         'images are 31x32 pixels'),
        (dict(images=img, corruption='glass_blur', severity=1,
              draws='numpy', seed=[1, 2]), '2 seeds for 1 images'),
    )
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            corrupt(**kwargs)
    with pytest.raises(ValueError, match='unknown corruption backend "jax"'):
        ImageCorruption('fog', 1, backend='jax')


def test_fidelity_tool_writes_the_table(tmp_path):
    out = tmp_path / 'fidelity.md'
    proc = run_tool_in_process([
        'tools/analysis_tools/corruption_fidelity.py', '--corruptions',
        'contrast', 'motion_blur', '--severities', '2', '5',
        '--num-digits', '2', '--photo-size', '128', '96', '--out',
        str(out), '--work-dir',
        str(tmp_path / 'images')
    ])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r'^\| (\w+) \| (\d) / ([0-9.]+) \| (\d) / ([0-9.]+) '
                      r'\| ([0-9.]+)% \|$', proc.stdout, re.M)
    assert [r[0] for r in rows] == ['contrast', 'motion_blur'], proc.stdout
    for row in rows:
        assert int(row[1]) <= 1 and int(row[3]) <= 1
        assert float(row[2]) < 0.01 and float(row[4]) < 0.01
    assert out.read_text().count('\n| ') == 3  # header and two rows
    # the images it compared on are real files: 2 digits and 2 photos
    assert sorted(p.name for p in (tmp_path / 'images').iterdir()) == [
        'digit_0.png', 'digit_1.png', 'photo_128x96.png', 'photo_96x64.png'
    ]
    # the process: exit status 2 and the error on stderr
    bad = run_tool(['tools/analysis_tools/corruption_fidelity.py',
                    '--corruptions', 'rain'])
    assert bad.returncode == 2
    assert 'unknown corruption(s) rain' in bad.stderr
