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

:class:`Checkpoint` is the one place a checkpoint is inspected: read once,
its ``module.`` prefixes stripped once, its head rows and its fit to a
built model checked from memory.
"""
import os.path as osp
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
from mmengine.runner.checkpoint import (CheckpointLoader,
                                        _load_checkpoint_to_model)
from torch import nn

from .config_walk import find_key
from .errors import ConfigError, check_file

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


def _num_classes_in(cfg: Any, prefix: str = 'model') -> List[str]:
    """``'model.roi_head.bbox_head.num_classes=80'`` for every
    ``num_classes`` in a model config (lists included)."""
    return [f'{key}={value}' for key, value in find_key(cfg, prefix,
                                                        'num_classes')
            if isinstance(value, int) and not isinstance(value, bool)]


class Checkpoint:
    """A checkpoint file, read once, and what its tensors say.

    The file is loaded through mmengine's
    :class:`~mmengine.runner.CheckpointLoader` when the object is made;
    keys saved from a distributed wrapper lose their ``module.`` prefix
    once, here. Every question about the checkpoint (its head's class
    count, whether it fits a model) is answered from memory, and the
    weights are loaded into a model from memory too (:meth:`load_into`).

    Args:
        path (str): The checkpoint file.
        what (str): How messages name it (``'checkpoint'``, ``'baseline
            checkpoint'``). Defaults to ``'checkpoint'``.

    Raises:
        FileNotFoundError: If ``path`` is not a file (names ``what`` and
            the path).
        ConfigError: If the file holds no dict (no ``state_dict``).
    """

    def __init__(self, path: str, what: str = 'checkpoint') -> None:
        check_file(path, what)
        self.path = path
        self.what = what
        raw = CheckpointLoader.load_checkpoint(path, map_location='cpu')
        if not isinstance(raw, dict):
            raise ConfigError(f'{what} "{path}" holds no state_dict')
        #: the loaded dict, as mmengine's loader returned it
        self.raw = raw
        state = raw.get('state_dict', raw)
        #: the state dict, keys without a wrapper's ``module.`` prefix
        self.state_dict = {strip_module(k): v for k, v in state.items()}

    @classmethod
    def from_state_dict(cls, state_dict: dict, path: str = 'checkpoint',
                        what: str = 'checkpoint') -> 'Checkpoint':
        """A checkpoint already in memory (nothing is read)."""
        self = cls.__new__(cls)
        self.path, self.what = path, what
        self.raw = dict(state_dict=state_dict)
        self.state_dict = {strip_module(k): v for k, v in state_dict.items()}
        return self

    @property
    def meta(self) -> dict:
        meta = self.raw.get('meta')
        return meta if isinstance(meta, dict) else {}

    @property
    def head_rows(self) -> Optional[int]:
        """Rows of the last 2-D ``head.*weight`` (:func:`head_rows`)."""
        return head_rows(self.state_dict)

    def shape_mismatches(self, model: nn.Module
                         ) -> List[Tuple[str, tuple, tuple]]:
        """``(key, checkpoint shape, model shape)`` of the tensors whose
        shape differs from the model's (:func:`shape_mismatches`)."""
        return shape_mismatches(model, self.state_dict)

    def check_num_classes(self, model_cfg: Any) -> Optional[int]:
        """Refuse a checkpoint whose head rows disagree with
        ``model.head.num_classes`` of a model config; the rows (None for a
        model without a classification head)."""
        rows = self.head_rows
        head = model_cfg.get('head') if isinstance(model_cfg, dict) else None
        expected = head.get('num_classes') if isinstance(head, dict) else None
        if rows is not None and expected is not None and rows != expected:
            raise ConfigError(
                f'the {self.what} "{self.path}" has {rows} classes (rows of '
                'its head weight) but the config\'s model.head.num_classes '
                f'is {expected}')
        return rows

    def check_fits(self, model: nn.Module, model_cfg: Any = None,
                   require_head: bool = False) -> None:
        """Refuse a checkpoint whose tensors do not fit the built model.

        Every parameter and buffer that the checkpoint and the model both
        have must have the same shape (mmengine's loader would only warn
        and keep the model's random initialisation, e.g. a detector trained
        for 5 classes tested with an 80-class config).

        Args:
            model (nn.Module): The model built from the config (a wrapper's
                ``module`` is used).
            model_cfg (dict, optional): The config's ``model``, whose
                ``num_classes`` keys the message names.
            require_head (bool): Also refuse a checkpoint without the
                model's ``head.*`` tensors. Defaults to False.

        Raises:
            ConfigError: On the first mismatched shape: one line with the
                key, both shapes, how many differ and the config keys of the
                class counts (for a head tensor, both class counts).
        """
        model = getattr(model, 'module', model)
        mismatched = self.shape_mismatches(model)
        if mismatched:
            key, theirs, ours = mismatched[0]
            msg = (f'{self.what} "{self.path}" does not fit the model built '
                   f'from the config: {key} has shape {list(theirs)} in the '
                   f'checkpoint and {list(ours)} in the model')
            head_classes = getattr(getattr(model, 'head', None),
                                   'num_classes', None)
            if key.startswith('head.') and theirs and ours and \
                    ours[0] == head_classes:
                msg += (f' (the checkpoint has {theirs[0]} classes, the '
                        'config\'s model.head.num_classes is '
                        f'{head_classes})')
            elif model_cfg is not None:
                classes = _num_classes_in(model_cfg)
                msg += ('; trained for another number of classes? (config: '
                        f'{", ".join(classes) or "no num_classes"})')
            if len(mismatched) > 1:
                msg += f'; {len(mismatched) - 1} more tensor(s) differ'
            raise ConfigError(msg)
        if require_head:
            missing = [k for k in model.state_dict()
                       if k.startswith('head.') and k not in self.state_dict]
            if missing:
                raise ConfigError(
                    f'{self.what} "{self.path}" has no weights for '
                    f'{", ".join(missing)}: the model\'s head would be '
                    'random')

    def load_into(self, model: nn.Module) -> None:
        """Load the weights into ``model`` (a wrapper's ``module``), non
        strictly, as mmengine's ``Runner.load_checkpoint`` does."""
        _load_checkpoint_to_model(getattr(model, 'module', model), self.raw,
                                  strict=False)


def strip_module(key: str) -> str:
    """A state-dict key without a distributed wrapper's ``module.``."""
    return key[len('module.'):] if key.startswith('module.') else key


def head_rows(state: dict) -> Optional[int]:
    """Rows of the last 2-D ``head.*weight`` of a state dict (None if the
    model has no such classification head, e.g. a detector)."""
    rows = None
    for key, value in state.items():
        key = strip_module(key)
        if key.startswith('head.') and key.endswith('weight') and getattr(
                value, 'ndim', 0) == 2:
            rows = int(value.shape[0])
    return rows


def shape_mismatches(model: nn.Module,
                     state_dict: dict) -> List[Tuple[str, tuple, tuple]]:
    """The tensors of ``state_dict`` whose shape differs from the model's.

    Keys saved from a distributed wrapper (``module.`` prefix) are read
    without it; keys the model does not have are ignored (mmengine loads
    non-strictly).

    Args:
        model (nn.Module): The model (a wrapper's ``module`` is used).
        state_dict (dict): A checkpoint's ``state_dict``.

    Returns:
        list[tuple[str, tuple, tuple]]: ``(key, checkpoint shape, model
        shape)`` in the checkpoint's order.
    """
    own = getattr(model, 'module', model).state_dict()
    mismatched = []
    for key, value in state_dict.items():
        key = strip_module(key)
        if key in own and hasattr(value, 'shape') and \
                tuple(value.shape) != tuple(own[key].shape):
            mismatched.append((key, tuple(value.shape),
                               tuple(own[key].shape)))
    return mismatched
