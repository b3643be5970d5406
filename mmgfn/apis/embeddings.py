"""Class embeddings for the analysis tools (GFN, Eq. 4)."""
from typing import Optional, Sequence

import torch
from torch import Tensor

from mmgfn.models.utils import class_means
from mmgfn.utils.preflight import check_file


def class_embeddings(features: Tensor,
                     labels: Tensor,
                     num_classes: int,
                     embeddings_file: Optional[str] = None,
                     class_names: Optional[Sequence[str]] = None) -> Tensor:
    """``C x D`` class embeddings: those saved by ``tools/build_neighbors.py
    --save-embeddings`` when ``embeddings_file`` is given, else the class
    means of ``features`` (``N x D``) over ``labels`` (``N``).

    Raises:
        FileNotFoundError: If ``embeddings_file`` is missing.
        ValueError: If its class count differs from ``num_classes`` (both
            numbers), or a class has no samples.
    """
    if embeddings_file:
        check_file(embeddings_file, 'embeddings file')
        emb = torch.load(embeddings_file, map_location='cpu',
                         weights_only=False)
        emb = emb['embeddings'] if isinstance(emb, dict) else emb
        if emb.size(0) != num_classes:
            raise ValueError(
                f'embeddings file "{embeddings_file}" has {emb.size(0)} '
                f'classes, the dataset has {num_classes}')
        return emb.float()
    return class_means(features, labels, num_classes, class_names)
