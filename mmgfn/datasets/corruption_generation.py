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

Resuming: a run writes its settings (seed, seed path root, source folder,
format) to ``generation.json`` at the output's root (a recipe: its record
file) before any image, and a rerun with other settings is refused instead
of mixing old and new files. Each file is written to ``<name>.<pid>.part``
and renamed into place. A rerun skips an output only if it passes a marker check: it starts
with the signature of the format this run writes (PNG, or JPEG for
``jpeg_quality``) and ends with that format's end marker (PNG's ``IEND``
chunk, JPEG's ``FFD9``). A 0-byte or cut-short file (e.g. written by a copy
that ran out of space) and a file of the other format are redone. The check
reads 20 bytes per file, so resuming a full COCO-C (375,000 files) stays a
matter of seconds to minutes; it does not decode the pixels, so a file of the
right length whose middle bytes were damaged is not detected. At the start
of a run, the ``*.part`` files left in the folders it writes by processes
that no longer exist (an interrupted or killed run) are removed.

Stopping: a failed write (no space left on the device, a read-only or
unwritable folder) stops the run at once with one
:class:`OutputWriteError` naming the file, instead of corrupting every
remaining image only for its write to fail; the files already in place are
complete, so the same command resumes once space is freed. An image that
cannot be read or corrupted is a per-image failure instead (listed in the
summary; the run goes on).

Recipes: an :class:`OutputRecipe` replaces the loading and the encoding
above with a fixed recipe (e.g. ImageNet-C's resize 256, center-crop 224
and JPEG quality 85, :data:`mmgfn.datasets.imagenet_c.IMAGENET_C_RECIPE`),
and its record is written at the root of the output; resuming, stopping and
the workers are the same.

Workers: each worker process watches the calling process and exits as soon
as it is gone (``os.pidfd_open`` where available, otherwise a poll every 0.5
s), so that killing the caller, even with SIGKILL, stops the work. Linux's
``PR_SET_PDEATHSIG`` would not do: a worker's parent is the ``forkserver``
process, which stays alive as long as its workers do.
"""
import errno
import json
import multiprocessing
import os
import os.path as osp
import re
import select
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterable, List, Optional, Sequence,
                    Tuple)

from mmgfn.utils.errors import ConfigError
from .transforms.corruption import (ALL_CORRUPTIONS, BACKENDS,
                                   BENCHMARK_CORRUPTIONS, ImageCorruption)

#: Source files (lower-case extensions) that are read as images.
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: ``color_type`` values of ``LoadImageFromFile`` that give 3 channels.
COLOR_TYPES = ('color', 'color_ignore_orientation')
#: First bytes and last bytes of a complete file of each output format.
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'
JPEG_SIGNATURE = b'\xff\xd8\xff'
JPEG_END = b'\xff\xd9'
#: ``<output name>.<pid>.part``: a file being written by process ``pid``.
PART_PATTERN = re.compile(r'^.+\.(\d+)\.part$')


class OutputWriteError(ConfigError):
    """An output file could not be written (e.g. no space left on the
    device); the run stops at the first such failure."""


@dataclass(frozen=True)
class OutputRecipe:
    """A fixed way from a source file to an output file, in place of the
    default loading (``color_type``) and encoding (lossless PNG, or JPEG
    with ``jpeg_quality``) of :func:`generate_corrupted_images`.

    The two functions run in the worker processes: they must be picklable
    (module-level functions).

    Attributes:
        name (str): The recipe's name, for messages (e.g. ``'imagenet-c'``).
        load (Callable[[str], np.ndarray]): Reads one source file into the
            image to corrupt, ``H x W x 3`` uint8 BGR (the per-image
            preprocessing, e.g. resize and crop, included).
        encode (Callable[[np.ndarray], bytes]): The file's bytes for one
            corrupted ``H x W x 3`` BGR image (uint8 values 0-255).
        fmt (str): ``'png'`` or ``'jpeg'``: the format of every file
            ``encode`` gives, checked on resuming.
        record_file (str): Name of the JSON file written at the root of the
            output before any image, holding ``record`` plus the run's
            ``seed`` and ``source`` (absolute source folder).
        record (dict): What the recipe does, as written to ``record_file``.
    """
    name: str
    load: Callable[[str], Any]
    encode: Callable[[Any], bytes]
    fmt: str
    record_file: str
    record: Dict[str, object]


@dataclass
class GenerationSummary:
    """What one run did.

    Attributes:
        written (int): Corrupted images written.
        skipped (int): Complete outputs that already existed (resumed).
        redone (int): Existing outputs that failed the marker check (empty,
            cut short, or of the other format) and were written again.
        removed_parts (int): Stale ``*.part`` files removed at the start.
        seconds (float): Wall time of the corrupting and writing, worker
            start-up included.
        workers (int): Worker processes used.
        failures (List[str]): ``"<image> (<corruption> <severity>):
            <error>"`` per image that could not be corrupted.
    """
    written: int = 0
    skipped: int = 0
    redone: int = 0
    removed_parts: int = 0
    seconds: float = 0.0
    workers: int = 1
    failures: List[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Written images per second of wall time."""
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def line(self, what: str = 'corrupted images') -> str:
        """The one-line summary the tool prints, ``what`` naming the
        images written."""
        redone = (f', {self.redone} redone as incomplete or of another '
                  'format' if self.redone else '')
        parts = (f', {self.removed_parts} stale .part files removed'
                 if self.removed_parts else '')
        return (f'wrote {self.written} {what} ({self.skipped} '
                f'already present{redone}{parts}, {len(self.failures)} '
                f'failed) in {self.seconds:.1f} s: '
                f'{self.images_per_second:.2f} images/s with {self.workers} '
                'worker(s)')


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
            raise ConfigError(f'ann_file "{ann_file}" is not a COCO json '
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
                 recipe: Optional[OutputRecipe] = None,
                 backend: str = 'imagecorruptions',
                 device: str = 'cpu',
                 parent_pid: Optional[int] = None) -> None:
    """Store the run's settings. In a pool worker (``parent_pid`` given),
    also keep OpenCV to one thread so that the workers do not oversubscribe
    the cores, and exit when the process ``parent_pid`` is gone."""
    if parent_pid is not None:
        import cv2
        cv2.setNumThreads(1)
        exit_with_process(parent_pid)
    _WORKER.update(
        src_dir=src_dir,
        out_dir=out_dir,
        seed=seed,
        seed_root=seed_root,
        color_type=color_type,
        jpeg_quality=jpeg_quality,
        recipe=recipe,
        backend=backend,
        device=device)


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


def exit_with_process(pid: int, poll_seconds: float = 0.5) -> None:
    """Exit this process (``os._exit(1)``) as soon as process ``pid`` ends.

    A daemon thread waits on a pidfd of ``pid`` (Linux 5.3+), or polls
    ``os.kill(pid, 0)`` every ``poll_seconds`` where pidfds are not
    available. The exit comes once the thread gets the interpreter lock,
    i.e. at the latest when the running C call (one corruption of one image)
    returns.

    Args:
        pid (int): The process to outlive by no more than that.
        poll_seconds (float): Polling period without pidfds. Defaults to
            0.5.
    """

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])
            os._exit(1)
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(poll_seconds)

    threading.Thread(target=watch, name='exit-with-parent',
                     daemon=True).start()


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    Raises:
        OSError: If the folder or the file cannot be written; the temporary
            file is removed first.
    """
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.part'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if osp.lexists(tmp):
            os.remove(tmp)
        raise


def output_format(rel_path: str,
                  jpeg_quality: Optional[int],
                  recipe: Optional[OutputRecipe] = None) -> str:
    """``'jpeg'`` if this run writes ``rel_path`` as JPEG, else ``'png'``
    (the recipe's format where one is given)."""
    if recipe is not None:
        return recipe.fmt
    is_jpeg = osp.splitext(rel_path)[1].lower() in ('.jpg', '.jpeg')
    return 'jpeg' if jpeg_quality is not None and is_jpeg else 'png'


def is_complete_output(path: str, fmt: str) -> bool:
    """Whether ``path`` is a complete file of format ``fmt``.

    Reads the first 8 and the last 12 bytes: the format's signature and its
    end marker (PNG ``IEND`` chunk, JPEG ``EOI``) must both be there. A
    0-byte, cut-short or other-format file fails; damage in the middle of a
    file of the right length is not detected (that would need decoding).

    Args:
        path (str): An existing output file.
        fmt (str): ``'png'`` or ``'jpeg'``.

    Returns:
        bool: True if the file passes.
    """
    head_want, tail_want = ((PNG_SIGNATURE, PNG_END) if fmt == 'png' else
                            (JPEG_SIGNATURE, JPEG_END))
    try:
        with open(path, 'rb') as f:
            size = f.seek(0, os.SEEK_END)
            if size < len(head_want) + len(tail_want):
                return False
            f.seek(0)
            head = f.read(len(head_want))
            f.seek(-len(tail_want), os.SEEK_END)
            tail = f.read(len(tail_want))
    except OSError:
        return False
    return head == head_want and tail == tail_want


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_parts(out_dir: str, corruptions: Sequence[str],
                       severities: Sequence[int]) -> int:
    """Remove the ``*.<pid>.part`` files under ``<out_dir>/<corruption>/
    <severity>/`` whose process no longer exists.

    Files of a process that is still running (another run writing into the
    same folder) are left alone.

    Returns:
        int: Files removed.
    """
    removed = 0
    for corruption in corruptions:
        for severity in severities:
            folder = osp.join(out_dir, corruption, str(severity))
            for root, _, files in os.walk(folder):
                for name in files:
                    m = PART_PATTERN.match(name)
                    if m and not _pid_alive(int(m.group(1))):
                        os.remove(osp.join(root, name))
                        removed += 1
    return removed


def _corrupt_task(task: Tuple[str, str, Tuple[int, ...]]
                  ) -> Tuple[int, List[str]]:
    """Corrupt one image with one corruption at the given severities.

    Returns:
        Tuple[int, List[str]]: Images written and failure messages.
    """
    rel, corruption, severities = task
    w = _WORKER
    recipe = w['recipe']
    src = osp.join(w['src_dir'], rel)
    key_path = osp.join(w['seed_root'], rel)
    written, failures = 0, []
    try:
        img = (recipe.load(src) if recipe is not None else load_image(
            src, w['color_type']))
    except Exception as exc:  # noqa: BLE001 - reported per image
        return 0, [f'{src} ({corruption}): {exc}']
    for severity in severities:
        try:
            out = ImageCorruption(
                corruption, severity, w['seed'], backend=w['backend'],
                device=w['device']).transform(
                    dict(img=img, img_path=key_path))['img']
            data = (recipe.encode(out) if recipe is not None else
                    encode_image(out, rel, w['jpeg_quality']))
        except Exception as exc:  # noqa: BLE001 - reported per image
            failures.append(f'{src} ({corruption} {severity}): {exc}')
            continue
        path = corrupted_image_path(w['out_dir'], corruption, severity, rel)
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise OutputWriteError(_write_error_message(path, exc)) from None
        written += 1
    return written, failures


def _write_error_message(path: str, exc: OSError) -> str:
    code = errno.errorcode.get(exc.errno, str(exc.errno))
    return (f'cannot write "{path}": {exc.strerror or exc} ({code}); '
            'stopped at the first failed write (the files already written '
            'are complete: free space or fix the folder, then rerun the same '
            'command to resume)')


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
        raise ConfigError(f'workers must be at least 1, got {workers}')
    if color_type not in COLOR_TYPES:
        raise ConfigError(f'color type must be one of {COLOR_TYPES}, got '
                          f'"{color_type}"')
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ConfigError(f'jpeg_quality must be in 1-100, got '
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
        progress: bool = True,
        recipe: Optional[OutputRecipe] = None,
        backend: str = 'imagecorruptions',
        device: str = 'cpu') -> GenerationSummary:
    """Write ``<out_dir>/<corruption>/<severity>/<rel path>`` for every
    image, corruption and severity that is not there yet (or fails the
    marker check of :func:`is_complete_output`).

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
        recipe (OutputRecipe, optional): Load and encode every image by
            this recipe instead (``color_type`` and ``jpeg_quality`` must
            then keep their defaults), and write its record file at the
            root of ``out_dir`` before any image. Defaults to None.
        backend (str): ``'imagecorruptions'`` or ``'torch'`` (see
            ``ImageCorruption``); recorded, so a resume with the other
            backend is refused. Defaults to ``'imagecorruptions'``.
        device (str): Device of the torch backend, in every worker.
            Defaults to ``'cpu'``.

    Returns:
        GenerationSummary: Counts, time and per-image failures.

    Raises:
        FileNotFoundError: If ``src_dir`` or ``ann_file`` does not exist.
        ConfigError: For unknown corruptions, severities outside 1-5, fewer
            than 1 worker, ``out_dir`` inside ``src_dir``, images listed in
            ``ann_file`` that do not exist, or ``color_type``/
            ``jpeg_quality`` set with a ``recipe``.
        OutputWriteError: At the first output (recipe record included)
            that cannot be written (e.g. no space left on the device); the
            run stops there.
    """
    from tqdm import tqdm
    if not osp.isdir(src_dir):
        raise FileNotFoundError(f'image folder "{src_dir}" does not exist')
    if ann_file is not None and not osp.isfile(ann_file):
        raise FileNotFoundError(f'ann_file "{ann_file}" does not exist')
    check_generation_args(corruptions, severities, workers, color_type,
                          jpeg_quality)
    if backend not in BACKENDS:
        raise ConfigError(f'unknown corruption backend "{backend}"; '
                          f'expected one of {", ".join(BACKENDS)}')
    if recipe is not None and (color_type != 'color'
                               or jpeg_quality is not None):
        raise ConfigError(f'the {recipe.name} recipe fixes the loading and '
                          'the format; leave color_type and jpeg_quality '
                          'unset')
    src_real, out_real = osp.realpath(src_dir), osp.realpath(out_dir)
    if ann_file is None and (out_real == src_real or out_real.startswith(
            src_real + os.sep)):
        raise ConfigError(f'output folder "{out_dir}" is inside the image '
                          f'folder "{src_dir}"; choose another one')
    rels = list_source_images(src_dir, ann_file)
    _write_record(out_dir, recipe, seed, src_dir, seed_path_root,
                  color_type, jpeg_quality, backend)

    summary = GenerationSummary(workers=workers)
    summary.removed_parts = remove_stale_parts(out_dir, corruptions,
                                               severities)
    tasks = []
    for rel in rels:
        fmt = output_format(rel, jpeg_quality, recipe)
        for corruption in corruptions:
            todo = []
            for s in severities:
                path = corrupted_image_path(out_dir, corruption, s, rel)
                if not osp.isfile(path):
                    todo.append(s)
                elif is_complete_output(path, fmt):
                    summary.skipped += 1
                else:
                    summary.redone += 1
                    todo.append(s)
            if todo:
                tasks.append((rel, corruption, tuple(todo)))
    total = sum(len(t[2]) for t in tasks)
    init_args = (src_dir, out_dir, seed, seed_path_root or src_dir,
                 color_type, jpeg_quality, recipe, backend, device)
    start = time.perf_counter()
    with tqdm(total=total, unit='img', disable=not progress or not total,
              file=sys.stderr, dynamic_ncols=True) as bar:
        if workers == 1 or len(tasks) <= 1:
            _init_worker(*init_args)
            results = map(_corrupt_task, tasks)
            summary.workers = 1
            _collect(results, summary, bar)
        else:
            chunksize = max(1, min(8, len(tasks) // (workers * 16)))
            try:
                with _worker_context().Pool(workers, _init_worker,
                                            (*init_args, os.getpid())) as pool:
                    _collect(
                        pool.imap_unordered(_corrupt_task, tasks, chunksize),
                        summary, bar)
            except OutputWriteError:
                # the pool is terminated: drop what its workers left
                remove_stale_parts(out_dir, corruptions, severities)
                raise
    summary.seconds = time.perf_counter() - start
    return summary


#: The settings record of a run without a recipe, at the output's root.
GENERATION_RECORD = 'generation.json'


def _write_record(out_dir: str, recipe: Optional[OutputRecipe], seed: int,
                  src_dir: str, seed_path_root: Optional[str],
                  color_type: str, jpeg_quality: Optional[int],
                  backend: str = 'imagecorruptions') -> None:
    """Write the run's settings record at the root of ``out_dir`` before
    any image, or check the one an earlier run wrote there.

    The record is ``<out_dir>/<recipe.record_file>`` (the recipe's record)
    or ``<out_dir>/generation.json`` (``color_type`` and ``jpeg_quality``),
    plus the ``seed``, the path root that seeds each image, the absolute
    ``source`` folder and the corruption ``backend``: everything besides
    the corruption and severity that decides an output's bytes. A resumed run must ask for the same, since
    it keeps the files already there; one that does not is refused, naming
    each setting that differs. (A folder written before records existed has
    none; the record is then written and the old files are kept, as
    before.)

    Raises:
        ConfigError: If the record already there holds other settings.
        OutputWriteError: If the record cannot be written.
    """
    src = osp.abspath(src_dir)
    record = dict(recipe.record) if recipe is not None else dict(
        color_type=color_type, jpeg_quality=jpeg_quality)
    # the seed path root as given: its string seeds each image's draws
    record.update(seed=seed, source=src,
                  seed_path_root=seed_path_root or src_dir, backend=backend)
    name = recipe.record_file if recipe is not None else GENERATION_RECORD
    path = osp.join(out_dir, name)
    if osp.isfile(path):
        try:
            with open(path, encoding='utf-8') as f:
                old = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f'cannot read the settings record "{path}" '
                              f'of an earlier run: {exc}') from None
        # records written before backends existed: imagecorruptions
        old.setdefault('backend', 'imagecorruptions')
        # recipe records written before seed_path_root was recorded
        keys = [k for k in record
                if k in old or recipe is None or k != 'seed_path_root']
        differ = [k for k in keys
                  if json.dumps(old.get(k)) != json.dumps(record[k])]
        if differ:
            raise ConfigError(
                f'"{out_dir}" holds images generated with other settings ('
                + ', '.join(f'{k}: {old.get(k)!r} there, {record[k]!r} now'
                            for k in differ) +
                '); resuming would mix them. Use another output folder, or '
                'delete this one to regenerate')
        return
    try:
        write_atomic(path, json.dumps(record, indent=2).encode('utf-8'))
    except OSError as exc:
        raise OutputWriteError(_write_error_message(path, exc)) from None


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
