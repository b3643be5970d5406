# ImageNet-P (Hendrycks & Dietterich, 2019): data/imagenet-p/<perturbation>/
# <wnid>/*.mp4, the 10 benchmark perturbations at difficulty 1; flip
# probability, top-5 distance, and mFR against AlexNet's published flip
# probabilities (alexnet_fp=True). Inherit beside a model config and set
# test_cfg = _base_.robustness_test_cfg.
robustness_test_cfg = dict(
    type='mmgfn.RobustnessTestLoop',
    suite='imagenet-p',
    data_root='data/imagenet-p',
    step=1,
    alexnet_fp=True,
    test_pipeline='reference',
    allow_partial=False)
