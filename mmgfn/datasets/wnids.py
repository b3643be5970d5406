"""WordNet ids (wnids) of ImageNet-1k and of its 200-class subsets.

The lists ship as package data under ``mmgfn/datasets/meta/``, one wnid a
line:

* ``imagenet1k_wnids.txt``: the 1000 ImageNet-1k classes in the standard
  sorted order, i.e. the order of the 1000 logits of every ImageNet-1k
  classifier (torchvision, timm, mmpretrain).
* ``imagenet_a_wnids.txt``: the 200 classes of ImageNet-A (Hendrycks et al.,
  "Natural Adversarial Examples", CVPR 2021), from ``thousand_k_to_200`` in
  ``hendrycks/natural-adv-examples/eval.py``.
* ``imagenet_r_wnids.txt``: the 200 classes of ImageNet-R (Hendrycks et al.,
  "The Many Faces of Robustness", ICCV 2021), from ``imagenet_r_wnids`` in
  ``hendrycks/imagenet-r/eval.py``.

The subsets are sorted, so their ImageFolder labels 0..199 follow the
order of :func:`indices_in_1k`: logit ``indices_in_1k(name)[i]`` of a
1000-way classifier scores label ``i``.
"""
import os.path as osp
from functools import lru_cache
from typing import Optional, Sequence, Tuple, Union

META_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'meta')

#: Name -> file under ``mmgfn/datasets/meta``.
WNID_FILES = {
    'imagenet1k': 'imagenet1k_wnids.txt',
    'imagenet-a': 'imagenet_a_wnids.txt',
    'imagenet-r': 'imagenet_r_wnids.txt',
}


@lru_cache(maxsize=None)
def load_wnids(name: str) -> Tuple[str, ...]:
    """The wnids of a shipped class list.

    Args:
        name (str): ``'imagenet1k'``, ``'imagenet-a'`` or ``'imagenet-r'``.

    Returns:
        tuple[str]: The wnids in label order (1000 or 200 entries).

    Raises:
        ValueError: For an unknown name.
    """
    if name not in WNID_FILES:
        raise ValueError(f'unknown class list "{name}"; expected one of '
                         f'{", ".join(WNID_FILES)}')
    with open(osp.join(META_DIR, WNID_FILES[name]), encoding='utf-8') as f:
        return tuple(line.strip() for line in f if line.strip())


@lru_cache(maxsize=None)
def indices_in_1k(name: str) -> Tuple[int, ...]:
    """Positions of a subset's classes among the 1000 ImageNet-1k logits.

    Args:
        name (str): ``'imagenet-a'`` or ``'imagenet-r'`` (``'imagenet1k'``
            gives ``0..999``).

    Returns:
        tuple[int]: Increasing indices in ``[0, 999]``, one per subset label
        (200 for ImageNet-A/R).
    """
    position = {wnid: i for i, wnid in enumerate(load_wnids('imagenet1k'))}
    return tuple(position[wnid] for wnid in load_wnids(name))


def resolve_classes(
        classes: Union[str, Sequence[str], None]) -> Optional[Tuple[str, ...]]:
    """Turn a ``classes`` argument into a tuple of class folder names.

    Args:
        classes (str | Sequence[str] | None): A shipped list name (see
            :data:`WNID_FILES`), an explicit sequence of folder names, or
            None (classes are the folders found on disk).

    Returns:
        tuple[str] | None: The class names in label order, or None.
    """
    if classes is None:
        return None
    if isinstance(classes, str):
        return load_wnids(classes)
    return tuple(classes)
