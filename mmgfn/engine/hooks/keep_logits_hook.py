"""Keep a classifier's raw logits in its predicted data samples.

mmpretrain's ``ClsHead.predict`` stores only ``pred_score``, the float32
softmax of the logits. On a confident model the softmax underflows: every
class but the top one gets exactly 0, so a ranking of the scores (ImageNet-P's
top-5 distance) or the arg-max over a class subset (ImageNet-A/R's
200-logit mask) ties and falls to the lowest class index. The reference
evaluations rank the logits. This hook adds them to every data sample as
``pred_logits`` (``(C,)`` float tensor, the head's output for that sample),
which :class:`mmgfn.evaluation.FlipRate` and
:class:`mmgfn.evaluation.SubsetAccuracy` read before ``pred_score``.
"""
from typing import List, Optional

from mmengine.hooks import Hook
from torch import Tensor

from mmgfn.registry import HOOKS


@HOOKS.register_module()
class KeepLogitsHook(Hook):
    """Store the head's logits as ``pred_logits`` during validation/test.

    Use it from a classifier config::

        custom_hooks = [dict(type='mmgfn.KeepLogitsHook')]

    At ``before_val`` / ``before_test`` the hook wraps the ``predict`` of the
    model's ``head`` (an mmpretrain ``ClsHead`` or any head whose forward
    returns ``(N, C)`` logits and whose ``predict`` returns one data sample
    per input) on this model instance only; ``after_val`` / ``after_test``
    restore it. Training is untouched. :class:`mmgfn.engine.
    RobustnessTestLoop` adds the hook for the ImageNet-P and ImageNet-A/R
    suites.

    Args:
        name (str): Data field that receives the logits. Defaults to
            ``'pred_logits'``.

    Raises:
        TypeError: If the model has no ``head`` with a ``predict`` method,
            or the head's output is not an ``(N, C)`` tensor with one row
            per predicted sample.
    """
    priority = 'NORMAL'

    def __init__(self, name: str = 'pred_logits') -> None:
        self.name = name
        self._head = None

    def before_val(self, runner) -> None:
        self._wrap(runner)

    def before_test(self, runner) -> None:
        self._wrap(runner)

    def after_val(self, runner) -> None:
        self._unwrap()

    def after_test(self, runner) -> None:
        self._unwrap()

    def _wrap(self, runner) -> None:
        """Replace ``head.predict`` by a version that keeps the logits."""
        self._unwrap()
        model = runner.model
        model = getattr(model, 'module', model)
        head = getattr(model, 'head', None)
        if head is None or not callable(getattr(head, 'predict', None)):
            raise TypeError(
                f'KeepLogitsHook needs a classifier with a head that has a '
                f'predict method; {type(model).__name__} has none')
        original = head.predict
        captured: List[Optional[Tensor]] = [None]

        def keep(module, inputs, output) -> None:
            captured[0] = output

        name = self.name

        def predict(feats, data_samples=None, *args, **kwargs):
            captured[0] = None
            handle = head.register_forward_hook(keep)
            try:
                samples = original(feats, data_samples, *args, **kwargs)
            finally:
                handle.remove()
            logits = captured[0]
            if not isinstance(logits, Tensor) or logits.dim() != 2 or \
                    logits.shape[0] != len(samples):
                shape = tuple(logits.shape) if isinstance(
                    logits, Tensor) else type(logits).__name__
                raise TypeError(
                    f'KeepLogitsHook: the head of {type(model).__name__} '
                    f'returned {shape} for {len(samples)} samples; expected '
                    '(N, C) logits')
            for sample, row in zip(samples, logits.detach()):
                sample.set_field(row, name)
            return samples

        head.predict = predict
        self._head = head

    def _unwrap(self) -> None:
        """Give the head back its own ``predict``."""
        if self._head is not None:
            self._head.__dict__.pop('predict', None)
            self._head = None
