# ImageNet-R (Hendrycks et al., 2021): data/imagenet-r/<wnid>/*, top-1 of a
# 1000-way ImageNet-1k classifier through the 200-logit mask. Inherit beside
# a model config and set test_cfg = _base_.robustness_test_cfg.
robustness_test_cfg = dict(
    type='mmgfn.RobustnessTestLoop',
    suite='imagenet-r',
    data_root='data/imagenet-r')
