"""Print the environment mmgfn runs in: ``python -m mmgfn.utils.collect_env``.

mmengine's report (Python, torch and its CUDA, torchvision, OpenCV, GCC,
mmengine) plus mmcv and whether its ops were compiled (with CUDA) or are
mmgfn's stand-in (:mod:`mmgfn.utils.mmcv_ext`), mmdet,
mmpretrain, mmgfn, and for each mmcv op that has a torchvision fallback
(:mod:`mmgfn.utils.mmcv_ops`) which kernel runs it on the CPU and, if
available, on CUDA. Paste it into bug reports.
"""
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from typing import Dict, Optional, Sequence

import torch
from mmengine.utils import get_git_hash
from mmengine.utils.dl_utils import collect_env as collect_base_env

import mmgfn
from .mmcv_ops import (FALLBACK_OPS, FORCE_ENV, active_path,
                       force_torchvision_ops, install_torchvision_fallback,
                       is_standin)


def collect_env(devices: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Collect the environment's versions and the active mmcv op paths.

    Args:
        devices (Sequence[str], optional): Devices whose op paths to report.
            Defaults to ``('cpu', 'cuda')``, without ``'cuda'`` when
            ``torch.cuda.is_available()`` is False.

    Returns:
        dict: Ordered name -> value strings.
    """
    env = OrderedDict(collect_base_env())
    env['PyTorch CUDA'] = str(torch.version.cuda)
    import mmcv
    env['MMCV'] = mmcv.__version__
    standin = is_standin()
    has_ops = install_torchvision_fallback()
    if standin:
        env['MMCV CUDA Compiler'] = \
            'n/a (mmcv installed without compiled ops)'
    elif has_ops:
        # not mmcv's get_compiler_version(): it segfaulted with an mmcv
        # built against torch 2.11+cu130 (Python 3.12) on an H200 machine
        from mmcv.ops import get_compiling_cuda_version
        env['MMCV CUDA Compiler'] = get_compiling_cuda_version()
    else:
        env['MMCV CUDA Compiler'] = 'n/a (mmcv without compiled ops)'
    for name, dist in (('MMDetection', 'mmdet'), ('MMPretrain', 'mmpretrain')):
        try:  # without importing them (mmpretrain imports all its models)
            env[name] = version(dist)
        except PackageNotFoundError:
            env[name] = 'not installed'
    env['MMGFN'] = mmgfn.__version__ + '+' + get_git_hash()[:7]
    env[FORCE_ENV] = 'set' if force_torchvision_ops() else 'unset'
    if devices is None:
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for device in devices:
        for op in FALLBACK_OPS:
            path = active_path(op, device) if has_ops or standin else 'n/a'
            env[f'mmcv op {op} on {device}'] = path
    return env


def main() -> None:
    """Print :func:`collect_env`, one ``name: value`` per line."""
    for name, value in collect_env().items():
        print(f'{name}: {value}')


if __name__ == '__main__':
    main()
