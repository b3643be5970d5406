"""NeighborAdversarialDataPreprocessor on briefly trained real models."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

from conftest import ROOT, digits_options, write_image_folder
from mmgfn.models import NeighborAdversarialDataPreprocessor
from mmgfn.models.utils import (NeighborTable, frozen_model,
                                head_class_weights)
from mmgfn.registry import MODELS

CONFIGS = {
    'resnet': osp.join(ROOT, 'configs/digits/resnet-tiny_1xb32_digits.py'),
    'vit': osp.join(ROOT, 'configs/digits/vit-tiny_1xb32_digits.py'),
}
MEAN, STD = 77.9, 82.5


def _options_dict(data_root, max_epochs):
    opts = {}
    for item in digits_options(data_root, max_epochs):
        key, value = item.split('=', 1)
        opts[key] = int(value) if value.isdigit() else value
    return opts


def _train(name, data_root, work_dir, max_epochs=4):
    """Train the tiny model briefly with the real Runner; return it."""
    DefaultScope._instance_dict.clear()
    cfg = Config.fromfile(CONFIGS[name])
    cfg.merge_from_dict(_options_dict(data_root, max_epochs))
    cfg.work_dir = work_dir
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.train_cfg.val_interval = 100
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.model


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('gfn_pre')
    data_root = write_image_folder(str(root / 'images'), per_class=12)
    models = {
        name: _train(name, data_root, str(root / name))
        for name in CONFIGS
    }
    return models, data_root


def _batch(data_root, n=16, split='val'):
    """A real batch: ``n`` images read through the config's pipeline."""
    cfg = Config.fromfile(CONFIGS['resnet'])
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    ds_cfg.update(data_root=data_root, data_prefix=split)
    DefaultScope._instance_dict.clear()
    DefaultScope.get_instance('batch', scope_name='mmgfn')
    from mmgfn.registry import DATASETS
    ds = DATASETS.build(ds_cfg)
    items = [ds[i * len(ds) // n] for i in range(n)]
    return dict(
        inputs=[it['inputs'] for it in items],
        data_samples=[it['data_samples'] for it in items])


def _preprocessor(model, **kwargs):
    pre = NeighborAdversarialDataPreprocessor(
        **dict(dict(num_classes=4, topk=2, mean=[MEAN] * 3, std=[STD] * 3),
               **kwargs))
    model.data_preprocessor = pre
    pre.bind(model)
    return pre


def _logits(model, x):
    # the preprocessor's default attack_mode='eval'
    with torch.no_grad(), frozen_model(model, eval_mode=True):
        return model(x, mode='tensor')


def _probs(model, x):
    return F.softmax(_logits(model, x), 1)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_neighbor_step_raises_neighbor_probability(trained, name):
    model = trained[0][name]
    model.train()
    pre = _preprocessor(model)
    pre.neighbor_table.update_from_embeddings(head_class_weights(model, 4))
    data = pre(_batch(trained[1]), training=False)
    x = data['inputs']
    labels = torch.cat([s.gt_label for s in data['data_samples']])
    targets, _ = pre.neighbor_table.sample(
        labels, torch.Generator().manual_seed(0))
    x_adv = pre.perturb(model, x, labels, targets)
    idx = torch.arange(len(labels))
    before = _probs(model, x)[idx, targets]
    after = _probs(model, x_adv)[idx, targets]
    assert (after > before).float().mean() >= 0.75, (before, after)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_untargeted_step_raises_true_label_ce(trained, name):
    model = trained[0][name]
    model.train()
    pre = _preprocessor(model, mode='untargeted')
    data = pre(_batch(trained[1]), training=False)
    x = data['inputs']
    labels = torch.cat([s.gt_label for s in data['data_samples']])
    x_adv = pre.perturb(model, x, labels)
    ce = F.cross_entropy(_logits(model, x), labels, reduction='none')
    ce_adv = F.cross_entropy(_logits(model, x_adv), labels, reduction='none')
    assert (ce_adv > ce).float().mean() >= 0.75
    assert ce_adv.mean() > ce.mean()


@pytest.mark.parametrize('unit,num_steps', [('normalized', 1),
                                            ('pixel', 1), ('pixel', 3)])
def test_step_is_bounded_and_stays_in_pixel_range(trained, unit, num_steps):
    model = trained[0]['resnet']
    eta = 0.01 if unit == 'normalized' else 0.02
    pre = _preprocessor(model, eta=eta, eta_unit=unit, num_steps=num_steps,
                        neighbor_source='head')
    batch = _batch(trained[1])
    clean = pre(copy.deepcopy(batch), training=False)['inputs']
    adv = pre(batch, training=True)['inputs']
    # back to [0, 1] pixel units
    diff_pixel = (adv - clean).abs() * STD / 255
    diff_norm = (adv - clean).abs()
    if unit == 'pixel':
        assert diff_pixel.max() <= eta + 1e-6
        if num_steps == 1:
            # a full step wherever the range allows and the gradient is not
            # exactly zero
            pixels = clean * STD + MEAN
            inside = (pixels > 6) & (pixels < 249)
            full = (diff_pixel[inside] - eta).abs() < 1e-5
            assert full.float().mean() > 0.9
    else:
        assert diff_norm.max() <= eta + 1e-6
        assert diff_pixel.max() == pytest.approx(eta * STD / 255, rel=1e-4)
    pixels = adv * STD + MEAN
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3


@pytest.mark.parametrize('attack_mode', ['eval', 'train'])
@pytest.mark.parametrize('name', list(CONFIGS))
def test_attack_leaves_no_trace(trained, name, attack_mode):
    """In 'train' mode the attack's forward moves BatchNorm's statistics:
    they are restored."""
    model = copy.deepcopy(trained[0][name])
    model.train()
    pre = _preprocessor(model, attack_mode=attack_mode)
    # the table is built before the snapshot (building it is no attack trace)
    pre.neighbor_table.update_from_embeddings(
        head_class_weights(model, 4), source='head')
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # one real step so that grads and momentum buffers exist
    batch = _batch(trained[1])
    data = pre(copy.deepcopy(batch), training=False)
    loss = sum(model(**data, mode='loss').values())
    loss.backward()
    optimizer.step()
    params = {k: v.clone() for k, v in model.named_parameters()}
    grads = {k: v.grad.clone() for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    state = copy.deepcopy(optimizer.state_dict())
    flags = {k: v.requires_grad for k, v in model.named_parameters()}

    out = pre(batch, training=True)
    assert not torch.equal(out['inputs'], data['inputs'])
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k
        assert torch.equal(v.grad, grads[k]), k
        assert v.requires_grad == flags[k], k
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    new_state = optimizer.state_dict()
    for i, s in state['state'].items():
        assert torch.equal(s['momentum_buffer'],
                           new_state['state'][i]['momentum_buffer'])
    if name == 'resnet':  # BatchNorm statistics really are at stake
        assert any('running_mean' in k for k in buffers)


def test_an_exception_mid_attack_restores_the_model(trained):
    """The model raises after its backbone ran in training mode: flags,
    modes and BatchNorm statistics are restored all the same."""
    model = copy.deepcopy(trained[0]['resnet'])
    model.train()
    pre = _preprocessor(model, attack_mode='train')
    pre.neighbor_table.update_from_embeddings(
        head_class_weights(model, 4), source='head')
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    flags = {k: v.requires_grad for k, v in model.named_parameters()}

    def explode(module, args, output):
        raise RuntimeError('boom in the head')

    handle = model.head.register_forward_hook(explode)
    try:
        with pytest.raises(RuntimeError, match='boom in the head'):
            pre(_batch(trained[1]), training=True)
    finally:
        handle.remove()
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    for k, v in model.named_parameters():
        assert v.requires_grad == flags[k], k
    assert all(m.training for m in model.modules())


def test_padding_is_not_perturbed(trained):
    """pad_size_divisor=32 on 32x20 images: the attack leaves the padding
    as ClsDataPreprocessor made it."""
    model = copy.deepcopy(trained[0]['resnet'])
    pre = _preprocessor(model, pad_size_divisor=32)
    pre.neighbor_table.update_from_embeddings(
        head_class_weights(model, 4), source='head')
    batch = _batch(trained[1], n=8)
    batch['inputs'] = [img[:, :, :20] for img in batch['inputs']]
    clean = pre(copy.deepcopy(batch), training=False)['inputs']
    adv = pre(batch, training=True)['inputs']
    assert clean.shape[-2:] == (32, 32)
    diff = (adv - clean).abs()
    assert diff[..., 20:].max() == 0
    assert diff[..., :20].max() > 0


def test_no_weight_gradient_is_computed(trained):
    model = copy.deepcopy(trained[0]['resnet'])
    pre = _preprocessor(model)
    for p in model.parameters():
        p.grad = None
    pre(_batch(trained[1]), training=True)
    assert all(p.grad is None for p in model.parameters())


def test_eval_path_equals_cls_data_preprocessor(trained):
    kwargs = dict(mean=[MEAN, 70.0, 60.0], std=[STD, 80.0, 90.0],
                  to_rgb=True, num_classes=4)
    ours = NeighborAdversarialDataPreprocessor(topk=2, **kwargs)
    DefaultScope._instance_dict.clear()
    DefaultScope.get_instance('eval_path', scope_name='mmpretrain')
    theirs = MODELS.build(dict(type='mmpretrain.ClsDataPreprocessor',
                               **kwargs))
    batch = _batch(trained[1])
    a = ours(copy.deepcopy(batch), training=False)
    b = theirs(copy.deepcopy(batch), training=False)
    assert torch.equal(a['inputs'], b['inputs'])
    assert [s.gt_label for s in a['data_samples']] == [
        s.gt_label for s in b['data_samples']]


def test_finds_its_model_from_train_step_without_a_cycle(trained):
    model = copy.deepcopy(trained[0]['resnet'])
    pre = NeighborAdversarialDataPreprocessor(
        num_classes=4, topk=2, mean=[MEAN] * 3, std=[STD] * 3)
    model.data_preprocessor = pre
    from mmengine.optim import OptimWrapper
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train_step(_batch(trained[1]), wrapper)
    assert bool(pre.neighbor_table.built)
    # nothing is cached: outside a call from the model there is no model
    with pytest.raises(RuntimeError, match='found no model to attack'):
        pre.model
    keys = list(model.state_dict())
    assert 'data_preprocessor.neighbor_table.neighbors' in keys
    assert not any(k.startswith('data_preprocessor.backbone') for k in keys)
    assert len(keys) == len(set(keys))


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match='topk=4.*num_classes'):
        NeighborAdversarialDataPreprocessor(num_classes=4, topk=4)
    table = NeighborTable(10, topk=3)
    table.update_from_embeddings(torch.randn(10, 5))
    path = str(tmp_path / 'nbrs10.json')
    table.save(path)
    with pytest.raises(ValueError, match='nbrs10.json.*10 classes.*has 4'):
        NeighborAdversarialDataPreprocessor(
            num_classes=4, topk=2, neighbor_source='file',
            neighbor_file=path)
    with pytest.raises(ValueError, match='mode='):
        NeighborAdversarialDataPreprocessor(num_classes=4, topk=2, mode='x')
    with pytest.raises(ValueError, match='eta_unit='):
        NeighborAdversarialDataPreprocessor(
            num_classes=4, topk=2, eta_unit='pixels')
    pre = NeighborAdversarialDataPreprocessor(num_classes=4, topk=2)
    with pytest.raises(RuntimeError, match='found no model to attack'):
        pre(_batch(write_image_folder(str(tmp_path / 'im')), 4),
            training=True)


def _hand_step(model, x, targets, training):
    """One step toward ``targets`` computed here: the sign of the input
    gradient of the summed cross-entropy, with the model (a copy) in
    training (BatchNorm on the batch's statistics) or eval mode; eta 0.01
    on the normalised input, clipped to the normalised pixels [0, 255]."""
    model = copy.deepcopy(model).train(training)
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x, mode='tensor'), targets,
                           reduction='sum')
    (grad, ) = torch.autograd.grad(loss, x)
    return (x.detach() - 0.01 * grad.sign()).clamp(-MEAN / STD,
                                                   (255 - MEAN) / STD)


def test_train_attack_mode_takes_the_training_mode_gradient(trained):
    """attack_mode='train': the step is the sign gradient of the model in
    training mode (computed here), which BatchNorm couples across the
    batch: a sample's step changes with its batch mates, unlike in 'eval'
    mode."""
    model = copy.deepcopy(trained[0]['resnet'])
    model.train()
    data = _preprocessor(model)(_batch(trained[1]), training=False)
    x = data['inputs']
    labels = torch.cat([s.gt_label for s in data['data_samples']])
    targets = (labels + 1) % 4
    steps = {}
    for mode in ('train', 'eval'):
        pre = _preprocessor(model, attack_mode=mode)
        steps[mode] = pre.perturb(model, x, labels, targets)
        hand = _hand_step(model, x, targets, training=mode == 'train')
        close = torch.isclose(steps[mode], hand, atol=1e-6)
        assert close.float().mean() >= 0.99, (mode, close.float().mean())
    assert torch.isclose(steps['train'], steps['eval'],
                         atol=1e-6).float().mean() < 0.9
    # sample 0 in another batch (its 7 mates replaced by others)
    other = torch.cat([x[:1], x[8:15]])
    for mode in ('train', 'eval'):
        pre = _preprocessor(model, attack_mode=mode)
        alone = pre.perturb(model, other, labels[[0, *range(8, 15)]],
                            targets[[0, *range(8, 15)]])[0]
        moved = (alone - steps[mode][0]).abs().max()
        if mode == 'train':
            assert moved > 0.01  # a different sign somewhere
        else:
            assert moved < 1e-5
    assert all(m.training for m in model.modules())


def _cosine_neighbors(weight, topk):
    """Each class's ``topk`` most cosine-similar other classes, by hand."""
    w = F.normalize(weight.double(), dim=1)
    sim = w @ w.T
    sim.fill_diagonal_(-2.0)
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    return order[:, :topk]


def test_refresh_interval_rebuilds_the_table_every_interval_steps(trained):
    """refresh_interval=2 with neighbor_source='head': the table is built
    at the first training step and rebuilt from the head at steps 3 and 5
    (every 2 steps), not at steps 2 and 4; between steps the head's rows are
    permuted so each rebuild is visible."""
    from mmengine.optim import OptimWrapper
    model = copy.deepcopy(trained[0]['resnet'])
    model.train()
    pre = _preprocessor(model, topk=1, refresh_interval=2)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
    batch = _batch(trained[1], n=8)
    fc = model.head.fc
    perms = [[1, 2, 3, 0], [2, 0, 3, 1], [3, 2, 0, 1], [1, 3, 0, 2]]
    built = None
    for step in range(1, 6):
        model.train_step(copy.deepcopy(batch), wrapper)
        now = _cosine_neighbors(fc.weight.detach(), 1)
        table = pre.neighbor_table.neighbors
        if step in (1, 3, 5):
            assert torch.equal(table, now), step
            built = table.clone()
        else:
            assert torch.equal(table, built), step
            assert not torch.equal(table, now), step
        if step == 5:
            break
        with torch.no_grad():  # new neighbours for the next steps
            perm = torch.tensor(perms[step - 1])
            fc.weight.copy_(fc.weight[perm])
            fc.bias.copy_(fc.bias[perm])
