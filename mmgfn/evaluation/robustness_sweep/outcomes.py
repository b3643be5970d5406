"""Per-image outcomes of a classification cell, for paired comparisons.

Each classification cell record (``cells.jsonl``, ``results.json``) keeps
``outcomes``::

    dict(wrong=<base64 of numpy.packbits(wrong)>, num_images=N,
         images=<sha256 hex of the ordered image identities>)

``wrong`` is ``(N,)`` bool, True where the top-1 prediction differs from
the label, in the order of the cell's dataset (its ``sample_idx``). The
identity of an image is its path's last two components (the class folder
and the file name: ``n01440764/ILSVRC2012_val_00000293.JPEG``, the same in
every ImageNet-C cell, on every machine) and its label; the ``images`` key
of two cells is equal only for the same images in the same order, so two
sweeps are matched image by image or refused. One bit per image: ImageNet-C
(50,000 images x 75 cells) takes 470 KB of bits, 625 KB as base64.
"""
import base64
import hashlib
from typing import Iterable, Optional, Tuple

import numpy as np

from mmgfn.utils.errors import ConfigError


def image_identity(img_path: Optional[str], label: int) -> str:
    """``'<folder>/<file>|<label>'`` of one image (``'#<index>|<label>'``
    style callers use when there is no path)."""
    parts = str(img_path).replace('\\', '/').rstrip('/').split('/')
    return '/'.join(parts[-2:]) + f'|{int(label)}'


def images_key(identities: Iterable[str]) -> str:
    """sha256 hex of the ordered image identities."""
    digest = hashlib.sha256()
    for identity in identities:
        digest.update(identity.encode('utf-8') + b'\n')
    return digest.hexdigest()


def encode_outcomes(wrong: np.ndarray, identities: Iterable[str]) -> dict:
    """The ``outcomes`` field of a cell record.

    Args:
        wrong (np.ndarray): ``(N,)`` bool in dataset order.
        identities (iterable[str]): The N :func:`image_identity` strings,
            same order.
    """
    wrong = np.asarray(wrong, dtype=bool).reshape(-1)
    return dict(
        wrong=base64.b64encode(np.packbits(wrong).tobytes()).decode('ascii'),
        num_images=int(wrong.size),
        images=images_key(identities))


def decode_outcomes(record: dict, source: str = '') -> Tuple[np.ndarray,
                                                            str]:
    """``((N,) bool wrong, images key)`` of a cell record.

    Raises:
        ConfigError: The record keeps no outcomes, or they do not match
            its error count.
    """
    name = f'{record.get("corruption")}/{record.get("severity")}'
    outcomes = record.get('outcomes')
    if not isinstance(outcomes, dict):
        raise ConfigError(
            f'{source}: cell {name} keeps no per-image outcomes (a sweep '
            'evaluated before they were recorded, or not a top-1 '
            'classification cell); evaluate it again into a new work dir')
    n = int(outcomes['num_images'])
    bits = np.frombuffer(base64.b64decode(outcomes['wrong']), dtype=np.uint8)
    wrong = np.unpackbits(bits, count=n).astype(bool)
    if 'wrong' in record and int(record['wrong']) != int(wrong.sum()):
        raise ConfigError(
            f'{source}: cell {name} has {record["wrong"]} wrong images but '
            f'its outcomes mark {int(wrong.sum())}')
    return wrong, str(outcomes['images'])
