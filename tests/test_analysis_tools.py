"""tools/build_neighbors.py and the analysis tools on a trained tiny model."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import DIGITS_CONFIG, digits_options, run_tool, \
    write_image_folder
from mmgfn.models.utils import NeighborTable


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('analysis')
    data_root = write_image_folder(str(root / 'images'))
    work_dir = str(root / 'work')
    _ok(run_tool(['tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir,
                  '--cfg-options', *digits_options(data_root, 2)]))
    return data_root, osp.join(work_dir, 'epoch_2.pth'), root


def _opts(data_root):
    return ['--cfg-options', *digits_options(data_root)]


def test_build_neighbors_writes_class_mean_neighbours(trained):
    data_root, ckpt, root = trained
    out, emb_file = str(root / 'nbrs.json'), str(root / 'emb.pth')
    stdout = _ok(run_tool([
        'tools/build_neighbors.py', DIGITS_CONFIG, ckpt, '--out', out,
        '--topk', '2', '--save-embeddings', emb_file, '--num-workers', '0',
        *_opts(data_root)
    ]))
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
    assert 'model has 10 classes' in proc.stderr and 'has 4' in proc.stderr


def test_similarity_rank_histogram(trained):
    data_root, ckpt, root = trained
    out_dir = str(root / 'ranks')
    stdout = _ok(run_tool([
        'tools/analysis_tools/similarity_rank_histogram.py', DIGITS_CONFIG,
        ckpt, '--corruptions', 'gaussian_noise', 'contrast', '--severities',
        '5', '--topk', '1', '--num-workers', '0', '--out-dir', out_dir,
        *_opts(data_root)
    ]))
    with open(osp.join(out_dir, 'ranks.json')) as f:
        result = json.load(f)
    assert osp.isfile(osp.join(out_dir, 'rank_histogram.png'))
    assert result['num_classes'] == 4 and len(result['counts']) == 3
    assert result['chance_within_topk'] == pytest.approx(1 / 3)
    cells = result['cells']
    assert set(cells) == {'gaussian_noise/5', 'contrast/5'}
    assert result['errors'] == sum(c['errors'] for c in cells.values())
    assert sum(result['counts']) == result['errors']
    for cell in cells.values():
        assert sum(cell['counts']) == cell['errors']
    if result['errors']:
        assert result['within_topk'] == pytest.approx(
            result['counts'][0] / result['errors'])
    assert 'corruption-induced errors' in stdout


def test_class_similarity_heatmap(trained):
    data_root, ckpt, root = trained
    emb_file = str(root / 'emb_heat.pth')
    _ok(run_tool([
        'tools/build_neighbors.py', DIGITS_CONFIG, ckpt, '--out',
        str(root / 'n2.json'), '--topk', '2', '--save-embeddings', emb_file,
        '--num-workers', '0', *_opts(data_root)
    ]))
    out_dir = str(root / 'heat')
    _ok(run_tool([
        'tools/analysis_tools/class_similarity_heatmap.py', DIGITS_CONFIG,
        ckpt, '--embeddings', emb_file, '--topk', '2', '--out-dir', out_dir,
        *_opts(data_root)
    ]))
    with open(osp.join(out_dir, 'similarity.json')) as f:
        result = json.load(f)
    assert osp.isfile(osp.join(out_dir, 'similarity_heatmap.png'))
    emb = torch.load(emb_file, weights_only=False)['embeddings'].numpy()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = unit @ unit.T
    off = [sim[i, j] for i in range(4) for j in range(4) if i != j]
    assert result['mean_offdiagonal_similarity'] == pytest.approx(
        sum(off) / 12, abs=1e-5)
    top2 = [sorted([sim[i, j] for j in range(4) if j != i])[-2:]
            for i in range(4)]
    assert result['mean_topk_similarity'] == pytest.approx(
        np.mean(top2), abs=1e-5)
    assert sorted(result['order']) == [0, 1, 2, 3]
