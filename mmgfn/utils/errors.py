"""Errors and file checks shared by every layer of mmgfn.

:class:`ConfigError` is what mmgfn raises for a config or an input that
cannot work; its message names the config key, the file or the class at
fault, in one line. The file checks raise :class:`FileNotFoundError`
naming what the file is and, for datasets, the config key that asks for
it. It imports only :mod:`mmgfn.utils.config_walk`, so every other module
can import it.
"""
import os.path as osp
from typing import Any, List, Sequence, Tuple

from mmengine.config import Config

from .config_walk import dataset_paths, loader_datasets


class ConfigError(ValueError):
    """A config asks for something that cannot work (names the key)."""


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URI (``scheme://...``) rather than a local
    path; remote files are not checked here."""
    return '://' in path


def check_file(path: str, what: str) -> None:
    """Raise FileNotFoundError naming ``what`` if ``path`` is not a file.

    Args:
        path (str): A local path; remote URIs (``scheme://``) are skipped.
        what (str): What the file is, e.g. ``'config file'``.
    """
    if path and not is_remote(path) and not osp.isfile(
            osp.expanduser(path)):
        raise FileNotFoundError(f'{what} "{path}" does not exist')


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
    for key, dataset in loader_datasets(cfg, dataloaders):
        for path_key, path, kind in dataset_paths(dataset, key):
            _check_path(path_key, path, kind)


def _check_path(path_key: str, path: str, kind: str) -> None:
    if is_remote(path):
        return
    exists = osp.isdir(path) if kind == 'folder' else osp.isfile(path)
    if not exists:
        raise FileNotFoundError(
            f'dataset {kind} "{path}" does not exist ({path_key}); see '
            'data/README.md for the layout')


def check_choice(key: str, value: Any, choices: Sequence,
                 owner: str = '') -> None:
    """Raise ConfigError naming ``key`` (and the component ``owner``)
    unless ``value`` is one of ``choices``."""
    if value not in choices:
        who = f' ({owner})' if owner else ''
        raise ConfigError(f'{key}={value!r}{who} is not one of '
                          f'{list(choices)}')


def check_int(key: str, value: Any, low: int, owner: str = '') -> None:
    """Raise ConfigError naming ``key`` (and the component ``owner``)
    unless ``value`` is an integer ``>= low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        who = f' ({owner})' if owner else ''
        raise ConfigError(f'{key}={value!r}{who} must be an integer '
                          f'>= {low}')


__all__: Tuple[str, ...] = ('ConfigError', 'is_remote', 'check_file',
                            'check_dataset_paths', 'check_choice',
                            'check_int')
