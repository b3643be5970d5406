"""Registering mmgfn's modules and setting its default scope.

The modules that fill each registry are named once, as the ``locations`` of
the registries in :mod:`mmgfn.registry`; registering them all imports those
locations through the registries, so this helper (like the rest of
``mmgfn.utils``) imports nothing above the registry.
"""
import datetime
import warnings

from mmengine import DefaultScope
from mmengine.registry import Registry

from mmgfn import registry


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register all modules of mmgfn into its registries.

    Args:
        init_default_scope (bool): Whether to set the default scope to
            ``'mmgfn'`` so that bare type names resolve in mmgfn's registry
            tree first. If a default scope other than ``'mmgfn'`` is already
            current, a new one named ``mmgfn-<timestamp>`` is created, as
            mmdet and mmpretrain do. Defaults to True.
    """
    for name in registry.__all__:
        node = getattr(registry, name)
        # a registry without locations would fall back to calling this
        # function (mmengine's compatibility path): only those with some
        if isinstance(node, Registry) and node._locations:
            node.import_from_location()

    if not init_default_scope:
        return
    never_created = (DefaultScope.get_current_instance() is None
                     or not DefaultScope.check_instance_created('mmgfn'))
    if never_created:
        DefaultScope.get_instance('mmgfn', scope_name='mmgfn')
        return
    current_scope = DefaultScope.get_current_instance()
    if current_scope.scope_name != 'mmgfn':
        warnings.warn('The current default scope '
                      f'"{current_scope.scope_name}" is not "mmgfn", '
                      '`register_all_modules` will force the current '
                      'default scope to be "mmgfn". If this is not '
                      'expected, please set `init_default_scope=False`.')
        new_instance_name = f'mmgfn-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_instance_name, scope_name='mmgfn')
