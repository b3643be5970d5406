"""The benchmarks' definitions, in one place.

Everything that *defines* a robustness benchmark rather than computes on
it: the corruption names and severities of ImageNet-C and COCO-C, the
reference ImageNet-C/-P test pipeline, AlexNet's published error and flip
tables, ImageNet-P's perturbations and difficulty folders, and the names
of the robustness sweep's suites. The datasets, the metric functions
(:mod:`mmgfn.evaluation.functional`) and the robustness sweep import them
from here (older import paths re-export them).

A *cell* is one ``(corruption, severity)`` pair: severities 1-5, with
``('clean', None)`` for the clean set in a sweep (0 is the clean image in
the COCO-C convention).
"""
from typing import Dict, List, Optional, Tuple

#: One evaluated set: ``(corruption, severity)``; ``(CLEAN, None)`` for the
#: clean set.
Cell = Tuple[str, Optional[int]]

#: The 15 corruptions of the ImageNet-C / COCO-C benchmarks, in their order.
BENCHMARK_CORRUPTIONS = (
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur',
    'glass_blur', 'motion_blur', 'zoom_blur', 'snow', 'frost', 'fog',
    'brightness', 'contrast', 'elastic_transform', 'pixelate',
    'jpeg_compression')
#: The 4 held-out corruptions (not part of mCE / mPC).
HOLDOUT_CORRUPTIONS = ('speckle_noise', 'gaussian_blur', 'spatter',
                       'saturate')
ALL_CORRUPTIONS = BENCHMARK_CORRUPTIONS + HOLDOUT_CORRUPTIONS


#: AlexNet's ImageNet-C top-1 error per benchmark corruption, averaged over
#: severities 1-5 (hendrycks/robustness; as used by AugMix, FAN, TAPADL,
#: easyrobust and mmcls' ``get_ce_alexnet``).
ALEXNET_ERRORS: Dict[str, float] = {
    'gaussian_noise': 0.886428,
    'shot_noise': 0.894468,
    'impulse_noise': 0.922640,
    'defocus_blur': 0.819880,
    'glass_blur': 0.826268,
    'motion_blur': 0.785948,
    'zoom_blur': 0.798360,
    'snow': 0.866816,
    'frost': 0.826572,
    'fog': 0.819324,
    'brightness': 0.564592,
    'contrast': 0.853204,
    'elastic_transform': 0.646056,
    'pixelate': 0.717840,
    'jpeg_compression': 0.606500,
}

#: Severities of the ImageNet-C / COCO-C benchmarks (0, clean, excluded).
SEVERITIES: Tuple[int, ...] = (1, 2, 3, 4, 5)

#: The 10 ImageNet-P benchmark perturbations (part of mFR).
IMAGENET_P_PERTURBATIONS: Tuple[str, ...] = (
    'gaussian_noise', 'shot_noise', 'motion_blur', 'zoom_blur', 'snow',
    'brightness', 'translate', 'rotate', 'tilt', 'scale')
#: ImageNet-P's held-out perturbations (not part of mFR).
IMAGENET_P_HOLDOUT: Tuple[str, ...] = ('speckle_noise', 'gaussian_blur',
                                       'spatter', 'shear')

#: AlexNet's ImageNet-P flip probability per perturbation at difficulty 1
#: (the 10 benchmark and 4 held-out perturbations), as published in
#: clovaai/assembled-cnn, ``mce/eval_robustness.py`` (``ALEXNET_FP``, commit
#: 45bb83bca16c0f3607135c8973a125b53b0f5626). That repository declares the
#: table but does not use it (its ``fr`` mode is "not yet supported") and
#: names no source for it; Hendrycks' ImageNet-P code ships none. Opt-in
#: only: pass ``baseline_fp='alexnet'``.
ALEXNET_FLIP_PROBABILITIES: Dict[str, float] = {
    'gaussian_noise': 0.23653,
    'shot_noise': 0.30062,
    'motion_blur': 0.09297,
    'zoom_blur': 0.05942,
    'spatter': 0.05053,
    'brightness': 0.04889,
    'translate': 0.11007,
    'rotate': 0.13104,
    'tilt': 0.07050,
    'scale': 0.23531,
    'speckle_noise': 0.18649,
    'gaussian_blur': 0.02775,
    'snow': 0.11928,
    'shear': 0.10658,
}

#: Hendrycks' ImageNet-C/-P evaluation of the released 224 x 224 images:
#: center-crop 224, no resize (the crop is the identity on the released
#: files; ImageNet-P's reference applies no crop at all to its 224 x 224
#: frames). Normalisation is the model's data preprocessor.
REFERENCE_TEST_PIPELINE: List[dict] = [
    dict(type='mmpretrain.LoadImageFromFile'),
    dict(type='mmpretrain.CenterCrop', crop_size=224),
    dict(type='mmpretrain.PackInputs'),
]

#: The sweep's suites and the dataset type each one reads.
SUITES = ('corrupt', 'imagenet-c', 'imagenet-p', 'imagenet-a', 'imagenet-r')
SUITE_DATASETS = {
    'imagenet-c': 'ImageNetC',
    'imagenet-p': 'ImageNetP',
    'imagenet-a': 'ImageNetA',
    'imagenet-r': 'ImageNetR'
}
CLEAN = 'clean'


def is_noise_perturbation(name: str) -> bool:
    """Whether an ImageNet-P perturbation compares frames with frame 0.

    Args:
        name (str): Perturbation folder name, e.g. ``'gaussian_noise_2'``.

    Returns:
        bool: True if the name contains ``noise`` (Hendrycks' rule).
    """
    return 'noise' in name


def imagenet_p_perturbations(difficulty: int = 1,
                             holdout: bool = False) -> List[str]:
    """The perturbation folders of one ImageNet-P difficulty.

    Args:
        difficulty (int): 1 (the benchmark), 2 or 3 (Hendrycks'
            ``--difficulty``). Defaults to 1.
        holdout (bool): The 4 held-out perturbations instead of the 10
            benchmark ones. Defaults to False.

    Returns:
        list[str]: Folder names: ``<p>_<d>`` for the noise perturbations at
        ``d >= 2``, ``<p>`` otherwise (read at stride ``d``).

    Raises:
        ValueError: For a difficulty outside 1-3.
    """
    if difficulty not in (1, 2, 3):
        raise ValueError(f'ImageNet-P difficulty must be 1, 2 or 3, got '
                         f'{difficulty!r}')
    names = IMAGENET_P_HOLDOUT if holdout else IMAGENET_P_PERTURBATIONS
    return [
        f'{p}_{difficulty}'
        if is_noise_perturbation(p) and difficulty > 1 else p for p in names
    ]


def imagenet_p_difficulty(folder: str, step: int = 1) -> Tuple[str, int]:
    """The perturbation and difficulty of an ImageNet-P folder.

    Args:
        folder (str): Folder name, e.g. ``'gaussian_noise_2'`` or
            ``'translate'``.
        step (int): The stride a non-noise folder is read at. Defaults to 1.

    Returns:
        tuple[str, int]: ``('gaussian_noise', 2)`` for
        ``'gaussian_noise_2'``; ``('translate', step)`` for ``'translate'``
        (a noise folder without suffix is difficulty 1).
    """
    base, _, suffix = folder.rpartition('_')
    if is_noise_perturbation(folder) and suffix.isdigit() and base:
        return base, int(suffix)
    return folder, 1 if is_noise_perturbation(folder) else int(step)
