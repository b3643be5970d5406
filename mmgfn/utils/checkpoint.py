"""Local checkpoint loading that works with torch >= 2.6.

torch 2.6 made ``torch.load(..., weights_only=True)`` the default. mmengine
0.10.7's local loader calls ``torch.load`` without ``weights_only``, and the
checkpoints that mmengine itself writes hold pickled mmengine objects
(``MessageHub`` state with ``HistoryBuffer``, ``ConfigDict`` meta, numpy
scalars), so ``load_from`` and ``resume`` fail with ``UnpicklingError:
Weights only load failed``.

Importing :mod:`mmgfn` registers :func:`load_from_local` for local paths
(the empty prefix) in mmengine's :class:`~mmengine.runner.CheckpointLoader`,
restoring the torch < 2.6 behaviour (``weights_only=False``) for local files.
As with any pickle, only load checkpoints you trust. Remote schemes
(``http://``, ``s3://``, ...) are left untouched.
"""
import os.path as osp
from typing import Any, Callable, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader

MapLocation = Optional[Union[str, torch.device, Callable]]


def load_from_local(filename: str, map_location: MapLocation = None) -> Any:
    """Load a checkpoint from a local path with ``weights_only=False``.

    Args:
        filename (str): Local checkpoint path; ``~`` is expanded.
        map_location (str | torch.device | Callable, optional): Passed to
            :func:`torch.load`. Defaults to None.

    Returns:
        dict | OrderedDict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If ``filename`` is not an existing file; the
            message names the path.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file "{filename}" does not exist')
    return torch.load(filename, map_location=map_location, weights_only=False)


def register_local_checkpoint_loader() -> None:
    """Make :func:`load_from_local` mmengine's loader for local paths.

    Idempotent: registering again replaces the same function.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)
