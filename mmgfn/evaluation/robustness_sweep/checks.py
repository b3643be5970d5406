"""Checks of a checkpoint against the config, the model and the data,
run before any cell of a sweep is evaluated."""
from typing import Any, List, Optional

from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

from mmgfn.apis.inference import shape_mismatches
from mmgfn.utils.errors import ConfigError


def head_rows(state: dict) -> Optional[int]:
    """Rows of the last 2-D ``head.*weight`` of a state dict (None if the
    model has no such classification head, e.g. a detector)."""
    rows = None
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith('head.') and key.endswith('weight') and getattr(
                value, 'ndim', 0) == 2:
            rows = int(value.shape[0])
    return rows


def checkpoint_num_classes(path: str) -> Optional[int]:
    """Rows of the last 2-D ``head.*weight`` of a checkpoint
    (:func:`head_rows`)."""
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    return head_rows(state)


def check_num_classes(path: str, cfg: Config, what: str) -> Optional[int]:
    """Refuse a checkpoint whose head disagrees with the config's."""
    rows = checkpoint_num_classes(path)
    head = cfg.model.get('head') if isinstance(cfg.model, dict) else None
    expected = head.get('num_classes') if isinstance(head, dict) else None
    if rows is not None and expected is not None and rows != expected:
        raise ConfigError(
            f'the {what} "{path}" has {rows} classes (rows of its head '
            f'weight) but the config\'s model.head.num_classes is {expected}')
    return rows


def _num_classes_in(cfg: Any, prefix: str = 'model') -> List[str]:
    """``'model.roi_head.bbox_head.num_classes=80'`` for every
    ``num_classes`` in a model config (lists included)."""
    found = []
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'num_classes' and isinstance(value, int):
                found.append(f'{prefix}.{key}={value}')
            else:
                found += _num_classes_in(value, f'{prefix}.{key}')
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            found += _num_classes_in(value, f'{prefix}[{i}]')
    return found


def check_state_shapes(path: str, model: Any, cfg: Config,
                       what: str) -> None:
    """Refuse a checkpoint whose tensors do not fit the built model.

    :func:`check_num_classes` compares a classifier's head rows with the
    config before anything is built; this check covers every model
    (through :func:`mmgfn.apis.shape_mismatches`, which
    :func:`mmgfn.apis.check_checkpoint_fits` shares), e.g.
    a detector trained for 5 classes tested with an 80-class config, whose
    classification layers (``roi_head.bbox_head.fc_cls``: ``num_classes +
    1`` rows) would otherwise be left randomly initialised with only
    size-mismatch warnings in the log. Every parameter and buffer that the
    checkpoint and the model both have must have the same shape.

    Raises:
        ConfigError: Naming the first mismatching tensor, both shapes, how
            many differ and the config's ``num_classes`` values.
    """
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    mismatched = shape_mismatches(model, state)
    if not mismatched:
        return
    key, got, want = mismatched[0]
    classes = _num_classes_in(cfg.get('model'))
    more = (f' (and {len(mismatched) - 1} more tensors)'
            if len(mismatched) > 1 else '')
    raise ConfigError(
        f'the {what} "{path}" does not fit the model of the config: '
        f'{key} is {list(got)} in the checkpoint but {list(want)} in the '
        f'model{more}; trained for another number of classes? (config: '
        f'{", ".join(classes) or "no num_classes"})')


def check_dataset_classes(rows: Optional[int], suite: Any,
                          dataset: Any) -> None:
    """Refuse a checkpoint whose class count disagrees with the data."""
    if rows is None or suite.name == 'imagenet-p':
        return
    if suite.name in ('imagenet-a', 'imagenet-r'):
        if rows != 1000:
            raise ConfigError(
                f'{suite.name} keeps 200 of the 1000 logits of an '
                f'ImageNet-1k classifier, but the checkpoint has {rows} '
                'classes (rows of its head weight)')
        return
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    if classes is not None and len(classes) != rows:
        raise ConfigError(
            f'the checkpoint has {rows} classes (rows of its head weight) '
            f'but the {suite.name} dataset has {len(classes)} classes')



def is_robustness_loop(test_cfg: Any) -> bool:
    """Whether a ``test_cfg`` asks for :class:`mmgfn.engine.
    RobustnessTestLoop`."""
    return isinstance(test_cfg, dict) and str(test_cfg.get(
        'type', '')).split('.')[-1] == 'RobustnessTestLoop'


def check_robustness_config(cfg: Config) -> None:
    """Preflight of a sweep config, before the Runner is built.

    What :class:`mmgfn.engine.RobustnessTestLoop` would refuse once the
    Runner has started logging, checked here so that it takes one line:
    the settings (:meth:`RobustnessSettings.check`), the cells' folders
    (:class:`Suite`), the clean test set's files when a cell reads them,
    the ``baseline_results`` file and the checkpoint's (``load_from``)
    class count against ``model.head.num_classes``.

    Raises:
        ConfigError: Naming the key and the problem.
        FileNotFoundError: Naming the missing folder or file.
    """
    from mmgfn.utils.errors import check_dataset_paths
    from .suite import RobustnessSettings, Suite
    from .summary import load_baseline_results
    test_cfg = dict(cfg.test_cfg)
    fp16 = test_cfg.pop('fp16', False)
    for key in ('type', '_scope_', 'checkpoint'):
        test_cfg.pop(key, None)
    try:
        settings = RobustnessSettings(**test_cfg)
    except TypeError as exc:
        raise ConfigError(f'test_cfg of RobustnessTestLoop: {exc}') from exc
    settings.check()
    suite = Suite(settings, cfg, fp16=fp16)
    if suite.name == 'corrupt' or any(s == 0 for _, s in suite.cells):
        check_dataset_paths(cfg, ['test_dataloader'])
    if settings.baseline_results:
        load_baseline_results(settings.baseline_results, suite,
                              settings.metric_key)
    checkpoint = cfg.get('load_from')
    if checkpoint and isinstance(cfg.get('model'), dict):
        rows = check_num_classes(checkpoint, cfg, 'checkpoint')
        if suite.name in ('imagenet-a', 'imagenet-r'):
            check_dataset_classes(rows, suite, None)
        if settings.baseline_checkpoint:
            base_rows = check_num_classes(settings.baseline_checkpoint, cfg,
                                          'baseline checkpoint')
            if base_rows != rows:
                raise ConfigError(
                    f'the checkpoint has {rows} classes but the baseline '
                    f'checkpoint has {base_rows}')
