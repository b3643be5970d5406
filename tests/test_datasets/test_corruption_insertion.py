"""A corrupted test pipeline yields the image corrupted at the asked severity.

``mmgfn.apis.insert_corruption`` (used by ``tools/test_robustness.py
--suite corrupt`` and the analysis tools) puts ``mmgfn.ImageCorruption``
right after ``LoadImageFromFile``; what the model receives must equal the
file's pixels passed through ``imagecorruptions`` at that corruption and
severity, computed here directly from the library.
"""
import cv2
import numpy as np
import pytest
from imagecorruptions import corrupt
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope, init_default_scope

from conftest import DIGITS_CONFIG, make_image
from mmgfn.apis import insert_corruption
from mmgfn.utils.errors import ConfigError


def _expected(path: str, corruption: str, severity: int) -> np.ndarray:
    """``imagecorruptions`` on the file's RGB pixels, back to BGR uint8."""
    rgb = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]
    out = corrupt(np.ascontiguousarray(rgb), corruption_name=corruption,
                  severity=severity)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)[..., ::-1]


@pytest.mark.parametrize('severity', [2, 5])
def test_pipeline_output_is_the_file_corrupted_at_that_severity(
        tmp_path, severity):
    # brightness is deterministic and works in HSV, so it also tells RGB
    # from BGR; a 48 x 40 image tells height from width
    path = str(tmp_path / 'img.png')
    img = make_image(0, np.random.default_rng(0), size=48)[:, :40]
    cv2.imwrite(path, np.ascontiguousarray(img))
    pipeline = Config.fromfile(DIGITS_CONFIG).test_dataloader.dataset.pipeline
    corrupted = insert_corruption(pipeline, 'brightness', severity)
    names = [t['type'] for t in corrupted]
    assert names == ['mmpretrain.LoadImageFromFile', 'mmgfn.ImageCorruption',
                     'mmpretrain.PackInputs']
    assert corrupted[1]['severity'] == severity
    assert [t['type'] for t in pipeline] == [names[0], names[2]]  # a copy
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    out = Compose(corrupted)(dict(img_path=path))
    got = out['inputs'].numpy().transpose(1, 2, 0)  # CHW -> HWC, BGR
    expected = _expected(path, 'brightness', severity)
    other = _expected(path, 'brightness', 6 - severity)
    assert got.shape == (48, 40, 3)
    assert not np.array_equal(expected, other)
    np.testing.assert_array_equal(got, expected)


def test_pipeline_without_a_loader_is_refused():
    with pytest.raises(ConfigError, match='no LoadImageFromFile step'):
        insert_corruption([dict(type='mmpretrain.PackInputs')], 'fog', 3)
