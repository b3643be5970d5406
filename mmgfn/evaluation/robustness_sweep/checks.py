"""Checks of a checkpoint against the config and the data, by file path
(each reads the file: a sweep reads its checkpoints once, through
:class:`~.setup.SweepSetup`)."""
from typing import Any, Optional

from mmgfn.utils.checkpoint import Checkpoint, head_rows  # noqa: F401
from .setup import check_dataset_classes, check_robustness_config  # noqa


def checkpoint_num_classes(path: str) -> Optional[int]:
    """Rows of the last 2-D ``head.*weight`` of a checkpoint
    (:attr:`Checkpoint.head_rows`)."""
    return Checkpoint(path).head_rows


def check_num_classes(path: str, cfg: Any, what: str) -> Optional[int]:
    """Refuse a checkpoint whose head disagrees with the config's
    ``model.head.num_classes`` (:meth:`Checkpoint.check_num_classes`)."""
    return Checkpoint(path, what).check_num_classes(cfg.get('model'))


def check_state_shapes(path: str, model: Any, cfg: Any, what: str) -> None:
    """Refuse a checkpoint whose tensors do not fit the built model
    (:meth:`Checkpoint.check_fits`)."""
    Checkpoint(path, what).check_fits(model, cfg.get('model') or {})


def is_robustness_loop(test_cfg: Any) -> bool:
    """Whether a ``test_cfg`` asks for :class:`mmgfn.engine.
    RobustnessTestLoop`."""
    return isinstance(test_cfg, dict) and str(test_cfg.get(
        'type', '')).split('.')[-1] == 'RobustnessTestLoop'
