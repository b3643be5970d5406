"""tools/build_neighbors.py and the analysis tools on a trained tiny model.

The tools run in this process (:func:`conftest.run_tool_in_process`)
except for one exit status and one-line error per tool."""
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch

from conftest import (DIGITS_CONFIG, digits_options, load_tool, run_tool,
                      run_tool_in_process)
from mmgfn.apis import build_test_dataloader, collect_outputs, load_classifier
from mmgfn.apis.embeddings import pairwise_similarity, ranks_from_similarity
from mmgfn.models.utils import NeighborTable
from mmgfn.apis.cli import load_tool_config
from mmgfn.utils.errors import ConfigError

HEATMAP = 'tools/analysis_tools/class_similarity_heatmap.py'
RANKS = 'tools/analysis_tools/similarity_rank_histogram.py'


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope='module')
def trained(trained_digits, tmp_path_factory):
    """The session's trained digits model (2 epochs): (image folder, last
    checkpoint, a folder of this module's for outputs)."""
    data_root, work_dir = trained_digits
    return (data_root, osp.join(work_dir, 'epoch_2.pth'),
            tmp_path_factory.mktemp('analysis'))


def _opts(data_root):
    return ['--cfg-options', *digits_options(data_root)]


@pytest.fixture(scope='module')
def neighbors(trained):
    """tools/build_neighbors.py on the train split: (neighbour file,
    embeddings file, stdout)."""
    data_root, ckpt, root = trained
    out, emb_file = str(root / 'nbrs.json'), str(root / 'emb.pth')
    stdout = _ok(run_tool_in_process([
        'tools/build_neighbors.py', DIGITS_CONFIG, ckpt, '--out', out,
        '--topk', '2', '--save-embeddings', emb_file, '--num-workers', '0',
        *_opts(data_root)
    ]))
    return out, emb_file, stdout


def test_build_neighbors_writes_class_mean_neighbours(neighbors):
    out, emb_file, stdout = neighbors
    assert 'wrote' in stdout and '32 train images' in stdout
    table = NeighborTable.from_file(out, num_classes=4)
    assert table.topk == 2 and table.source == 'embedding'
    assert table.class_names == [f'class_{i}' for i in range(4)]
    # by hand: cosine similarities of the saved class means
    emb = torch.load(emb_file, weights_only=False)['embeddings'].numpy()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1, kind='stable')[:, :2]
    assert table.neighbors.tolist() == expected.tolist()


def test_build_neighbors_refuses_class_count_mismatch(trained):
    data_root, ckpt, root = trained
    proc = run_tool([
        'tools/build_neighbors.py', DIGITS_CONFIG, ckpt, '--out',
        str(root / 'x.json'), '--num-workers', '0', *_opts(data_root),
        'model.head.num_classes=10'
    ])
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert 'head.fc.weight' in line and '[4, 128]' in line
    assert 'num_classes is 10' in line




# ---------------------------------------------------------------------------
# Similarities and ranks (Eq. 4 dot product, Fig. 3 cosine) by hand
# ---------------------------------------------------------------------------
def _hand_similarity(emb, similarity):
    emb = np.asarray(emb, np.float64)
    if similarity == 'cosine':
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return emb @ emb.T


def _hand_ranks(sim):
    """ranks[c, j] = 1 + number of other classes more similar to c than j
    (no ties in these tests), 0 on the diagonal."""
    c = sim.shape[0]
    ranks = np.zeros((c, c), int)
    for i in range(c):
        for j in range(c):
            if i != j:
                ranks[i, j] = 1 + sum(
                    sim[i, m] > sim[i, j] for m in range(c) if m != i)
    return ranks


def test_similarity_options_match_hand_computation():
    emb = torch.tensor([[1., 0., 0.], [0.9, 0.1, 0.], [0., 5., 1.],
                        [3., 3., 0.]])
    for similarity in ('cosine', 'dot'):
        sim = pairwise_similarity(emb, similarity).numpy()
        hand = _hand_similarity(emb.numpy(), similarity)
        np.testing.assert_allclose(sim, hand, rtol=1e-6, atol=1e-6)
        ranks = ranks_from_similarity(torch.from_numpy(sim)).numpy()
        assert ranks.tolist() == _hand_ranks(hand).tolist()
    # the two disagree here: class 0's nearest is 1 by cosine, 3 by dot
    cos = _hand_ranks(_hand_similarity(emb.numpy(), 'cosine'))
    dot = _hand_ranks(_hand_similarity(emb.numpy(), 'dot'))
    assert cos[0, 1] == 1 and dot[0, 3] == 1


# ---------------------------------------------------------------------------
# Class-count mismatches between config, checkpoint, dataset, embeddings
# ---------------------------------------------------------------------------
def _cfg(data_root, *extra):
    heat = load_tool(HEATMAP, 'class_similarity_heatmap')
    return load_tool_config(heat.parse_args([
        DIGITS_CONFIG, 'unused.pth', '--out-dir', 'unused', '--cfg-options',
        *digits_options(data_root), *extra
    ]))


def _random_checkpoint(data_root, path, num_classes):
    """A checkpoint of the digits model with a ``num_classes`` head."""
    model = load_classifier(
        _cfg(data_root, f'model.head.num_classes={num_classes}'), None)
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path


def test_load_classifier_refuses_head_of_another_class_count(trained):
    data_root, ckpt, root = trained
    cfg = _cfg(data_root, 'model.head.num_classes=10')
    with pytest.raises(ValueError) as err:
        load_classifier(cfg, ckpt)
    msg = str(err.value)
    assert '\n' not in msg and ckpt in msg and 'head.fc.weight' in msg
    assert '[4, 128] in the checkpoint and [10, 128] in the model' in msg
    assert 'checkpoint has 4 classes' in msg and 'num_classes is 10' in msg
    # a checkpoint without the head's weights: refused where asked
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    state['state_dict'] = {k: v for k, v in state['state_dict'].items()
                           if not k.startswith('head.')}
    headless = str(root / 'headless.pth')
    torch.save(state, headless)
    load_classifier(_cfg(data_root), headless)  # features only: allowed
    with pytest.raises(ConfigError, match=r'no weights for head\.fc\.weight'):
        load_classifier(_cfg(data_root), headless, require_head=True)


def test_heatmap_refuses_class_count_mismatch(trained, neighbors):
    data_root, ckpt, root = trained
    heat = load_tool(HEATMAP, 'class_similarity_heatmap')

    def analyse(checkpoint, flags=(), options=()):
        return heat.analyse(heat.parse_args([
            DIGITS_CONFIG, checkpoint, *flags, '--num-workers', '0',
            '--out-dir', str(root / 'unused'), '--cfg-options',
            *digits_options(data_root), *options]))

    # config and checkpoint agree on 10 classes, the dataset has 4
    ckpt10 = _random_checkpoint(data_root, str(root / 'ckpt10.pth'), 10)
    with pytest.raises(ConfigError) as err:
        analyse(ckpt10, options=['model.head.num_classes=10'])
    assert 'class counts disagree' in str(err.value)
    assert 'num_classes, checkpoint) has 10' in str(err.value)
    assert 'the test dataset has 4' in str(err.value)
    # an embeddings file of 5 classes for a 4-class model
    emb5 = str(root / 'emb5.pth')
    torch.save(dict(embeddings=torch.rand(5, 8), classes=list('abcde')), emb5)
    with pytest.raises(ConfigError) as err:
        analyse(ckpt, flags=['--embeddings', emb5])
    assert f'embeddings file "{emb5}" has 5' in str(err.value)
    assert 'checkpoint) has 4' in str(err.value)
    # the same 4 classes in another order: row c is not class c
    swapped = str(root / 'emb_swapped.pth')
    torch.save(dict(embeddings=torch.rand(4, 8), classes=[
        'class_1', 'class_0', 'class_2', 'class_3']), swapped)
    ranks = load_tool(RANKS, 'similarity_rank_histogram')
    with pytest.raises(ConfigError, match=re.escape(
            "class names disagree: class 0 is 'class_0' in the test "
            f"dataset but 'class_1' in embeddings file \"{swapped}\"")):
        ranks.analyse(ranks.parse_args([
            DIGITS_CONFIG, ckpt, '--corruptions', 'fog', '--embeddings',
            swapped, '--num-workers', '0', '--out-dir',
            str(root / 'unused'), '--cfg-options',
            *digits_options(data_root)]))
    # through the command line: one line, exit status 2
    proc = run_tool([
        HEATMAP, DIGITS_CONFIG, ckpt, '--num-workers', '0', '--out-dir',
        str(root / 'unused'), *_opts(data_root), 'model.head.num_classes=10'
    ])
    assert proc.returncode == 2, proc.stderr[-2000:]
    line, = proc.stderr.strip().splitlines()
    assert 'head.fc.weight' in line and '[4, 128]' in line \
        and '[10, 128]' in line
    assert not osp.exists(str(root / 'unused'))


# ---------------------------------------------------------------------------
# The heat map: what the figure shows
# ---------------------------------------------------------------------------
def _tick_texts(fig, axis):
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = ax.get_xticklabels() if axis == 'x' else ax.get_yticklabels()
    return [t.get_text() for t in labels], [t.get_fontsize() for t in labels]


def _check_heatmap_cells(fig, names, sim, step=1):
    """Every labelled row/column of the image shows the similarity of the
    classes its tick labels name; the colour bar spans the off-diagonal
    min..max of ``sim``."""
    ax = fig.axes[0]
    img = ax.images[0]
    data = np.ma.getdata(img.get_array())
    xs, xsizes = _tick_texts(fig, 'x')
    ys, ysizes = _tick_texts(fig, 'y')
    assert xs == ys and len(xs) == len(range(0, len(names), step))
    assert min(xsizes + ysizes) >= 8  # readable
    positions = [int(round(p)) for p in ax.get_xticks()]
    assert positions == list(range(0, len(names), step))
    ids = [names.index(t) for t in xs]  # raises if a label is no class
    assert sorted(set(ids)) == sorted(ids)
    for a, pa in zip(ids, positions):
        for b, pb in zip(ids, positions):
            if a != b:
                assert data[pa, pb] == pytest.approx(sim[a, b], rel=1e-4,
                                                     abs=1e-5)
    off = sim[~np.eye(len(names), dtype=bool)]
    assert img.get_clim() == pytest.approx((off.min(), off.max()), rel=1e-4,
                                          abs=1e-5)
    return ids


def test_heatmap_labels_rows_by_class_in_clustered_order(trained, neighbors):
    data_root, ckpt, root = trained
    _, emb_file, _ = neighbors
    saved = torch.load(emb_file, weights_only=False)
    # names of the file's own (the checkpoint's are class_0..class_3)
    names = ['red rows', 'blue columns', 'green rows', 'grey columns']
    renamed = str(root / 'emb_named.pth')
    torch.save(dict(saved, classes=names), renamed)
    heat = load_tool(HEATMAP, 'class_similarity_heatmap')
    args = heat.parse_args([
        DIGITS_CONFIG, ckpt, '--embeddings', renamed, '--topk', '2',
        '--out-dir', str(root / 'heat'), '--cfg-options',
        *digits_options(data_root)
    ])
    result, fig = heat.analyse(args)
    sim = _hand_similarity(saved['embeddings'].numpy(), 'cosine')
    ids = _check_heatmap_cells(fig, names, sim)
    assert ids == result['order']
    assert result['order_labels'] == [names[i] for i in ids]
    ax = fig.axes[0]
    assert 'clustered order' in ax.get_title()
    assert 'clustered order' in ax.get_xlabel() and \
        'clustered order' in ax.get_ylabel()
    assert 'cosine similarity' in fig.axes[1].get_ylabel()  # colour bar
    assert np.ma.getmaskarray(ax.images[0].get_array()).diagonal().all()
    # the printed numbers, by hand
    off = sim[~np.eye(4, dtype=bool)]
    assert result['mean_offdiagonal_similarity'] == pytest.approx(
        off.mean(), abs=1e-5)
    top2 = [sorted(sim[i, j] for j in range(4) if j != i)[-2:]
            for i in range(4)]
    assert result['mean_topk_similarity'] == pytest.approx(
        np.mean(top2), abs=1e-5)


def test_heatmap_dot_product_on_a_data_pass(trained, neighbors):
    """``--similarity dot`` (Eq. 4) over the train split equals the dot
    products of the class means saved by build_neighbors; the dataset's
    class names label the rows."""
    data_root, ckpt, root = trained
    _, emb_file, _ = neighbors
    heat = load_tool(HEATMAP, 'class_similarity_heatmap')
    result, fig = heat.analyse(heat.parse_args([
        DIGITS_CONFIG, ckpt, '--split', 'train', '--similarity', 'dot',
        '--num-workers', '0', '--out-dir', str(root / 'heat_dot'),
        '--cfg-options', *digits_options(data_root)
    ]))
    emb = torch.load(emb_file, weights_only=False)['embeddings'].numpy()
    sim = _hand_similarity(emb, 'dot')
    assert result['similarity'] == 'dot'
    _check_heatmap_cells(fig, [f'class_{i}' for i in range(4)], sim)
    off = sim[~np.eye(4, dtype=bool)]
    assert result['mean_offdiagonal_similarity'] == pytest.approx(
        off.mean(), rel=1e-4)
    assert 'dot product' in fig.axes[0].get_title()
    assert 'dot product' in fig.axes[1].get_ylabel()


def test_heatmap_many_classes_keeps_saved_names(trained):
    """45 classes from an embeddings file: the file's names label one row
    in two of the clustered order."""
    data_root, _, root = trained
    ckpt45 = _random_checkpoint(data_root, str(root / 'ckpt45.pth'), 45)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(45, 16)) + 2 * rng.normal(size=(5, 16)).repeat(
        9, axis=0)  # 5 groups of 9 similar classes
    names = [f'n{i:02d}' for i in range(45)]
    emb_file = str(root / 'emb45.pth')
    torch.save(dict(embeddings=torch.tensor(emb, dtype=torch.float32),
                    classes=names), emb_file)
    heat = load_tool(HEATMAP, 'class_similarity_heatmap')
    result, fig = heat.analyse(heat.parse_args([
        DIGITS_CONFIG, ckpt45, '--embeddings', emb_file, '--out-dir',
        str(root / 'heat45'), '--cfg-options', *digits_options(data_root),
        'model.head.num_classes=45'
    ]))
    sim = _hand_similarity(emb.astype(np.float32), 'cosine')
    ids = _check_heatmap_cells(fig, names, sim, step=2)
    assert ids == result['order'][::2] and len(ids) == 23
    assert '1 in 2 labelled' in fig.axes[0].get_xlabel()
    # clustered: each group of 9 is contiguous in the order
    groups = [i // 9 for i in result['order']]
    assert sum(a != b for a, b in zip(groups, groups[1:])) == 4


# ---------------------------------------------------------------------------
# The rank histogram: one histogram per corruption and severity
# ---------------------------------------------------------------------------
def test_similarity_rank_histogram(trained, neighbors):
    """Counts per cell equal a hand computation (dot-product ranks of
    embeddings whose norms differ, so cosine ranks would differ), one
    titled histogram per cell, and the chance share capped at 100 %."""
    data_root, ckpt, root = trained
    _, emb_file, _ = neighbors
    emb = torch.load(emb_file, weights_only=False)['embeddings'].numpy()
    emb = emb * np.array([1., 4., 16., 64.])[:, None]
    scaled = str(root / 'emb_scaled.pth')
    torch.save(dict(embeddings=torch.tensor(emb, dtype=torch.float32),
                    classes=[f'class_{i}' for i in range(4)]), scaled)
    hand_ranks = _hand_ranks(_hand_similarity(emb, 'dot'))
    assert hand_ranks.tolist() != _hand_ranks(
        _hand_similarity(emb, 'cosine')).tolist()
    ranks = load_tool(RANKS, 'similarity_rank_histogram')
    cells = [('fog', 5), ('fog', 3), ('motion_blur', 5), ('motion_blur', 3)]
    result, fig = ranks.analyse(ranks.parse_args([
        DIGITS_CONFIG, ckpt, '--corruptions', 'fog', 'motion_blur',
        '--severities', '5', '3', '--topk', '5', '--similarity', 'dot',
        '--embeddings', scaled, '--num-workers', '0', '--out-dir',
        str(root / 'ranks'), '--cfg-options', *digits_options(data_root)
    ]))
    # by hand: errors made under each corruption on images right when clean
    cfg = _cfg(data_root)
    model = load_classifier(cfg, ckpt)
    clean = collect_outputs(model, build_test_dataloader(cfg))
    labels, ok = clean['labels'].numpy(), (
        clean['preds'] == clean['labels']).numpy()
    expected = {}
    for corruption, severity in cells:
        preds = collect_outputs(model, build_test_dataloader(
            cfg, corruption=corruption, severity=severity))['preds'].numpy()
        counts = [0, 0, 0]
        for i in range(labels.size):
            if ok[i] and preds[i] != labels[i]:
                counts[hand_ranks[labels[i], preds[i]] - 1] += 1
        expected[f'{corruption}/{severity}'] = counts
    assert {k: c['counts'] for k, c in result['cells'].items()} == expected
    assert list(result['cells']) == [f'{c}/{s}' for c, s in cells]
    total = np.sum(list(expected.values()), axis=0)
    assert result['counts'] == total.tolist() and total.sum() > 0
    assert result['errors'] == total.sum()
    # k is capped at C - 1 = 3: every error is within k, as is chance
    assert result['topk'] == 3 and result['chance_within_topk'] == 1.0
    assert result['within_topk'] == 1.0
    # the figure: one histogram per cell, titled, bars = counts
    assert len(fig.axes) == 4
    for ax, (corruption, severity) in zip(fig.axes, cells):
        title = ax.get_title()
        assert corruption in title and f'severity {severity}' in title
        cell = expected[f'{corruption}/{severity}']
        assert f'{sum(cell)} errors' in title
        assert [p.get_height() for p in ax.patches] == cell
        assert [p.get_x() + p.get_width() / 2 for p in ax.patches] == \
            [1, 2, 3]
        assert not ax.lines  # k = C - 1: no k line
        assert ax.get_xlim() == (0.5, 3.5)
        assert list(ax.get_xticks()) == [1, 2, 3]
    assert 'dot product' in fig._suptitle.get_text()


def test_rank_histogram_k_line_and_integer_ticks():
    ranks = load_tool(RANKS, 'similarity_rank_histogram')
    assert ranks.chance_within_topk(20, 10) == 1.0
    assert ranks.chance_within_topk(3, 10) == pytest.approx(3 / 9)
    cells = {
        f'fog/{s}': dict(corruption='fog', severity=s, errors=n,
                         within_topk=None if n == 0 else 0.5,
                         counts=[n] + [0] * 23)
        for s, n in ((1, 0), (2, 1), (3, 2))
    }
    result = dict(num_classes=25, topk=4, similarity='cosine', errors=3,
                  cells=cells)
    fig = ranks.plot(result)
    assert len(fig.axes) == 3
    assert [ax.get_title().split('\n')[0] for ax in fig.axes] == [
        'fog, severity 1', 'fog, severity 2', 'fog, severity 3']
    for ax in fig.axes:
        line, = ax.lines
        assert list(line.get_xdata()) == [4.5, 4.5]
        assert ax.get_xlim() == (0.5, 24.5)
        ticks = ax.get_xticks()
        assert len(ticks) >= 3 and ticks[0] == 1 and ticks[-1] <= 24
        assert all(float(t).is_integer() for t in ticks)
        yticks = [t for t in ax.get_yticks()
                  if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert all(float(t).is_integer() for t in yticks)
    # k = C - 1 takes in every rank: no line
    fig = ranks.plot(dict(result, topk=24))
    assert not any(ax.lines for ax in fig.axes)
    # more cells than fit a row: rows of 5, no empty axes left over
    many = {f'fog/{s}': dict(cells['fog/2'], severity=s) for s in range(7)}
    fig = ranks.plot(dict(result, cells=many))
    assert len(fig.axes) == 7


def test_rank_histogram_command_line(trained):
    data_root, ckpt, root = trained
    out_dir = str(root / 'ranks_cli')
    stdout = _ok(run_tool_in_process([
        RANKS, DIGITS_CONFIG, ckpt, '--corruptions', 'contrast',
        '--severities', '5', '--topk', '5', '--num-workers', '0',
        '--out-dir', out_dir, *_opts(data_root)
    ]))
    with open(osp.join(out_dir, 'ranks.json')) as f:
        result = json.load(f)
    assert osp.isfile(osp.join(out_dir, 'rank_histogram.png'))
    assert result['chance_within_topk'] == 1.0
    assert '(a random wrong class: 100.0 %)' in stdout
    assert list(result['cells']) == ['contrast/5']
