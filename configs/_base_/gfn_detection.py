# GFN for detectors: every training batch is perturbed so that the
# ground-truth RoIs move toward the background class (eta on the normalised
# input, as in classification), then trained with its true annotations.
custom_hooks = [
    dict(
        type='mmgfn.BackgroundRoIPerturbationHook',
        eta=0.01,
        eta_unit='normalized',
        neighbor_ratio=0.0)
]
