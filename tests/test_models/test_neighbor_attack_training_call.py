"""The preprocessor's training call, as mmengine makes it, step by step.

``NeighborAdversarialDataPreprocessor(batch, training=True)`` draws each
sample's neighbour from its table, reads mixed labels, honours
``attack_mode`` and ``refresh_interval``. Every expected step is computed
here in float64 from the model's closed-form gradient (or autograd on a
float64 copy), never through the attack code.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample
from torch import nn

from mmgfn.models import NeighborAdversarialDataPreprocessor
from mmgfn.models.utils import NeighborTable

C, SHAPE = 4, (3, 4, 4)
D = int(np.prod(SHAPE))
ETA = 2.0  # raw pixels: the batches are not normalised


class LinearClassifier(nn.Module):
    """``logits = A (x - 128) / 64``, ``A`` is ``C x D``."""

    def __init__(self, A) -> None:
        super().__init__()
        self.head = nn.Linear(D, C, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.as_tensor(A))

    def forward(self, x, mode='tensor'):
        return self.head((x - 128).flatten(1) / 64)


class BatchNormClassifier(nn.Module):
    """``logits = fc(BN((x - 128) / 64))`` with running statistics far from
    any batch's, so training-mode and eval-mode gradients differ."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(D)
        self.fc = nn.Linear(D, C)
        with torch.no_grad():
            self.bn.running_mean.fill_(1.5)
            self.bn.running_var.fill_(0.05)

    def forward(self, x, mode='tensor'):
        return self.fc(self.bn((x - 128).flatten(1) / 64))


def _batch(labels, seed=0, scores=None):
    """A batch as a dataloader yields it: uint8 images and DataSamples."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(30, 226, (len(labels), *SHAPE), dtype=np.uint8)
    samples = []
    for i, label in enumerate(labels):
        sample = DataSample().set_gt_label(int(label))
        if scores is not None:
            sample.set_gt_score(torch.tensor(scores[i]))
        samples.append(sample)
    return dict(inputs=[torch.from_numpy(p) for p in pixels],
                data_samples=samples)


def _bind(model, **kwargs):
    pre = NeighborAdversarialDataPreprocessor(
        **dict(dict(num_classes=C, eta=ETA, topk=2), **kwargs))
    model.data_preprocessor = pre
    pre.bind(model)
    return pre


def _linear_step(A, x, targets, sign, eta=ETA):
    """``sign * eta * sign(d CE / dx)`` for ``logits = A (x - 128) / 64``,
    in float64: ``d CE / dx = A^T (softmax(z) - e_t) / 64``."""
    A = np.asarray(A, np.float64)
    z = (x.reshape(len(x), -1) - 128) @ A.T / 64
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), targets] -= 1
    grad = p @ A / 64
    step = sign * eta * np.sign(grad)
    clear = np.abs(grad) > 1e-6 * np.abs(grad).max(1, keepdims=True)
    return step.reshape(x.shape), clear.reshape(x.shape)


def _agree(got, step, clear):
    return (got == step)[clear].mean()


def _write_table(path, neighbors):
    table = NeighborTable(C, topk=len(neighbors[0]))
    table.load_neighbors(torch.tensor(neighbors), source='file')
    table.save(str(path))
    return str(path)


def test_training_call_steps_toward_drawn_neighbours(tmp_path):
    """Each sample steps toward one of its label's 2 table neighbours (both
    ranks are drawn), never toward its label."""
    neighbors = [[1, 2], [2, 3], [3, 0], [0, 1]]
    A = np.random.default_rng(1).normal(0, 1, (C, D))
    model = LinearClassifier(A)
    pre = _bind(model, topk=2, neighbor_source='file',
                neighbor_file=_write_table(tmp_path / 'n.json', neighbors))
    labels = np.arange(32) % C
    batch = _batch(labels)
    x = torch.stack(batch['inputs']).double().numpy()
    torch.manual_seed(0)
    got = (pre(batch, training=True)['inputs'].double().numpy() - x)
    ranks = []
    for i, c in enumerate(labels):
        matches = []
        for rank, nbr in enumerate(neighbors[c], start=1):
            step, clear = _linear_step(A, x[i:i + 1], [nbr], -1.0)
            matches.append(_agree(got[i:i + 1], step, clear))
        own, own_clear = _linear_step(A, x[i:i + 1], [c], -1.0)
        assert _agree(got[i:i + 1], own, own_clear) < 0.9
        assert max(matches) == 1.0, (i, matches)
        ranks.append(int(np.argmax(matches)) + 1)
    assert set(ranks) == {1, 2}


def test_mixed_labels_use_the_dominant_class():
    """Batches whose samples carry ``gt_score`` (Mixup/CutMix): the
    untargeted step ascends the CE of the class with the largest score."""
    A = np.random.default_rng(2).normal(0, 1, (C, D))
    model = LinearClassifier(A)
    pre = _bind(model, mode='untargeted')
    dominant = np.array([0, 1, 2, 3, 1, 2])
    scores = np.zeros((len(dominant), C), np.float32)
    for i, c in enumerate(dominant):
        scores[i, c] = 0.7
        scores[i, (c + 1) % C] = 0.3
    batch = _batch(dominant, scores=scores)
    for sample, c in zip(batch['data_samples'], dominant):
        sample.set_gt_label(int((c + 1) % C))  # hard labels must not be used
    x = torch.stack(batch['inputs']).double().numpy()
    got = pre(batch, training=True)['inputs'].double().numpy() - x
    step, clear = _linear_step(A, x, dominant, 1.0)
    assert _agree(got, step, clear) == 1.0


@pytest.mark.parametrize('attack_mode', ['train', 'eval'])
def test_attack_mode_sets_the_batchnorm_statistics_of_the_gradient(
        attack_mode):
    """``attack_mode='train'``: the step has the sign of the input gradient
    of the batch's summed CE through batch statistics; ``'eval'``: through
    the running statistics. The two differ on this model."""
    model = BatchNormClassifier()
    model.train()
    pre = _bind(model, mode='untargeted', attack_mode=attack_mode)
    labels = np.arange(16) % C
    batch = _batch(labels, seed=3)
    x = torch.stack(batch['inputs']).double()
    got = pre(copy.deepcopy(batch), training=True)['inputs'].double() - x
    signs = {}
    for mode in ('train', 'eval'):
        ref = copy.deepcopy(model).double().train(mode == 'train')
        x64 = x.clone().requires_grad_(True)
        loss = F.cross_entropy(ref(x64), torch.as_tensor(labels),
                               reduction='sum')
        (grad, ) = torch.autograd.grad(loss, x64)
        clear = grad.abs() > 1e-6 * grad.abs().amax()
        signs[mode] = (ETA * grad.sign(), clear)
    assert model.training and model.bn.training  # restored
    step, clear = signs[attack_mode]
    assert (got == step)[clear].double().mean() == 1.0
    other, other_clear = signs['eval' if attack_mode == 'train' else 'train']
    assert (got == other)[other_clear].double().mean() < 0.9


def _unit_rows(pairs):
    """``C x D`` head rows where class ``a`` and ``b`` of each pair are
    near-parallel (each other's only close class)."""
    W = np.zeros((C, D))
    for k, (a, b) in enumerate(pairs):
        W[a, 2 * k] = 1.0
        W[b, 2 * k], W[b, 2 * k + 1] = 0.9, 0.1
    return W


def test_refresh_interval_rebuilds_from_the_head():
    """``refresh_interval=2``: the table is built from the head at the first
    training call and rebuilt from the head's current rows every 2 calls
    after it (calls 3, 5, ...), not in between."""
    first, second = _unit_rows([(0, 1), (2, 3)]), _unit_rows([(0, 2),
                                                              (1, 3)])
    neighbors = {id(first): [[1], [0], [3], [2]],
                 id(second): [[2], [3], [0], [1]]}
    model = LinearClassifier(first)
    pre = _bind(model, topk=1, refresh_interval=2)
    batch = _batch(np.arange(4))
    heads = [first, second, second, first, first]
    expected = [first, first, second, second, first]
    for call, (head, want) in enumerate(zip(heads, expected), start=1):
        with torch.no_grad():
            model.head.weight.copy_(torch.as_tensor(head))
        pre(copy.deepcopy(batch), training=True)
        assert pre.neighbor_table.neighbors.tolist() == neighbors[id(want)], \
            call


@pytest.mark.parametrize('unit,eta,step', [('normalized', 0.05, 0.05),
                                           ('pixel', 0.02, 0.02 * 255 / 50)])
def test_step_is_eta_in_its_unit_and_stays_in_pixel_range(unit, eta, step):
    """Normalised batches (mean 100, std 50): the step is ``eta`` on the
    normalised input, or ``eta * 255 / std`` there for ``eta_unit='pixel'``,
    and ``x'`` is clipped to the image of pixels [0, 255], i.e. [-2, 3.1]."""
    A = np.random.default_rng(4).normal(0, 1, (C, D))
    model = LinearClassifier(A)
    pre = _bind(model, mode='untargeted', eta=eta, eta_unit=unit,
                mean=[100.0] * 3, std=[50.0] * 3)
    labels = np.arange(8) % C
    batch = _batch(labels, seed=5)
    for img in batch['inputs']:  # a quarter of the pixels at 0 or 255
        img.view(-1)[::4] = 0
        img.view(-1)[2::8] = 255
    x = (torch.stack(batch['inputs']).double().numpy() - 100) / 50
    got = pre(batch, training=True)['inputs'].double().numpy()
    signs, clear = _linear_step(A, x, labels, 1.0, eta=1.0)
    expected = np.clip(x + step * signs, -2.0, 3.1)
    assert (expected != x + step * signs)[clear].mean() > 0.05  # clipped
    np.testing.assert_allclose(got[clear], expected[clear], atol=1e-5)


def test_training_call_leaves_no_trace():
    """``attack_mode='train'`` runs the attack forward in training mode:
    BatchNorm's running statistics advance and are restored; parameters do
    not require gradients during it (no weight gradient is computed) and
    do again after it; no ``.grad`` appears; modes are restored."""
    model = BatchNormClassifier()
    model.train()
    pre = _bind(model, mode='untargeted', attack_mode='train')
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    seen = []
    model.fc.register_forward_pre_hook(lambda m, args: seen.append(
        [p.requires_grad for p in model.parameters()]))
    pre(_batch(np.arange(8) % C, seed=6), training=True)
    assert seen == [[False] * 4]
    assert all(p.requires_grad and p.grad is None
               for p in model.parameters())
    assert model.training and model.bn.training
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k


def test_padding_of_smaller_images_is_not_perturbed():
    """A 4 x 2 image batched with a 4 x 4 one is padded to 4 x 4: the
    attack leaves the padding as ClsDataPreprocessor made it."""
    A = np.random.default_rng(7).normal(0, 1, (C, D))
    model = LinearClassifier(A)
    pre = _bind(model, mode='untargeted')
    batch = _batch([0, 1], seed=8)
    batch['inputs'][1] = batch['inputs'][1][:, :, :2].contiguous()
    clean = pre(copy.deepcopy(batch), training=False)['inputs']
    diff = (pre(batch, training=True)['inputs'] - clean).abs()
    assert clean.shape == (2, *SHAPE)
    assert diff[1, :, :, 2:].max() == 0
    assert diff[1, :, :, :2].min() > 0 and diff[0].min() > 0
