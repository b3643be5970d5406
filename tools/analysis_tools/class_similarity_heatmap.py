"""Inter-class similarity heat map of a classifier (GFN, Fig. 3).

Class embedding = mean pre-logits feature per class over a dataset; cell
(i, j) = similarity of the embeddings of classes i and j: cosine by default
(as Fig. 3's caption), or the dot product that Eq. 4 writes
(``--similarity dot``). Robust models have lower inter-class similarity
(Sec. 3.1); the tool prints the mean off-diagonal similarity and the mean
similarity of each class to its top-k neighbours, so models can be compared
by number::

    python tools/analysis_tools/class_similarity_heatmap.py CONFIG CKPT \\
        --out-dir work_dirs/similarity [--max-classes 100]

Writes ``similarity.json`` and ``similarity_heatmap.png``. The figure:

* rows and columns in the leaf order of an average-linkage clustering (so
  that groups of similar classes form blocks), labelled by class name (the
  dataset's, the embeddings file's or the checkpoint's, in that order of
  preference) or by class id where no names exist; the title and the axis
  labels say that the order is clustered. Up to 40 classes every row is
  labelled; above that one row in ``ceil(C / 40)`` of the clustered order
  (at most 40 labels per axis; the axis label says "1 in n labelled"), and
  ``similarity.json`` lists the full order with its names;
* the colour bar spans the off-diagonal values (their min..max), so that
  differences between classes are visible; the diagonal (self-similarity,
  1 for the cosine) is drawn grey, outside the scale.

``--max-classes N`` shows the first N classes only. The class counts of the
config, the checkpoint, the dataset and the embeddings file must agree
(else one line names them).
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.apis import build_test_dataloader, collect_outputs, load_classifier
from mmgfn.apis.embeddings import (SIMILARITIES, check_class_counts,
                                   class_labels, load_embeddings,
                                   pairwise_similarity)
from mmgfn.models.utils import class_means
from mmgfn.apis.cli import (add_dataset_pass_args, load_tool_config,
                             run_cli)
from mmgfn.utils.errors import ConfigError

#: Most tick labels per axis; above, every ceil(C / MAX_TICK_LABELS)-th.
MAX_TICK_LABELS = 40
#: Tick label font size (points).
TICK_FONTSIZE = 8

SIMILARITY_NAMES = dict(cosine='cosine similarity', dot='dot product')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_dataset_pass_args(parser)
    parser.add_argument('--embeddings', help='class embeddings saved by '
                        'tools/build_neighbors.py --save-embeddings (no '
                        'data pass)')
    parser.add_argument('--similarity', choices=SIMILARITIES,
                        default='cosine',
                        help='cosine (Fig. 3, default) or dot product '
                        '(Eq. 4 as printed)')
    parser.add_argument('--topk', type=int, default=20)
    parser.add_argument('--max-classes', type=int,
                        help='plot only the first N classes')
    parser.add_argument('--out-dir', required=True)
    return parser.parse_args(argv)


def summarize(sim: np.ndarray, topk: int) -> dict:
    """Mean off-diagonal similarity and mean top-k neighbour similarity of
    a ``C x C`` similarity matrix (k capped at ``C - 1``)."""
    c = sim.shape[0]
    off = sim[~np.eye(c, dtype=bool)]
    k = min(topk, c - 1)
    masked = np.where(np.eye(c, dtype=bool), -np.inf, sim)
    top = -np.sort(-masked, axis=1)[:, :k]
    return dict(num_classes=c, topk=k,
                mean_offdiagonal_similarity=float(off.mean()),
                mean_topk_similarity=float(top.mean()))


def cluster_order(sim: np.ndarray) -> np.ndarray:
    """Leaf order of an average-linkage clustering of a ``C x C``
    similarity matrix, on the distance ``max(sim) - sim`` (``1 - sim`` for
    the cosine; average linkage merges in the same order for any constant
    added to the distances, so the dot product clusters the same way).
    Fewer than 3 classes keep their order."""
    if sim.shape[0] < 3:
        return np.arange(sim.shape[0])
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform
    dist = np.clip(sim.max() - sim, 0, None)
    np.fill_diagonal(dist, 0)
    dist = (dist + dist.T) / 2
    return leaves_list(linkage(squareform(dist, checks=False), 'average'))


def offdiagonal_range(sim: np.ndarray) -> Tuple[float, float]:
    """``(min, max)`` of the off-diagonal cells of a ``C x C`` matrix (the
    colour bar's limits); widened by 1e-6 where they coincide, ``(-1, 1)``
    for a single class."""
    c = sim.shape[0]
    if c < 2:
        return -1.0, 1.0
    off = sim[~np.eye(c, dtype=bool)]
    lo, hi = float(off.min()), float(off.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 1e-6, hi + 1e-6
    return lo, hi


def tick_step(num_classes: int) -> int:
    """Label every n-th row/column: 1 up to ``MAX_TICK_LABELS`` classes,
    else ``ceil(C / MAX_TICK_LABELS)``."""
    return max(1, math.ceil(num_classes / MAX_TICK_LABELS))


def plot(sim: np.ndarray, labels: List[str], similarity: str = 'cosine'):
    """The heat map of an already ordered ``C x C`` similarity matrix.

    Args:
        sim (np.ndarray): ``C x C``, rows and columns in clustered order.
        labels (list[str]): ``C`` labels (names or ids) in the same order.
        similarity (str): ``'cosine'`` or ``'dot'``, for the titles.

    Returns:
        matplotlib.figure.Figure: One axes with the image (colour limits =
        :func:`offdiagonal_range`, diagonal masked) and its colour bar.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    c = sim.shape[0]
    step = tick_step(c)
    ticks = list(range(0, c, step))
    side = min(16.0, max(6.0, 4.0 + 0.16 * len(ticks)))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    cmap = plt.get_cmap('viridis').with_extremes(bad='lightgrey')
    shown = np.ma.masked_array(sim, mask=np.eye(c, dtype=bool))
    vmin, vmax = offdiagonal_range(sim)
    im = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation='nearest')
    name = SIMILARITY_NAMES[similarity]
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(f'{name} (off-diagonal range; diagonal grey)')
    cbar.ax.tick_params(labelsize=TICK_FONTSIZE)
    tick_labels = [labels[i] for i in ticks]
    ax.set_xticks(ticks, tick_labels, rotation=90, fontsize=TICK_FONTSIZE)
    ax.set_yticks(ticks, tick_labels, fontsize=TICK_FONTSIZE)
    which = '' if step == 1 else f', 1 in {step} labelled'
    ax.set_xlabel(f'class (clustered order{which})')
    ax.set_ylabel(f'class (clustered order{which})')
    ax.set_title(f'inter-class {name} of class embeddings\n'
                 f'{c} classes in average-linkage clustered order')
    fig.tight_layout()
    return fig


def analyse(args: argparse.Namespace) -> Tuple[dict, object]:
    """Load the model, compute the class embeddings and their similarities.

    Returns:
        tuple: The ``similarity.json`` content and the heat map Figure.

    Raises:
        ConfigError: If the class counts of the config, checkpoint, dataset
            and embeddings file disagree (names each).
    """
    cfg = load_tool_config(args)
    model = load_classifier(cfg, args.checkpoint, args.device)
    head_classes = getattr(model.head, 'num_classes', None)
    ckpt_names = list((getattr(model, 'dataset_meta', None) or {}).get(
        'classes') or []) or None
    counts = {
        'the model (config model.head.num_classes, checkpoint)':
        head_classes,
        'the checkpoint\'s dataset_meta classes':
        len(ckpt_names) if ckpt_names else None
    }
    if args.embeddings:
        emb, names = load_embeddings(args.embeddings)
        counts[f'embeddings file "{args.embeddings}"'] = emb.size(0)
        if names:
            counts[f'the class names in "{args.embeddings}"'] = len(names)
        num_classes = check_class_counts(counts)
    else:
        loader = build_test_dataloader(cfg, args.split, args.batch_size,
                                       args.num_workers)
        names = list(loader.dataset.metainfo.get('classes') or []) or None
        if names:
            counts[f'the {args.split} dataset'] = len(names)
        check_class_counts(counts)
        out = collect_outputs(model, loader, True, 'class embeddings')
        counts['the model\'s logits'] = out['logits'].size(1)
        num_classes = check_class_counts(counts)
        try:
            emb = class_means(out['features'], out['labels'], num_classes,
                              names)
        except ValueError as e:  # a class without samples
            raise ConfigError(f'{args.split} dataset: {e}') from e
    labels = class_labels(num_classes, names, ckpt_names)
    sim = pairwise_similarity(emb, args.similarity).numpy()
    n = min(args.max_classes or num_classes, num_classes)
    shown = sim[:n, :n]
    order = cluster_order(shown)
    result = summarize(sim, args.topk)
    result.update(similarity=args.similarity, order=order.tolist(),
                  order_labels=[labels[i] for i in order],
                  colorbar_range=list(offdiagonal_range(shown)))
    fig = plot(shown[np.ix_(order, order)], [labels[i] for i in order],
               args.similarity)
    return result, fig


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result, fig = analyse(args)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'similarity.json'), 'w') as f:
        json.dump(result, f, indent=2)
    fig.savefig(osp.join(args.out_dir, 'similarity_heatmap.png'), dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    name = SIMILARITY_NAMES[args.similarity]
    print(f'{result["num_classes"]} classes: mean inter-class {name} '
          f'{result["mean_offdiagonal_similarity"]:.3f}, mean top-'
          f'{result["topk"]} neighbour {name} '
          f'{result["mean_topk_similarity"]:.3f}; wrote {args.out_dir}/'
          'similarity.json and similarity_heatmap.png')


if __name__ == '__main__':
    run_cli(main)
