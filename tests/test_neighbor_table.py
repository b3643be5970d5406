"""The neighbour table: ranks, sources, file round trip, bad input."""
import json

import pytest
import torch
from mmengine.registry import init_default_scope

from mmgfn.models.utils import (NeighborTable, compute_class_embeddings,
                                head_class_weights, neighbors_from_embeddings,
                                similarity_ranks)
from mmgfn.registry import MODELS

# 4 classes in 2-D: class 1 is close to 0, class 3 close to 2.
EMB = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 1.0]])


def test_neighbors_by_hand():
    # cosines, computed by hand: c0: c1 .994, c3 .196, c2 0
    #   c1: c0 .994, c3 .305, c2 .110 ; c2: c3 .981, c1 .110, c0 0
    #   c3: c2 .981, c1 .305, c0 .196
    nbrs = neighbors_from_embeddings(EMB, topk=2)
    assert nbrs.tolist() == [[1, 3], [0, 3], [3, 1], [2, 1]]
    ranks = similarity_ranks(EMB)
    assert ranks.diagonal().tolist() == [0, 0, 0, 0]
    assert ranks[0].tolist() == [0, 1, 3, 2]
    assert ranks[3].tolist() == [3, 2, 1, 0]


def test_table_sample_and_rank_matrix():
    table = NeighborTable(4, topk=2)
    table.update_from_embeddings(EMB)
    labels = torch.tensor([0, 1, 2, 3] * 50)
    nbr, rank = table.sample(labels, torch.Generator().manual_seed(0))
    assert set(rank.tolist()) == {1, 2}
    assert (nbr != labels).all()
    assert (table.neighbors[labels, rank - 1] == nbr).all()
    ranks = table.rank_matrix()
    assert ranks[0].tolist() == [0, 1, 0, 2]
    assert ranks[2].tolist() == [0, 2, 0, 1]
    assert table.rank_matrix(topk=1)[0].tolist() == [0, 1, 0, 0]


def test_file_round_trip_keeps_metadata(tmp_path):
    table = NeighborTable(4, topk=2, class_names=list('abcd'))
    table.update_from_embeddings(EMB, source='embedding')
    path = str(tmp_path / 'nbrs.json')
    table.save(path)
    with open(path) as f:
        meta = json.load(f)
    assert meta['num_classes'] == 4 and meta['topk'] == 2
    assert meta['source'] == 'embedding' and meta['class_names'] == list(
        'abcd')
    loaded = NeighborTable.from_file(path, num_classes=4)
    assert torch.equal(loaded.neighbors, table.neighbors)
    assert loaded.class_names == list('abcd')
    assert NeighborTable.from_file(path, topk=1).neighbors.tolist() == [
        [1], [0], [3], [2]]


def test_table_is_kept_in_state_dict():
    table = NeighborTable(4, topk=2)
    table.update_from_embeddings(EMB)
    other = NeighborTable(4, topk=2)
    version = other.version
    other.load_state_dict(table.state_dict())
    assert torch.equal(other.neighbors, table.neighbors)
    assert bool(other.built) and other.version > version


@pytest.mark.parametrize('topk', [4, 5, 0])
def test_topk_must_be_below_num_classes(topk):
    with pytest.raises(ValueError, match=f'topk={topk}.*num_classes'):
        NeighborTable(4, topk=topk)


def test_file_for_other_class_count_is_refused(tmp_path):
    table = NeighborTable(4, topk=2)
    table.update_from_embeddings(EMB)
    path = str(tmp_path / 'nbrs.json')
    table.save(path)
    with pytest.raises(ValueError, match=r'nbrs.json.*4 classes.*has 10'):
        NeighborTable.from_file(path, num_classes=10)
    with pytest.raises(ValueError, match='topk=3'):
        NeighborTable.from_file(path, topk=3)
    with pytest.raises(FileNotFoundError, match='missing.json'):
        NeighborTable.from_file(str(tmp_path / 'missing.json'))


def test_nan_and_zero_embeddings_are_named():
    emb = EMB.clone()
    emb[2, 0] = float('nan')
    table = NeighborTable(4, topk=2, class_names=['a', 'b', 'cat', 'd'])
    with pytest.raises(ValueError, match=r'class 2 \("cat"\).*not finite'):
        table.update_from_embeddings(emb)
    emb = EMB.clone()
    emb[1] = 0
    with pytest.raises(ValueError, match='class 1.*all zeros'):
        table.update_from_embeddings(emb)
    with pytest.raises(RuntimeError, match='empty'):
        NeighborTable(4, 2).sample(torch.tensor([0]))


def _tiny_classifier(num_classes=4):
    init_default_scope('mmpretrain')
    model = MODELS.build(
        dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(
                type='ResNet_CIFAR', depth=18, stem_channels=8,
                base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead', num_classes=num_classes,
                in_channels=64),
            data_preprocessor=dict(mean=[128] * 3, std=[64] * 3)))
    return model.eval()


def _batches(labels, size=32):
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    return [
        dict(
            inputs=[
                torch.randint(0, 255, (3, size, size), generator=g,
                              dtype=torch.uint8) for _ in chunk
            ],
            data_samples=[DataSample().set_gt_label(c) for c in chunk])
        for chunk in labels
    ]


def test_class_embeddings_are_class_means():
    model = _tiny_classifier()
    batches = _batches([[0, 1, 2], [3, 0, 1]])
    emb = compute_class_embeddings(model, batches, 4)
    assert emb.shape == (4, 64)
    # class 0 = mean of the first image of batch 0 and the second of batch 1
    with torch.no_grad():
        feats = [
            model.extract_feat(
                model.data_preprocessor(b, False)['inputs'],
                stage='pre_logits') for b in batches
        ]
    expected = (feats[0][0] + feats[1][1]) / 2
    assert torch.allclose(emb[0], expected, atol=1e-5)
    with pytest.raises(ValueError, match=r'no samples.*class 2 \("c"\)'):
        compute_class_embeddings(
            model, _batches([[0, 1], [3]]), 4, class_names=list('abcd'))


def test_head_weights_source():
    model = _tiny_classifier()
    w = head_class_weights(model, 4)
    assert torch.equal(w, model.head.fc.weight)
    with pytest.raises(ValueError, match='10 outputs'):
        head_class_weights(model, 10)


def test_loading_more_neighbours_keeps_the_closest():
    """A ``C x k'`` matrix with ``k' > k``: ranks 1..k (its first k
    columns) are kept."""
    table = NeighborTable(4, topk=1)
    table.load_neighbors(torch.tensor([[1, 3], [0, 3], [3, 1], [2, 1]]),
                         source='file')
    assert table.neighbors.tolist() == [[1], [0], [3], [2]]


@pytest.mark.parametrize('bad', [4, -1, 2])
def test_neighbour_index_out_of_range_or_self_is_refused(bad):
    """Class 2's neighbour ``bad``: 4 (= C), -1 and 2 (itself) are refused
    with the class named; 3 (= C - 1) is fine."""
    table = NeighborTable(4, topk=1, class_names=list('abcd'))
    table.load_neighbors(torch.tensor([[1], [0], [3], [2]]), source='file')
    with pytest.raises(ValueError, match=rf'\[{bad}\] for class 2 \("c"\)'):
        table.load_neighbors(torch.tensor([[1], [0], [bad], [2]]),
                             source='file')


def test_similarity_is_the_cosine_of_class_rows():
    """``M_ij`` is the cosine of rows i and j (by hand), so rescaling a
    class's embedding changes neither M nor the neighbours."""
    from mmgfn.models.utils.neighbor_table import similarity_matrix
    sim = similarity_matrix(EMB)
    assert sim.diagonal().tolist() == pytest.approx([1.0] * 4)
    assert sim[0, 1].item() == pytest.approx(0.9 / 0.82**0.5, rel=1e-6)
    assert sim[2, 3].item() == pytest.approx(1.0 / 1.04**0.5, rel=1e-6)
    assert sim[0, 2].item() == pytest.approx(0.0, abs=1e-7)
    scaled = EMB * torch.tensor([[1.0], [10.0], [0.1], [5.0]])
    assert torch.allclose(similarity_matrix(scaled), sim, atol=1e-6)
    assert neighbors_from_embeddings(scaled, topk=2).tolist() == \
        neighbors_from_embeddings(EMB, topk=2).tolist()
