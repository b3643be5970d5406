"""ImageCorruption: all benchmark corruptions on real image data."""
import numpy as np
import pytest
from conftest import make_image

from mmgfn.datasets.transforms import ImageCorruption
from mmgfn.datasets.transforms.corruption import (ALL_CORRUPTIONS,
                                                  BENCHMARK_CORRUPTIONS)


def _results(img, path='img.png'):
    return dict(img=img.copy(), img_path=path, img_shape=img.shape[:2])


@pytest.fixture
def image():
    return make_image(1, np.random.default_rng(0), size=48)


def test_lists():
    assert len(BENCHMARK_CORRUPTIONS) == 15
    assert len(ALL_CORRUPTIONS) == 19 == len(set(ALL_CORRUPTIONS))


@pytest.mark.parametrize('corruption', ALL_CORRUPTIONS)
def test_every_corruption_changes_image_and_keeps_format(corruption, image):
    out = ImageCorruption(corruption, 3)(_results(image))
    img = out['img']
    assert img.shape == image.shape and img.dtype == np.uint8
    assert np.abs(img.astype(int) - image.astype(int)).mean() > 0.5
    assert out['corruption'] == corruption and out['severity'] == 3


def test_severity_zero_is_clean(image):
    out = ImageCorruption('gaussian_noise', 0)(_results(image))
    assert np.array_equal(out['img'], image)


def test_severity_increases_damage(image):
    diffs = [
        np.abs(
            ImageCorruption('gaussian_noise', s)(_results(image))
            ['img'].astype(int) - image.astype(int)).mean()
        for s in (1, 3, 5)
    ]
    assert diffs[0] < diffs[1] < diffs[2]


@pytest.mark.parametrize(
    'corruption',
    ['shot_noise', 'impulse_noise', 'glass_blur', 'snow', 'spatter'])
def test_seeded_corruption_is_reproducible_and_keeps_global_rng(
        image, corruption):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = ImageCorruption(corruption, 4)(_results(image, 'a.png'))['img']
    b = ImageCorruption(corruption, 4)(_results(image, 'a.png'))['img']
    c = ImageCorruption(corruption, 4)(_results(image, 'c.png'))['img']
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)  # the path seeds a different draw
    assert np.array_equal(np.random.get_state()[1], before)


def test_grey_image_becomes_three_channels():
    grey = np.full((40, 40), 128, np.uint8)
    out = ImageCorruption('contrast', 2)(_results(grey))
    assert out['img'].shape == (40, 40, 3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match='no_such'):
        ImageCorruption('no_such', 1)
    with pytest.raises(ValueError, match='severity'):
        ImageCorruption('fog', 6)
    small = np.zeros((16, 40, 3), np.uint8)
    with pytest.raises(ValueError, match='tiny.png.*40x16'):
        ImageCorruption('fog', 1)(_results(small, 'tiny.png'))


@pytest.mark.parametrize('corruption', ['shot_noise', 'impulse_noise'])
def test_seed_selects_the_draw(image, corruption):
    """Two seeds give two draws for the same image; each is reproducible."""
    a0 = ImageCorruption(corruption, 3, seed=0)(_results(image))['img']
    a1 = ImageCorruption(corruption, 3, seed=1)(_results(image))['img']
    b1 = ImageCorruption(corruption, 3, seed=1)(_results(image))['img']
    assert np.array_equal(a1, b1)
    assert not np.array_equal(a0, a1)
