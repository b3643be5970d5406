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
    with pytest.raises(ValueError, match=rf'row 2 \(class 2 \("c"\)\).*'
                       rf'\[{bad}\]'):
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


# ----------------------------------------------------- one validation
def _assert_one_line(err, *parts):
    text = str(err.value)
    assert '\n' not in text
    for part in parts:
        assert part in text, (part, text)


def test_duplicate_neighbours_are_refused_from_a_file(tmp_path):
    """``[[1, 1], ...]``: class 1 twice in row 0 would leave it one rank
    only (biased draws); the file is named, and the row."""
    path = tmp_path / 'dup.json'
    path.write_text(json.dumps(dict(
        format='mmgfn-neighbor-table/1', num_classes=4, topk=2,
        source='file', neighbors=[[1, 1], [0, 2], [0, 1], [0, 1]])))
    with pytest.raises(ValueError) as err:
        NeighborTable.from_file(str(path))
    _assert_one_line(err, f'neighbour file "{path}"', 'row 0',
                     'a class twice', '[1, 1]')


@pytest.mark.parametrize('row,what', [([0, 7], 'outside [0, 4)'),
                                      ([3, 3], 'the class itself')])
def test_a_checkpoint_table_is_validated(row, what):
    """A state dict whose table has class 7 of 4, or class 3 its own
    neighbour, does not load (it used to, and ``sample`` returned 7)."""
    table = NeighborTable(4, topk=2)
    table.update_from_embeddings(EMB)
    state = table.state_dict()
    state['neighbors'] = state['neighbors'].clone()
    state['neighbors'][3] = torch.tensor(row)
    fresh = NeighborTable(4, topk=2)
    with pytest.raises(ValueError) as err:
        fresh.load_state_dict(state)
    _assert_one_line(err, 'checkpoint', 'row 3', what)
    assert not fresh.is_built


def test_a_built_table_goes_through_the_same_validation(monkeypatch):
    """The build route calls the one check (planted: a builder that
    repeats a class is caught and named 'built')."""
    import mmgfn.models.utils.neighbor_table as nt
    monkeypatch.setattr(
        nt, 'neighbors_from_embeddings',
        lambda *a, **k: torch.tensor([[1, 1], [0, 2], [3, 1], [2, 1]]))
    table = NeighborTable(4, topk=2)
    with pytest.raises(ValueError) as err:
        table.update_from_embeddings(EMB)
    _assert_one_line(err, 'built', 'row 0', 'a class twice')


def test_wrong_shape_is_named():
    table = NeighborTable(4, topk=2)
    with pytest.raises(ValueError) as err:
        table.load_neighbors(torch.tensor([[1, 2], [0, 2], [3, 1]]),
                             source='file', origin='checkpoint')
    _assert_one_line(err, 'checkpoint', '(3, 2)', '4 x 2')


def test_dot_similarity_ranks_by_the_dot_product():
    """Dot products by hand (EMB rows): c0: c1 .9, c3 .2, c2 0; c1: c0 .9,
    c3 .28, c2 .1; c2: c3 1.0, c1 .1, c0 0; c3: c2 1.0, c1 .28, c0 .2.
    Scaling class 2 by 10 (z_2 = (0, 10)): class 1's dot products become
    c2 1.0 > c0 .9, so c2 is its first neighbour under 'dot'; the cosines,
    and the cosine table, do not change."""
    from mmgfn.models.utils.neighbor_table import similarity_matrix
    dot = similarity_matrix(EMB, 'dot')
    assert dot[1, 3].item() == pytest.approx(0.28)
    scaled = EMB * torch.tensor([[1.0], [1.0], [10.0], [1.0]])
    table = NeighborTable(4, topk=2, similarity='dot')
    table.update_from_embeddings(scaled)
    assert table.neighbors.tolist() == [[1, 3], [2, 0], [3, 1], [2, 1]]
    cosine = NeighborTable(4, topk=2)
    cosine.update_from_embeddings(scaled)
    assert cosine.neighbors.tolist() == [[1, 3], [0, 3], [3, 1], [2, 1]]
    with pytest.raises(ValueError, match="similarity='l2'"):
        NeighborTable(4, topk=2, similarity='l2')


def test_similarity_is_recorded_in_file_and_checkpoint(tmp_path):
    table = NeighborTable(4, topk=2, similarity='dot')
    table.update_from_embeddings(EMB)
    path = str(tmp_path / 'dot.json')
    table.save(path)
    assert json.load(open(path))['similarity'] == 'dot'
    assert NeighborTable.from_file(path).similarity == 'dot'
    with pytest.raises(ValueError, match=r"dot.json.*'dot'.*'cosine'"):
        NeighborTable.from_file(path, similarity='cosine')
    fresh = NeighborTable(4, topk=2)  # cosine by default
    fresh.load_state_dict(table.state_dict())
    assert fresh.similarity == 'dot'
    assert fresh.neighbors.tolist() == table.neighbors.tolist()
    # a checkpoint written before the similarity was recorded: cosine
    old = {k: v for k, v in table.state_dict().items()
           if k != 'similarity_id'}
    fresh.load_state_dict(old)
    assert fresh.similarity == 'cosine'
