"""``mmgfn::`` as a ``_base_`` prefix, as ``mmpretrain::`` and ``mmdet::``.

mmengine 0.10 resolves ``_base_ = ['pkg::folder/file.py']`` for the packages
in its ``MODULE2PACKAGE`` dict, reading ``<installed pkg>/.mim/configs/
folder/file.py``. mmgfn's wheel ships its ``configs/`` (and ``tools/``) there,
as OpenMMLab packages do (``setup.py``; an editable install links them), and
importing :mod:`mmgfn` adds ``'mmgfn'`` to that dict. So a downstream
config can inherit an mmgfn config from any folder::

    _base_ = ['mmgfn::digits/gfn_resnet-tiny_1xb32_digits.py']
    _base_ = ['mmgfn::gfn_vit-b_in1k.py']

provided :mod:`mmgfn` is imported before the config is parsed (mmgfn's own
tools, ``mim train mmgfn CONFIG``, or ``import mmgfn`` in the downstream
project's tool); mmengine parses ``_base_`` before it reads
``custom_imports``, so a config cannot import mmgfn for itself. Dicts
inherited through ``mmgfn::`` carry ``_scope_='mmgfn'``.

mmengine also requires a folder in the path (``pkg::folder/file.py``);
mmgfn's ImageNet configs sit at the top of ``configs/``, so for the
``mmgfn`` prefix only a path without a folder is accepted too.
"""
import mmengine.config.config as mmengine_config
from mmengine.config import utils as config_utils

PACKAGE = 'mmgfn'


def _get_package_and_cfg_path(cfg_path: str):
    """mmengine's resolver, also accepting ``mmgfn::file.py``."""
    package, sep, rel = cfg_path.partition('::')
    if package == PACKAGE and sep and '/' not in rel and '::' not in rel:
        return config_utils.MODULE2PACKAGE[PACKAGE], rel
    return config_utils._get_package_and_cfg_path(cfg_path)


def register_config_prefix() -> None:
    """Make ``mmgfn::`` a ``_base_`` prefix of mmengine's configs.

    Idempotent. Only ``mmgfn::`` paths take the new branch; every other
    prefix goes through mmengine's own resolver unchanged.
    """
    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    mmengine_config._get_package_and_cfg_path = _get_package_and_cfg_path
