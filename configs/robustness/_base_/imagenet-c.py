# ImageNet-C (Hendrycks & Dietterich, 2019): the released folders
# data/imagenet-c/<corruption>/<severity>/<wnid>/*.JPEG, the 15 benchmark
# corruptions x severities 1-5, evaluated as the reference code does
# (center-crop 224, no resize: test_pipeline='reference'). mCE_alexnet is
# normalised by AlexNet's published errors. Inherit beside a model config and
# set test_cfg = _base_.robustness_test_cfg.
robustness_test_cfg = dict(
    type='mmgfn.RobustnessTestLoop',
    suite='imagenet-c',
    data_root='data/imagenet-c',
    severities=[1, 2, 3, 4, 5],
    test_pipeline='reference',
    baseline_clean_error=None,  # AlexNet's clean error, for relative mCE
    allow_partial=False)
