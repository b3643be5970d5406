"""Registering mmgfn's modules and setting its default scope."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register all modules of mmgfn into its registries.

    Args:
        init_default_scope (bool): Whether to set the default scope to
            ``'mmgfn'`` so that bare type names resolve in mmgfn's registry
            tree first. If a default scope other than ``'mmgfn'`` is already
            current, a new one named ``mmgfn-<timestamp>`` is created, as
            mmdet and mmpretrain do. Defaults to True.
    """
    import mmgfn.datasets  # noqa: F401,F403
    import mmgfn.engine  # noqa: F401,F403
    import mmgfn.evaluation  # noqa: F401,F403
    import mmgfn.models  # noqa: F401,F403

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
