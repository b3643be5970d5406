"""NeighborWeightedCELoss against hand-computed values."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmgfn.models import NeighborWeightedCELoss
from mmgfn.models.utils import NeighborTable

# class c's neighbours, rank 1 then rank 2
NEIGHBORS = [[1, 3], [0, 3], [3, 1], [2, 1]]


def _table():
    table = NeighborTable(4, topk=2)
    table.load_neighbors(torch.tensor(NEIGHBORS), source='file')
    return table


def _loss(**kwargs):
    loss = NeighborWeightedCELoss(**dict(dict(alpha=0.5, topk=2), **kwargs))
    loss.share_neighbor_table(_table())
    return loss


def test_value_by_hand():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    # label 0: neighbours 1 (rank 1, w=.5) and 3 (rank 2, w=.25), scale 1
    denom = math.exp(2) + 1.5 * math.exp(1) + math.exp(0) + 1.25 * math.exp(
        -1)
    expected = -math.log(math.exp(2) / denom)
    out = _loss()(z, torch.tensor([0]))
    assert out.item() == pytest.approx(expected, rel=1e-6)
    # scale 2: weights 1 + 2 * .5 = 2 and 1 + 2 * .25 = 1.5
    denom2 = math.exp(2) + 2 * math.exp(1) + 1 + 1.5 * math.exp(-1)
    out2 = _loss(scale=2.0)(z, torch.tensor([0]))
    assert out2.item() == pytest.approx(-math.log(math.exp(2) / denom2),
                                        rel=1e-6)
    # topk=1 keeps only the rank-1 neighbour
    denom1 = math.exp(2) + 1.5 * math.exp(1) + 1 + math.exp(-1)
    out1 = _loss(topk=1)(z, torch.tensor([0]))
    assert out1.item() == pytest.approx(-math.log(math.exp(2) / denom1),
                                        rel=1e-6)


def test_scale_zero_is_cross_entropy_and_loss_exceeds_ce():
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 4
    ce = F.cross_entropy(z, y)
    assert _loss(scale=0.0)(z, y).item() == pytest.approx(ce.item(),
                                                          rel=1e-6)
    assert _loss()(z, y).item() > ce.item()


def test_gradients_are_finite_and_push_neighbours_down():
    z = torch.zeros(1, 4, requires_grad=True)
    _loss()(z, torch.tensor([0])).backward()
    g = z.grad[0]
    assert torch.isfinite(g).all()
    # the rank-1 neighbour is pushed down harder than the rank-2 one,
    # which is pushed harder than the non-neighbour
    assert g[1] > g[3] > g[2] > 0 > g[0]
    big = torch.tensor([[1e4, -1e4, 0.0, 0.0]], requires_grad=True)
    _loss()(big, torch.tensor([1])).backward()
    assert torch.isfinite(big.grad).all()


def test_soft_targets():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    loss = _loss()
    onehot = torch.tensor([[1.0, 0, 0, 0]])
    assert loss(z, onehot).item() == pytest.approx(
        loss(z, torch.tensor([0])).item(), rel=1e-6)
    # mixup 0.7 class 2 / 0.3 class 0: margins of class 2 (nbrs 3, 1)
    t = torch.tensor([[0.3, 0.0, 0.7, 0.0]])
    lse = math.log(
        math.exp(2) + 1.25 * math.exp(1) + math.exp(0) + 1.5 * math.exp(-1))
    expected = lse - (0.3 * 2.0 + 0.7 * 0.0)
    assert loss(z, t).item() == pytest.approx(expected, rel=1e-6)
    # scale 0 = soft cross-entropy
    soft_ce = -(t * F.log_softmax(z, 1)).sum()
    assert _loss(scale=0.0)(z, t).item() == pytest.approx(
        soft_ce.item(), rel=1e-6)


def test_weight_avg_factor_reduction():
    z = torch.randn(4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    loss = _loss()
    per = loss(z, y, reduction_override='none')
    assert per.shape == (4, )
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    assert loss(z, y, weight=w).item() == pytest.approx(
        (per * w).mean().item(), rel=1e-6)
    assert loss(z, y, weight=w, avg_factor=2.0).item() == pytest.approx(
        (per * w).sum().item() / 2, rel=1e-6)
    assert loss(z, y, reduction_override='sum').item() == pytest.approx(
        per.sum().item(), rel=1e-6)
    assert _loss(loss_weight=3.0)(z, y).item() == pytest.approx(
        3 * per.mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match='avg_factor'):
        loss(z, y, avg_factor=2.0, reduction_override='sum')


def test_detector_scores_with_background_column():
    # 4 foreground classes + background (label 4)
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0, 3.0]])
    y = torch.tensor([0, 4])
    per = _loss()(z, y, reduction_override='none')
    denom = (math.exp(2) + 1.5 * math.exp(1) + 1 + 1.25 * math.exp(-1) +
             math.exp(0.5))
    assert per[0].item() == pytest.approx(-math.log(math.exp(2) / denom),
                                          rel=1e-6)
    # background rows get no margin: plain CE
    assert per[1].item() == pytest.approx(
        F.cross_entropy(z[1:], y[1:]).item(), rel=1e-6)


def test_bad_input():
    loss = NeighborWeightedCELoss(topk=2)
    with pytest.raises(RuntimeError, match='no neighbour table'):
        loss(torch.zeros(1, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match='columns.*4 classes'):
        _loss()(torch.zeros(1, 7), torch.tensor([0]))
    with pytest.raises(ValueError, match='labels must be in'):
        _loss()(torch.zeros(1, 4), torch.tensor([4]))
    with pytest.raises(ValueError, match='alpha'):
        NeighborWeightedCELoss(alpha=1.0)
    with pytest.raises(ValueError, match='topk=3 exceeds'):
        _loss(topk=3)


def test_loss_from_file(tmp_path):
    path = str(tmp_path / 'n.json')
    _table().save(path)
    loss = NeighborWeightedCELoss(topk=2, neighbor_file=path, num_classes=4)
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert loss(z, torch.tensor([0])).item() == pytest.approx(
        _loss()(z, torch.tensor([0])).item())
    with pytest.raises(ValueError, match='n.json.*has 5'):
        NeighborWeightedCELoss(neighbor_file=path, num_classes=5)


def test_topk_follows_the_shared_table_unless_set():
    """A 10-class model whose preprocessor keeps 3 neighbours: the default
    loss uses those 3 (a fixed default of 20 could not)."""
    table = NeighborTable(10, topk=3)
    table.load_neighbors(
        torch.tensor([[(c + i) % 10 for i in (1, 2, 3)] for c in range(10)]),
        source='file')
    loss = NeighborWeightedCELoss()
    assert loss.share_neighbor_table(table)
    margins = loss.margins(10, torch.device('cpu'))
    assert ((margins > 0).sum(1) == 3).all()
    # by hand for class 0: neighbours 1, 2, 3 at ranks 1, 2, 3
    expected = [0.0] + [math.log1p(0.5**r) for r in (1, 2, 3)] + [0.0] * 6
    assert margins[0].tolist() == pytest.approx(expected)
    with pytest.raises(ValueError, match='topk'):
        NeighborWeightedCELoss(topk=5).share_neighbor_table(table)


def test_class_weight_by_hand():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    cw = [2.0, 1.0, 0.5, 1.0]
    unweighted = _loss(reduction='none')(z, y)
    out = _loss(reduction='none', class_weight=cw)(z, y)
    assert out.tolist() == pytest.approx(
        [2.0 * unweighted[0].item(), 0.5 * unweighted[1].item()])
    # scale 0 equals mmpretrain's CrossEntropyLoss with class_weight
    from mmpretrain.models.losses import CrossEntropyLoss
    ref = CrossEntropyLoss(class_weight=cw)(z, y)
    assert _loss(scale=0.0, class_weight=cw)(z, y).item() == pytest.approx(
        ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match='class_weight has 3 values'):
        _loss(class_weight=[1.0, 1.0, 1.0])(z, y)


@pytest.mark.parametrize('soft', [False, True])
def test_label_smoothing_by_hand(soft):
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    v = 0.1
    t = torch.tensor([[1.0, 0.0, 0.0, 0.0]]) if not soft else torch.tensor(
        [[0.7, 0.0, 0.3, 0.0]])
    label = t if soft else torch.tensor([0])
    smoothed = t * (1 - v) + v / 4
    # margins of class 0: log(1.5) for class 1, log(1.25) for class 3
    m = torch.tensor([0.0, math.log(1.5), 0.0, math.log(1.25)])
    expected = torch.logsumexp(z[0] + m, 0) - (smoothed[0] * z[0]).sum()
    out = _loss(label_smooth_val=v)(z, label)
    assert out.item() == pytest.approx(expected.item(), rel=1e-6)
    # scale 0 equals mmpretrain's LabelSmoothLoss (mode 'original')
    from mmpretrain.models.losses import LabelSmoothLoss
    ref = LabelSmoothLoss(label_smooth_val=v, num_classes=4,
                          mode='original')(z, label)
    assert _loss(scale=0.0, label_smooth_val=v)(z, label).item() == \
        pytest.approx(ref.item(), rel=1e-6)


def test_loss_weight_scales_the_loss():
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    assert _loss(loss_weight=2.5)(z, y).item() == pytest.approx(
        2.5 * _loss()(z, y).item(), rel=1e-6)


def test_loss_follows_a_rebuilt_table():
    """A table that is rebuilt (``refresh_interval``, a resumed checkpoint)
    changes the margins of the loss that shares it."""
    table = _table()
    loss = NeighborWeightedCELoss(alpha=0.5)
    loss.share_neighbor_table(table)
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    loss(z, torch.tensor([0]))  # margins of the first table
    table.load_neighbors(torch.tensor([[2, 1], [0, 3], [3, 1], [2, 1]]),
                         source='head')
    # label 0: now class 2 has rank 1 (w=.5) and class 1 rank 2 (w=.25)
    denom = math.exp(2) + 1.25 * math.exp(1) + 1.5 + math.exp(-1)
    assert loss(z, torch.tensor([0])).item() == pytest.approx(
        -math.log(math.exp(2) / denom), rel=1e-6)


def test_soft_targets_with_class_weight_by_hand():
    """Soft targets times class weights: ``sum_j t_j w_j (lse - z_j)``,
    whose target mass ``sum_j t_j w_j`` is not 1."""
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    t = torch.tensor([[0.7, 0.0, 0.3, 0.0]])
    cw = [2.0, 1.0, 0.5, 1.0]
    # margins of class 0 (the dominant one): log(1.5) for 1, log(1.25) for 3
    lse = math.log(math.exp(2) + 1.5 * math.exp(1) + 1 + 1.25 * math.exp(-1))
    expected = 0.7 * 2.0 * (lse - 2.0) + 0.3 * 0.5 * (lse - 0.0)
    out = _loss(class_weight=cw)(z, t)
    assert out.item() == pytest.approx(expected, rel=1e-6)
    # scale 0 equals mmpretrain's soft CrossEntropyLoss with class_weight
    from mmpretrain.models.losses import CrossEntropyLoss
    ref = CrossEntropyLoss(use_soft=True, class_weight=cw)(z, t)
    assert _loss(scale=0.0, class_weight=cw)(z, t).item() == pytest.approx(
        ref.item(), rel=1e-6)
