"""Build GFN's neighbour table from a checkpoint's class embeddings.

Class embedding = mean pre-logits feature of the class over a dataset
(GFN, Eq. 4; the training split with the *test* pipeline, no augmentation);
neighbours = the top-k classes by cosine similarity, self excluded. Writes
the JSON neighbour file that configs reference through
``data_preprocessor.neighbor_file`` (``neighbor_source='file'``)::

    python tools/build_neighbors.py configs/gfn_vit-b_in1k.py \\
        checkpoints/vit-base-p16_32xb128-mae_in1k_20220623-4c544545.pth

``--out`` defaults to the config's ``neighbor_file``; ``--topk`` to its
``topk``.
"""
import argparse
import os
import os.path as osp

import torch

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.apis import build_test_dataloader, load_classifier
from mmgfn.models.utils import NeighborTable, compute_class_embeddings
from mmgfn.apis.cli import (add_dataset_pass_args, load_tool_config,
                             run_cli)
from mmgfn.utils.errors import ConfigError, check_file


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_dataset_pass_args(parser, split='train')
    parser.add_argument('--out', help='neighbour file to write (defaults to '
                        "the config's data_preprocessor.neighbor_file)")
    parser.add_argument('--topk', type=int, help='neighbours per class '
                        "(defaults to the config's data_preprocessor.topk, "
                        'else 20)')
    parser.add_argument('--save-embeddings', metavar='FILE',
                        help='also save the C x D class embeddings (torch)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args)
    pre = cfg.get('data_preprocessor') or {}
    out = args.out or pre.get('neighbor_file')
    if not out:
        raise ConfigError('no --out given and the config has no '
                          'data_preprocessor.neighbor_file')
    topk = args.topk or pre.get('topk') or 20
    check_file(args.checkpoint, 'checkpoint')

    model = load_classifier(cfg, args.checkpoint, args.device)
    loader = build_test_dataloader(cfg, args.split, args.batch_size,
                                   args.num_workers)
    classes = list(loader.dataset.metainfo.get('classes') or [])
    head_classes = getattr(model.head, 'num_classes', None)
    if classes and head_classes is not None and len(classes) != head_classes:
        raise ConfigError(
            f'the model has {head_classes} classes but the {args.split} '
            f'dataset has {len(classes)}')
    num_classes = len(classes) or head_classes
    table = NeighborTable(num_classes, topk, classes or None)
    try:
        embeddings = compute_class_embeddings(
            model, loader, num_classes, classes or None, progress=True)
        table.update_from_embeddings(embeddings, source='embedding')
    except ValueError as e:  # a class without samples, NaN features
        raise ConfigError(str(e)) from e
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    table.save(out)
    if args.save_embeddings:
        torch.save(dict(embeddings=embeddings, classes=classes),
                   args.save_embeddings)
    print(f'wrote {out}: {num_classes} classes x {topk} neighbours from '
          f'{len(loader.dataset)} {args.split} images')


if __name__ == '__main__':
    run_cli(main)
