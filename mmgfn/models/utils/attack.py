"""Gradient-sign input perturbations that leave no trace on the model.

Shared by the classification preprocessor
(:class:`mmgfn.models.NeighborAdversarialDataPreprocessor`) and the detection
hook (:class:`mmgfn.engine.hooks.BackgroundRoIPerturbationHook`).

Shape shorthand: ``N`` images, ``3`` channels, ``H x W`` pixels. All
tensors here live in the space the model sees (usually the *normalised*
input, ``(pixel - mean) / std``); ``step`` and the bounds are given in that
space, per channel where they differ by channel.

"No trace" (:func:`frozen_model`): during the attack, parameters do not
require gradients, so only the input gradient is computed (no weight
gradients, no ``.grad`` touched, no DDP gradient hooks fired); buffers such
as BatchNorm running statistics are restored afterwards, and so is every
submodule's ``training`` flag.
"""
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
from torch import Tensor, nn


@contextmanager
def frozen_model(model: nn.Module, eval_mode: bool = False) -> Iterator[None]:
    """Run an attack forward/backward without changing ``model``.

    Inside the block ``requires_grad`` is False for every parameter (and,
    with ``eval_mode``, the model is in eval mode); on exit the flags and
    modes are restored and every buffer is copied back to its value on
    entry (BatchNorm ``running_mean``/``running_var``/
    ``num_batches_tracked`` advance during a training-mode forward).

    Args:
        model (nn.Module): The model.
        eval_mode (bool): Switch to eval mode inside the block (BatchNorm
            uses its running statistics, dropout is off, so each sample's
            output depends on that sample only). Defaults to False.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    for p in params:
        p.requires_grad_(False)
    if eval_mode:
        model.eval()
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
        for m, training in modes:
            m.training = training
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def sign_gradient_attack(loss_fn: Callable[[Tensor], Tensor],
                         inputs: Tensor,
                         step: Union[float, Tensor],
                         lower: Union[float, Tensor],
                         upper: Union[float, Tensor],
                         num_steps: int = 1,
                         toward: bool = True) -> Tensor:
    """Gradient-sign steps on ``inputs`` (FGSM / I-FGSM).

    ``toward=True`` descends the loss (``x - step * sign(grad)``, a step
    *toward* the target the loss measures, Eq. 5 of GFN); ``toward=False``
    ascends it (``x + step * sign(grad)``, the untargeted step of Eq. 3).
    With ``num_steps > 1`` each step is ``step / num_steps`` and the result
    is projected onto the box ``|x' - x| <= step`` (per channel), so the
    total budget is ``step`` whatever the number of steps.

    Args:
        loss_fn (Callable): Maps an ``N x 3 x H x W`` input to a scalar loss
            whose gradient w.r.t. the input is taken. Run it under
            :func:`frozen_model` so no parameter gradient is computed.
        inputs (Tensor): ``N x 3 x H x W`` float, the batch the model sees.
        step (float | Tensor): Budget per element, a float or a tensor that
            broadcasts against ``inputs`` (e.g. ``1 x 3 x 1 x 1``).
        lower (float | Tensor): Smallest valid input value (e.g. the
            normalised value of pixel 0), broadcastable like ``step``.
        upper (float | Tensor): Largest valid input value.
        num_steps (int): Number of steps (1 = the paper). Defaults to 1.
        toward (bool): Descend (True) or ascend (False) the loss.
            Defaults to True.

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
            loss = loss_fn(x)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f'the attack loss is not finite ({float(loss)}); the '
                    'model or its inputs produce NaN/inf')
            (grad, ) = torch.autograd.grad(loss, x)
        x = x.detach() + sign * alpha * grad.sign()
        if num_steps > 1:
            x = torch.max(torch.min(x, x0 + step), x0 - step)
        x = torch.max(torch.min(x, _as(upper, x)), _as(lower, x))
    return x.detach()


def _as(bound: Union[float, Tensor], like: Tensor) -> Tensor:
    return torch.as_tensor(bound, dtype=like.dtype, device=like.device)


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
