"""Where do corruption errors land? Similarity ranks of their predictions.

Reproduces GFN's motivation (CVPR 2025, Sec. 3.1, Fig. 2e, Eq. 4) for any
classifier: for every test image that the model classifies correctly when
clean and wrongly under a corruption, the *similarity rank* of the wrong
class to the true class (1 = most similar other class; class embeddings =
mean pre-logits feature per class, cosine similarity). A histogram piled up
at small ranks says the errors go to neighbours::

    python tools/analysis_tools/similarity_rank_histogram.py CONFIG CKPT \\
        --corruptions gaussian_noise motion_blur fog --severities 3 \\
        --out-dir work_dirs/rank_hist

Writes ``ranks.json`` (counts per rank, per corruption and in total, the
share within the top-k against the share a uniformly random wrong class
would have, k-1 / C-1) and ``rank_histogram.png``. Class embeddings are the
class means of the clean test features unless ``--embeddings`` gives those
saved by ``tools/build_neighbors.py --save-embeddings``.
"""
import argparse
import json
import os
import os.path as osp

import numpy as np

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.apis import build_test_dataloader, collect_outputs, load_classifier
from mmgfn.apis.embeddings import class_embeddings
from mmgfn.datasets.transforms.corruption import ALL_CORRUPTIONS
from mmgfn.models.utils import similarity_ranks
from mmgfn.utils.cli import (add_dataset_pass_args, load_tool_config,
                             run_cli)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_dataset_pass_args(parser)
    parser.add_argument('--corruptions', nargs='+', choices=ALL_CORRUPTIONS,
                        default=['gaussian_noise', 'motion_blur', 'fog'])
    parser.add_argument('--severities', nargs='+', type=int, default=[3])
    parser.add_argument('--embeddings', help='class embeddings saved by '
                        'tools/build_neighbors.py --save-embeddings')
    parser.add_argument('--topk', type=int, default=20,
                        help='report the share of errors within rank <= k')
    parser.add_argument('--out-dir', required=True)
    return parser.parse_args()


def rank_counts(ranks: np.ndarray, num_classes: int) -> list:
    """Counts of ranks 1..C-1 (index 0 = rank 1)."""
    return np.bincount(ranks, minlength=num_classes)[1:].tolist()


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args)
    model = load_classifier(cfg, args.checkpoint, args.device)

    def run(corruption=None, severity=0, features=False):
        loader = build_test_dataloader(cfg, args.split, args.batch_size,
                                       args.num_workers, corruption,
                                       severity)
        title = f'{corruption}/{severity}' if corruption else 'clean'
        return loader, collect_outputs(model, loader, features, title)

    loader, clean = run(features=True)
    classes = list(loader.dataset.metainfo.get('classes') or [])
    num_classes = clean['logits'].size(1)
    if classes and len(classes) != num_classes:
        raise ValueError(f'the model has {num_classes} classes, the dataset '
                         f'{len(classes)}')
    emb = class_embeddings(clean['features'], clean['labels'], num_classes,
                           args.embeddings, classes or None)
    ranks = similarity_ranks(emb).numpy()
    labels = clean['labels'].numpy()
    clean_ok = clean['preds'].numpy() == labels

    result = dict(num_classes=num_classes, topk=args.topk,
                  chance_within_topk=args.topk / (num_classes - 1),
                  clean_accuracy=float(clean_ok.mean()), cells={})
    all_ranks = []
    for corruption in args.corruptions:
        for severity in args.severities:
            _, out = run(corruption, severity)
            preds = out['preds'].numpy()
            induced = clean_ok & (preds != labels)
            r = ranks[labels[induced], preds[induced]]
            all_ranks.append(r)
            result['cells'][f'{corruption}/{severity}'] = dict(
                errors=int(induced.sum()),
                within_topk=float((r <= args.topk).mean()) if r.size else None,
                median_rank=float(np.median(r)) if r.size else None,
                counts=rank_counts(r, num_classes))
    r = np.concatenate(all_ranks) if all_ranks else np.zeros(0, int)
    result.update(
        errors=int(r.size),
        within_topk=float((r <= args.topk).mean()) if r.size else None,
        median_rank=float(np.median(r)) if r.size else None,
        counts=rank_counts(r, num_classes))
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'ranks.json'), 'w') as f:
        json.dump(result, f, indent=2)
    plot(result, osp.join(args.out_dir, 'rank_histogram.png'))
    share = result['within_topk']
    print(f'{r.size} corruption-induced errors; '
          f'{"n/a" if share is None else f"{100 * share:.1f} %"} within '
          f'rank <= {args.topk} (a random wrong class: '
          f'{100 * result["chance_within_topk"]:.1f} %); wrote '
          f'{args.out_dir}/ranks.json and rank_histogram.png')


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    counts = np.asarray(result['counts'])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(np.arange(1, counts.size + 1), counts, width=1.0)
    ax.axvline(result['topk'] + 0.5, color='tab:red', ls='--',
               label=f'k = {result["topk"]}')
    ax.set_xlabel('similarity rank of the wrong class (1 = most similar)')
    ax.set_ylabel('corruption-induced errors')
    ax.set_title(f'{result["errors"]} errors, {result["num_classes"]} '
                 'classes')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == '__main__':
    run_cli(main)
