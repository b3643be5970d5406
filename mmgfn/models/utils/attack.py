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
from collections import deque
from contextlib import contextmanager
from typing import (Callable, Deque, Iterator, Optional, Sequence, Tuple,
                    Union)

import torch
from torch import Tensor, nn


#: Unread float16 share copies kept before the oldest is waited for.
MAX_PENDING_SHARES = 8


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
    """Dynamic scale of the attack's logit gradient under float16, and the
    count of samples the attack had to leave unperturbed.

    Only the sign of the input gradient is used, but a float16 backward
    (``--amp`` on CUDA with mmengine's default dtype) flushes small
    gradients to zero and a zero sign leaves the element unperturbed. The
    attack therefore starts its backward from ``scale * G`` (``G`` from
    :func:`ce_sign_gradient`, entries in ``[-1, 1]``), as loss scaling does
    for weight gradients. Whether to scale is decided by the backward's
    precision: the logits are float16, *or* float16 autocast is on for the
    inputs' device (a head that ends in a float32 op, e.g. ``.float()``,
    still backpropagates through float16 layers). float32 and bfloat16
    (float32's exponent range) backwards are not scaled.

    **Policy for non-finite samples.** A sample whose input gradient is not
    finite (an overflow of the scaled float16 backward, or NaN/inf logits)
    is left unperturbed for that step, trains on its clean input, and is
    counted; the attack never raises for it (mixed-precision training goes
    on, as :class:`torch.amp.GradScaler` skips a step). Nothing is retried.
    The scale halves only when the logits were finite (an overflow of the
    scaled backward; NaN logits say nothing about the scale), never below
    ``min_scale``, and doubles after ``growth_interval`` clean scaled
    attacks, up to ``max_scale`` (float16's largest value is 65504); all on
    the device, without a host sync.

    **Logging.** :meth:`publish` adds the share of unperturbed samples of
    each attacked step to mmengine's message hub (``log_key``, averaged over
    the logging interval in ``train.log``) once its value has reached the
    host (on CUDA: a copy that does not wait, read a few steps later), and
    logs a warning when the share over the last ``warn_interval`` steps is
    above ``warn_threshold``.

    Args:
        init_scale (float): First scale. Defaults to 2**13.
        growth_interval (int): Clean scaled attacks before the scale
            doubles. Defaults to 100.
        max_scale (float): Largest scale. Defaults to 2**15.
        min_scale (float): Smallest scale, > 0. Defaults to 1.
        warn_threshold (float): Share of unperturbed samples, in
            ``[0, 1]``, above which a warning is logged. Defaults to 0.05.
        warn_interval (int): Steps over which the share is compared with
            ``warn_threshold``. Defaults to 50.
        log_key (str): The message hub key. Defaults to
            'train/gfn_unperturbed'.
    """

    def __init__(self,
                 init_scale: float = 2.0**13,
                 growth_interval: int = 100,
                 max_scale: float = 2.0**15,
                 min_scale: float = 1.0,
                 warn_threshold: float = 0.05,
                 warn_interval: int = 50,
                 log_key: str = 'train/gfn_unperturbed') -> None:
        if not 0 < min_scale <= init_scale <= max_scale:
            raise ValueError(
                'AttackGradScaler needs 0 < min_scale <= init_scale <= '
                f'max_scale, got {min_scale}, {init_scale}, {max_scale}')
        if not 0.0 <= warn_threshold <= 1.0:
            raise ValueError('AttackGradScaler warn_threshold must be in '
                             f'[0, 1], got {warn_threshold!r}')
        self.init_scale = float(init_scale)
        self.growth_interval = int(growth_interval)
        self.max_scale = float(max_scale)
        self.min_scale = float(min_scale)
        self.warn_threshold = float(warn_threshold)
        self.warn_interval = int(warn_interval)
        self.log_key = log_key
        self._scale: Optional[Tensor] = None
        self._clean: Optional[Tensor] = None
        #: Samples left unperturbed so far (a device tensor), None before
        #: the first attack.
        self.unperturbed: Optional[Tensor] = None
        self._step_count: Optional[Tensor] = None
        self._step_total = 0
        self._pending: Deque[tuple] = deque()
        self._window = [0.0, 0]  # unperturbed, samples since last warn check
        self._window_steps = 0

    @staticmethod
    def needs_scaling(logits: Tensor, inputs: Tensor) -> bool:
        """Whether the backward from ``logits`` to ``inputs`` runs in
        float16: float16 logits, or float16 autocast on ``inputs``'
        device."""
        if logits.dtype == torch.float16:
            return True
        device = inputs.device.type
        return (torch.is_autocast_enabled(device)
                and torch.get_autocast_dtype(device) == torch.float16)

    def scale(self, logits: Tensor,
              inputs: Optional[Tensor] = None) -> Union[float, Tensor]:
        """The factor for ``logits``' backward to ``inputs``: 1 unless it
        runs in float16 (see :meth:`needs_scaling`)."""
        if not self.needs_scaling(logits,
                                  logits if inputs is None else inputs):
            return 1.0
        if self._scale is None or self._scale.device != logits.device:
            self._scale = torch.full((), self.init_scale,
                                     device=logits.device)
            self._clean = torch.zeros((), device=logits.device)
        return self._scale

    def count(self, finite: Tensor) -> None:
        """Count the samples left unperturbed by this attack.

        Args:
            finite (Tensor): ``N`` bool, whether each sample's input gradient
                is finite (False: the sample is left unperturbed).
        """
        bad = (~finite).sum()
        if self.unperturbed is None or self.unperturbed.device != bad.device:
            self.unperturbed = torch.zeros((), dtype=torch.long,
                                           device=bad.device)
        self.unperturbed = self.unperturbed + bad
        self._step_count = bad if self._step_count is None \
            else self._step_count + bad
        self._step_total += finite.numel()

    def update(self, finite: Tensor,
               logits_finite: Optional[Tensor] = None) -> None:
        """Back off after an overflow, grow after clean attacks.

        Args:
            finite (Tensor): ``N`` bool, whether each sample's input gradient
                is finite.
            logits_finite (Tensor, optional): One bool, whether all logits
                were finite; when False a non-finite gradient is not blamed
                on the scale. Defaults to None (True).
        """
        overflow = ~finite.all()
        if logits_finite is not None:
            overflow = overflow & logits_finite
        clean = torch.where(overflow, 0.0, self._clean + 1)
        grow = clean >= self.growth_interval
        self._scale = torch.where(
            overflow, (self._scale * 0.5).clamp(min=self.min_scale),
            torch.where(grow, (self._scale * 2).clamp(max=self.max_scale),
                        self._scale))
        self._clean = torch.where(grow, 0.0, clean)

    def get_scale(self) -> float:
        """The current scale as a float (a host sync; for logs and tests)."""
        return 1.0 if self._scale is None else float(self._scale)

    def publish(self) -> None:
        """Close a training step: queue its share of unperturbed samples
        for the message hub, and publish the shares that reached the host
        (all of them on the CPU; on CUDA those whose copy has landed, the
        oldest waited for beyond :data:`MAX_PENDING_SHARES`)."""
        if self._step_count is not None:
            count, total = self._step_count, self._step_total
            self._step_count, self._step_total = None, 0
            if count.is_cuda:
                host = torch.empty((), dtype=count.dtype, pin_memory=True)
                host.copy_(count, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            else:
                host, event = count, None
            self._pending.append((event, host, total))
        while self._pending:
            event, host, total = self._pending[0]
            if event is not None and not event.query():
                if len(self._pending) <= MAX_PENDING_SHARES:
                    return
                event.synchronize()
            self._pending.popleft()
            self._log_share(int(host), total)

    def _log_share(self, unperturbed: int, total: int) -> None:
        from mmengine.logging import MessageHub, MMLogger
        MessageHub.get_current_instance().update_scalar(
            self.log_key, unperturbed / max(total, 1))
        self._window[0] += unperturbed
        self._window[1] += total
        self._window_steps += 1
        if self._window_steps < self.warn_interval:
            return
        share = self._window[0] / max(self._window[1], 1)
        if share > self.warn_threshold:
            MMLogger.get_current_instance().warning(
                f'the GFN attack left {share:.1%} of the samples of the last '
                f'{self._window_steps} steps unperturbed (non-finite input '
                'gradient: NaN/inf logits or a float16 overflow), above '
                f'warn_threshold={self.warn_threshold}; they trained on '
                'clean inputs')
        self._window = [0.0, 0]
        self._window_steps = 0


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

    A sample whose input gradient is not finite (NaN/inf logits, a float16
    overflow) is left unperturbed for the step and counted by ``scaler``
    (see :class:`AttackGradScaler`); nothing raises. The step makes no host
    sync.

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
        scaler (AttackGradScaler, optional): Scales float16 backwards and
            counts unperturbed samples. Defaults to None (no scaling).

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
            scale = 1.0 if scaler is None else scaler.scale(logits, x)
            grad_logits = ce_sign_gradient(logits, targets, groups,
                                           num_groups) * scale
            (grad, ) = torch.autograd.grad(logits, x, grad_logits)
            logits_finite = torch.isfinite(logits.detach()).all()
            del logits, grad_logits  # the attack's graph ends here
        # non-finite samples (overflow, NaN/inf logits) stay unperturbed
        finite = torch.isfinite(grad).flatten(1).all(1)
        grad = torch.where(finite.view(-1, *[1] * (grad.dim() - 1)), grad,
                           0.0)
        if scaler is not None:
            scaler.count(finite)
            if isinstance(scale, Tensor):
                scaler.update(finite, logits_finite)
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
