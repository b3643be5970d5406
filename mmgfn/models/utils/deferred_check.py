"""Checks of device values that do not stall the GPU.

``if not torch.isfinite(loss):`` turns a CUDA value into a Python bool, so
the host waits until the GPU has finished everything queued before it: one
pipeline stall per check and per training step. :func:`deferred_check`
keeps the clear error without the stall:

* on the CPU and other non-CUDA devices (and with ``MMGFN_SYNC_CHECKS=1``
  on any device) the condition is read at once and the error raised at once;
* on CUDA the condition (and the values its message needs) is
  copied to pinned host memory without waiting, an event marks the copy,
  and the error is raised by a later check (of the same training step or
  the next ones) once the copy has landed: at most :data:`MAX_PENDING`
  checks stay unread, the oldest is waited for beyond that, and
  :func:`flush_deferred_checks` reads all of them.

A deferred error says that it was detected late.
"""
import os
from collections import deque
from typing import Callable, Deque, Tuple, Union

import torch
from torch import Tensor

#: Unread accelerator checks kept before the oldest one is waited for.
MAX_PENDING = 8

Message = Union[str, Callable[..., str]]
_PENDING: Deque[Tuple[object, Tensor, Message, type]] = deque()


def _sync_checks() -> bool:
    return os.environ.get('MMGFN_SYNC_CHECKS', '0') not in ('', '0')


def _raise(host: Tensor, message: Message, error: type, late: bool) -> None:
    values = host[1:].tolist()
    text = message(*values) if callable(message) else message
    if late:
        text += (' (found by an asynchronous check after the step that '
                 'produced it; MMGFN_SYNC_CHECKS=1 checks at once)')
    raise error(text)


def deferred_check(ok: Tensor,
                   message: Message,
                   *values: Tensor,
                   error: type = ValueError) -> None:
    """Raise ``error(message)`` if ``ok`` is False, without a host sync.

    Args:
        ok (Tensor): A one-element bool tensor, the condition that must hold.
        message (str | Callable): The error message, or a function that
            builds it from the float values of ``values`` (read only when
            the check fails), e.g. ``lambda lo, hi: f'labels in [{lo}, {hi}]'``.
        *values (Tensor): One-element tensors the message needs.
        error (type): The exception class. Defaults to ValueError.

    Raises:
        error: On the CPU, when ``ok`` is False; on an accelerator, when this
            or an earlier pending check has failed and its result arrived.
    """
    packed = torch.stack([ok.detach().reshape(()).to(torch.float64)] + [
        v.detach().reshape(()).to(torch.float64) for v in values
    ])
    if not packed.is_cuda or _sync_checks():
        host = packed.cpu()
        if not host[0]:
            _raise(host, message, error, late=False)
        return
    host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    host.copy_(packed, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    _PENDING.append((event, host, message, error))
    _poll(wait_oldest=len(_PENDING) > MAX_PENDING)


def _poll(wait_oldest: bool = False, wait_all: bool = False) -> None:
    while _PENDING:
        event, host, message, error = _PENDING[0]
        if not event.query():
            if not (wait_all or wait_oldest):
                return
            event.synchronize()
            wait_oldest = False
        _PENDING.popleft()
        if not host[0]:
            _PENDING.clear()
            _raise(host, message, error, late=True)


def flush_deferred_checks() -> None:
    """Wait for every pending check and raise the first failure."""
    _poll(wait_all=True)
