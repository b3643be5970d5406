# The paper's "Adv." ablation on the digits: untargeted adversarial
# fine-tuning (Eq. 3, a step away from the true label) with cross-entropy.
_base_ = ['./finetune_resnet-tiny_1xb32_digits.py']

data_preprocessor = dict(
    type='mmgfn.NeighborAdversarialDataPreprocessor',
    eta=0.01,
    eta_unit='normalized',
    topk=3,
    mode='untargeted')
