"""Hooks of mmgfn (registered in :data:`mmgfn.registry.HOOKS`)."""
