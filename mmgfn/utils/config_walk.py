"""The one walker through mmengine config dicts.

Every part of mmgfn that looks inside a config (preflight, the robustness
sweep, the tools' dataloaders) goes through these functions:

* :func:`type_name`: the bare registered name of a ``type`` (a scope prefix
  such as ``mmgfn.`` dropped, a class given as type -> its name);
* :func:`iter_datasets`: a dataset and the datasets it wraps (``dataset`` /
  ``datasets`` of ConcatDataset, RepeatDataset, ClassBalancedDataset, ...),
  each with its config key, and :func:`loader_datasets` for the datasets of
  named dataloaders;
* :func:`pipeline_datasets`: the datasets (through wrappers) that hold the
  ``pipeline`` to edit;
* :func:`walk_config`: every value of nested dicts and lists with its
  config key, and :func:`find_type` / :func:`find_key` built on it.

Config keys are written as a user writes them:
``train_dataloader.dataset.datasets[1].pipeline[0]``.
"""
import inspect
import os.path as osp
from typing import (Any, Callable, Iterator, List, Optional, Tuple)


def type_name(node: Any) -> str:
    """The bare type name of a config dict: ``'mmgfn.ImageCorruption'`` ->
    ``'ImageCorruption'``; a class given as type -> its ``__name__``; ``''``
    for a value that is not a dict with a type."""
    value = node.get('type', '') if isinstance(node, dict) else ''
    if not isinstance(value, str):
        value = getattr(value, '__name__', '')
    return value.split('.')[-1]


def iter_datasets(dataset: dict,
                  key: str = 'dataset',
                  stop: Optional[Callable[[dict], bool]] = None
                  ) -> Iterator[Tuple[str, dict]]:
    """Yield ``(config key, dataset dict)`` for a dataset and, depth first,
    the datasets it wraps.

    Args:
        dataset (dict): A dataset config.
        key (str): Its config key. Defaults to ``'dataset'``.
        stop (callable, optional): Do not look inside a dataset for which
            ``stop(dataset)`` holds (it is still yielded).
    """
    yield key, dataset
    if stop is not None and stop(dataset):
        return
    inner = dataset.get('dataset')
    if isinstance(inner, dict):
        yield from iter_datasets(inner, f'{key}.dataset', stop)
    for i, ds in enumerate(dataset.get('datasets', None) or []):
        if isinstance(ds, dict):
            yield from iter_datasets(ds, f'{key}.datasets[{i}]', stop)


def loader_datasets(cfg: Any,
                    dataloaders: List[str]) -> Iterator[Tuple[str, dict]]:
    """``(key, dataset)`` of every dataset of the named dataloaders
    (:func:`iter_datasets` from each ``<loader>.dataset``); absent or None
    dataloaders, and dataloaders without a dataset dict, are skipped.

    Args:
        cfg (dict): The whole config.
        dataloaders (list[str]): Config keys, e.g. ``['train_dataloader']``.
    """
    for loader_key in dataloaders:
        loader = cfg.get(loader_key)
        if not isinstance(loader, dict) or not isinstance(
                loader.get('dataset'), dict):
            continue
        yield from iter_datasets(loader['dataset'], f'{loader_key}.dataset')


def pipeline_datasets(dataset: dict,
                      key: str = 'dataset') -> List[Tuple[str, dict]]:
    """``(config key, dataset dict)`` of the outermost datasets, through
    wrappers, that hold a ``pipeline`` (a wrapper with a pipeline of its
    own is not looked inside)."""
    return [(k, ds) for k, ds in iter_datasets(
        dataset, key, stop=lambda ds: 'pipeline' in ds) if 'pipeline' in ds]


def dataset_paths(dataset: dict, key: str) -> List[Tuple[str, str, str]]:
    """``(config key, path, 'file'|'folder')`` that one dataset (not the
    ones it wraps) will read, joined with ``data_root`` the way mmengine's
    BaseDataset joins them."""
    root = dataset.get('data_root') or ''
    paths = []
    if root:
        paths.append((f'{key}.data_root', root, 'folder'))
    ann_file = dataset.get('ann_file') or ''
    if ann_file:
        paths.append((f'{key}.ann_file', osp.join(root, ann_file), 'file'))
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, str):
        prefix = {'': prefix}
    for name, sub in (prefix or {}).items():
        if isinstance(sub, str) and sub:
            sub_key = f'{key}.data_prefix' + (f'.{name}' if name else '')
            paths.append((sub_key, osp.join(root, sub), 'folder'))
    return paths


def walk_config(node: Any,
                key: str = '',
                prune: Optional[Callable[[str, Any], bool]] = None
                ) -> Iterator[Tuple[str, Any]]:
    """Yield ``(config key, value)`` for every value inside the nested
    dicts and lists of ``node``, parents before children.

    Args:
        node: A config, or any value in it.
        key (str): The config key of ``node`` (``''`` for a whole config).
        prune (callable, optional): ``prune(key, value)``: do not look
            inside a value for which it holds (the value is yielded).
    """
    if isinstance(node, dict):
        items = ((f'{key}.{name}' if key else str(name), value)
                 for name, value in node.items())
    elif isinstance(node, (list, tuple)):
        items = ((f'{key}[{i}]', value) for i, value in enumerate(node))
    else:
        return
    for sub, value in items:
        yield sub, value
        if prune is None or not prune(sub, value):
            yield from walk_config(value, sub, prune)


def last_name(key: str) -> str:
    """The last name of a config key: ``'a.b[2].c'`` -> ``'c'``,
    ``'a.b[2]'`` -> ``'b'``."""
    return key.rsplit('.', 1)[-1].split('[', 1)[0]


def find_type(node: Any, key: str,
              name: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, dict)`` of ``node`` itself and every dict inside it
    whose :func:`type_name` is ``name`` (with or without a scope
    prefix)."""
    if type_name(node) == name:
        yield key, node
    for sub, value in walk_config(node, key):
        if type_name(value) == name:
            yield sub, value


def find_key(node: Any, key: str,
             name: str) -> Iterator[Tuple[str, Any]]:
    """``(config key, value)`` of every entry called ``name`` inside
    ``node`` (not looked inside)."""
    for sub, value in walk_config(
            node, key,
            prune=lambda k, v: last_name(k) == name and not k.endswith(']')):
        if last_name(sub) == name and not sub.endswith(']'):
            yield sub, value


def with_defaults(cls: type, cfg: dict) -> dict:
    """The arguments ``cls(**cfg)`` receives: the defaults of its
    constructor overlaid with ``cfg`` (``type`` and ``_scope_`` dropped).
    A required argument that ``cfg`` does not give is ``None``."""
    args = {
        name: (None if p.default is inspect.Parameter.empty else p.default)
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    args.update((k, v) for k, v in cfg.items()
                if k not in ('type', '_scope_'))
    return args
