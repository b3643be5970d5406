# The digits ResNet on its test set corrupted on the fly (a minute on a CPU):
#   tools/test.py configs/robustness/resnet-tiny_1xb32_digits-c.py CKPT
#   tools/dist_test.sh configs/robustness/resnet-tiny_1xb32_digits-c.py CKPT 2
# Four corruptions, so the summary is labelled partial (mCE needs all 15).
_base_ = ['../digits/resnet-tiny_1xb32_digits.py', './_base_/corrupt.py']
test_cfg = {
    **_base_.robustness_test_cfg,
    'corruptions': ['gaussian_noise', 'defocus_blur', 'fog', 'brightness'],
    'severities': [0, 1, 3, 5],
    'allow_partial': True,
}
