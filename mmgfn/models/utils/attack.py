"""Gradient-sign input perturbations that leave no trace on the model.

Shared by the classification preprocessor
(:class:`mmgfn.models.NeighborAdversarialDataPreprocessor`) and the detection
hook (:class:`mmgfn.engine.hooks.BackgroundRoIPerturbationHook`).

Shape shorthand: ``N`` images, ``3`` channels, ``H x W`` pixels. All
tensors here live in the space the model sees (usually the *normalised*
input, ``(pixel - mean) / std``); ``step`` and the bounds are given in that
space, per channel where they differ by channel.

The attack's gradient (:func:`ce_sign_gradient`) has the sign of the
cross-entropy's, also for confident samples whose float32 CE gradient
underflows; under float16 it is scaled (:class:`AttackGradScaler`); no step
waits for the GPU.

"No trace" (:func:`frozen_model`): during the attack, parameters do not
require gradients, so only the input gradient is computed (no weight
gradients, no ``.grad`` touched, no DDP gradient hooks fired); buffers such
as BatchNorm running statistics are restored afterwards, and so is every
submodule's ``training`` flag.
"""
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .deferred_check import deferred_check


@contextmanager
def frozen_model(model: nn.Module, eval_mode: bool = False) -> Iterator[None]:
    """Run an attack forward/backward without changing ``model``.

    Inside the block ``requires_grad`` is False for every parameter (and,
    with ``eval_mode``, the model is in eval mode); on exit the flags and
    modes are restored and, unless ``eval_mode``, every buffer is copied back
    to its value on entry (BatchNorm ``running_mean``/``running_var``/
    ``num_batches_tracked`` advance during a training-mode forward; in eval
    mode they do not, and nothing is copied).

    Args:
        model (nn.Module): The model.
        eval_mode (bool): Switch to eval mode inside the block (BatchNorm
            uses its running statistics, dropout is off, so each sample's
            output depends on that sample only). Defaults to False.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    # in eval mode no buffer advances (BatchNorm uses its statistics)
    buffers = [] if eval_mode else [(b, b.detach().clone())
                                    for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules() if m.training]
    for p in params:
        p.requires_grad_(False)
    if eval_mode:
        model.eval()
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, _ in modes:
            m.training = True
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def ce_sign_gradient(logits: Tensor,
                     targets: Tensor,
                     groups: Optional[Tensor] = None,
                     num_groups: Optional[int] = None) -> Tensor:
    """Logit gradients with the sign of cross-entropy's, that never vanish.

    For one row, ``grad_z CE(z, t) = softmax(z) - e_t = (1 - p_t) (q - e_t)``
    with ``q = softmax`` over the classes ``j != t`` (``q_t = 0``). In float32
    ``1 - p_t`` rounds to 0 once the row is confident (``CE < ~6e-8``): the
    true-class term of the gradient vanishes and what is left (``sum_j p_j
    grad z_j``) can point the other way. ``q - e_t`` is the same direction
    without the vanishing factor: its entries lie in ``[-1, 1]`` with
    ``-1`` at ``t``, whatever the margin.

    Rows that share an input (the RoIs of one image; all samples when
    BatchNorm couples a batch in training mode) must keep CE's relative
    weights ``1 - p_t``, or the sum of their gradients would change. Each row
    of ``groups`` gets ``(1 - p_t) / max_{group} (1 - p_t)``, computed as
    ``exp(log(1 - p_t) - max log(1 - p_t))`` with ``log(1 - p_t) =
    logsumexp_{j != t} z_j - logsumexp_j z_j`` (finite at any margin). So the
    input gradient of ``sum(logits * G)`` has exactly the sign of the input
    gradient of ``sum CE`` within every group, up to one positive factor per
    group. ``groups=None``: every row is its own group (weight 1).

    Args:
        logits (Tensor): ``M x K`` logits, any float dtype.
        targets (Tensor): ``M`` int64 classes in ``[0, K)``.
        groups (Tensor, optional): ``M`` int64 group ids in
            ``[0, num_groups)``. Defaults to None.
        num_groups (int, optional): Number of groups, needed with
            ``groups``.

    Returns:
        Tensor: ``M x K`` float32, detached, entries in ``[-1, 1]``.
    """
    z = logits.detach().float()
    t = targets.view(-1, 1)
    others = z.scatter(1, t, float('-inf'))
    grad = torch.softmax(others, dim=1).scatter(1, t, -1.0)
    if groups is None:
        return grad
    log_w = torch.logsumexp(others, dim=1) - torch.logsumexp(z, dim=1)
    top = log_w.new_full((num_groups, ), float('-inf')).scatter_reduce(
        0, groups, log_w, reduce='amax')
    return grad * torch.exp(log_w - top[groups])[:, None]


class AttackGradScaler:
    """Dynamic scale of the attack's logit gradient under float16.

    Only the sign of the input gradient is used, but a float16 backward
    (``--amp`` on CUDA with mmengine's default dtype) flushes small
    gradients to zero and a zero sign leaves the element unperturbed. The
    attack therefore starts its backward from ``scale * G`` (``G`` from
    :func:`ce_sign_gradient`, entries in ``[-1, 1]``), as loss scaling does
    for weight gradients. Overflow is handled the way
    :class:`torch.amp.GradScaler` handles it, on the device and without a
    host sync: a sample whose input gradient is not finite is left
    unperturbed for that step (counted in :attr:`unperturbed`), and the
    scale halves; after ``growth_interval`` clean attacks it doubles, up to
    ``max_scale`` (float16's largest value is 65504). Backwards in float32
    and bfloat16 (float32's exponent range) are not scaled.

    Args:
        init_scale (float): First scale. Defaults to 2**13.
        growth_interval (int): Clean attacks before the scale doubles.
            Defaults to 100.
        max_scale (float): Largest scale. Defaults to 2**15.
    """

    def __init__(self,
                 init_scale: float = 2.0**13,
                 growth_interval: int = 100,
                 max_scale: float = 2.0**15) -> None:
        self.init_scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.max_scale = float(max_scale)
        self._scale: Optional[Tensor] = None
        self._clean: Optional[Tensor] = None
        #: Samples left unperturbed after an overflow (a device tensor).
        self.unperturbed: Optional[Tensor] = None

    def scale(self, logits: Tensor) -> Union[float, Tensor]:
        """The factor for ``logits``' backward: 1 unless they are float16."""
        if logits.dtype != torch.float16:
            return 1.0
        if self._scale is None or self._scale.device != logits.device:
            self._scale = torch.full((), self.init_scale,
                                     device=logits.device)
            self._clean = torch.zeros((), device=logits.device)
            self.unperturbed = torch.zeros((), device=logits.device)
        return self._scale

    def update(self, finite: Tensor) -> None:
        """Back off after an overflow, grow after clean attacks.

        Args:
            finite (Tensor): ``N`` bool, whether each sample's input gradient
                is finite.
        """
        overflow = ~finite.all()
        clean = torch.where(overflow, 0.0, self._clean + 1)
        grow = clean >= self.growth_interval
        self._scale = torch.where(
            overflow, self._scale * 0.5,
            torch.where(grow, (self._scale * 2).clamp(max=self.max_scale),
                        self._scale))
        self._clean = torch.where(grow, 0.0, clean)
        self.unperturbed = self.unperturbed + (~finite).sum()

    def get_scale(self) -> float:
        """The current scale as a float (a host sync; for logs and tests)."""
        return 1.0 if self._scale is None else float(self._scale)


def sign_gradient_attack(logits_fn: Callable[[Tensor], Tensor],
                         inputs: Tensor,
                         targets: Tensor,
                         step: Union[float, Tensor],
                         lower: Union[float, Tensor],
                         upper: Union[float, Tensor],
                         num_steps: int = 1,
                         toward: bool = True,
                         groups: Optional[Tensor] = None,
                         num_groups: Optional[int] = None,
                         scaler: Optional[AttackGradScaler] = None) -> Tensor:
    """Gradient-sign steps on ``inputs`` for a cross-entropy (FGSM / I-FGSM).

    ``toward=True`` descends ``sum CE(logits, targets)`` (``x - step *
    sign(grad)``, a step *toward* the targets, Eq. 5 of GFN);
    ``toward=False`` ascends it (``x + step * sign(grad)``, the untargeted
    step of Eq. 3). The gradient is that of ``sum(logits * G)`` with ``G``
    from :func:`ce_sign_gradient`: CE's sign, also for confident rows whose
    float32 CE gradient underflows. With ``num_steps > 1`` each step is
    ``step / num_steps`` and the result is projected onto the box
    ``|x' - x| <= step`` (per channel), so the total budget is ``step``
    whatever the number of steps.

    Non-finite logits raise :class:`FloatingPointError` (asynchronously on
    CUDA, see :func:`mmgfn.models.utils.deferred_check`); the step itself
    makes no host sync.

    Args:
        logits_fn (Callable): Maps an ``N x 3 x H x W`` input to ``M x K``
            logits (``M = N`` for a classifier, ``M`` RoIs for a detector).
            Run it under :func:`frozen_model` so no parameter gradient is
            computed.
        inputs (Tensor): ``N x 3 x H x W`` float, the batch the model sees.
        targets (Tensor): ``M`` int64 classes of the cross-entropy.
        step (float | Tensor): Budget per element, a float or a tensor that
            broadcasts against ``inputs`` (e.g. ``1 x 3 x 1 x 1``).
        lower (float | Tensor): Smallest valid input value (e.g. the
            normalised value of pixel 0), broadcastable like ``step``.
        upper (float | Tensor): Largest valid input value.
        num_steps (int): Number of steps (1 = the paper). Defaults to 1.
        toward (bool): Descend (True) or ascend (False) the loss.
            Defaults to True.
        groups (Tensor, optional): ``M`` int64 ids of the rows that share
            an input (see :func:`ce_sign_gradient`). Defaults to None (rows
            independent).
        num_groups (int, optional): Number of groups.
        scaler (AttackGradScaler, optional): Scales float16 backwards.
            Defaults to None (no scaling).

    Returns:
        Tensor: The perturbed batch, same shape and dtype as ``inputs``,
        detached, within ``[lower, upper]`` and within ``step`` of
        ``inputs``.
    """
    if num_steps < 1:
        raise ValueError(f'num_steps must be >= 1, got {num_steps}')
    x0 = inputs.detach()
    sign = -1.0 if toward else 1.0
    alpha = step / num_steps
    x = x0
    for _ in range(num_steps):
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = logits_fn(x)
            deferred_check(
                torch.isfinite(logits).all(),
                'the attack\'s logits are not finite: the model or its '
                'inputs produce NaN/inf',
                error=FloatingPointError)
            scale = 1.0 if scaler is None else scaler.scale(logits)
            grad_logits = ce_sign_gradient(logits, targets, groups,
                                           num_groups) * scale
            (grad, ) = torch.autograd.grad(logits, x, grad_logits)
        if isinstance(scale, Tensor):
            finite = torch.isfinite(grad).flatten(1).all(1)
            scaler.update(finite)
            grad = torch.where(finite.view(-1, *[1] * (grad.dim() - 1)),
                               grad, 0.0)
        x = x.detach() + sign * alpha * grad.sign()
        if num_steps > 1:
            x = torch.max(torch.min(x, x0 + step), x0 - step)
        x = torch.max(torch.min(x, _as(upper, x)), _as(lower, x))
    return x.detach()


def _as(bound: Union[float, Tensor], like: Tensor) -> Tensor:
    return torch.as_tensor(bound, dtype=like.dtype, device=like.device)


def padding_mask(sizes: Sequence[Tuple[int, int]],
                 like: Tensor) -> Optional[Tensor]:
    """Where each image of a padded batch lies.

    Args:
        sizes (Sequence[tuple]): ``N`` ``(h, w)``, each image's size before
            padding (its top-left corner is the batch's).
        like (Tensor): The ``N x 3 x H x W`` padded batch.

    Returns:
        Tensor | None: ``N x 1 x H x W`` of ``like``'s dtype, 1 on each image
        and 0 on its padding; None when no image is padded.
    """
    height, width = like.shape[-2:]
    if all(tuple(size) == (height, width) for size in sizes):
        return None
    mask = like.new_zeros(len(sizes), 1, height, width)
    for i, (h, w) in enumerate(sizes):
        mask[i, :, :h, :w] = 1
    return mask


def step_and_bounds(
        eta: float,
        eta_unit: str,
        mean: Optional[Tensor],
        std: Optional[Tensor],
        like: Tensor) -> Tuple[Union[float, Tensor], Union[float, Tensor],
                               Union[float, Tensor]]:
    """Step size and valid range in the space of a (normalised) batch.

    Args:
        eta (float): The step, in ``eta_unit``.
        eta_unit (str): ``'normalized'``: ``eta`` is a step on the input the
            model sees; ``'pixel'``: ``eta`` is in ``[0, 1]`` pixel units
            (``eta * 255 / std`` on the normalised input).
        mean (Tensor, optional): Per-channel pixel mean (``3`` values, any
            shape), None when the batch is not normalised.
        std (Tensor, optional): Per-channel pixel std.
        like (Tensor): The ``N x 3 x H x W`` batch (dtype/device).

    Returns:
        tuple: ``step``, ``lower``, ``upper``: floats, or ``1 x 3 x 1 x 1``
        tensors; ``[lower, upper]`` is the image of pixels ``[0, 255]``.
    """
    if eta_unit not in ('normalized', 'pixel'):
        raise ValueError(f"eta_unit={eta_unit!r} is not one of ['normalized', "
                         "'pixel']")
    if mean is None:
        step = eta * (255.0 if eta_unit == 'pixel' else 1.0)
        return step, 0.0, 255.0
    mean = mean.reshape(1, -1, 1, 1).to(like)
    std = std.reshape(1, -1, 1, 1).to(like)
    step = eta * 255.0 / std if eta_unit == 'pixel' else torch.full_like(
        std, eta)
    return step, (0.0 - mean) / std, (255.0 - mean) / std
