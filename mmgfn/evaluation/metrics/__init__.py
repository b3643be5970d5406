"""Metrics of mmgfn (registered in :data:`mmgfn.registry.METRICS`)."""
