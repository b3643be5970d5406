"""Torch corruptions, batched and device-agnostic (see :mod:`.functional`).
"""
from .draws import DRAW_MODES, Draws  # noqa: F401
from .functional import (CORRUPTION_FUNCTIONS, SEEDED_CORRUPTIONS,  # noqa
                         corrupt, to_uint8)

__all__ = ['DRAW_MODES', 'Draws', 'CORRUPTION_FUNCTIONS',
           'SEEDED_CORRUPTIONS', 'corrupt', 'to_uint8']
