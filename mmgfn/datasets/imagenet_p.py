"""ImageNet-P (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019).

The released data is laid out ``<data_root>/<perturbation>/<wnid>/*.mp4``:
each video is one sequence of frames of one validation image under a
gradually changing perturbation (translate, rotate, zoom, ...) or, for the
noise perturbations, under independent draws of the same noise. Stability
is measured on consecutive frames (:mod:`mmgfn.evaluation.functional`).

:class:`ImageNetP` indexes *frames*, not videos: item ``i`` is one frame of
one sequence, decoded with ``cv2.VideoCapture`` (``H x W x 3`` uint8 BGR,
as ``LoadImageFromFile`` would load an image) and sent through the test
pipeline, so a test dataloader batches frames through the classifier like
images. Each packed data sample carries in its metainfo:

* ``perturbation`` (str), ``step`` (int, the frame stride of the
  difficulty, see :class:`ImageNetP`),
* ``sequence_idx`` (int, the video's index), ``frame_idx`` (int, 0-based)
  and ``num_frames`` (int, frames of that video),
* ``video_path`` (str),

which :class:`mmgfn.evaluation.FlipRate` uses to rebuild the sequences.
Frames of one video are consecutive items; each dataloader worker keeps the
last decoded video, so a video is decoded about once per worker that reads
it.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmpretrain.datasets import BaseDataset

from mmgfn.registry import DATASETS
from .wnid_folder import folder_labels
from .wnids import resolve_classes

#: Keys that :class:`ImageNetP` adds to every data sample's metainfo.
FRAME_META_KEYS = ('perturbation', 'step', 'sequence_idx', 'frame_idx',
                   'num_frames', 'video_path')


def _is_loader(transform) -> bool:
    """Whether a pipeline step loads an image from a file."""
    name = transform.get('type', '') if isinstance(
        transform, dict) else type(transform).__name__
    name = name if isinstance(name, str) else getattr(name, '__name__', '')
    return name.split('.')[-1].endswith('LoadImageFromFile')


def count_frames(path: str) -> int:
    """Number of frames of a video (header first, decoding as fallback).

    Args:
        path (str): Video file.

    Returns:
        int: The number of frames, at least 1.

    Raises:
        ValueError: If the video cannot be opened or has no frame; the
            message starts with ``unreadable video`` and names the path.
    """
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise ValueError(f'unreadable video "{path}": cv2.VideoCapture '
                             'cannot open it')
        num = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if num <= 0:
            num = 0
            while cap.grab():
                num += 1
    finally:
        cap.release()
    if num <= 0:
        raise ValueError(f'unreadable video "{path}": no frame decoded')
    return num


def read_frames(path: str) -> List[np.ndarray]:
    """Decode every frame of a video.

    Args:
        path (str): Video file.

    Returns:
        list[np.ndarray]: ``H x W x 3`` uint8 BGR frames.

    Raises:
        ValueError: If the video cannot be opened or decodes to no frame.
    """
    cap = cv2.VideoCapture(path)
    frames = []
    try:
        if not cap.isOpened():
            raise ValueError(f'unreadable video "{path}": cv2.VideoCapture '
                             'cannot open it')
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise ValueError(f'unreadable video "{path}": no frame decoded')
    return frames


@DATASETS.register_module()
class ImageNetP(BaseDataset):
    """The frames of one ImageNet-P perturbation.

    Args:
        data_root (str): The ImageNet-P root that holds the perturbation
            folders.
        perturbation (str): Perturbation folder, e.g. ``'translate'`` or
            ``'gaussian_noise_2'`` (the noise perturbations have their
            difficulty levels as separate folders).
        step (int): Frame stride of the difficulty level of a non-noise
            perturbation (Hendrycks' ``--difficulty``): frames ``i, i+step,
            i+2*step, ...`` form the compared sequences. Must be 1 for the
            noise perturbations. Defaults to 1.
        classes (str | Sequence[str] | None): Class list that fixes the
            labels (see :class:`~mmgfn.datasets.WnidFolderDataset`); the
            flip metrics do not use labels. Defaults to ``'imagenet1k'``.
        extensions (Sequence[str]): Video file extensions. Defaults to
            ``('.mp4',)``.
        pipeline (Sequence[dict]): The test pipeline. It receives decoded
            frames in ``results['img']``, so a ``LoadImageFromFile`` step
            (of any scope) is dropped; the rest (resize, crop, pack) runs as
            for images. Defaults to ().
        **kwargs: Passed to mmpretrain's ``BaseDataset``; ``ann_file`` and
            ``data_prefix`` are not used.

    Raises:
        FileNotFoundError: If the perturbation folder is missing (named).
        ValueError: For a bad ``step``, an unknown class folder, no video,
            or an unreadable video (the message names the path).
    """

    def __init__(self,
                 data_root: str,
                 perturbation: str,
                 step: int = 1,
                 classes: Union[str, Sequence[str], None] = 'imagenet1k',
                 extensions: Sequence[str] = ('.mp4', ),
                 pipeline: Sequence = (),
                 **kwargs) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise ValueError(f'step must be a positive integer, got {step!r}')
        if 'noise' in perturbation and step != 1:
            raise ValueError(
                f'"{perturbation}" is a noise perturbation: every frame is '
                'compared with frame 0 and its difficulty levels are '
                'separate folders (e.g. gaussian_noise_2), so step must be 1')
        folder = osp.join(osp.expanduser(data_root), perturbation)
        if not osp.isdir(folder):
            found = sorted(e.name for e in os.scandir(data_root)
                           if e.is_dir()) if osp.isdir(data_root) else []
            raise FileNotFoundError(
                f'perturbation "{perturbation}" is missing: "{folder}" does '
                f'not exist (found: {", ".join(found) or "none"})')
        self.perturbation = perturbation
        self.step = step
        self.fixed_classes: Optional[Tuple[str, ...]] = resolve_classes(
            classes)
        self.extensions = tuple(e.lower() for e in extensions)
        kwargs.pop('ann_file', None)
        kwargs.pop('data_prefix', None)
        kwargs.setdefault('test_mode', True)
        pipeline = [t for t in pipeline if not _is_loader(t)]
        self._cached: Tuple[Optional[str], List[np.ndarray]] = (None, [])
        super().__init__(
            ann_file='',
            data_root=data_root,
            data_prefix=perturbation,
            pipeline=pipeline,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """One entry per frame of every video of the perturbation."""
        root = self.img_prefix
        folders = sorted(e.name for e in os.scandir(root) if e.is_dir())
        classes, folder_to_idx = folder_labels(root, folders,
                                               self.fixed_classes)
        self._metainfo['classes'] = classes
        data_list = []
        sequence_idx = 0
        for folder in folders:
            names = sorted(
                n for n in os.listdir(osp.join(root, folder))
                if n.lower().endswith(self.extensions))
            for name in names:
                path = osp.join(root, folder, name)
                num_frames = count_frames(path)
                for frame_idx in range(num_frames):
                    data_list.append(
                        dict(
                            video_path=path,
                            gt_label=folder_to_idx[folder],
                            perturbation=self.perturbation,
                            step=self.step,
                            sequence_idx=sequence_idx,
                            frame_idx=frame_idx,
                            num_frames=num_frames))
                sequence_idx += 1
        if not data_list:
            raise ValueError(
                f'no video ({", ".join(self.extensions)}) found in the class '
                f'folders of "{root}"')
        return data_list

    def _frames(self, path: str, num_frames: int) -> List[np.ndarray]:
        """The decoded frames of ``path`` (the last video is cached)."""
        if self._cached[0] != path:
            frames = read_frames(path)
            if len(frames) != num_frames:
                raise ValueError(
                    f'unreadable video "{path}": decoded {len(frames)} '
                    f'frames but its header announces {num_frames}')
            self._cached = (path, frames)
        return self._cached[1]

    def prepare_data(self, idx: int):
        """Decode frame ``idx``, run the pipeline and tag the sample.

        Args:
            idx (int): Frame index in the dataset.

        Returns:
            dict: The pipeline's output (``inputs`` and ``data_samples``
            after ``PackInputs``), with :data:`FRAME_META_KEYS` in the data
            sample's metainfo.
        """
        info = self.get_data_info(idx)
        frame = self._frames(info['video_path'], info['num_frames'])[
            info['frame_idx']]
        results = dict(
            img=frame.copy(),
            img_shape=frame.shape[:2],
            ori_shape=frame.shape[:2],
            img_path=info['video_path'],
            gt_label=info['gt_label'],
            sample_idx=idx)
        packed = self.pipeline(results)
        meta = {key: info[key] for key in FRAME_META_KEYS}
        if isinstance(packed, dict) and 'data_samples' in packed:
            packed['data_samples'].set_metainfo(meta)
        elif isinstance(packed, dict):
            packed.update(meta)
        return packed
