"""Where do corruption errors land? Similarity ranks of their predictions.

Reproduces GFN's motivation (CVPR 2025, Sec. 3.1, Fig. 2e, Eq. 4) for any
classifier: for every test image that the model classifies correctly when
clean and wrongly under a corruption, the *similarity rank* of the wrong
class to the true class (1 = most similar other class, up to ``C - 1``;
class embeddings = mean pre-logits feature per class; similarity = cosine,
as Fig. 3's caption, or the dot product that Eq. 4 writes with
``--similarity dot``). A histogram piled up at small ranks says the errors
go to neighbours::

    python tools/analysis_tools/similarity_rank_histogram.py CONFIG CKPT \\
        --corruptions gaussian_noise motion_blur fog --severities 3 \\
        --out-dir work_dirs/rank_hist

Writes ``ranks.json`` (counts per rank for each corruption and severity and
in total; the share of errors within rank <= k against the share a
uniformly random wrong class would have, ``min(k, C - 1) / (C - 1)``; k is
capped at ``C - 1``) and ``rank_histogram.png``: one histogram per
corruption and severity, side by side (as Fig. 2e), each titled with its
corruption, severity and error count, integer rank ticks, the rank axis
ending at ``C - 1`` and a dashed line after rank k where k < C - 1. Class
embeddings are the class means of the clean test features unless
``--embeddings`` gives those saved by ``tools/build_neighbors.py
--save-embeddings``. The class counts of the config, the checkpoint, the
dataset and the embeddings file must agree, and the checkpoint must hold
the head's weights (else one line names the problem).
"""
import argparse
import json
import math
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.apis import build_test_dataloader, collect_outputs, load_classifier
from mmgfn.apis.embeddings import (SIMILARITIES, check_class_counts,
                                   check_class_names, load_embeddings,
                                   pairwise_similarity,
                                   ranks_from_similarity)
from mmgfn.datasets.transforms.corruption import ALL_CORRUPTIONS
from mmgfn.models.utils import class_means
from mmgfn.apis.cli import (add_dataset_pass_args, load_tool_config,
                             run_cli)
from mmgfn.utils.errors import ConfigError

#: Histograms per row of the figure.
MAX_COLUMNS = 5

SIMILARITY_NAMES = dict(cosine='cosine similarity', dot='dot product')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_dataset_pass_args(parser)
    parser.add_argument('--corruptions', nargs='+', choices=ALL_CORRUPTIONS,
                        default=['gaussian_noise', 'motion_blur', 'fog'])
    parser.add_argument('--severities', nargs='+', type=int, default=[3])
    parser.add_argument('--embeddings', help='class embeddings saved by '
                        'tools/build_neighbors.py --save-embeddings')
    parser.add_argument('--similarity', choices=SIMILARITIES,
                        default='cosine',
                        help='cosine (Fig. 3, default) or dot product '
                        '(Eq. 4 as printed)')
    parser.add_argument('--topk', type=int, default=20,
                        help='report the share of errors within rank <= k')
    parser.add_argument('--out-dir', required=True)
    return parser.parse_args(argv)


def chance_within_topk(topk: int, num_classes: int) -> float:
    """Share of a uniformly random wrong class within rank <= k:
    ``min(k, C - 1) / (C - 1)`` (in [0, 1]; C >= 2)."""
    return min(topk, num_classes - 1) / (num_classes - 1)


def rank_counts(ranks: np.ndarray, num_classes: int) -> list:
    """Counts of ranks 1..C-1 (index 0 = rank 1)."""
    return np.bincount(ranks, minlength=num_classes)[1:].tolist()


def error_ranks(ranks: np.ndarray, labels: np.ndarray,
                clean_preds: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Similarity ranks of the corruption-induced errors.

    Args:
        ranks (np.ndarray): ``C x C`` int ranks (see
            :func:`ranks_from_similarity`).
        labels (np.ndarray): ``N`` true classes.
        clean_preds (np.ndarray): ``N`` top-1 predictions on clean images.
        preds (np.ndarray): ``N`` top-1 predictions on corrupted images.

    Returns:
        np.ndarray: ``ranks[label, pred]`` (in 1..C-1) of the images that
        are right when clean and wrong when corrupted.
    """
    induced = (clean_preds == labels) & (preds != labels)
    return ranks[labels[induced], preds[induced]]


def summarize(r: np.ndarray, topk: int, num_classes: int) -> dict:
    """``errors``, ``within_topk`` (share of ranks <= k, None without
    errors), ``median_rank`` and ``counts`` (ranks 1..C-1) of error
    ranks ``r``."""
    return dict(
        errors=int(r.size),
        within_topk=float((r <= topk).mean()) if r.size else None,
        median_rank=float(np.median(r)) if r.size else None,
        counts=rank_counts(r, num_classes))


def rank_ticks(num_ranks: int) -> list:
    """Integer ticks in ``[1, num_ranks]``: every rank up to 10 ranks,
    else about 8 round values (1 always included)."""
    if num_ranks <= 10:
        return list(range(1, num_ranks + 1))
    from matplotlib.ticker import MaxNLocator
    values = MaxNLocator(nbins=8, integer=True).tick_values(1, num_ranks)
    return sorted({1, *[int(v) for v in values if 1 <= v <= num_ranks]})


def plot(result: dict):
    """One histogram per corruption and severity, side by side.

    Args:
        result (dict): What :func:`analyse` returns (``cells`` with
            ``corruption``, ``severity``, ``errors``, ``within_topk`` and
            ``counts``; ``num_classes``, ``topk``, ``similarity``).

    Returns:
        matplotlib.figure.Figure: One axes per cell (``ceil(n / 5)`` rows
        of up to 5), sharing the count axis.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    cells = list(result['cells'].values())
    num_ranks = result['num_classes'] - 1
    k = result['topk']
    ncols = max(1, min(len(cells), MAX_COLUMNS))
    nrows = max(1, math.ceil(len(cells) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols,
                                                    3.0 * nrows + 0.6),
                             sharey=True, squeeze=False)
    for ax, cell in zip(axes.flat, cells):
        ax.bar(np.arange(1, num_ranks + 1), cell['counts'], width=1.0)
        if k < num_ranks:
            ax.axvline(k + 0.5, color='tab:red', ls='--', label=f'k = {k}')
            ax.legend(fontsize=8)
        ax.set_xlim(0.5, num_ranks + 0.5)
        ax.set_xticks(rank_ticks(num_ranks))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        share = cell['within_topk']
        share = 'n/a' if share is None else f'{100 * share:.0f} %'
        ax.set_title(f'{cell["corruption"]}, severity {cell["severity"]}\n'
                     f'{cell["errors"]} errors, {share} within k',
                     fontsize=9)
        ax.set_xlabel('similarity rank of the wrong class')
    for ax in axes[:, 0]:
        ax.set_ylabel('corruption-induced errors')
    for ax in list(axes.flat)[len(cells):]:
        fig.delaxes(ax)
    fig.suptitle(f'{result["errors"]} corruption-induced errors, '
                 f'{result["num_classes"]} classes, ranks by '
                 f'{SIMILARITY_NAMES[result["similarity"]]} '
                 '(1 = most similar)',
                 fontsize=10)
    fig.tight_layout()
    return fig


def analyse(args: argparse.Namespace) -> Tuple[dict, object]:
    """Run the clean and corrupted passes and histogram the error ranks.

    Returns:
        tuple: The ``ranks.json`` content and the Figure of :func:`plot`.

    Raises:
        ConfigError: If the class counts of the config, checkpoint, dataset
            and embeddings file disagree (names each), the checkpoint has
            no head weights, or there are fewer than 2 classes.
    """
    cfg = load_tool_config(args)
    model = load_classifier(cfg, args.checkpoint, args.device,
                            require_head=True)

    def loader_for(corruption=None, severity=0):
        return build_test_dataloader(cfg, args.split, args.batch_size,
                                     args.num_workers, corruption, severity)

    counts = {'the model (config model.head.num_classes, checkpoint)':
              getattr(model.head, 'num_classes', None)}
    emb, names = (load_embeddings(args.embeddings) if args.embeddings else
                  (None, None))
    if emb is not None:
        counts[f'embeddings file "{args.embeddings}"'] = emb.size(0)
        if names:
            counts[f'the class names in "{args.embeddings}"'] = len(names)
    loader = loader_for()
    classes = list(loader.dataset.metainfo.get('classes') or [])
    if classes:
        counts[f'the {args.split} dataset'] = len(classes)
    check_class_counts(counts)
    # the file's row c is the dataset's label c
    check_class_names({f'the {args.split} dataset': classes,
                       f'embeddings file "{args.embeddings}"': names})
    clean = collect_outputs(model, loader, emb is None, 'clean')
    counts['the model\'s logits'] = clean['logits'].size(1)
    num_classes = check_class_counts(counts)
    if num_classes < 2:
        raise ConfigError(f'similarity ranks need 2 or more classes, the '
                          f'model has {num_classes}')
    if emb is None:
        try:
            emb = class_means(clean['features'], clean['labels'],
                              num_classes, classes or None)
        except ValueError as e:  # a class without samples
            raise ConfigError(f'{args.split} dataset: {e}') from e
    ranks = ranks_from_similarity(pairwise_similarity(
        emb, args.similarity)).numpy()
    labels = clean['labels'].numpy()
    clean_preds = clean['preds'].numpy()
    topk = min(args.topk, num_classes - 1)

    result = dict(num_classes=num_classes, topk=topk,
                  similarity=args.similarity,
                  chance_within_topk=chance_within_topk(topk, num_classes),
                  clean_accuracy=float((clean_preds == labels).mean()),
                  cells={})
    all_ranks = []
    for corruption in args.corruptions:
        for severity in args.severities:
            out = collect_outputs(model, loader_for(corruption, severity),
                                  False, f'{corruption}/{severity}')
            r = error_ranks(ranks, labels, clean_preds, out['preds'].numpy())
            all_ranks.append(r)
            result['cells'][f'{corruption}/{severity}'] = dict(
                corruption=corruption, severity=severity,
                **summarize(r, topk, num_classes))
    r = np.concatenate(all_ranks) if all_ranks else np.zeros(0, int)
    result.update(summarize(r, topk, num_classes))
    return result, plot(result)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    result, fig = analyse(args)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'ranks.json'), 'w') as f:
        json.dump(result, f, indent=2)
    fig.savefig(osp.join(args.out_dir, 'rank_histogram.png'), dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    share = result['within_topk']
    print(f'{result["errors"]} corruption-induced errors; '
          f'{"n/a" if share is None else f"{100 * share:.1f} %"} within '
          f'rank <= {result["topk"]} (a random wrong class: '
          f'{100 * result["chance_within_topk"]:.1f} %); wrote '
          f'{args.out_dir}/ranks.json and rank_histogram.png')


if __name__ == '__main__':
    run_cli(main)
