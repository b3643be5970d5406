"""Checks that run before a Runner is built, so bad input fails at once.

Each check raises :class:`ConfigError` (or :class:`FileNotFoundError`) with
a message naming the offending file, folder or config key, instead of a
traceback from deep inside a dataloader minutes later.
"""
import os.path as osp
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config


class ConfigError(ValueError):
    """A config asks for something that cannot work (names the key)."""


def _is_remote(path: str) -> bool:
    return '://' in path


def check_file(path: str, what: str) -> None:
    """Raise FileNotFoundError naming ``what`` if ``path`` is not a file.

    Args:
        path (str): A local path; remote URIs (``scheme://``) are skipped.
        what (str): What the file is, e.g. ``'config file'``.
    """
    if path and not _is_remote(path) and not osp.isfile(
            osp.expanduser(path)):
        raise FileNotFoundError(f'{what} "{path}" does not exist')


def _datasets(dataset: dict, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(config key, dataset dict)`` for a dataset and the datasets
    it wraps (``dataset`` / ``datasets`` of wrappers such as
    ConcatDataset, RepeatDataset, ClassBalancedDataset)."""
    yield key, dataset
    inner = dataset.get('dataset')
    if isinstance(inner, dict):
        yield from _datasets(inner, f'{key}.dataset')
    for i, ds in enumerate(dataset.get('datasets', None) or []):
        if isinstance(ds, dict):
            yield from _datasets(ds, f'{key}.datasets[{i}]')


def _dataset_paths(dataset: dict, key: str) -> List[Tuple[str, str, str]]:
    """``(config key, path, 'file'|'folder')`` that a dataset will read,
    joined with ``data_root`` the way mmengine's BaseDataset joins them."""
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


def check_dataset_paths(cfg: Config, dataloaders: List[str]) -> None:
    """Check that the folders and annotation files of datasets exist.

    Args:
        cfg (Config): The full config.
        dataloaders (list[str]): Config keys to check, e.g.
            ``['train_dataloader', 'val_dataloader']``; absent or None
            entries are skipped.

    Raises:
        FileNotFoundError: Naming the missing path and the config key that
            asks for it.
    """
    for loader_key in dataloaders:
        loader = cfg.get(loader_key)
        if not isinstance(loader, dict) or not isinstance(
                loader.get('dataset'), dict):
            continue
        for key, dataset in _datasets(loader['dataset'],
                                      f'{loader_key}.dataset'):
            for path_key, path, kind in _dataset_paths(dataset, key):
                if _is_remote(path):
                    continue
                exists = osp.isdir(path) if kind == 'folder' else osp.isfile(
                    path)
                if not exists:
                    raise FileNotFoundError(
                        f'dataset {kind} "{path}" does not exist '
                        f'({path_key}); see data/README.md for the layout')


def _neighbor_files(node, key: str) -> Iterator[Tuple[str, str]]:
    """``(config key, path)`` of every ``neighbor_file`` in the config."""
    if isinstance(node, dict):
        for name, value in node.items():
            sub = f'{key}.{name}' if key else name
            if name == 'neighbor_file' and isinstance(value, str) and value:
                yield sub, value
            else:
                yield from _neighbor_files(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _neighbor_files(value, f'{key}[{i}]')


def check_train_config(cfg: Config) -> None:
    """Preflight for ``tools/train.py``: datasets, checkpoints and neighbour
    files (only training reads those: evaluation needs none)."""
    for key, path in _neighbor_files(cfg.to_dict(), ''):
        if not _is_remote(path) and not osp.isfile(osp.expanduser(path)):
            raise FileNotFoundError(
                f'neighbour file "{path}" does not exist ({key}); write it '
                'with tools/build_neighbors.py CONFIG CHECKPOINT')
    loaders = ['train_dataloader']
    if cfg.get('val_cfg') is not None:
        loaders.append('val_dataloader')
    check_dataset_paths(cfg, loaders)
    load_from: Optional[str] = cfg.get('load_from')
    if load_from:
        key = 'resume checkpoint (--resume)' if cfg.get(
            'resume') else 'checkpoint (load_from)'
        check_file(load_from, key)


def check_test_config(cfg: Config) -> None:
    """Preflight for ``tools/test.py``: the test dataset."""
    check_dataset_paths(cfg, ['test_dataloader'])
