"""Models of mmgfn (registered in :data:`mmgfn.registry.MODELS`).

* ``data_preprocessors/``: :class:`NeighborAdversarialDataPreprocessor`,
  the neighbour attack of GFN (Eq. 5) for mmpretrain classifiers;
* ``losses/``: :class:`NeighborWeightedCELoss` (Eq. 7-8);
* ``necks/``: :class:`SimpleFPN`, the feature pyramid that puts a plain ViT
  backbone under an mmdet detector;
* ``utils/``: the neighbour table and the attack machinery shared with the
  detection hook.
"""
from .data_preprocessors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
