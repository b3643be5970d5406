"""Checks that run before a Runner is built, so bad input fails at once.

Each check raises :class:`ConfigError` (or :class:`FileNotFoundError`) with
a message naming the offending file, folder or config key, instead of a
traceback from deep inside a dataloader minutes later. The component checks
(:func:`check_components`) run before the Runner is built, so the error is
the only thing a tool prints. Preflight states no rule of a component: it
walks the config (:mod:`mmgfn.utils.config_walk`) and calls each GFN
component's own ``check_args`` on its config dict (the neighbour settings:
``topk`` against the class count, neighbour files for another class count),
the detection hook's ``check_classes`` (its class count against the
training set's), then checks ``ClassBalancedSubset.per_class`` against the
smallest class, local ``Pretrained`` weights of ``init_cfg``, and builds
the model once, whose registry misses name the closest registered names
(:func:`registry_hint`).
"""
import contextlib
import copy
import difflib
import os.path as osp
import re
from collections import Counter
from typing import Iterator, List, Optional, Sequence, Tuple

import mmengine.registry as roots
from mmengine.config import Config
from mmengine.registry import DefaultScope, Registry

from mmgfn.engine.hooks import BackgroundRoIPerturbationHook
from mmgfn.evaluation.robustness_sweep import (check_robustness_config,
                                               is_robustness_loop)
from mmgfn.models.data_preprocessors import \
    NeighborAdversarialDataPreprocessor
from mmgfn.models.losses import NeighborWeightedCELoss
from mmgfn.models.utils.neighbor_table import bbox_classes_key
from mmgfn.registry import (DATASETS, HOOKS, METRICS, MODELS,
                            TRANSFORMS)
from mmgfn.utils.config_walk import (find_key, find_type, iter_datasets,
                                     loader_datasets, type_name,
                                     with_defaults)
from mmgfn.utils.errors import (ConfigError, check_dataset_paths,
                                check_file, is_remote)


def _neighbor_files(node, key: str) -> Iterator[Tuple[str, str]]:
    """``(config key, path)`` of every non-empty ``neighbor_file`` string
    in the config."""
    return ((sub, value) for sub, value in find_key(node, key, 'neighbor_file')
            if isinstance(value, str) and value)


def check_train_config(cfg: Config) -> None:
    """Preflight for ``tools/train.py``: datasets, checkpoints and neighbour
    files (only training reads those: evaluation needs none), then the
    components (:func:`check_components`)."""
    for key, path in _neighbor_files(cfg.to_dict(), ''):
        if not is_remote(path) and not osp.isfile(osp.expanduser(path)):
            raise FileNotFoundError(
                f'neighbour file "{path}" does not exist ({key}); write it '
                'with tools/build_neighbors.py CONFIG CHECKPOINT')
    loaders = ['train_dataloader']
    if cfg.get('val_cfg') is not None:
        loaders.append('val_dataloader')
    check_dataset_paths(cfg, loaders)
    load_from: Optional[str] = cfg.get('load_from')
    if load_from:
        key = 'resume checkpoint (load_from, resume=True)' if cfg.get(
            'resume') else 'checkpoint (load_from)'
        check_file(load_from, key)
    check_components(cfg, train=True)


def check_test_config(cfg: Config) -> None:
    """Preflight for ``tools/test.py``: the test dataset, then the
    components (:func:`check_components`). A robustness sweep
    (``test_cfg.type='mmgfn.RobustnessTestLoop'``) checks its settings,
    its cells' folders and the test set only where a cell reads it
    (:func:`mmgfn.evaluation.robustness_sweep.check_robustness_config`)."""
    if is_robustness_loop(cfg.get('test_cfg')):
        check_robustness_config(cfg)
    else:
        check_dataset_paths(cfg, ['test_dataloader'])
    check_components(cfg, train=False)


# --------------------------------------------------------------------------
# checks of the components themselves (before the Runner starts logging)

_NOT_IN_REGISTRY = re.compile(
    r'`?([\w.]+)`? is not in the (\w+)::([\w _]+?) registry')


def _scoped_registry(scope: str, name: str) -> Optional[Registry]:
    """The registry called ``name`` in ``scope`` (a child of mmengine's root
    registry of that name), or None."""
    for root in vars(roots).values():
        if isinstance(root, Registry) and root.name == name:
            if scope == root.scope:
                return root
            return root.children.get(scope)
    return None


def _names(registry: Registry) -> List[str]:
    """The names a config whose scope is ``registry.scope`` can write: its
    own and its root's bare, the other scopes' with their prefix."""
    with contextlib.suppress(Exception):  # a location that fails to import
        registry.import_from_location()
    root = registry._get_root_registry()
    names = set(registry.module_dict) | set(root.module_dict)
    for scope, child in root.children.items():
        if child is not registry:
            with contextlib.suppress(Exception):
                child.import_from_location()
            names |= {f'{scope}.{n}' for n in child.module_dict}
    return sorted(names)


def registry_hint(message: str) -> str:
    """A one-line version of mmengine's "X is not in the S::R registry"
    error, with the registered names closest to ``X`` (difflib).

    Where ``X`` exists verbatim only in another scope (``ClsDataPreprocessor``
    in ``mmpretrain``), the hint says how a host component gets its own
    scope: a host class written as ``type='mmpretrain.ImageClassifier'`` in a
    config whose ``default_scope`` is ``'mmgfn'`` builds its children by bare
    names in the mmgfn scope.

    Args:
        message (str): The KeyError's message.

    Returns:
        str: The hint, or ``''`` if ``message`` is not a registry miss.
    """
    match = _NOT_IN_REGISTRY.search(message)
    if match is None:
        return ''
    name, scope, reg_name = match.groups()
    text = f'{name} is not in the {scope}::{reg_name} registry'
    registry = _scoped_registry(scope, reg_name)
    if registry is None:
        return text
    names = _names(registry)
    same = [n for n in names if '.' in n and n.split('.', 1)[1] == name]
    if same:
        host = same[0].split('.', 1)[0]
        return (f'{text}; it is {" / ".join(same)}: write '
                f"type='{same[0]}', or, where a {host} class builds it by "
                f"this bare name, give that class _scope_='{host}' and a "
                'bare type')
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if close:
        return f'{text}; did you mean {" or ".join(close)}?'
    return f'{text} (no registered name is close)'


def _model_num_classes(cfg: Config) -> Tuple[Optional[int], str]:
    """The class count the config gives its model, and the key that gives
    it: ``model.head.num_classes`` (mmpretrain) or the last box head's
    ``num_classes`` (mmdet two-stage detectors)."""
    model = cfg.get('model') or {}
    head = model.get('head')
    if isinstance(head, dict) and isinstance(head.get('num_classes'), int):
        return head['num_classes'], 'model.head.num_classes'
    roi = model.get('roi_head')
    bbox = roi.get('bbox_head') if isinstance(roi, dict) else None
    key = bbox_classes_key(bbox)
    if isinstance(bbox, (list, tuple)) and bbox:
        bbox = bbox[-1]
    if isinstance(bbox, dict) and isinstance(bbox.get('num_classes'), int):
        return bbox['num_classes'], key
    return None, ''


def _preprocessor(cfg: Config) -> Tuple[str, Optional[dict]]:
    model = cfg.get('model') or {}
    if isinstance(model.get('data_preprocessor'), dict):
        return 'model.data_preprocessor', model['data_preprocessor']
    return 'data_preprocessor', cfg.get('data_preprocessor')


def _perturbation_hooks(cfg: Config) -> List[Tuple[str, dict]]:
    return list(find_type(cfg.get('custom_hooks') or [], 'custom_hooks',
                          'BackgroundRoIPerturbationHook'))


def check_neighbor_settings(cfg: Config) -> None:
    """The GFN components' own checks on their config dicts (the
    preprocessor's, each neighbour-weighted loss's and each detection
    hook's ``check_args``, with the model's class count and the ``topk`` of
    the table they share), and the preprocessor's class count against the
    model's.

    Raises:
        ConfigError: Naming the component, its config key and the fix.
    """
    num_classes, classes_key = _model_num_classes(cfg)
    pre_key, pre = _preprocessor(cfg)
    table_topk, table_key = None, ''
    if type_name(pre) == 'NeighborAdversarialDataPreprocessor':
        NeighborAdversarialDataPreprocessor.check_args(pre, pre_key)
        n = pre.get('num_classes')
        table_topk = with_defaults(NeighborAdversarialDataPreprocessor,
                                   pre)['topk']
        table_key = f'{pre_key}.topk'
        if isinstance(n, int) and num_classes is not None and \
                n != num_classes:
            raise ConfigError(
                f'{pre_key}.num_classes={n} (NeighborAdversarialData'
                f'Preprocessor) differs from {classes_key}={num_classes}; '
                'set both to the number of classes of the dataset')
    losses = list(find_type(cfg.get('model') or {}, 'model',
                            'NeighborWeightedCELoss'))
    for key, hook in _perturbation_hooks(cfg):
        BackgroundRoIPerturbationHook.check_args(
            hook, key, num_classes, classes_key,
            loss_uses_table=any(not loss.get('neighbor_file')
                                for _, loss in losses))
        if table_topk is None:
            table_topk = with_defaults(BackgroundRoIPerturbationHook,
                                       hook)['topk']
            table_key = f'{key}.topk'
    for key, loss in losses:
        NeighborWeightedCELoss.check_args(loss, key, num_classes,
                                          classes_key, table_topk, table_key)


def _dataset_classes(dataset: dict) -> Optional[Sequence[str]]:
    """The classes a dataset config declares (``metainfo.classes``, else
    its class's ``METAINFO``), looking through wrappers."""
    for _, ds in iter_datasets(dataset, ''):
        meta = ds.get('metainfo')
        if isinstance(meta, dict) and meta.get('classes'):
            return meta['classes']
        if ds.get('dataset') is None and ds.get('datasets') is None:
            try:
                cls = DATASETS.get(ds.get('type')) if isinstance(
                    ds.get('type'), str) else ds.get('type')
            except KeyError:
                return None
            classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
            return classes or None
    return None


def check_hooks(cfg: Config) -> None:
    """:class:`BackgroundRoIPerturbationHook`: the detector's class count
    against the training set's (the hook's own
    :meth:`~BackgroundRoIPerturbationHook.check_classes`).

    Raises:
        ConfigError: Naming the hook, both keys and the fix.
    """
    hooks = _perturbation_hooks(cfg)
    loader = cfg.get('train_dataloader')
    if not hooks or not isinstance(loader, dict) or not isinstance(
            loader.get('dataset'), dict):
        return
    num_classes, classes_key = _model_num_classes(cfg)
    if num_classes is None:
        return
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        classes = _dataset_classes(loader['dataset'])
    BackgroundRoIPerturbationHook.check_classes(num_classes, classes,
                                                hooks[0][0], classes_key)


def check_subsets(cfg: Config, dataloaders: List[str]) -> None:
    """Build every :class:`ClassBalancedSubset` of the given dataloaders
    (their wrapped dataset is scanned once more by the Runner) and check
    ``per_class`` against the smallest class.

    Raises:
        ConfigError: Naming the key, the class and its count.
    """
    for key, ds in loader_datasets(cfg, dataloaders):
        if type_name(ds) != 'ClassBalancedSubset' or not isinstance(
                ds.get('dataset'), dict):
            continue
        with DefaultScope.overwrite_default_scope(
                cfg.get('default_scope')):
            inner = DATASETS.build(copy.deepcopy(ds['dataset']))
        counts = Counter(
            int(inner.get_cat_ids(i)[0]) for i in range(len(inner)))
        classes = list(inner.metainfo.get('classes') or [])
        labels = range(len(classes)) if classes else sorted(counts)
        per_class = ds.get('per_class')
        if not labels or not isinstance(per_class, int):
            continue
        smallest = min(labels, key=lambda c: counts.get(c, 0))
        have = counts.get(smallest, 0)
        if per_class > have:
            name = f' ("{classes[smallest]}")' if classes else ''
            raise ConfigError(
                f'{key}.per_class={per_class} (ClassBalancedSubset): '
                f'class {smallest}{name} has only {have} samples; set '
                f'{key}.per_class to at most {have}')


def _init_cfgs(node, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, init_cfg)`` of every ``Pretrained`` initialisation
    (``<key>.init_cfg``, or ``<key>.init_cfg[i]`` in a list of them)."""
    for sub, value in find_key(node, key, 'init_cfg'):
        is_list = isinstance(value, (list, tuple))
        for i, item in enumerate(value if is_list else [value]):
            if isinstance(item, dict) and item.get('type') == 'Pretrained':
                yield (f'{sub}[{i}]' if is_list else sub), item


def check_pretrained(cfg: Config) -> None:
    """Local ``init_cfg=dict(type='Pretrained', checkpoint=...)`` files
    (read by the Runner's weight initialisation at the start of training).

    Raises:
        FileNotFoundError: Naming the file, its config key and the fix.
    """
    for key, init in _init_cfgs(cfg.get('model') or {}, 'model'):
        path = init.get('checkpoint')
        if not isinstance(path, str) or is_remote(path) or \
                path.startswith(('torchvision://', 'open-mmlab://')):
            continue
        if not osp.isfile(osp.expanduser(path)):
            raise FileNotFoundError(
                f'pretrained weights "{path}" do not exist ({key}.checkpoint)'
                '; train or download them first, point '
                f'{key}.checkpoint at them, or set {key}=None to start '
                'from random weights')


def check_model_builds(cfg: Config) -> None:
    """Build the model once, as the Runner will, before it starts logging.

    The Runner builds it again (a model is cheap to build next to training
    it; building here does not read any checkpoint).

    Raises:
        ConfigError: For an unknown component type (with the closest
            registered names) or a constructor that refuses its arguments,
            naming ``model``.
    """
    model = cfg.get('model')
    if not isinstance(model, dict):
        return
    model = copy.deepcopy(model)
    pre = cfg.get('data_preprocessor')
    if pre is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(pre))
    try:
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            MODELS.build(model)
    except KeyError as e:
        hint = registry_hint(str(e.args[0]) if e.args else str(e))
        if not hint:
            raise
        raise ConfigError(f'model: unknown component type: {hint}') from e
    except (ValueError, TypeError, AssertionError) as e:
        raise ConfigError(
            f'model ({type_name(model) or "model"}) refuses its config: '
            f'{e}') from e


def _check_type(node: dict, key: str, root: Registry,
                scope: Optional[str]) -> None:
    """Raise ConfigError if ``node['type']`` is not registered in ``root``'s
    registry of ``scope`` (the one mmengine would build it from)."""
    name = node.get('type')
    if not isinstance(name, str):
        return
    with root.switch_scope_and_registry(scope) as registry:
        if registry.get(name) is not None:
            return
        hint = registry_hint(f'{name} is not in the '
                             f'{registry.scope}::{registry.name} registry')
    raise ConfigError(f'{key}.type: unknown component type: {hint}')


def check_types(cfg: Config, dataloaders: List[str]) -> None:
    """The ``type`` of each dataset (and wrapped dataset), of the
    transforms of its pipeline, of the custom hooks and of the evaluators
    resolves in its scope (a dict's ``_scope_``, else the config's
    ``default_scope``), as the Runner will resolve it once it has started.
    (Types inside the model are checked by :func:`check_model_builds`.)

    Raises:
        ConfigError: Naming the key and the closest registered names.
    """
    default = cfg.get('default_scope')
    for loader_key in dataloaders:
        loader = cfg.get(loader_key)
        if not isinstance(loader, dict) or not isinstance(
                loader.get('dataset'), dict):
            continue
        scope = default
        for key, ds in iter_datasets(loader['dataset'],
                                     f'{loader_key}.dataset'):
            scope = ds.get('_scope_') or scope
            _check_type(ds, key, DATASETS, scope)
            for i, t in enumerate(ds.get('pipeline') or []):
                if isinstance(t, dict):
                    _check_type(t, f'{key}.pipeline[{i}]', TRANSFORMS,
                                t.get('_scope_') or scope)
        evaluator_key = loader_key.replace('_dataloader', '_evaluator')
        evaluator = cfg.get(evaluator_key)
        items = evaluator if isinstance(evaluator, (list, tuple)) else [
            evaluator]
        for i, metric in enumerate(items):
            if isinstance(metric, dict):
                key = evaluator_key + (f'[{i}]' if isinstance(
                    evaluator, (list, tuple)) else '')
                _check_type(metric, key, METRICS,
                            metric.get('_scope_') or default)
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, dict):
            _check_type(hook, f'custom_hooks[{i}]', HOOKS,
                        hook.get('_scope_') or default)


def check_components(cfg: Config, train: bool) -> None:
    """What ``tools/train.py`` (``train=True``) and ``tools/test.py`` check
    before building the Runner, after the file checks: the types of the
    datasets, transforms, evaluators and hooks, the neighbour settings, the
    detection hook and pretrained weights (training only), class-balanced
    subsets, and a dry build of the model. The dataloaders checked are the
    ones the tool runs: train (and val unless ``val_cfg`` is None), or
    test."""
    loaders = ['test_dataloader']
    if train:
        loaders = ['train_dataloader']
        if cfg.get('val_cfg') is not None:
            loaders.append('val_dataloader')
    check_types(cfg, loaders)
    check_neighbor_settings(cfg)
    if train:
        check_hooks(cfg)
        check_pretrained(cfg)
    check_subsets(cfg, loaders)
    check_model_builds(cfg)
