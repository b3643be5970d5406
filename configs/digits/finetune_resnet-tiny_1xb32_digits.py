# Plain fine-tuning of the digits classifier with the paper's fine-tuning
# optimiser (SGD lr 1e-3, momentum 0.9, weight decay 5e-4, cosine): the
# control that GFN and Adv. are compared with in the demo. Fine-tunes the
# checkpoint given by `load_from` (tools/run_demo.py passes the baseline's).
_base_ = ['./resnet-tiny_1xb32_digits.py']

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=10)
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=1))
