"""Inter-class similarity heat map of a classifier (GFN, Fig. 3).

Class embedding = mean pre-logits feature per class over a dataset; cell
(i, j) = cosine similarity of the embeddings of classes i and j. Robust
models have lower inter-class similarity (Sec. 3.1); the tool prints the
mean off-diagonal similarity and the mean similarity of each class to its
top-k neighbours, so models can be compared by number::

    python tools/analysis_tools/class_similarity_heatmap.py CONFIG CKPT \\
        --out-dir work_dirs/similarity [--max-classes 100]

Writes ``similarity.json`` and ``similarity_heatmap.png`` (classes ordered
by hierarchical clustering so that groups of similar classes form blocks;
``--max-classes`` shows the first N classes only).
"""
import argparse
import json
import os
import os.path as osp

import numpy as np

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.apis import build_test_dataloader, collect_outputs, load_classifier
from mmgfn.apis.embeddings import class_embeddings
from mmgfn.models.utils import similarity_matrix
from mmgfn.utils.cli import (add_dataset_pass_args, load_tool_config,
                             run_cli)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_dataset_pass_args(parser)
    parser.add_argument('--embeddings', help='class embeddings saved by '
                        'tools/build_neighbors.py --save-embeddings (no '
                        'data pass)')
    parser.add_argument('--topk', type=int, default=20)
    parser.add_argument('--max-classes', type=int,
                        help='plot only the first N classes')
    parser.add_argument('--out-dir', required=True)
    return parser.parse_args()


def summarize(sim: np.ndarray, topk: int) -> dict:
    """Mean off-diagonal similarity and mean top-k neighbour similarity."""
    c = sim.shape[0]
    off = sim[~np.eye(c, dtype=bool)]
    k = min(topk, c - 1)
    masked = np.where(np.eye(c, dtype=bool), -np.inf, sim)
    top = -np.sort(-masked, axis=1)[:, :k]
    return dict(num_classes=c, topk=k,
                mean_offdiagonal_similarity=float(off.mean()),
                mean_topk_similarity=float(top.mean()))


def cluster_order(sim: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering on 1 - similarity."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform
    dist = np.clip(1 - sim, 0, None)
    np.fill_diagonal(dist, 0)
    dist = (dist + dist.T) / 2
    return leaves_list(linkage(squareform(dist, checks=False), 'average'))


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args)
    model = load_classifier(cfg, args.checkpoint, args.device)
    classes = None
    if args.embeddings:
        emb = class_embeddings(None, None, model.head.num_classes,
                               args.embeddings)
    else:
        loader = build_test_dataloader(cfg, args.split, args.batch_size,
                                       args.num_workers)
        classes = list(loader.dataset.metainfo.get('classes') or []) or None
        out = collect_outputs(model, loader, True, 'class embeddings')
        emb = class_embeddings(out['features'], out['labels'],
                               out['logits'].size(1), None, classes)
    sim = similarity_matrix(emb).numpy()
    shown = sim[:args.max_classes, :args.max_classes] if args.max_classes \
        else sim
    order = cluster_order(shown) if shown.shape[0] > 2 else np.arange(
        shown.shape[0])
    result = summarize(sim, args.topk)
    result['order'] = order.tolist()
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'similarity.json'), 'w') as f:
        json.dump(result, f, indent=2)
    plot(shown[np.ix_(order, order)],
         [classes[i] for i in order] if classes else None,
         osp.join(args.out_dir, 'similarity_heatmap.png'))
    print(f'{result["num_classes"]} classes: mean inter-class similarity '
          f'{result["mean_offdiagonal_similarity"]:.3f}, mean top-'
          f'{result["topk"]} neighbour similarity '
          f'{result["mean_topk_similarity"]:.3f}; wrote {args.out_dir}/'
          'similarity.json and similarity_heatmap.png')


def plot(sim: np.ndarray, names, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(sim, cmap='viridis', vmin=-1, vmax=1)
    fig.colorbar(im, ax=ax, label='cosine similarity')
    if names and len(names) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_title('inter-class similarity of class embeddings')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == '__main__':
    run_cli(main)
