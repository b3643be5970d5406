"""Write corrupted copies of an image folder ("X-C"), in parallel and
resumably.

Corrupting on the fly costs the same for every evaluated model, and some
corruptions are slow on detection-sized images; pre-generating them once
makes each evaluation read files instead. The layout is the one the
robustness tools read with ``--corrupted-root``::

    <out_dir>/<corruption>/<severity>/<path of the image under src_dir>

Pixels: every image is loaded as mmcv's ``LoadImageFromFile`` loads it
(``mmcv.imfrombytes`` with ``color_type``, cv2 backend) and corrupted by
:class:`mmgfn.datasets.transforms.ImageCorruption` itself, whose random
draws are seeded with ``seed`` and the image path; with the same seed and
path the file holds exactly the pixels the on-the-fly transform gives.
The path that seeds an image is ``osp.join(seed_path_root, <relative
path>)``, ``seed_path_root`` defaulting to ``src_dir`` as given: set it to
the dataset's ``data_root`` joined with its image prefix (the ``img_path``
mmdet/mmpretrain build) when the two spell the folder differently.

File format: by default every output is lossless PNG data, written under the
source's file name, extension included (``x.jpg`` holds PNG data), so that
the layout above maps each source image to exactly one corrupted file and
the pixels equal the transform's; mmcv, OpenCV and PIL decode by content,
not by name (mmcv's ``turbojpeg`` backend does not). ``jpeg_quality``
instead re-encodes sources with a ``.jpg``/``.jpeg`` name as JPEG, as
ImageNet-C's files are: smaller, but the re-encoding changes pixels (and
``jpeg_compression`` is then compressed twice).

Resuming: each file is written to ``<name>.<pid>.part`` and renamed into
place, which is atomic, so an existing output is complete and is skipped on
the next run; ``*.part`` files are leftovers of an interrupted run.
"""
import json
import multiprocessing
import os
import os.path as osp
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmgfn.utils.preflight import ConfigError
from .transforms.corruption import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS,
                                   ImageCorruption)

#: Source files (lower-case extensions) that are read as images.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: ``color_type`` values of ``LoadImageFromFile`` that give 3 channels.
COLOR_TYPES = ('color', 'color_ignore_orientation')


@dataclass
class GenerationSummary:
    """What one run did.

    Attributes:
        written (int): Corrupted images written.
        skipped (int): Outputs that already existed (resumed).
        seconds (float): Wall time of the corrupting and writing, worker
            start-up included.
        workers (int): Worker processes used.
        failures (List[str]): ``"<image> (<corruption> <severity>):
            <error>"`` per image that could not be corrupted.
    """
    written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    workers: int = 1
    failures: List[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Written images per second of wall time."""
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary the tool prints."""
        return (f'wrote {self.written} corrupted images ({self.skipped} '
                f'already present, {len(self.failures)} failed) in '
                f'{self.seconds:.1f} s: {self.images_per_second:.2f} '
                f'images/s with {self.workers} worker(s)')


def corrupted_image_path(out_dir: str, corruption: str, severity: int,
                         rel_path: str) -> str:
    """``<out_dir>/<corruption>/<severity>/<rel_path>``."""
    return osp.join(out_dir, corruption, str(severity), rel_path)


def list_source_images(src_dir: str,
                       ann_file: Optional[str] = None) -> List[str]:
    """Relative paths of the images to corrupt, sorted.

    Args:
        src_dir (str): The image folder.
        ann_file (str, optional): A COCO json whose ``images[].file_name``
            (relative to ``src_dir``) restrict the set. Defaults to None
            (every image under ``src_dir``, recursively).

    Returns:
        List[str]: Paths relative to ``src_dir``.

    Raises:
        ConfigError: If ``ann_file`` is not a COCO json, or lists images
            that do not exist (the message names them), or no image is
            found.
    """
    if ann_file is not None:
        try:
            with open(ann_file) as f:
                names = [img['file_name'] for img in json.load(f)['images']]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f'--ann-file "{ann_file}" is not a COCO json '
                              f'with images[].file_name ({exc})')
        rels = sorted(set(names))
        missing = [r for r in rels if not osp.isfile(osp.join(src_dir, r))]
        if missing:
            raise ConfigError(
                f'{len(missing)} image(s) listed in "{ann_file}" are not '
                f'under "{src_dir}": {", ".join(missing[:10])}' +
                (' ...' if len(missing) > 10 else ''))
    else:
        rels = []
        for root, dirs, files in os.walk(src_dir):
            dirs.sort()
            rels += [
                osp.relpath(osp.join(root, n), src_dir) for n in files
                if osp.splitext(n)[1].lower() in IMG_EXTENSIONS
            ]
        rels.sort()
    if not rels:
        raise ConfigError(f'no image found in "{src_dir}"')
    return rels


# settings of the worker processes (set by _init_worker)
_WORKER: Dict[str, object] = {}


def _init_worker(src_dir: str,
                 out_dir: str,
                 seed: int,
                 seed_root: str,
                 color_type: str,
                 jpeg_quality: Optional[int],
                 single_thread: bool = True) -> None:
    """Store the run's settings; in a pool worker, keep OpenCV to one
    thread so that the workers do not oversubscribe the cores."""
    if single_thread:
        import cv2
        cv2.setNumThreads(1)
    _WORKER.update(
        src_dir=src_dir,
        out_dir=out_dir,
        seed=seed,
        seed_root=seed_root,
        color_type=color_type,
        jpeg_quality=jpeg_quality)


def load_image(path: str, color_type: str = 'color'):
    """Load an image as mmcv's ``LoadImageFromFile`` does (cv2 backend).

    Returns:
        np.ndarray: ``H x W x 3`` uint8 BGR.
    """
    import mmcv
    with open(path, 'rb') as f:
        img = mmcv.imfrombytes(f.read(), flag=color_type, backend='cv2')
    if img is None:
        raise ValueError(f'{path} is not a readable image')
    return img


def encode_image(img, rel_path: str, jpeg_quality: Optional[int]) -> bytes:
    """PNG bytes (lossless), or JPEG bytes for ``.jpg``/``.jpeg`` names if
    ``jpeg_quality`` is set."""
    import cv2
    is_jpeg = osp.splitext(rel_path)[1].lower() in ('.jpg', '.jpeg')
    if jpeg_quality is not None and is_jpeg:
        ok, buf = cv2.imencode('.jpg', img,
                               [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, buf = cv2.imencode('.png', img)
    if not ok:
        raise RuntimeError(f'could not encode {rel_path}')
    return buf.tobytes()


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.part'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def _corrupt_task(task: Tuple[str, str, Tuple[int, ...]]
                  ) -> Tuple[int, List[str]]:
    """Corrupt one image with one corruption at the given severities.

    Returns:
        Tuple[int, List[str]]: Images written and failure messages.
    """
    rel, corruption, severities = task
    w = _WORKER
    src = osp.join(w['src_dir'], rel)
    key_path = osp.join(w['seed_root'], rel)
    written, failures = 0, []
    try:
        img = load_image(src, w['color_type'])
    except Exception as exc:  # noqa: BLE001 - reported per image
        return 0, [f'{src} ({corruption}): {exc}']
    for severity in severities:
        try:
            out = ImageCorruption(corruption, severity, w['seed']).transform(
                dict(img=img, img_path=key_path))['img']
            write_atomic(
                corrupted_image_path(w['out_dir'], corruption, severity, rel),
                encode_image(out, rel, w['jpeg_quality']))
            written += 1
        except Exception as exc:  # noqa: BLE001 - reported per image
            failures.append(f'{src} ({corruption} {severity}): {exc}')
    return written, failures


def check_generation_args(corruptions: Sequence[str],
                          severities: Sequence[int], workers: int,
                          color_type: str,
                          jpeg_quality: Optional[int]) -> None:
    """Raise ConfigError for settings that cannot work."""
    unknown = [c for c in corruptions if c not in ALL_CORRUPTIONS]
    if unknown or not corruptions:
        raise ConfigError(f'unknown corruption(s) {", ".join(unknown)}; '
                          f'expected some of {", ".join(ALL_CORRUPTIONS)}')
    bad = [s for s in severities if s not in (1, 2, 3, 4, 5)]
    if bad or not severities:
        raise ConfigError(f'severities must be among 1-5, got '
                          f'{list(severities)} (severity 0, the clean image, '
                          'is read from the source folder)')
    if workers < 1:
        raise ConfigError(f'--workers must be at least 1, got {workers}')
    if color_type not in COLOR_TYPES:
        raise ConfigError(f'color type must be one of {COLOR_TYPES}, got '
                          f'"{color_type}"')
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ConfigError(f'--jpeg-quality must be in 1-100, got '
                          f'{jpeg_quality}')


def generate_corrupted_images(
        src_dir: str,
        out_dir: str,
        corruptions: Sequence[str] = BENCHMARK_CORRUPTIONS,
        severities: Sequence[int] = (1, 2, 3, 4, 5),
        workers: int = 1,
        ann_file: Optional[str] = None,
        seed: int = 0,
        seed_path_root: Optional[str] = None,
        color_type: str = 'color',
        jpeg_quality: Optional[int] = None,
        progress: bool = True) -> GenerationSummary:
    """Write ``<out_dir>/<corruption>/<severity>/<rel path>`` for every
    image, corruption and severity that is not there yet.

    Work is split into one task per (image, corruption), covering the
    missing severities (the image is decoded once per task), and spread over
    ``workers`` processes (``forkserver`` start method) in small chunks, so
    that slow corruptions (zoom_blur, glass_blur) do not leave a worker
    idle. The time includes starting the workers and, in each, numba's
    one-off compilation of glass_blur (a few seconds). As with the
    ``spawn`` method, workers import the calling script as ``__mp_main__``:
    a script that calls this with ``workers > 1`` must guard its entry
    point with ``if __name__ == '__main__':``.

    Args:
        src_dir (str): Folder of the clean images (searched recursively).
        out_dir (str): Output root; must not be inside ``src_dir`` unless
            ``ann_file`` restricts the images.
        corruptions (Sequence[str]): Corruption names. Defaults to the 15
            benchmark corruptions.
        severities (Sequence[int]): Among 1-5. Defaults to all five.
        workers (int): Worker processes (1 runs in this process). Defaults
            to 1.
        ann_file (str, optional): COCO json whose images (``file_name``
            relative to ``src_dir``) are the only ones corrupted. Defaults
            to None.
        seed (int): Seed of ``ImageCorruption``. Defaults to 0 (the
            transform's default).
        seed_path_root (str, optional): Folder joined with each relative
            path to give the path that seeds its random draws. Defaults to
            None (``src_dir``).
        color_type (str): ``'color'`` (EXIF orientation applied, mmcv's
            default) or ``'color_ignore_orientation'`` (e.g. for ExDark).
            Defaults to ``'color'``.
        jpeg_quality (int, optional): Re-encode ``.jpg``/``.jpeg`` sources
            as JPEG of this quality instead of lossless PNG data. Defaults
            to None.
        progress (bool): Show a tqdm progress bar on stderr. Defaults to
            True.

    Returns:
        GenerationSummary: Counts, time and per-image failures.

    Raises:
        FileNotFoundError: If ``src_dir`` or ``ann_file`` does not exist.
        ConfigError: For unknown corruptions, severities outside 1-5, fewer
            than 1 worker, ``out_dir`` inside ``src_dir``, or images listed
            in ``ann_file`` that do not exist.
    """
    from tqdm import tqdm
    if not osp.isdir(src_dir):
        raise FileNotFoundError(f'image folder "{src_dir}" does not exist')
    if ann_file is not None and not osp.isfile(ann_file):
        raise FileNotFoundError(f'--ann-file "{ann_file}" does not exist')
    check_generation_args(corruptions, severities, workers, color_type,
                          jpeg_quality)
    src_real, out_real = osp.realpath(src_dir), osp.realpath(out_dir)
    if ann_file is None and (out_real == src_real or out_real.startswith(
            src_real + os.sep)):
        raise ConfigError(f'output folder "{out_dir}" is inside the image '
                          f'folder "{src_dir}"; choose another one')
    rels = list_source_images(src_dir, ann_file)

    summary = GenerationSummary(workers=workers)
    tasks = []
    for rel in rels:
        for corruption in corruptions:
            todo = tuple(s for s in severities if not osp.isfile(
                corrupted_image_path(out_dir, corruption, s, rel)))
            summary.skipped += len(severities) - len(todo)
            if todo:
                tasks.append((rel, corruption, todo))
    total = sum(len(t[2]) for t in tasks)
    init_args = (src_dir, out_dir, seed, seed_path_root or src_dir,
                 color_type, jpeg_quality)
    start = time.perf_counter()
    with tqdm(total=total, unit='img', disable=not progress or not total,
              file=sys.stderr, dynamic_ncols=True) as bar:
        if workers == 1 or len(tasks) <= 1:
            _init_worker(*init_args, single_thread=False)
            results = map(_corrupt_task, tasks)
            summary.workers = 1
            _collect(results, summary, bar)
        else:
            chunksize = max(1, min(8, len(tasks) // (workers * 16)))
            with _worker_context().Pool(workers, _init_worker,
                                        init_args) as pool:
                _collect(
                    pool.imap_unordered(_corrupt_task, tasks, chunksize),
                    summary, bar)
    summary.seconds = time.perf_counter() - start
    return summary


def _worker_context() -> multiprocessing.context.BaseContext:
    """The ``forkserver`` start method, with this module preloaded.

    Plain ``fork`` copies the caller's state mid-flight: a child forked
    after the parent used OpenCV's thread pool can deadlock in its first
    OpenCV call (seen with ``cv2.setNumThreads``). The fork server is a
    fresh, single-threaded process that imports this module once; workers
    forked from it start at once.
    """
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload([__name__])
    return ctx


def _collect(results: Iterable[Tuple[int, List[str]]],
             summary: GenerationSummary, bar) -> None:
    for written, failures in results:
        summary.written += written
        summary.failures += failures
        bar.update(written + len(failures))
