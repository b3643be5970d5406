# Robustness sweep of the config's own test set, corrupted on the fly
# (COCO-C style for detectors, "X-C" for classifiers): the 15 benchmark
# corruptions x severities 1-5 and the clean set (severity 0), summarised as
# mCE (classifiers, relative to a baseline model) or P / mPC / rPC
# (detectors). Inherit beside a model config and set
#     test_cfg = _base_.robustness_test_cfg
# (a name no host config uses, so the two bases do not clash over test_cfg);
# override fields with dict(**_base_.robustness_test_cfg, severities=[0, 3]).
# Settings: mmgfn.evaluation.robustness_sweep.RobustnessSettings.
robustness_test_cfg = dict(
    type='mmgfn.RobustnessTestLoop',
    suite='corrupt',
    corruptions=None,  # the 15 benchmark corruptions
    severities=[0, 1, 2, 3, 4, 5],
    corrupted_root=None,  # or pre-generated <root>/<corruption>/<severity>/
    baseline_checkpoint=None,
    allow_partial=False)
