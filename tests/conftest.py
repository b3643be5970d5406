"""Shared fixtures: real image files written to temporary folders."""
import contextlib
import importlib.util
import io
import json
import os
import os.path as osp
import runpy
import subprocess
import sys
import time

# Torch's OpenMP threads wait for work by spinning (libgomp's default):
# where another process holds a core, as on a shared CI machine, every
# parallel torch op then waits for a descheduled thread (a tiny model's
# forward of 8 images: ~0.8 s instead of ~6 ms on 2 busy cores). Waiting
# threads sleep instead; the thread count, and so what runs in threads,
# stays as it is. Set before anything loads the OpenMP runtime; the tools
# the tests start inherit it.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIGITS_CONFIG = osp.join(ROOT, 'configs', 'digits',
                         'resnet-tiny_1xb32_digits.py')

# Each class: a colour (BGR) and a stripe orientation, so that a tiny model
# separates the classes within a few iterations.
CLASS_STYLES = [((40, 40, 220), 'h'), ((220, 60, 40), 'v'),
                ((40, 200, 40), 'h'), ((200, 200, 200), 'v')]


def make_image(label: int, rng: np.random.Generator, size: int = 32):
    """A ``size x size x 3`` uint8 BGR image of class ``label``."""
    colour, orient = CLASS_STYLES[label]
    img = np.zeros((size, size, 3), np.float32)
    stripes = (np.arange(size) // 4) % 2 == 0
    mask = stripes[:, None] if orient == 'h' else stripes[None, :]
    img[np.broadcast_to(mask, (size, size))] = colour
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image_folder(root: str, num_classes: int = 4, per_class: int = 8,
                       seed: int = 0) -> str:
    """Write ``root/{train,val}/<class>/<i>.{png,jpg}`` and return root."""
    rng = np.random.default_rng(seed)
    for split in ('train', 'val'):
        for label in range(num_classes):
            folder = osp.join(root, split, f'class_{label}')
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class):
                ext = 'png' if i % 2 == 0 else 'jpg'
                cv2.imwrite(
                    osp.join(folder, f'{i:03d}.{ext}'), make_image(label, rng))
    return root


@pytest.fixture
def image_folder(tmp_path):
    """A 4-class ImageFolder of real PNG and JPEG files (8 per class and
    split)."""
    return write_image_folder(str(tmp_path / 'images'))


def write_coco(root: str, num_images: int = 4, size: int = 64,
               seed: int = 0, width: int = None) -> str:
    """Write a small COCO-format detection set: ``root/images/*.jpg`` and
    ``root/annotations.json`` with two classes (``person``, ``car``);
    images are ``size x size``, or ``size x width`` (height x width)."""
    rng = np.random.default_rng(seed)
    width = width or size
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, annotations = [], []
    for i in range(num_images):
        img = rng.integers(0, 60, (size, width, 3)).astype(np.uint8)
        x, y, h = 8 + 4 * i, 10, 30
        w = min(24, width - x - 2)
        img[y:y + h, x:x + w] = (30, 30, 220) if i % 2 else (220, 120, 30)
        name = f'{i:03d}.jpg'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=i, file_name=name, width=width, height=size))
        annotations.append(
            dict(id=i, image_id=i, category_id=1 + i % 2, bbox=[x, y, w, h],
                 area=w * h, iscrowd=0))
    categories = [dict(id=1, name='person'), dict(id=2, name='car')]
    with open(osp.join(root, 'annotations.json'), 'w') as f:
        json.dump(
            dict(images=images, annotations=annotations,
                 categories=categories), f)
    return root


@pytest.fixture
def coco_folder(tmp_path):
    return write_coco(str(tmp_path / 'coco'))


# appended to a host config: a test-only Runner (no training or validation)
TEST_ONLY = """
test_cfg = dict()
val_dataloader = None
val_evaluator = None
val_cfg = None
train_dataloader = None
train_cfg = None
optim_wrapper = None
"""


def digits_options(data_root: str, max_epochs: int = 2) -> list:
    """``--cfg-options`` that point the digits config at ``data_root`` (a
    4-class image folder) and shrink it for tests."""
    opts = [
        'model.head.num_classes=4', 'data_preprocessor.num_classes=4',
        f'train_cfg.max_epochs={max_epochs}', 'train_cfg.val_interval=1',
        f'param_scheduler.T_max={max_epochs}',
        'default_hooks.logger.interval=1'
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts += [
            f'{loader}.dataset.data_root={data_root}',
            f'{loader}.num_workers=0', f'{loader}.batch_size=8'
        ]
    return opts


def run_tool(args: list, env: dict = None, timeout: int = 600):
    """Run ``args`` (a tool path and its arguments) with this interpreter
    from the repository root; return the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    cmd = args if args[0].endswith('.sh') else [sys.executable, *args]
    if args[0].endswith('.sh'):
        full_env['PYTHON'] = sys.executable
        cmd = ['bash', *args]
    return subprocess.run(
        cmd, cwd=ROOT, env=full_env, capture_output=True, text=True,
        timeout=timeout)


_last_in_process_run = [0.0]


def run_tool_in_process(args: list, env: dict = None):
    """Run the Python tool ``args[0]`` (a path relative to the repository
    root) in this process, as ``python args...`` from the repository root
    would: the script runs as ``__main__`` (its own ``run_cli`` included)
    with ``sys.argv = args``, ``env`` merged into ``os.environ``
    (``PYTHONPATH`` entries also put first on ``sys.path``), stdout and
    stderr captured. It saves a subprocess's 10-15 s of imports (torch,
    mmengine, mmpretrain, mmdet) where the process itself is not what a
    test checks.

    mmengine names a Runner's logger, visualizer and default scope after
    the config and the second it starts; two runs never start in the same
    second here, so no run reuses another's logger or log folder.

    Returns:
        subprocess.CompletedProcess: ``returncode`` is 0, or the code of the
        ``SystemExit`` the tool raised (2 for bad input); ``stdout`` and
        ``stderr`` are what the tool printed and logged. Any other exception
        propagates with its traceback (a subprocess would exit 1).
    """
    from mmengine.registry import DefaultScope
    wait = 1.0 - (time.time() - int(_last_in_process_run[0]))
    if int(time.time()) == int(_last_in_process_run[0]) and wait > 0:
        time.sleep(wait)
    env = dict(env or {})
    saved_env, saved_path, saved_argv = dict(os.environ), list(
        sys.path), list(sys.argv)
    saved_cwd = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    returncode = 0
    DefaultScope._instance_dict.clear()
    try:
        os.environ.update(env)
        if env.get('PYTHONPATH'):
            sys.path[:0] = env['PYTHONPATH'].split(os.pathsep)
        sys.argv = [str(a) for a in args]
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(
                err):
            try:
                runpy.run_path(osp.join(ROOT, args[0]), run_name='__main__')
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    returncode = exc.code or 0
                else:  # sys.exit('message'): printed, status 1
                    print(exc.code, file=sys.stderr)
                    returncode = 1
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)
        DefaultScope._instance_dict.clear()
        _last_in_process_run[0] = time.time()
    return subprocess.CompletedProcess(args, returncode, out.getvalue(),
                                       err.getvalue())


def load_tool(path: str, name: str):
    """Import the tool script ``path`` (relative to the repository root) as
    the module ``name``, for tests of its functions."""
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# a small mmdet detector (ResNet-18 backbone) on a write_coco() folder, with
# BackgroundRoIPerturbationHook; format with write_det_config()
DET_CFG = """
_base_ = [
    'mmdet::_base_/models/{model}.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
model = dict(backbone=dict(depth=18, init_cfg=None),
             neck=dict(in_channels=[64, 128, 256, 512]), {head})
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs'),
]
dataset = dict(data_root={root!r}, ann_file='annotations.json',
               data_prefix=dict(img='images/'),
               metainfo=dict(classes=('person', 'car')),
               filter_cfg=dict(filter_empty_gt=True), pipeline=pipeline)
train_dataloader = dict(batch_size=4, num_workers=0,
                        persistent_workers=False, dataset=dataset)
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(dataset, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={ann!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={epochs}, val_interval=100)
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.01))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=100))
custom_hooks = [dict(type='mmgfn.BackgroundRoIPerturbationHook', eta=0.01,
                     seed=0)]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
"""


def _head(model_name, n):
    if 'retinanet' in model_name:
        return f'bbox_head=dict(num_classes={n})'
    if 'cascade' in model_name:  # a list of stages: set after loading
        return ''
    return f'roi_head=dict(bbox_head=dict(num_classes={n}))'


def write_det_config(tmp_path, root, model='faster-rcnn_r50_fpn', epochs=3,
                     num_classes=2, extra=''):
    """Write a detector config for the COCO folder ``root``; return its
    path."""
    path = tmp_path / f'{model}.py'
    path.write_text(
        DET_CFG.format(model=model, root=root,
                       ann=osp.join(root, 'annotations.json'),
                       epochs=epochs, head=_head(model, num_classes)) +
        extra)
    return str(path)


# a hook that records, at every forward of the model's backbone inside a
# training or test iteration, what the forward ran under; see
# write_autocast_recorder()
AUTOCAST_RECORDER = '''
import json

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RecordAutocast(Hook):

    def __init__(self, out_file):
        self.out_file = out_file
        self.phase = None
        self.events = []

    def before_run(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        model.backbone.register_forward_hook(self._record)

    def _record(self, module, args, output):
        if self.phase is None:
            return
        out = output[-1] if isinstance(output, (tuple, list)) else output
        self.events.append(dict(
            phase=self.phase, iter=self.iter,
            attack=bool(args[0].requires_grad),
            autocast=torch.is_autocast_enabled('cpu'),
            dtype=str(torch.get_autocast_dtype('cpu')).split('.')[-1],
            output=str(out.dtype).split('.')[-1]))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.phase, self.iter = 'train', runner.iter

    def before_test_iter(self, runner, batch_idx, data_batch=None):
        self.phase, self.iter = 'test', batch_idx

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.phase = None

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None):
        self.phase = None

    def after_run(self, runner):
        with open(self.out_file, 'w') as f:
            json.dump(self.events, f)
'''


def autocast_recorder(folder) -> tuple:
    """Write the module ``record_autocast`` (the hook ``RecordAutocast``)
    to ``folder``. At every forward of the model's backbone inside a
    training or test iteration the hook records ``phase``
    (``'train'``/``'test'``), ``iter``, ``attack`` (the input requires a
    gradient: an attack's forward), ``autocast`` (CPU autocast on),
    ``dtype`` (CPU autocast dtype) and ``output`` (dtype of the backbone's
    last output), written as a JSON list at ``after_run``.

    Returns:
        tuple: The lines to append to a config that defines
        ``custom_hooks`` (they import the module and add the hook), the
        JSON file's path and the ``env`` of :func:`run_tool` (``folder``
        added to ``PYTHONPATH``).
    """
    folder = str(folder)
    with open(osp.join(folder, 'record_autocast.py'), 'w') as f:
        f.write(AUTOCAST_RECORDER)
    out_file = osp.join(folder, 'autocast_events.json')
    lines = ("\ncustom_imports = dict(imports=['record_autocast'], "
             'allow_failed_imports=False)\n'
             "custom_hooks = custom_hooks + [dict(type='RecordAutocast', "
             f'out_file={out_file!r})]\n')
    return lines, out_file, pythonpath_env(folder)


def write_autocast_recorder(folder, config: str) -> tuple:
    """Write a config that inherits ``config`` (which has no
    ``custom_hooks``) and adds ``RecordAutocast`` (see
    :func:`autocast_recorder`).

    Returns:
        tuple: The new config's path, the JSON file's path and the ``env``
        of :func:`run_tool`.
    """
    lines, out_file, env = autocast_recorder(folder)
    path = osp.join(str(folder), 'recorded_' + osp.basename(config))
    with open(path, 'w') as f:
        f.write(f'_base_ = [{config!r}]\ncustom_hooks = []\n' + lines)
    return path, out_file, env


def pythonpath_env(folder) -> dict:
    """``env`` for :func:`run_tool` that puts ``folder`` first on the
    tool's ``PYTHONPATH`` (and keeps the caller's)."""
    paths = [str(folder), os.environ.get('PYTHONPATH', '')]
    return dict(PYTHONPATH=os.pathsep.join(p for p in paths if p))


def build_digits_model(num_classes: int, seed: int = None):
    """The real digits ResNet of ``DIGITS_CONFIG`` with ``num_classes``
    classes (head and data preprocessor), randomly initialised after
    ``torch.manual_seed(seed)`` (the global generator as it is where
    ``seed`` is None), in eval mode."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope

    from mmgfn.registry import MODELS
    if seed is not None:
        torch.manual_seed(seed)
    cfg = Config.fromfile(DIGITS_CONFIG)
    cfg.model.head.num_classes = num_classes
    cfg.model.data_preprocessor = dict(cfg.data_preprocessor,
                                       num_classes=num_classes)
    init_default_scope('mmgfn')
    model = MODELS.build(cfg.model)
    DefaultScope._instance_dict.clear()
    return model.eval()


def save_checkpoint(model, path: str) -> str:
    """Save ``model`` as an mmengine checkpoint (``state_dict``, empty
    ``meta``) at ``path``; returns ``path``."""
    import torch
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def write_video(path: str, labels: list, seed: int):
    """An mp4 video at ``path`` (folders made), 10 fps, 32x32, one frame
    :func:`make_image` per label of ``labels``."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (32, 32))
    for label in labels:
        writer.write(make_image(label, rng))
    writer.release()


def read_video(path: str) -> list:
    """Every frame of the video at ``path`` (BGR uint8 arrays)."""
    cap = cv2.VideoCapture(path)
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    return frames


def train_digits(root, max_epochs: int = 2) -> tuple:
    """Train the digits ResNet ``max_epochs`` epochs on a fresh image
    folder under ``root`` (a checkpoint every epoch, all kept).

    Returns:
        tuple: The image folder and the work dir (``epoch_<n>.pth``).
    """
    images = write_image_folder(str(osp.join(str(root), 'images')))
    work = osp.join(str(root), 'train')
    proc = run_tool_in_process([
        'tools/train.py', DIGITS_CONFIG, '--work-dir', work, '--cfg-options',
        *digits_options(images, max_epochs=max_epochs),
        'default_hooks.checkpoint.interval=1',
        f'default_hooks.checkpoint.max_keep_ckpts={max_epochs}'
    ])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return images, work


@pytest.fixture(scope='session')
def trained_digits(tmp_path_factory) -> tuple:
    """The digits ResNet trained once per session by :func:`train_digits`
    (2 epochs, ``epoch_1.pth`` and ``epoch_2.pth`` kept) on a 4-class
    image folder (8 images per class and split). Read-only: tests write
    their outputs to folders of their own.

    Returns:
        tuple: The image folder and the work dir.
    """
    return train_digits(tmp_path_factory.mktemp('trained_digits'))


def write_videos(root: str, videos: dict):
    """ImageNet-P style videos: ``videos`` maps a perturbation to a list of
    ``(class folder, frame labels)``; clip ``i`` of the list is
    ``<root>/<perturbation>/<class folder>/<i>.mp4``, drawn with seed ``i``
    (:func:`write_video`)."""
    for p, clips in videos.items():
        for i, (folder, labels) in enumerate(clips):
            write_video(osp.join(root, p, folder, f'{i}.mp4'), labels, i)


def hand_flip_rates(model, root: str, videos: dict, step: int = 1) -> tuple:
    """ImageNet-P flip probability (FP) and top-k distance (T5D) per
    perturbation, computed by hand from ``model``'s logits on the decoded
    frames of the videos :func:`write_videos` wrote under ``root``.

    Ranks are the stable descending order of the logits. Perturbations whose
    name contains ``noise`` compare every frame with frame 0, the others
    frame ``t - step`` with frame ``t``. The distance sums over every class
    of the first frame's ranking, so it is the top-5 distance only for
    models of at most 5 classes (the digits models here have 4).

    Returns:
        tuple: Two dicts ``{perturbation: mean over its clips}``: FP in
        [0, 1] and T5D (>= 0).
    """
    import torch
    fp, t5d = {}, {}
    for p, clips in videos.items():
        fps, t5ds = [], []
        for i, (folder, _) in enumerate(clips):
            frames = read_video(osp.join(root, p, folder, f'{i}.mp4'))
            data = model.data_preprocessor(
                dict(inputs=[
                    torch.from_numpy(f).permute(2, 0, 1) for f in frames
                ]), False)
            with torch.no_grad():
                logits = model(data['inputs'], mode='tensor').numpy()
            ranking = [list(np.argsort(-row, kind='stable')) for row in logits]
            if 'noise' in p:  # every frame against frame 0
                pairs = [(0, t) for t in range(1, len(frames))]
            else:  # consecutive frames of each sub-sequence i, i+step..
                pairs = [(t - step, t) for t in range(step, len(frames))]
            fps.append(
                sum(ranking[a][0] != ranking[b][0] for a, b in pairs) /
                len(pairs))
            t5ds.append(
                sum(
                    sum(abs(ranking[b].index(c) + 1 - r)
                        for r, c in enumerate(ranking[a], start=1))
                    for a, b in pairs) / len(pairs))
        fp[p] = sum(fps) / len(fps)
        t5d[p] = sum(t5ds) / len(t5ds)
    return fp, t5d
