"""GFN's inter-class distance weighted cross-entropy (Eq. 7-8).

Eq. 8 as printed (``-y_c * w * log softmax``) weights only the true class,
whose weight is ``alpha^0 = 1``, so it is plain cross-entropy. mmgfn
implements the stated intent -- probability mass on the true class's close
neighbours costs more -- as a neighbour-weighted softmax denominator::

    L(z, c) = -log( e^{z_c} / (e^{z_c} + sum_{j != c} (1 + s * w_cj) e^{z_j}) )
            = logsumexp_j(z_j + m_cj) - z_c,   m_cj = log(1 + s * w_cj),

with ``w_cj = alpha^rank_c(j)`` for the top-k neighbours ``j`` of ``c``
(rank 1..k from the neighbour table) and 0 elsewhere, so ``m_cc = 0``.
``s = 0`` gives plain cross-entropy; it is a logit margin that grows with
similarity. Shape shorthand: ``N`` samples, ``C`` classes.

**Soft targets** (``N x C`` scores from Mixup/CutMix/label smoothing):
``L = logsumexp_j(z_j + m_{c*, j}) - sum_j t_j z_j`` with ``c* = argmax t``
(the label that dominates the mix; the true class under label smoothing).
It equals the hard-label loss for one-hot ``t`` and soft cross-entropy
``-sum_j t_j log softmax(z)_j`` for ``s = 0`` (``t`` sums to 1). A mixed-in
class that is a neighbour of ``c*`` keeps its margin.

The label range is checked without a host sync (on CUDA the error comes
asynchronously, see :mod:`mmgfn.models.utils.deferred_check`).

**Detection** (mmdet bbox heads): ``cls_score`` has ``C + 1`` columns, the
last is the background (label ``C``); the background row and column get no
margin.
"""
import os.path as osp
from numbers import Number
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from mmgfn.registry import MODELS
from mmgfn.utils.config_walk import with_defaults
from mmgfn.utils.errors import ConfigError, check_choice
from ..utils.deferred_check import deferred_check
from ..utils.neighbor_table import (NeighborTable, check_neighbor_file,
                                    check_topk)

REDUCTIONS = ('none', 'mean', 'sum')


@MODELS.register_module()
class NeighborWeightedCELoss(nn.Module):
    """Cross-entropy with a neighbour-weighted softmax denominator.

    Usable as ``head.loss`` of mmpretrain heads (``type='mmgfn.Neighbor
    WeightedCELoss'`` inside dicts inherited from mmpretrain) and as
    ``loss_cls`` of mmdet bbox heads.

    The neighbour table is either ``neighbor_file`` or, when that is None,
    the table of the model's :class:`NeighborAdversarialDataPreprocessor`
    (or of the detection hook), shared when it binds to the model. Using the
    loss before either is an error.

    Args:
        alpha (float): Weight base, ``w = alpha^rank``, ``0 < alpha < 1``.
            Defaults to 0.5.
        topk (int, optional): Neighbours that get a weight (<= the table's
            k). Defaults to None: the table's k (the preprocessor's or
            hook's ``topk``, or the file's).
        scale (float): ``s`` >= 0; 0 gives plain cross-entropy.
            Defaults to 1.0.
        neighbor_file (str, optional): A neighbour file of its own.
            Defaults to None.
        num_classes (int, optional): Number of (foreground) classes, checked
            against ``neighbor_file``. Defaults to None.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
            Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        class_weight (Sequence[float], optional): Per-class weights, as in
            mmpretrain's ``CrossEntropyLoss``: a sample's loss times the
            weight of its label (soft targets: each target entry times its
            class's weight). Defaults to None.
        label_smooth_val (float): Label smoothing as mmpretrain's
            ``LabelSmoothLoss`` (mode 'original'), of hard labels and of soft
            targets alike: ``t' = (1 - v) t + v / C``, then the soft-target
            form. Defaults to 0.
    """

    def __init__(self,
                 alpha: float = 0.5,
                 topk: Optional[int] = None,
                 scale: float = 1.0,
                 neighbor_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 class_weight: Optional[Sequence[float]] = None,
                 label_smooth_val: float = 0.0) -> None:
        super().__init__()
        self.check_args(
            dict(alpha=alpha, topk=topk, scale=scale,
                 neighbor_file=neighbor_file, num_classes=num_classes,
                 reduction=reduction, label_smooth_val=label_smooth_val))
        self.alpha = float(alpha)
        self.topk = topk
        self.scale = float(scale)
        self.reduction = reduction
        self.loss_weight = float(loss_weight)
        self.neighbor_file = neighbor_file
        self.num_classes = num_classes
        self.class_weight = None if class_weight is None else [
            float(w) for w in class_weight
        ]
        self.label_smooth_val = float(label_smooth_val)
        self._cache = (None, None, None)  # (table, version, margins)
        # a plain attribute: a shared table must not become a submodule.
        # A neighbor_file that exists is loaded now; a missing one is an
        # error at first use only (evaluation never needs it)
        self.__dict__['_table'] = None
        if neighbor_file and osp.isfile(neighbor_file):
            self.neighbor_table  # noqa: B018  (loads the checked file)

    @classmethod
    def check_args(cls,
                   args: dict,
                   key: str = 'model.head.loss',
                   num_classes: Optional[int] = None,
                   classes_key: str = '',
                   table_topk: Optional[int] = None,
                   table_key: str = '') -> None:
        """The value checks of the constructor, on its arguments or its
        config dict (missing entries take the constructor's defaults), and,
        given the model's class count and the shared table's ``topk``, the
        checks that need them, so that a whole-config check refuses a
        config before building anything.

        Args:
            args (dict): The constructor's arguments, or the config dict.
            key (str): Its config key, named in the messages.
                Defaults to ``'model.head.loss'``.
            num_classes (int, optional): The model's class count, used when
                ``args`` has no ``num_classes``.
            classes_key (str): The config key of ``num_classes``.
            table_topk (int, optional): The neighbours per class of the
                table shared with this loss (when it has no file).
            table_key (str): The config key of ``table_topk``.

        Raises:
            ConfigError: One line naming ``<key>.<argument>`` and the fix.
        """
        args = with_defaults(cls, args)
        owner = cls.__name__
        alpha, scale = args['alpha'], args['scale']
        if not isinstance(alpha, Number) or not 0 < alpha < 1:
            raise ConfigError(f'{key}.alpha={alpha!r} ({owner}) must be in '
                              '(0, 1)')
        if not isinstance(scale, Number) or not scale >= 0:
            raise ConfigError(f'{key}.scale={scale!r} ({owner}) must be '
                              '>= 0')
        check_choice(f'{key}.reduction', args['reduction'], REDUCTIONS,
                     owner)
        smooth = args['label_smooth_val']
        if not isinstance(smooth, Number) or not 0 <= smooth < 1:
            raise ConfigError(f'{key}.label_smooth_val={smooth!r} ({owner}) '
                              'must be in [0, 1)')
        topk = args['topk']
        if topk is not None and (not isinstance(topk, int) or topk < 1):
            raise ConfigError(f'{key}.topk={topk!r} ({owner}) must be an '
                              'integer >= 1 or None (the table\'s topk)')
        n = args['num_classes']
        if n is not None:
            classes_key = f'{key}.num_classes'
        else:
            n = num_classes
        path = args['neighbor_file']
        if topk is not None and isinstance(n, int):
            check_topk(topk, n, limit=None if path else table_topk,
                       key=key, owner=owner, classes_key=classes_key,
                       limit_key=table_key)
        check_neighbor_file(path, n, key, owner)

    def share_neighbor_table(self, table: NeighborTable) -> bool:
        """Use ``table`` (the preprocessor's or hook's), unless this loss
        loads its own ``neighbor_file``.

        Returns:
            bool: Whether the loss uses ``table``.
        """
        if self.neighbor_file:
            return False
        if self.topk is not None:
            check_topk(self.topk, table.num_classes, limit=table.topk)
        self.__dict__['_table'] = table
        return True

    @property
    def neighbor_table(self) -> NeighborTable:
        """The table in use: its own ``neighbor_file`` (read at first use)
        or the one shared by the preprocessor or hook."""
        table = self.__dict__['_table']
        if table is None and self.neighbor_file:
            table = NeighborTable.from_file(
                self.neighbor_file, num_classes=self.num_classes)
            if self.topk is not None:
                check_topk(self.topk, table.num_classes, limit=table.topk)
            self.__dict__['_table'] = table
        if table is None:
            raise RuntimeError(
                'NeighborWeightedCELoss has no neighbour table: give it a '
                'neighbor_file, or use it in a model whose data_preprocessor '
                'is NeighborAdversarialDataPreprocessor (or with '
                'BackgroundRoIPerturbationHook for detectors)')
        return table

    def margins(self, num_columns: int, device: torch.device) -> Tensor:
        """``num_columns x num_columns`` float margins ``m_cj =
        log(1 + s * alpha^rank_c(j))`` (0 off the top-k and for the
        background row/column of a ``C + 1``-column detector score)."""
        table = self.neighbor_table
        num_classes = table.num_classes
        if num_columns not in (num_classes, num_classes + 1):
            raise ValueError(
                f'cls_score has {num_columns} columns but the neighbour table '
                f'has {num_classes} classes (expected {num_classes}, or '
                f'{num_classes + 1} with a background column)')
        table_obj, version, margins = self._cache
        if (table_obj is table and version == table.version
                and margins is not None and margins.size(0) == num_columns
                and margins.device == device):
            return margins
        ranks = table.rank_matrix(self.topk or table.topk).to(device)
        weights = torch.where(ranks > 0, self.alpha**ranks.double(),
                              torch.zeros((), dtype=torch.double,
                                          device=device))
        margins = torch.log1p(self.scale * weights).float()
        if num_columns == num_classes + 1:
            margins = nn.functional.pad(margins, (0, 1, 0, 1))
        self._cache = (table, table.version, margins)
        return margins

    def _class_weight(self, score: Tensor) -> Optional[Tensor]:
        if self.class_weight is None:
            return None
        if len(self.class_weight) != score.size(1):
            raise ValueError(
                f'class_weight has {len(self.class_weight)} values but '
                f'cls_score has {score.size(1)} columns')
        return score.new_tensor(self.class_weight)

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            cls_score (Tensor): ``N x C`` (or ``N x (C+1)``) logits.
            label (Tensor): ``N`` int64 labels in ``[0, C]``, or ``N x C``
                float soft targets (rows summing to 1).
            weight (Tensor, optional): ``N`` per-sample weights.
            avg_factor (float, optional): Divide the summed loss by this
                instead of ``N`` (with reduction 'mean').
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: A scalar, or ``N`` losses with reduction 'none'.
        """
        reduction = reduction_override or self.reduction
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f'reduction={reduction!r} is not one of none, '
                             'mean, sum')
        score = cls_score.float()
        margins = self.margins(score.size(1), score.device)
        soft = label.dim() == score.dim() and label.shape == score.shape
        if soft:
            target = label.float()
            dominant = target.argmax(1)
        else:
            dominant = label.view(-1).long()
            if dominant.numel() != score.size(0):
                raise ValueError(f'{dominant.numel()} labels for '
                                 f'{score.size(0)} scores')
            if dominant.numel():
                lo, hi = dominant.min(), dominant.max()
                deferred_check((lo >= 0) & (hi < score.size(1)),
                               lambda lo, hi: f'labels must be in [0, '
                               f'{score.size(1)}), got [{lo:.0f}, {hi:.0f}]',
                               lo, hi)
            if self.label_smooth_val > 0:
                soft = True
                target = nn.functional.one_hot(dominant,
                                               score.size(1)).float()
        if soft and self.label_smooth_val > 0:  # mmpretrain's 'original'
            target = target * (1 - self.label_smooth_val) + (
                self.label_smooth_val / score.size(1))
        class_weight = self._class_weight(score)
        lse = torch.logsumexp(score + margins[dominant], dim=1)
        if soft:
            if class_weight is not None:
                target = target * class_weight
            loss = lse * target.sum(1) - (target * score).sum(1)
        else:
            loss = lse - score.gather(1, dominant[:, None]).squeeze(1)
            if class_weight is not None:
                loss = loss * class_weight[dominant]
        if weight is not None:
            loss = loss * weight.float().view(-1)
        if avg_factor is None:
            if reduction == 'mean':
                loss = loss.mean()
            elif reduction == 'sum':
                loss = loss.sum()
        elif reduction == 'mean':
            loss = loss.sum() / avg_factor
        elif reduction == 'sum':
            raise ValueError('avg_factor can not be used with reduction="sum"')
        return self.loss_weight * loss
