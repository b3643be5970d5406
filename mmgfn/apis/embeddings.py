"""Class embeddings, their similarities and ranks for the analysis tools
(GFN, CVPR 2025, Sec. 3.1, Eq. 4).

Shape shorthand: ``N`` samples, ``C`` classes, ``D`` feature dimensions.

Eq. 4 writes the similarity of two class embeddings as a dot product
``M_ij = <z_i, z_j>``; Fig. 3's caption and this project's neighbour tables
use the cosine ``<z_i, z_j> / (|z_i| |z_j|)``. The analysis tools default to
the cosine and offer the dot product (``--similarity dot``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmgfn.models.utils import class_means, similarity_matrix
from mmgfn.utils.errors import ConfigError, check_file

#: Choices of ``similarity`` in :func:`pairwise_similarity`.
SIMILARITIES = ('cosine', 'dot')


def load_embeddings(embeddings_file: str) -> Tuple[Tensor, Optional[List]]:
    """Class embeddings saved by ``tools/build_neighbors.py
    --save-embeddings`` (``dict(embeddings=C x D, classes=[names])``) or a
    bare ``C x D`` tensor.

    Returns:
        tuple: ``C x D`` float32 embeddings and the saved class names (None
        where the file has none).

    Raises:
        FileNotFoundError: If the file is missing.
        ConfigError: If it holds no ``C x D`` tensor.
    """
    check_file(embeddings_file, 'embeddings file')
    data = torch.load(embeddings_file, map_location='cpu',
                      weights_only=False)
    names = None
    if isinstance(data, dict):
        names = list(data.get('classes') or []) or None
        data = data.get('embeddings')
    if not isinstance(data, Tensor) or data.dim() != 2:
        raise ConfigError(f'embeddings file "{embeddings_file}" holds no '
                          'C x D tensor (expected a tensor, or a dict with '
                          'an "embeddings" tensor and "classes")')
    return data.float(), names


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
        ConfigError: If its class count differs from ``num_classes`` (both
            numbers).
        ValueError: If a class has no samples (names it).
    """
    if embeddings_file:
        emb, _ = load_embeddings(embeddings_file)
        check_class_counts({
            f'embeddings file "{embeddings_file}"': emb.size(0),
            'the dataset': num_classes
        })
        return emb
    return class_means(features, labels, num_classes, class_names)


def pairwise_similarity(embeddings: Tensor,
                        similarity: str = 'cosine') -> Tensor:
    """``C x C`` similarities of class embeddings.

    Args:
        embeddings (Tensor): ``C x D`` class embeddings.
        similarity (str): ``'cosine'`` (``<z_i, z_j> / |z_i||z_j|``, in
            [-1, 1], Fig. 3) or ``'dot'`` (``<z_i, z_j>``, unbounded, Eq. 4
            as printed). Defaults to 'cosine'.

    Returns:
        Tensor: ``C x C`` float32, symmetric.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f'similarity must be one of {SIMILARITIES}, got '
                         f'{similarity!r}')
    if similarity == 'cosine':
        return similarity_matrix(embeddings)
    emb = embeddings.detach().float()
    return emb @ emb.t()


def ranks_from_similarity(sim: Tensor) -> Tensor:
    """``C x C`` int64 similarity ranks (Eq. 4) of a ``C x C`` similarity
    matrix: ``K[c, j]`` is the position of ``j`` in row ``c`` sorted by
    decreasing similarity, the class itself excluded (``K[c, c] = 0``, the
    most similar other class has rank 1, ranks run to ``C - 1``). Ties keep
    the lower class index first."""
    sim = sim.detach().clone().float()
    sim.fill_diagonal_(float('inf'))
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(order.size(1)).expand_as(order).contiguous()
    ranks.scatter_(1, order, positions)
    return ranks


def check_class_counts(counts: Dict[str, Optional[int]]) -> int:
    """Refuse disagreeing class counts with one line naming every source.

    Args:
        counts (dict): ``{what: C}``, e.g. ``{'the model (config
            model.head.num_classes)': 10, 'the test dataset': 4}``; None
            values (source unknown) are skipped.

    Returns:
        int: The common class count (0 if no source knows it).

    Raises:
        ConfigError: If two sources disagree.
    """
    known = {what: int(n) for what, n in counts.items() if n is not None}
    if len(set(known.values())) > 1:
        raise ConfigError('class counts disagree: ' + ', '.join(
            f'{what} has {n}' for what, n in known.items()))
    return next(iter(known.values()), 0)


def check_class_names(names: Dict[str, Optional[Sequence[str]]]) -> None:
    """Refuse class-name lists that disagree, in order, with one line.

    An embeddings file's row ``c`` is compared with the dataset's label
    ``c``: a file saved for the same classes in another order (or for other
    classes of the same count) would give wrong ranks without any error, so
    the lists must be equal, position by position.

    Args:
        names (dict): ``{what: [class names]}``; None or empty values
            (source without names) are skipped.

    Raises:
        ConfigError: Naming both sources and the first position where they
            differ.
    """
    known = [(what, [str(n) for n in lst]) for what, lst in names.items()
             if lst]
    for (what_a, a), (what_b, b) in zip(known, known[1:]):
        if a == b:
            continue
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                 min(len(a), len(b)))
        at_a = repr(a[i]) if i < len(a) else 'nothing'
        at_b = repr(b[i]) if i < len(b) else 'nothing'
        raise ConfigError(
            f'class names disagree: class {i} is {at_a} in {what_a} but '
            f'{at_b} in {what_b} (the lists must be the same, in the same '
            'order)')


def class_labels(num_classes: int,
                 *candidates: Optional[Sequence[str]]) -> List[str]:
    """Display labels of ``C`` classes: the first of ``candidates`` (lists
    of class names, e.g. the dataset's, the embeddings file's, the
    checkpoint's) that is given, else the class ids ``'0'..'C-1'``.

    Raises:
        ConfigError: If the chosen list does not have ``C`` names.
    """
    for names in candidates:
        if names:
            check_class_counts({'the model': num_classes,
                                'the list of class names': len(names)})
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]
