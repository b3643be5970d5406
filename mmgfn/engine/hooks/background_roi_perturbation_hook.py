"""GFN for detectors: perturb ground-truth RoIs toward the background class.

GFN (CVPR 2025), Sec. 4.3: "some RoIs are often misclassified as
background" under distribution shift, so the detector is trained on images
perturbed one gradient-sign step so that the regions of its ground-truth
objects look *more like background*::

    x' = x - eta * sign(grad_x sum_RoIs CE(cls_score(RoI), background)),

and then trains on ``x'`` with its true annotations. Optionally a share of
the RoIs is pushed toward a neighbouring class of its label instead (the
classification attack's Eq. 5 applied to RoIs).

Shape shorthand: ``N`` images, ``R`` ground-truth RoIs in the batch, ``C``
foreground classes (mmdet's background label is ``C``), ``3 x H x W``
padded, normalised inputs.
"""
import random
from numbers import Number
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from torch import Tensor, nn

from mmgfn.models.losses import NeighborWeightedCELoss
from mmgfn.models.utils import (AttackGradScaler, NeighborTable,
                                find_modules, frozen_model,
                                head_class_weights, padding_mask,
                                sign_gradient_attack, step_and_bounds)
from mmgfn.models.utils.neighbor_table import (bbox_classes_key,
                                               check_neighbor_file,
                                               check_similarity, check_topk,
                                               last_bbox_head)
from mmgfn.registry import HOOKS
from mmgfn.utils.config_walk import with_defaults
from mmgfn.utils.errors import ConfigError, check_choice, check_int
from mmgfn.utils.fsdp import fsdp_kind


@HOOKS.register_module()
class BackgroundRoIPerturbationHook(Hook):
    """Train mmdet two-stage detectors on background-targeted perturbations.

    Use it from an mmdet config::

        custom_hooks = [dict(type='mmgfn.BackgroundRoIPerturbationHook',
                             eta=0.01)]

    At ``before_train`` the hook attaches a forward hook to the detector's
    ``data_preprocessor``: every *training* batch it returns (normalised,
    padded ``N x 3 x H x W`` inputs; ``training=True``) is replaced by
    ``x'`` before the detector's loss is computed; validation and test
    batches are untouched. The step is computed on the normalised batch,
    clipped to the normalised image of pixels ``[0, 255]`` and applied only
    inside each image (not on the padding). The RoIs are the ground-truth
    boxes (``gt_instances.bboxes`` in input coordinates); their class scores
    come from the RoI head's box branch on the backbone+neck features (all
    stages of a Cascade R-CNN, summed).

    The step has the sign of the summed background cross-entropy's input
    gradient, also for RoIs already confidently background (see
    :func:`mmgfn.models.utils.ce_sign_gradient`), is loss-scaled under
    float16 and makes no host sync. Same rules as the classification
    attack: parameters, ``.grad``,
    buffers and optimizer state are unchanged and only the input gradient is
    computed (:func:`mmgfn.models.utils.frozen_model`); under DDP it runs the
    wrapped module; under ``--amp`` it runs in the training step's autocast
    context.

    **Neighbour targets** (``neighbor_ratio > 0``): each RoI is pushed toward
    a random top-``topk`` neighbour of its label with probability
    ``neighbor_ratio`` and toward background otherwise. The table is built
    from the box head's class rows (``fc_cls``, background row dropped) at
    the first training step, or read from ``neighbor_file``; it is shared
    with any :class:`NeighborWeightedCELoss` of the detector and saved in
    checkpoints (``checkpoint['neighbor_table']``) so a resumed run keeps it.

    Args:
        eta (float): Step, in ``eta_unit``. Defaults to 0.01.
        eta_unit (str): ``'normalized'`` (on the normalised input, as the
            classification preprocessor) or ``'pixel'`` (``[0, 1]`` pixel
            units). Defaults to 'normalized'.
        num_steps (int): Gradient-sign steps (1 = the paper). Defaults to 1.
        neighbor_ratio (float): Share of RoIs pushed toward a neighbour
            class instead of background, in ``[0, 1]``. Defaults to 0.
        topk (int): Neighbours per class. Defaults to 20.
        neighbor_file (str, optional): A neighbour file for the detector's
            classes; None builds the table from the box head.
        attack_mode (str): ``'eval'`` or ``'train'`` mode of the detector
            while the step is computed. Defaults to 'eval'.
        seed (int, optional): Seed of the neighbour draws. Defaults to None.
        similarity (str): ``'cosine'`` or ``'dot'``, the class similarity
            of a table built from the box head. Defaults to 'cosine'.
        attack_chunk (int): Images per attack forward/backward with
            ``attack_mode='eval'`` (each image's step depends on that image
            only, so chunks give the same step); the attack's activations
            then take ``attack_chunk / N`` of the whole batch's memory and
            stay below the training step's peak. 0 attacks the whole batch
            at once (always so in ``'train'`` mode, where BatchNorm couples
            the images). Defaults to 1.
        grad_scaler (dict, optional): Arguments of
            :class:`mmgfn.models.utils.AttackGradScaler` (``min_scale``,
            ``warn_threshold``, ...). Defaults to None (its defaults).

    Raises:
        ConfigError: On bad options (:meth:`check_args`), or when the
            detector's and the dataset's class counts differ
            (:meth:`check_classes`).
        ValueError: For a detector without an RoI head.
    """

    priority = 'NORMAL'

    def __init__(self,
                 eta: float = 0.01,
                 eta_unit: str = 'normalized',
                 num_steps: int = 1,
                 neighbor_ratio: float = 0.0,
                 topk: int = 20,
                 neighbor_file: Optional[str] = None,
                 attack_mode: str = 'eval',
                 seed: Optional[int] = None,
                 similarity: str = 'cosine',
                 attack_chunk: int = 1,
                 grad_scaler: Optional[dict] = None) -> None:
        self.check_args(
            dict(eta=eta, eta_unit=eta_unit, num_steps=num_steps,
                 neighbor_ratio=neighbor_ratio, topk=topk,
                 neighbor_file=neighbor_file, attack_mode=attack_mode,
                 similarity=similarity, attack_chunk=attack_chunk))
        self.similarity = similarity
        self.attack_chunk = attack_chunk
        self.eta = float(eta)
        self.eta_unit = eta_unit
        self.num_steps = num_steps
        self.neighbor_ratio = float(neighbor_ratio)
        self.topk = topk
        self.neighbor_file = neighbor_file
        self.attack_mode = attack_mode
        self.generator = torch.Generator()
        self.generator.manual_seed(
            random.randrange(2**31) if seed is None else seed)
        self.table: Optional[NeighborTable] = None
        # a resumed run's table, read before bind() builds the table
        self._saved_table: Optional[dict] = None
        self._handle = None
        self._model: Optional[nn.Module] = None
        self.grad_scaler = AttackGradScaler(**(grad_scaler or {}))

    @classmethod
    def check_args(cls,
                   args: dict,
                   key: str = 'custom_hooks',
                   num_classes: Optional[int] = None,
                   classes_key: str = '',
                   loss_uses_table: bool = False) -> None:
        """The value checks of the constructor, on its arguments or its
        config dict (missing entries take the constructor's defaults), and,
        given the detector's class count, ``topk`` and ``neighbor_file``
        against it where the hook keeps a neighbour table
        (``neighbor_ratio > 0``, a ``neighbor_file``, or a
        :class:`NeighborWeightedCELoss` that uses the hook's table), so that
        a whole-config check refuses a config before building anything.

        Args:
            args (dict): The constructor's arguments, or the config dict.
            key (str): Its config key (``'custom_hooks[0]'``), named in the
                messages. Defaults to ``'custom_hooks'``.
            num_classes (int, optional): The detector's class count.
            classes_key (str): The config key of ``num_classes``.
            loss_uses_table (bool): Whether a loss of the detector reads the
                hook's table. Defaults to False.

        Raises:
            ConfigError: One line naming ``<key>.<argument>`` and the fix.
        """
        args = with_defaults(cls, args)
        owner = cls.__name__
        eta, ratio = args['eta'], args['neighbor_ratio']
        if not isinstance(eta, Number) or not eta > 0:
            raise ConfigError(f'{key}.eta={eta!r} ({owner}) must be > 0')
        for name, choices in (('eta_unit', ('normalized', 'pixel')),
                              ('attack_mode', ('eval', 'train'))):
            check_choice(f'{key}.{name}', args[name], choices, owner)
        if not isinstance(ratio, Number) or not 0.0 <= ratio <= 1.0:
            raise ConfigError(f'{key}.neighbor_ratio={ratio!r} ({owner}) '
                              'must be in [0, 1]')
        for name, low in (('num_steps', 1), ('attack_chunk', 0)):
            check_int(f'{key}.{name}', args[name], low, owner)
        check_similarity(args['similarity'], f'{key} ({owner})')
        uses_table = loss_uses_table or bool(args['neighbor_file']) or (
            isinstance(ratio, Number) and ratio > 0)
        if isinstance(num_classes, int) and uses_table:
            check_topk(args['topk'], num_classes, key=key, owner=owner,
                       classes_key=classes_key)
            check_neighbor_file(args['neighbor_file'], num_classes, key,
                                owner, topk=args['topk'],
                                similarity=args['similarity'])

    @staticmethod
    def check_classes(num_classes: int,
                      dataset_classes: Optional[Sequence[str]],
                      key: str = 'custom_hooks',
                      classes_key: str = 'model.roi_head.bbox_head.'
                      'num_classes') -> None:
        """The detector's class count must be the training set's.

        Args:
            num_classes (int): The detector's (foreground) class count.
            dataset_classes (Sequence[str], optional): The training set's
                classes; None skips the check.
            key (str): The hook's config key. Defaults to ``'custom_hooks'``.
            classes_key (str): The config key of ``num_classes``.

        Raises:
            ConfigError: Naming the hook, both keys and the fix.
        """
        if dataset_classes is None or len(dataset_classes) == num_classes:
            return
        raise ConfigError(
            f'{key} (BackgroundRoIPerturbationHook): the detector has '
            f'{num_classes} classes but the training dataset has '
            f'{len(dataset_classes)} ({classes_key} against '
            f'train_dataloader.dataset); set {classes_key}='
            f"{len(dataset_classes)} or the dataset's metainfo.classes")

    # ------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        """Check the detector and attach the perturbation."""
        model = getattr(runner.model, 'module', runner.model)
        self.bind(model, _dataset_classes(runner))
        self._handle = model.data_preprocessor.register_forward_hook(
            self._perturb_output, with_kwargs=True)

    def after_train(self, runner) -> None:
        """Detach the perturbation."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the neighbour table with the checkpoint."""
        if self.table is not None and self.table.is_built:
            checkpoint['neighbor_table'] = dict(
                neighbors=self.table.neighbors.cpu(), source=self.table.source,
                similarity=self.table.similarity)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the neighbour table of a resumed run."""
        saved = checkpoint.get('neighbor_table')
        if saved is not None and self.table is not None:
            self._restore(saved)
        elif saved is not None:
            self._saved_table = saved

    def _restore(self, saved: dict) -> None:
        """Load a checkpoint's table (validated; a table saved before the
        similarity was recorded is a cosine table)."""
        similarity = saved.get('similarity', 'cosine')
        check_similarity(similarity, 'checkpoint')
        self.table.similarity = similarity
        self.table.load_neighbors(saved['neighbors'], saved['source'],
                                  origin='checkpoint')

    # ----------------------------------------------------------- attack
    def bind(self, model: nn.Module,
             dataset_classes: Optional[Sequence[str]] = None) -> None:
        """Check ``model`` and prepare the neighbour table.

        Args:
            model (nn.Module): An mmdet two-stage detector (unwrapped).
            dataset_classes (Sequence[str], optional): The training set's
                classes, checked against the detector's.
        """
        if any(fsdp_kind(m) for m in model.modules()):
            raise RuntimeError(
                'BackgroundRoIPerturbationHook does not support sharded '
                'models (FullyShardedDataParallel or fully_shard): the '
                'attack\'s frozen forward/backward through sharded '
                'parameters is not validated. Train with DDP')
        roi_head = getattr(model, 'roi_head', None)
        if roi_head is None or not getattr(roi_head, 'with_bbox', False):
            raise ValueError(
                f'BackgroundRoIPerturbationHook needs a two-stage detector '
                f'with an RoI box head (Faster R-CNN, Cascade R-CNN, ...); '
                f'{type(model).__name__} has none')
        num_classes = last_bbox_head(roi_head).num_classes
        self.check_classes(num_classes, dataset_classes,
                           classes_key=bbox_classes_key(roi_head.bbox_head))
        self._model = model
        self.num_classes = num_classes
        losses = find_modules(model, NeighborWeightedCELoss)
        if self.neighbor_ratio > 0 or losses:
            if self.neighbor_file:
                self.table = NeighborTable.from_file(
                    self.neighbor_file, num_classes=num_classes,
                    topk=self.topk, similarity=self.similarity)
            else:
                self.table = NeighborTable(num_classes, self.topk,
                                           similarity=self.similarity)
            if self._saved_table is not None:
                self._restore(self._saved_table)
            for loss in losses:
                loss.share_neighbor_table(self.table)

    def _perturb_output(self, module, args, kwargs, output):
        training = kwargs.get('training', args[1] if len(args) > 1 else False)
        if not training:
            return output
        output['inputs'] = self.perturb(output['inputs'],
                                        output['data_samples'])
        self.grad_scaler.publish()
        return output

    def targets(self, labels: Tensor) -> Tensor:
        """``R`` target classes: background (``C``), or with probability
        ``neighbor_ratio`` a random neighbour of the label. The draws come
        from the hook's CPU generator; nothing waits for the device."""
        targets = torch.full_like(labels, self.num_classes)
        if self.neighbor_ratio == 0 or not labels.numel():
            return targets
        pick = torch.rand(labels.shape, generator=self.generator) < \
            self.neighbor_ratio
        nbrs, _ = self.table.sample(labels, self.generator)
        return torch.where(pick.to(labels.device, non_blocking=True), nbrs,
                           targets)

    def perturb(self, inputs: Tensor, data_samples: list) -> Tensor:
        """The perturbed batch ``x'``.

        Args:
            inputs (Tensor): ``N x 3 x H x W`` float, as the data
                preprocessor returns them (normalised, padded).
            data_samples (list[DetDataSample]): With ``gt_instances``
                (``bboxes`` ``R_i x 4`` in input pixels, ``labels``) and
                ``img_shape``.

        Returns:
            Tensor: ``N x 3 x H x W``, ``|x' - x| <= eta`` (in ``eta_unit``)
            inside each image, unchanged on the padding.
        """
        from mmdet.structures.bbox import bbox2roi
        model = self._model
        if model is None:
            raise RuntimeError('BackgroundRoIPerturbationHook is not bound '
                               'to a detector (bind(model) first)')
        self._maybe_build_table(model)
        if self.table is not None and \
                self.table.neighbors.device != inputs.device:
            # moved once: a table left on the host would be copied to the
            # device, a host sync, at every step
            self.table.to(inputs.device)
        boxes = [s.gt_instances.bboxes for s in data_samples]
        boxes = [b.tensor if hasattr(b, 'tensor') else b for b in boxes]
        if sum(len(b) for b in boxes) == 0:
            return inputs
        rois = bbox2roi(boxes)
        labels = torch.cat([s.gt_instances.labels for s in data_samples])
        targets = self.targets(labels)
        pre = model.data_preprocessor
        normalized = getattr(pre, '_enable_normalize', False)
        step, lower, upper = step_and_bounds(
            self.eta, self.eta_unit, pre.mean if normalized else None,
            pre.std if normalized else None, inputs)
        mask = padding_mask([s.img_shape[:2] for s in data_samples], inputs)
        if mask is not None:
            step = step * mask
        eval_mode = self.attack_mode == 'eval'
        num = len(data_samples)
        chunk = self.attack_chunk if eval_mode and self.attack_chunk else num
        with frozen_model(model, eval_mode=eval_mode):
            return torch.cat([
                self._attack_images(model, inputs, rois, targets, step, lower,
                                    upper, start, min(start + chunk, num),
                                    eval_mode)
                for start in range(0, num, chunk)
            ])

    def _attack_images(self, model: nn.Module, inputs: Tensor, rois: Tensor,
                       targets: Tensor, step, lower, upper, start: int,
                       end: int, eval_mode: bool) -> Tensor:
        """The step of images ``start..end - 1`` (their own forward and
        backward: the graph is freed before the next chunk)."""
        roi_head = model.roi_head
        keep = (rois[:, 0] >= start) & (rois[:, 0] < end)
        chunk_rois = rois[keep].clone()
        chunk_rois[:, 0] -= start
        chunk_targets = targets[keep]
        # RoIs of one image share its pixels: CE's relative RoI weights are
        # kept per image (per batch when BatchNorm couples the images)
        groups = (chunk_rois[:, 0].long() if eval_mode else
                  torch.zeros_like(chunk_targets))
        if not len(chunk_rois):  # no box in these images: nothing to attack
            return inputs[start:end]
        stages = getattr(roi_head, 'num_stages', 1)
        if isinstance(step, Tensor) and step.size(0) == len(inputs):
            step = step[start:end]

        def logits_fn(x: Tensor) -> Tensor:
            feats = model.extract_feat(x)
            return torch.cat(
                list(_roi_class_scores(roi_head, feats, chunk_rois)))

        return sign_gradient_attack(
            logits_fn, inputs[start:end], chunk_targets.repeat(stages), step,
            lower, upper, self.num_steps, toward=True,
            groups=groups.repeat(stages), num_groups=end - start,
            scaler=self.grad_scaler)

    def _maybe_build_table(self, model: nn.Module) -> None:
        if self.table is None or self.table.is_built:
            return
        self.table.update_from_embeddings(
            head_class_weights(model, self.num_classes), source='head')
        MMLogger.get_current_instance().info(
            'neighbour table built from the box head\'s class weights '
            f'(topk={self.table.topk})')


def _roi_class_scores(roi_head: nn.Module, feats, rois: Tensor):
    """``R x (C + 1)`` class scores of each box stage for ``rois``."""
    num_stages = getattr(roi_head, 'num_stages', None)
    if num_stages is None:
        yield roi_head._bbox_forward(feats, rois)['cls_score']
        return
    for stage in range(num_stages):
        yield roi_head._bbox_forward(stage, feats, rois)['cls_score']


def _dataset_classes(runner) -> Optional[Sequence[str]]:
    """The training set's classes (the train loop builds the dataloader
    before ``before_train``)."""
    dataset = getattr(runner.train_dataloader, 'dataset', None)
    classes = getattr(dataset, 'metainfo', {}).get('classes')
    return list(classes) if classes else None
