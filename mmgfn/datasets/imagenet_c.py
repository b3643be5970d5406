"""ImageNet-C (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019).

The released data is laid out ``<data_root>/<corruption>/<severity>/<wnid>/
*.JPEG`` (15 benchmark corruptions plus 4 held-out ones, severities 1-5,
50,000 validation images per cell). One :class:`ImageNetC` dataset is one
(corruption, severity) cell; ``tools/test_robustness.py --suite
imagenet-c`` sweeps the cells with one model.

Protocol facts kept here (Hendrycks' ``ImageNet-C/test.py`` and
``ImageNet-C/create_c/make_imagenet_c.py``):

* Evaluation: the released images are 224 x 224 and the reference only
  center-crops them to 224 (no resize); :data:`REFERENCE_TEST_PIPELINE`.
  mmpretrain's ImageNet test pipelines resize the short side to 256 first,
  which gives other numbers; ``tools/test_robustness.py --test-pipeline
  reference`` uses the reference one and records the pipeline it used.
* Regeneration: resize the short side to 256 (PIL bilinear), center-crop
  224, corrupt, ``np.uint8``, save as JPEG quality 85
  (:func:`regenerate_imagenet_c`). Regenerated files are not the released
  ones (other random draws, library versions), so AlexNet's constants,
  measured on the released files, are only marked as such there
  (:func:`inspect_imagenet_c_files`).
"""
import io
import json
import os
import os.path as osp
from typing import List, Sequence, Tuple, Union

import numpy as np

from mmgfn.registry import DATASETS
from .corruption_generation import (GenerationSummary, OutputRecipe,
                                    generate_corrupted_images)
from .benchmarks import REFERENCE_TEST_PIPELINE  # noqa: F401
from .wnid_folder import WnidFolderDataset

#: The file :func:`regenerate_imagenet_c` writes at the root of its output.
RECIPE_FILE = 'imagenet_c_recipe.json'
#: The reference recipe of the released files.
REFERENCE_RECIPE = dict(
    recipe='imagenet-c',
    resize_short_side=256,
    interpolation='PIL bilinear',
    center_crop=224,
    dtype='uint8 (np.uint8 of the corrupted image)',
    format='JPEG',
    jpeg_quality=85)


def _listing(folder: str) -> str:
    """Comma-separated sub-folders of ``folder`` (for error messages)."""
    names = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    return ', '.join(names) if names else 'none'


@DATASETS.register_module()
class ImageNetC(WnidFolderDataset):
    """One (corruption, severity) cell of ImageNet-C.

    Labels are positions in ``classes``; with the default
    ``classes='imagenet1k'`` they are the 0..999 ImageNet-1k labels of the
    wnid folders (the logit order of any ImageNet-1k checkpoint), even in a
    tree that holds only some of the 1000 folders. For a tree of another
    dataset (e.g. CIFAR-like class folders), pass the class list or None.

    Args:
        data_root (str): The ImageNet-C root that holds the corruption
            folders.
        corruption (str): Corruption folder name, e.g. ``'fog'``.
        severity (int): Severity folder, 1-5.
        classes (str | Sequence[str] | None): See
            :class:`~mmgfn.datasets.WnidFolderDataset`. Defaults to
            ``'imagenet1k'``.
        **kwargs: Passed to :class:`~mmgfn.datasets.WnidFolderDataset`
            (``pipeline``, ``test_mode``, ...); a ``data_prefix`` (e.g.
            inherited from a base config) is ignored: the cell sets it.

    Raises:
        FileNotFoundError: If ``data_root``, the corruption folder or the
            severity folder is missing; the message names the missing
            corruption/severity and what the folder holds instead.
        ValueError: For a severity outside 1-5.
    """

    def __init__(self,
                 data_root: str,
                 corruption: str,
                 severity: int,
                 classes: Union[str, Sequence[str], None] = 'imagenet1k',
                 **kwargs) -> None:
        if isinstance(severity, bool) or not isinstance(
                severity, int) or not 1 <= severity <= 5:
            raise ValueError(
                f'ImageNet-C severity must be an integer in 1-5, got '
                f'{severity!r}')
        root = osp.expanduser(data_root)
        if not osp.isdir(root):
            raise FileNotFoundError(
                f'ImageNet-C root "{data_root}" does not exist')
        if not osp.isdir(osp.join(root, corruption)):
            raise FileNotFoundError(
                f'corruption "{corruption}" is missing: "'
                f'{osp.join(data_root, corruption)}" does not exist '
                f'(found: {_listing(root)})')
        if not osp.isdir(osp.join(root, corruption, str(severity))):
            raise FileNotFoundError(
                f'severity {severity} of corruption "{corruption}" is '
                f'missing: "{osp.join(data_root, corruption, str(severity))}'
                f'" does not exist (found severities: '
                f'{_listing(osp.join(root, corruption))})')
        kwargs.pop('data_prefix', None)  # set by the cell
        self.corruption = corruption
        self.severity = severity
        super().__init__(
            data_root=data_root,
            data_prefix=f'{corruption}/{severity}',
            classes=classes,
            **kwargs)

    def load_data_list(self) -> list:
        """Image paths and labels, each tagged with the cell."""
        data_list = super().load_data_list()
        for info in data_list:
            info['corruption'] = self.corruption
            info['severity'] = self.severity
        return data_list


# ------------------------------------------------------ regeneration ---
def reference_crop(img):
    """Resize the short side to 256 (PIL bilinear) and center-crop 224, as
    ``trn.Compose([trn.Resize(256), trn.CenterCrop(224)])`` does.

    Args:
        img (PIL.Image.Image): An RGB image.

    Returns:
        PIL.Image.Image: The ``224 x 224`` RGB crop.
    """
    from PIL import Image
    w, h = img.size
    if w < h:
        size = (256, int(256 * h / w))
    else:
        size = (int(256 * w / h), 256)
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
    return img.crop((left, top, left + 224, top + 224))


def load_reference_crop(path: str) -> np.ndarray:
    """Read a clean ImageNet image as the reference recipe does: PIL,
    converted to RGB, :func:`reference_crop`.

    Args:
        path (str): The image file.

    Returns:
        np.ndarray: ``224 x 224 x 3`` uint8 BGR (the channel order
        :class:`~mmgfn.datasets.transforms.ImageCorruption` expects).
    """
    from PIL import Image
    with Image.open(path) as im:
        rgb = np.asarray(reference_crop(im.convert('RGB')))
    return np.ascontiguousarray(rgb[..., ::-1])


def encode_reference_jpeg(img: np.ndarray) -> bytes:
    """``np.uint8`` of a corrupted image, saved by PIL as JPEG quality 85
    (``optimize=True``), as the reference recipe saves its files.

    Args:
        img (np.ndarray): ``H x W x 3`` BGR, values in 0-255.

    Returns:
        bytes: The JPEG file.
    """
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.uint8(img[..., ::-1])).save(
        buf, format='JPEG', quality=85, optimize=True)
    return buf.getvalue()


#: The reference recipe as a recipe of the corruption generator.
IMAGENET_C_RECIPE = OutputRecipe(
    name='imagenet-c',
    load=load_reference_crop,
    encode=encode_reference_jpeg,
    fmt='jpeg',
    record_file=RECIPE_FILE,
    record=REFERENCE_RECIPE)


def regenerate_imagenet_c(src_dir: str,
                          out_dir: str,
                          corruptions: Sequence[str],
                          severities: Sequence[int] = (1, 2, 3, 4, 5),
                          workers: int = 1,
                          seed: int = 0,
                          progress: bool = True) -> GenerationSummary:
    """Regenerate ImageNet-C from ImageNet val by the reference recipe.

    Every image ``src_dir/<wnid>/<name>`` becomes ``out_dir/<corruption>/
    <severity>/<wnid>/<name>``: short side resized to 256 (PIL bilinear),
    center-cropped to 224, corrupted by :class:`ImageCorruption` (seeded
    with ``seed`` and ``<src_dir>/<wnid>/<name>``), ``np.uint8`` and saved
    as JPEG quality 85 (Hendrycks' ``make_imagenet_c.py``), whatever the
    name's extension. ``out_dir/imagenet_c_recipe.json`` records the
    recipe, so that ``tools/test_robustness.py`` marks AlexNet-normalised
    numbers on these files as regenerated.

    This is :func:`~mmgfn.datasets.corruption_generation.
    generate_corrupted_images` with :data:`IMAGENET_C_RECIPE`: the same
    resuming (outputs that are not complete JPEG files are redone, stale
    ``*.part`` files removed), the same stop at the first failed write and
    the same workers, which exit with the caller.

    Args:
        src_dir (str): ImageNet val, ``<wnid>/*.JPEG``.
        out_dir (str): Output root (not inside ``src_dir``).
        corruptions (Sequence[str]): Corruption names.
        severities (Sequence[int]): Among 1-5. Defaults to all five.
        workers (int): Worker processes. Defaults to 1.
        seed (int): Seed of the random corruptions. Defaults to 0.
        progress (bool): Show a tqdm progress bar on stderr. Defaults to
            True.

    Returns:
        GenerationSummary: Counts, time and per-image failures (``"<image>
        (<corruption> <severity>): <error>"``, or ``"<image>
        (<corruption>): <error>"`` for a source that cannot be read).

    Raises:
        FileNotFoundError: If ``src_dir`` does not exist.
        ConfigError: For bad settings (see
            :func:`~mmgfn.datasets.corruption_generation.
            check_generation_args`), ``out_dir`` inside ``src_dir`` or no
            image found.
        OutputWriteError: At the first file that cannot be written.
    """
    return generate_corrupted_images(
        src_dir,
        out_dir,
        corruptions=corruptions,
        severities=severities,
        workers=workers,
        seed=seed,
        progress=progress,
        recipe=IMAGENET_C_RECIPE)


def inspect_imagenet_c_files(root: str,
                             cells: Sequence[Tuple[str, int]]) -> dict:
    """Whether the files of some ImageNet-C cells look like the released
    ones, on which AlexNet's constants were measured.

    Reads the first image (sorted) of each cell folder: the released files
    are 224 x 224 JPEG data.

    Args:
        root (str): The ImageNet-C root.
        cells (Sequence[tuple[str, int]]): ``(corruption, severity)``.

    Returns:
        dict: ``kind``: ``'released'`` (JPEG, 224 x 224, no recipe file),
        ``'regenerated'`` (``imagenet_c_recipe.json`` at the root, with the
        reference recipe; ``recipe`` holds it) or ``'re-encoded'`` (a file
        that is not 224 x 224 JPEG data; ``reason`` names it).
    """
    import cv2
    for corruption, severity in cells:
        folder = osp.join(root, corruption, str(severity))
        first = None
        for dirpath, dirs, files in os.walk(folder):
            dirs.sort()
            if files:
                first = osp.join(dirpath, sorted(files)[0])
                break
        if first is None:
            continue
        with open(first, 'rb') as f:
            head = f.read(3)
        if head != b'\xff\xd8\xff':
            return dict(kind='re-encoded',
                        reason=f'"{first}" does not hold JPEG data, so the '
                        'files are not the released ImageNet-C')
        img = cv2.imread(first)
        if img is None or img.shape[:2] != (224, 224):
            size = 'unreadable' if img is None else \
                f'{img.shape[1]}x{img.shape[0]}'
            return dict(kind='re-encoded',
                        reason=f'"{first}" is {size}, not 224x224, so the '
                        'files are not the released ImageNet-C')
    recipe_file = osp.join(root, RECIPE_FILE)
    if osp.isfile(recipe_file):
        with open(recipe_file, encoding='utf-8') as f:
            recipe = json.load(f)
        return dict(kind='regenerated', recipe=recipe)
    return dict(kind='released')
