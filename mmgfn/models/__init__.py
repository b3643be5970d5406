"""Models of mmgfn: data preprocessors and losses (registered in
:data:`mmgfn.registry.MODELS`)."""
