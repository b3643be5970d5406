"""The attack's step is exact: on confident samples, under float16 autocast,
and without host syncs in a training step."""
import copy
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner
from torch import nn

from conftest import ROOT, write_coco, write_det_config, write_image_folder
from mmgfn.engine.hooks import BackgroundRoIPerturbationHook
from mmgfn.models import NeighborAdversarialDataPreprocessor
from mmgfn.models.utils import (AttackGradScaler, ce_sign_gradient,
                                deferred_check)
from mmgfn.registry import MODELS

C, SHAPE = 6, (3, 4, 4)
MARGINS = np.linspace(20, 100, 8)


class LinearClassifier(nn.Module):
    """``logits = A (x - 128)`` with ``A = W + s 1 u^T``: every logit shares
    the large common component ``s u.(x - 128)``, which cancels in the true
    CE gradient but dominates it once the true-class term is dropped."""

    def __init__(self, A: np.ndarray) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.tensor(A, dtype=torch.float32))

    def forward(self, x, mode='tensor'):
        return (x - 128).flatten(1) @ self.A.t()


def _saturated_problem(seed=0, common=30.0):
    """A linear classifier and inputs whose label margins are 20..100."""
    rng = np.random.default_rng(seed)
    dim = int(np.prod(SHAPE))
    W = rng.normal(0, 1, (C, dim))
    A = W + common * np.outer(np.ones(C), rng.normal(0, 1, dim))
    labels = np.arange(len(MARGINS)) % C
    V = np.linalg.pinv(W)  # W @ V = I: V[:, c] raises logit c alone
    x = np.empty((len(MARGINS), dim))
    for i, (c, m) in enumerate(zip(labels, MARGINS)):
        r = rng.normal(0, 0.5, dim)
        z = W @ r
        gap = z[c] - np.delete(z, c).max()
        x[i] = 128 + r + (m - gap) * V[:, c]
    assert np.all((x > 0) & (x < 255))
    z = (x - 128) @ A.T
    margins = np.array([z[i, c] - np.delete(z[i], c).max()
                        for i, c in enumerate(labels)])
    np.testing.assert_allclose(margins, MARGINS, rtol=1e-6)
    return A, x, labels


def _reference_grad(A, x, targets):
    """float64 ``d CE / dx`` up to a positive factor per sample:
    ``A^T (q - e_t)``, ``q`` the softmax over the classes other than t."""
    z = (x - 128) @ A.T
    grads = []
    for zi, t in zip(z, targets):
        others = np.delete(zi, t)
        q = np.exp(others - others.max())
        q = np.insert(q / q.sum(), t, -1.0)
        grads.append(A.T @ q)
    return np.stack(grads)


def _others_over_target(A, x, targets):
    """``sum_{j != t} exp(z_j - z_t)`` in float64: CE(z, t) rises with it."""
    z = (x - 128) @ A.T
    return np.array([np.exp(np.delete(zi, t) - zi[t]).sum()
                     for zi, t in zip(z, targets)])


def _bound_preprocessor(model, **kwargs):
    pre = NeighborAdversarialDataPreprocessor(
        **dict(dict(num_classes=C, topk=2), **kwargs))
    model.data_preprocessor = pre
    pre.bind(model)
    return pre


@pytest.mark.parametrize('attack_mode', ['eval', 'train'])
@pytest.mark.parametrize('mode', ['untargeted', 'neighbor'])
def test_saturated_samples_step_with_ce_sign(mode, attack_mode):
    A, x, labels = _saturated_problem()
    model = LinearClassifier(A)
    pre = _bound_preprocessor(model, mode=mode, attack_mode=attack_mode,
                              eta=0.01)
    inputs = torch.tensor(x.reshape(-1, *SHAPE), dtype=torch.float32)
    labels_t = torch.tensor(labels)
    targets = (labels + 1) % C  # a neighbour to step toward (neighbor mode)
    x_adv = pre.perturb(model, inputs, labels_t,
                        torch.tensor(targets) if mode == 'neighbor' else None)
    step = (x_adv - inputs).flatten(1).numpy()
    ce_targets = labels if mode == 'untargeted' else targets
    ref = _reference_grad(A, x, ce_targets)
    expected = np.sign(ref) * (1 if mode == 'untargeted' else -1)
    clear = np.abs(ref) > 1e-6 * np.abs(ref).max(1, keepdims=True)
    assert np.all(np.abs(step) <= 0.01 + 1e-4)
    assert (np.sign(step)[clear] == expected[clear]).mean() == 1.0
    # the step does what it is for, sample by sample (float64)
    x_new = x + step.astype(np.float64)
    before = _others_over_target(A, x, ce_targets)
    after = _others_over_target(A, x_new, ce_targets)
    if mode == 'untargeted':  # CE of the true label rises for all 8
        assert np.all(after > before), (before, after)
    else:  # CE toward the neighbour falls for all 8
        assert np.all(after < before), (before, after)


def test_ce_sign_gradient_keeps_relative_weights_within_groups():
    """Rows of one group keep CE's relative weights 1 - p_t (float64
    reference at margins that float64 resolves and float32 does not)."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    targets = torch.tensor([4, 4, 1, 4, 0, 4])
    z[torch.arange(6), targets] += torch.tensor([18., 21., 3., 19., 20., 1.])
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    got = ce_sign_gradient(z.float(), targets, groups, 3).double()
    ref = torch.softmax(z, 1) - nn.functional.one_hot(targets, 5)
    for k in range(3):
        rows = groups == k
        ratio = got[rows] / ref[rows]
        assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio),
                              rtol=1e-4), k
        assert ratio.min() > 0
    # float32 cross-entropy loses the true-class term at these margins
    assert torch.softmax(z.float(), 1)[1, 4] == 1
    # without groups every row is its own: entries in [-1, 1], -1 at t
    alone = ce_sign_gradient(z.float(), targets)
    assert torch.equal(alone[torch.arange(6), targets], -torch.ones(6))
    assert torch.allclose(alone.sum(1), torch.zeros(6), atol=1e-6)


def _resnet_tiny(head_scale):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/digits/resnet-tiny_1xb32_digits.py'))
    model_cfg = cfg.model
    model_cfg.head.num_classes = 4
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    with torch.no_grad():
        model.head.fc.weight.mul_(head_scale)
        model.head.fc.bias.mul_(head_scale)
    return model


def _real_batch(tmp_path):
    import cv2
    root = write_image_folder(str(tmp_path / 'images'), per_class=4)
    images = []
    for label in range(4):
        folder = osp.join(root, 'train', f'class_{label}')
        for name in sorted(__import__('os').listdir(folder)):
            img = cv2.imread(osp.join(folder, name))
            images.append(torch.from_numpy(img).permute(2, 0, 1))
    labels = torch.arange(len(images)) // 4
    return torch.stack(images).float(), labels


@pytest.mark.parametrize('head_scale', [1.0, 1e-4])
def test_float16_autocast_step_agrees_with_float32(tmp_path, head_scale):
    """float16 autocast: >= 99 % of the step's signs equal float32's, also
    when the gradients are 1e-4 smaller (ViT-B at 224 px lives there)."""
    model = _resnet_tiny(head_scale)
    pre = _bound_preprocessor(model, eta=0.01, mean=[77.9] * 3,
                              std=[82.5] * 3)
    pixels, labels = _real_batch(tmp_path)
    inputs = (pixels - 77.9) / 82.5
    targets = (labels + 1) % 4
    fp32 = pre.perturb(model, inputs, labels, targets) - inputs
    with torch.autocast('cpu', dtype=torch.float16):
        fp16 = pre.perturb(model, inputs, labels, targets) - inputs
    assert pre.grad_scaler.get_scale() > 1  # the float16 backward scaled
    moved = fp32 != 0
    assert moved.float().mean() > 0.8  # pixels at 0 or 255 may not move
    agree = (fp16.sign() == fp32.sign())[moved].float().mean().item()
    assert agree >= 0.99, agree


def test_attack_grad_scaler_backs_off_on_overflow_and_grows():
    scaler = AttackGradScaler(init_scale=2.0**13, growth_interval=2)
    logits = torch.zeros(3, 4, dtype=torch.float16)
    assert scaler.scale(torch.zeros(3, 4)) == 1.0  # float32: not scaled
    assert scaler.get_scale() == 1.0  # no float16 backward yet
    assert scaler.scale(logits).item() == 2.0**13
    assert scaler.get_scale() == 2.0**13
    scaler.update(torch.tensor([True, False, True]))
    scaler.count(torch.tensor([True, False, True]))
    assert scaler.get_scale() == 2.0**12
    assert int(scaler.unperturbed) == 1
    for _ in range(2):
        scaler.update(torch.ones(3, dtype=torch.bool))
    assert scaler.get_scale() == 2.0**13
    for _ in range(20):
        scaler.update(torch.ones(3, dtype=torch.bool))
    assert scaler.get_scale() == scaler.max_scale


def test_overflowing_samples_are_left_unperturbed():
    """A float16 backward that overflows for one sample leaves that sample
    as it was (and only it), and the scale backs off."""

    class Overflow(nn.Module):

        def forward(self, x, mode='tensor'):
            hidden = x.flatten(1)[:, :C].half() * 1e-3
            # sample 0's logits are finite, its backward (x 6e4) is not
            gain = torch.ones(len(x), 1, dtype=torch.float16)
            gain[0] = 6e4
            return hidden * gain

    model = Overflow()
    pre = _bound_preprocessor(model, num_steps=1, eta=0.5)
    pre.neighbor_table.load_neighbors(
        torch.tensor([[(c + 1) % C, (c + 2) % C] for c in range(C)]), 'test')
    inputs = torch.rand(3, *SHAPE) * 100 + 50
    x_adv = pre.perturb(model, inputs, torch.tensor([0, 1, 2]))
    moved = (x_adv - inputs).flatten(1).abs().amax(1)
    assert moved.tolist() == [0.0, 0.5, 0.5]
    assert pre.grad_scaler.get_scale() == 2.0**12
    assert int(pre.grad_scaler.unperturbed) == 1


def test_scale_has_a_floor_and_recovers():
    """The issue's repro: 200 overflows then clean attacks. The scale used
    to reach 0.0 (and ``0 * 2`` stays 0); it stops at ``min_scale`` and
    doubles again after ``growth_interval`` clean attacks."""
    scaler = AttackGradScaler(growth_interval=3)
    scaler.scale(torch.zeros(1, dtype=torch.float16))
    for _ in range(200):
        scaler.update(torch.tensor([False]))
    assert scaler.get_scale() == 1.0  # min_scale
    for _ in range(3):
        scaler.update(torch.tensor([True]))
    assert scaler.get_scale() == 2.0
    for _ in range(3 * 20):
        scaler.update(torch.tensor([True]))
    assert scaler.get_scale() == scaler.max_scale
    with pytest.raises(ValueError, match='min_scale'):
        AttackGradScaler(min_scale=0.0)


def test_nan_logits_do_not_back_off_the_scale():
    """A non-finite gradient from NaN logits is not an overflow."""
    scaler = AttackGradScaler(init_scale=2.0**13)
    scaler.scale(torch.zeros(1, dtype=torch.float16))
    scaler.update(torch.tensor([True, False]), torch.tensor(False))
    assert scaler.get_scale() == 2.0**13
    scaler.update(torch.tensor([True, False]), torch.tensor(True))
    assert scaler.get_scale() == 2.0**12


class _NaNForOne(nn.Module):
    """A linear classifier whose logits are NaN (``nan``) or inf for
    sample 1 only; in ``dtype``."""

    def __init__(self, bad, dtype=torch.float32):
        super().__init__()
        self.bad, self.dtype = bad, dtype
        self.w = nn.Parameter(torch.linspace(-1, 1, C * int(np.prod(SHAPE)))
                              .view(C, -1))

    def forward(self, x, mode='tensor'):
        logits = (x.flatten(1) @ self.w.t()).to(self.dtype)
        poison = torch.zeros_like(logits)
        poison[1] = self.bad
        return logits + poison


@pytest.mark.parametrize('bad,dtype', [(float('nan'), torch.float32),
                                       (float('inf'), torch.float16)])
def test_non_finite_sample_is_left_unperturbed_and_counted(bad, dtype):
    """One sample with NaN logits (or float16 logits that overflow to inf)
    no longer raises FloatingPointError: it stays as it was, the others
    step, and the count says 1 of 3."""
    model = _NaNForOne(bad, dtype)
    pre = _bound_preprocessor(model, mode='untargeted', eta=0.5)
    inputs = torch.rand(3, *SHAPE) * 100 + 50
    x_adv = pre.perturb(model, inputs, torch.tensor([0, 1, 2]))
    moved = (x_adv - inputs).flatten(1).abs().amax(1)
    assert moved.tolist() == [0.5, 0.0, 0.5]
    assert int(pre.grad_scaler.unperturbed) == 1


def test_float32_head_under_float16_autocast_is_scaled():
    """A head that ends in ``.float()`` under float16 autocast: the
    backward runs in float16 all the same, so it is scaled. Small weights
    (1e-6): unscaled, 33 of 1,536 input-gradient elements flush to zero (a
    zero sign leaves the pixel where it was); scaled, none do."""

    class SmallHead(nn.Module):

        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            dim = int(np.prod(SHAPE))
            self.w = nn.Parameter(torch.randn(C, dim, generator=g) * 1e-6)

        def forward(self, x, mode='tensor'):
            return nn.functional.linear(x.flatten(1), self.w).float()

    model = SmallHead()
    pre = _bound_preprocessor(model, mode='untargeted', eta=0.5)
    g = torch.Generator().manual_seed(1)
    inputs = torch.rand(32, *SHAPE, generator=g) * 100 + 50
    labels = torch.arange(32) % C
    with torch.autocast('cpu', dtype=torch.float16):
        x_adv = pre.perturb(model, inputs, labels)
        assert AttackGradScaler.needs_scaling(
            model(inputs.requires_grad_()), inputs)
    assert pre.grad_scaler.get_scale() > 1
    still = ((x_adv - inputs) == 0).sum().item()
    assert still == 0, f'{still} of {inputs.numel()} elements not moved'
    # the same attack without a scale leaves many elements unmoved
    from mmgfn.models.utils import sign_gradient_attack
    with torch.autocast('cpu', dtype=torch.float16):
        unscaled = sign_gradient_attack(
            lambda x: model(x), inputs.detach(), labels, 0.5, 0.0, 255.0,
            toward=False)
    assert ((unscaled - inputs) == 0).sum().item() > 20


def test_unperturbed_share_reaches_the_message_hub_and_warns():
    """Step 1: 1 of 4 unperturbed, step 2: 0 of 4 -> shares .25 and 0 in
    the hub; over warn_interval=2 steps 1/8 = .125 > warn_threshold .1
    warns once; below the threshold nothing is said."""
    from mmengine.logging import MessageHub, MMLogger
    hub = MessageHub.get_instance('test-unperturbed-share')
    logger = MMLogger.get_instance('test-unperturbed-share')
    scaler = AttackGradScaler(warn_threshold=0.1, warn_interval=2)
    warnings = []
    original = logger.warning
    logger.warning = warnings.append
    try:
        scaler.count(torch.tensor([True, False, True, True]))
        scaler.publish()
        scaler.count(torch.tensor([True, True]))  # a step in two chunks
        scaler.count(torch.tensor([True, True]))
        scaler.publish()
        history = hub.get_scalar('train/gfn_unperturbed').data[0]
        assert history.tolist() == [0.25, 0.0]
        assert len(warnings) == 1 and '12.5%' in warnings[0]
        quiet = AttackGradScaler(warn_threshold=0.2, warn_interval=2)
        for _ in range(2):  # 1 of 8 = .125 per step
            quiet.count(torch.tensor([True, False] + [True] * 6))
            quiet.publish()
        assert len(warnings) == 1
    finally:
        logger.warning = original


def test_deferred_check_raises_on_the_cpu_at_once():
    deferred_check(torch.tensor(True), 'never')
    with pytest.raises(ValueError, match=r'labels in \[-1, 7\]'):
        deferred_check(torch.tensor(False),
                       lambda lo, hi: f'labels in [{lo:.0f}, {hi:.0f}]',
                       torch.tensor(-1), torch.tensor(7))


def _tiny_detector(tmp_path):
    """A Faster R-CNN with a ResNet-18 (random weights, seed 0) and a
    training batch of real images, preprocessed (not perturbed)."""
    root = write_coco(str(tmp_path / 'coco'), num_images=4)
    cfg = Config.fromfile(write_det_config(tmp_path, root))
    DefaultScope._instance_dict.clear()
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader))
    return model, model.data_preprocessor(next(iter(loader)), False)


def test_saturated_background_rois_step_with_ce_sign(tmp_path):
    """The detection hook on RoIs that are already confidently background
    (margins 18-30) with a large common logit component: its step has the
    sign of the float64 gradient of the summed background CE."""
    model, data = _tiny_detector(tmp_path)
    fc = model.roi_head.bbox_head.fc_cls
    with torch.no_grad():
        u = torch.randn(fc.in_features)
        fc.weight.add_(5.0 * u)  # the common component
        fc.bias[-1] += 24.0  # background dominates
    hook = BackgroundRoIPerturbationHook(eta=0.01, seed=0)
    hook.bind(model, ['person', 'car'])
    x, samples = data['inputs'], data['data_samples']
    step = hook.perturb(x, samples) - x

    from mmdet.structures.bbox import bbox2roi
    ref_model = copy.deepcopy(model).double().eval()
    x64 = x.double().requires_grad_(True)
    rois = bbox2roi([s.gt_instances.bboxes for s in samples]).double()
    feats = ref_model.extract_feat(x64)
    scores = ref_model.roi_head._bbox_forward(feats, rois)['cls_score']
    bg = torch.full((len(rois), ), 2)
    margins = scores[:, 2] - scores[:, :2].max(1).values
    assert margins.min() > 15 and margins.max() < 40, margins
    # float32 rounds p_background to 1 at these margins: CE's gradient
    # loses its background term there
    assert (torch.softmax(scores.float(), 1)[:, 2] == 1).all()
    loss = nn.functional.cross_entropy(scores, bg, reduction='sum')
    (grad, ) = torch.autograd.grad(loss, x64)
    inside = step != 0
    expected = -grad.sign().float()
    clear = grad.abs() > 1e-6 * grad.abs().amax()
    assert inside[clear].float().mean() > 0.99
    agree = (step.sign() == expected)[clear].float().mean().item()
    assert agree >= 0.99, agree


def _host_reads_from_mmgfn(fn):
    """Run ``fn``; return where mmgfn's code turned a tensor into a Python
    value (``bool(t)``, ``t.item()``, ...): a host sync on a GPU."""
    import sys
    package = osp.join(ROOT, 'mmgfn')
    names = ['__bool__', 'item', 'tolist', '__int__', '__float__',
             '__index__', 'numpy', 'cpu']
    originals = {name: getattr(torch.Tensor, name) for name in names}
    reads = []

    def wrap(name, original):

        def read(self, *args, **kwargs):
            frame = sys._getframe(1)
            where = frame.f_code.co_filename
            # deferred_check reads at once on the CPU only (by design);
            # the scaler publishes host copies (on CUDA: once their copy
            # event has completed, never waiting for the device)
            if where.startswith(package) and not where.endswith(
                    'deferred_check.py') and frame.f_code.co_name not in (
                        'publish', ):
                reads.append(f'{frame.f_code.co_filename}:'
                             f'{frame.f_lineno} {name}')
            return original(self, *args, **kwargs)

        return read

    try:
        for name in names:
            setattr(torch.Tensor, name, wrap(name, originals[name]))
        fn()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return reads


@pytest.mark.parametrize('attack_mode', ['eval', 'train'])
def test_gfn_training_step_reads_no_device_value(tmp_path, attack_mode):
    """Every training step after the first (which builds the table): the
    attack, the table and the loss read nothing back from the device."""
    from mmengine.optim import OptimWrapper
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/digits/gfn_resnet-tiny_1xb32_digits.py'))
    cfg.model.head.num_classes = 4
    cfg.model.head.loss.topk = 2
    pre_cfg = dict(cfg.data_preprocessor, num_classes=4, topk=2,
                   attack_mode=attack_mode)
    cfg.model.data_preprocessor = pre_cfg
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    pixels, labels = _real_batch(tmp_path)
    batch = dict(inputs=list(pixels.to(torch.uint8)),
                 data_samples=[DataSample().set_gt_label(int(label))
                               for label in labels])
    model.train_step(copy.deepcopy(batch), wrapper)
    reads = _host_reads_from_mmgfn(
        lambda: [model.train_step(copy.deepcopy(batch), wrapper)
                 for _ in range(2)])
    assert reads == []


def test_hook_attack_reads_no_device_value(tmp_path):
    """The detection hook's attack (background and neighbour targets) reads
    nothing back from the device once its table is built."""
    model, data = _tiny_detector(tmp_path)
    hook = BackgroundRoIPerturbationHook(eta=0.01, neighbor_ratio=0.5,
                                         topk=1, seed=0)
    hook.bind(model, ['person', 'car'])
    hook.perturb(data['inputs'], data['data_samples'])  # builds the table
    out = []
    assert _host_reads_from_mmgfn(lambda: out.append(
        hook.perturb(data['inputs'], data['data_samples']))) == []
    assert (out[0] - data['inputs']).abs().max() > 0


def test_iterative_attack_equals_a_reference_loop():
    """``num_steps=3``: three descents of ``eta / 3`` on the summed CE, each
    projected onto the ``eta`` box and the valid range, as a plain autograd
    loop computes them (a nonlinear model, so the signs change between
    steps and a step of the whole budget would end elsewhere)."""
    from mmgfn.models.utils import sign_gradient_attack
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(),
                        nn.Linear(16, 5))
    x0 = torch.randn(8, 3, 2, 2)
    targets = torch.arange(8) % 5
    eta, steps = 1.5, 3
    got = sign_gradient_attack(net, x0, targets, eta, -3.0, 3.0,
                               num_steps=steps)
    x = x0.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = nn.functional.cross_entropy(net(x), targets, reduction='sum')
        (grad, ) = torch.autograd.grad(loss, x)
        x = x.detach() - eta / steps * grad.sign()
        x = torch.min(torch.max(x, x0 - eta), x0 + eta).clamp(-3.0, 3.0)
    torch.testing.assert_close(got, x, rtol=0, atol=1e-5)


def test_padding_mask_by_hand():
    from mmgfn.models.utils import padding_mask
    like = torch.zeros(2, 3, 4, 5)
    expected = torch.zeros(2, 1, 4, 5)
    expected[0, :, :2, :3] = 1  # a 2 x 3 image in a 4 x 5 batch
    expected[1] = 1
    assert torch.equal(padding_mask([(2, 3), (4, 5)], like), expected)
    assert padding_mask([(4, 5), (4, 5)], like) is None


def _two_class_table(tmp_path):
    from mmgfn.models.utils import NeighborTable
    table = NeighborTable(2, topk=1)
    table.load_neighbors(torch.tensor([[1], [0]]), source='file')
    path = str(tmp_path / 'neighbors.json')
    table.save(path)
    return path


def test_hook_targets_follow_neighbor_ratio(tmp_path):
    """RoI targets: background (label 2) at ratio 0, the label's neighbour
    at ratio 1, a seeded mix near the ratio in between."""
    model, _ = _tiny_detector(tmp_path)
    labels = torch.arange(2000) % 2
    shares = {}
    for ratio in (0.0, 0.3, 1.0):
        hook = BackgroundRoIPerturbationHook(
            neighbor_ratio=ratio, topk=1, seed=0,
            neighbor_file=_two_class_table(tmp_path))
        hook.bind(model, ['person', 'car'])
        targets = hook.targets(labels)
        neighbour = targets != 2
        assert torch.equal(targets[neighbour], 1 - labels[neighbour])
        shares[ratio] = neighbour.float().mean().item()
    assert shares[0.0] == 0.0 and shares[1.0] == 1.0
    assert abs(shares[0.3] - 0.3) < 0.04, shares


def test_before_train_perturbs_training_batches_only(tmp_path):
    """The hook's ``before_train`` on a real Runner attaches the attack to
    the detector's data preprocessor: training batches change (within
    eta), validation batches do not; ``after_train`` detaches it."""
    root = write_coco(str(tmp_path / 'coco'), num_images=2)
    cfg = Config.fromfile(write_det_config(tmp_path, root, epochs=1))
    cfg.work_dir = str(tmp_path / 'work')
    DefaultScope._instance_dict.clear()
    runner = Runner.from_cfg(cfg)
    pre = runner.model.data_preprocessor
    batch = next(iter(runner.train_dataloader))
    clean = pre(copy.deepcopy(batch), False)['inputs']
    assert torch.equal(pre(copy.deepcopy(batch), True)['inputs'], clean)
    hook = BackgroundRoIPerturbationHook(eta=0.01, seed=0)
    hook.before_train(runner)
    assert torch.equal(pre(copy.deepcopy(batch), False)['inputs'], clean)
    step = (pre(copy.deepcopy(batch), True)['inputs'] - clean).abs()
    assert 0 < step.max() <= 0.01 + 1e-6
    hook.after_train(runner)
    assert torch.equal(pre(copy.deepcopy(batch), True)['inputs'], clean)


def test_detector_head_rows_drop_the_background(tmp_path):
    """A two-stage detector's class rows are ``fc_cls``'s first C rows; the
    last (background, label C) row is not a class."""
    from mmgfn.models.utils import head_class_weights
    model, _ = _tiny_detector(tmp_path)
    fc = model.roi_head.bbox_head.fc_cls
    assert fc.out_features == 3
    assert torch.equal(head_class_weights(model, 2), fc.weight[:2])


def test_hook_table_travels_with_checkpoints(tmp_path):
    """The hook writes its table into the checkpoint dict; a resumed run's
    hook (which loads the checkpoint before ``before_train``) starts with
    that table built, before any step could build one from the head."""
    model, _ = _tiny_detector(tmp_path)
    hook = BackgroundRoIPerturbationHook(
        neighbor_ratio=0.5, topk=1, seed=0,
        neighbor_file=_two_class_table(tmp_path))
    hook.bind(model, ['person', 'car'])
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)  # the runner is unused
    assert checkpoint['neighbor_table']['neighbors'].tolist() == [[1], [0]]
    resumed = BackgroundRoIPerturbationHook(neighbor_ratio=0.5, topk=1)
    resumed.after_load_checkpoint(None, checkpoint)
    resumed.bind(model, ['person', 'car'])
    assert resumed.table.is_built
    assert resumed.table.neighbors.tolist() == [[1], [0]]


def test_ce_sign_gradient_is_bounded_and_finite_at_any_margin():
    """Within a group the least confident row keeps weight 1 (its target
    entry is exactly -1) and the others ``(1 - p_t) / (1 - p_t)_max`` <= 1,
    so no entry leaves [-1, 1] or overflows, even 100 logits apart (float64
    weights by hand: ``1 - p_t = 2 e^-m / (1 + 2 e^-m)`` for a row
    ``[m, 0, 0]``)."""
    z = torch.tensor([[0.0, 0, 0], [30, 0, 0], [1, 0, 0], [100, 0, 0]])
    targets = torch.zeros(4, dtype=torch.long)
    groups = torch.tensor([0, 0, 1, 1])
    got = ce_sign_gradient(z, targets, groups, 2).double()
    assert torch.isfinite(got).all() and got.abs().max() <= 1
    q_t = [2 * np.exp(-m) / (1 + 2 * np.exp(-m)) for m in (0, 30, 1, 100)]
    weights = [1.0, q_t[1] / q_t[0], 1.0, q_t[3] / q_t[2]]
    expected = torch.tensor([[-w, w / 2, w / 2] for w in weights],
                            dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-45)


@pytest.mark.parametrize('head_scale', [1.0, 1e-4])
def test_float16_signs_against_a_float64_reference(tmp_path, head_scale):
    """What the README states, measured: the float16-autocast step's signs
    against the sign of the float64 cross-entropy input gradient of the
    same model (ResNet-tiny, 16 real images, eval mode), over the elements
    whose float64 gradient is not negligible (> 1e-3 of the image's
    largest). float16 rounding flips a few; this bounds how many."""
    model = _resnet_tiny(head_scale)
    pre = _bound_preprocessor(model, eta=0.01, mean=[77.9] * 3,
                              std=[82.5] * 3)
    pixels, labels = _real_batch(tmp_path)
    inputs = (pixels - 77.9) / 82.5
    targets = (labels + 1) % 4
    with torch.autocast('cpu', dtype=torch.float16):
        fp16 = pre.perturb(model, inputs, labels, targets) - inputs
    fp32 = pre.perturb(model, inputs, labels, targets) - inputs
    ref_model = copy.deepcopy(model).double().eval()
    x64 = inputs.double().requires_grad_(True)
    loss = nn.functional.cross_entropy(ref_model(x64, mode='tensor'),
                                       targets, reduction='sum')
    (grad, ) = torch.autograd.grad(loss, x64)
    expected = -grad.sign().float()  # a step toward the target
    clear = grad.abs() > 1e-3 * grad.flatten(1).abs().amax(1).view(-1, 1, 1,
                                                                    1)
    moved = fp16 != 0
    keep = clear & moved  # pixels at 0 or 255 may not move
    agree = (fp16.sign() == expected)[keep].float().mean().item()
    agree32 = (fp32.sign() == expected)[clear & (fp32 != 0)].float().mean()
    print(f'\nsigns vs float64 (head x{head_scale}): float16 {agree:.4f}, '
          f'float32 {agree32.item():.4f} of {int(keep.sum())} elements')
    assert agree >= 0.99, agree
    assert agree32 >= agree
