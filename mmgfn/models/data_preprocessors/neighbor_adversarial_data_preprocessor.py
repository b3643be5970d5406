"""GFN's neighbour-adversarial data preprocessor for mmpretrain classifiers.

GFN (Gain From Neighbors, CVPR 2025), Eq. 5: each training sample of label
``c`` is moved one gradient-sign step *toward* a random neighbour ``p`` of
``c`` (a class similar to ``c``, from the neighbour table),

    x' = x - eta * sign(grad_x CE(f(x), p)),

and the model then trains on ``x'`` with its true label (Eq. 6). With
``mode='untargeted'`` the step goes *away* from the true label instead,
``x' = x + eta * sign(grad_x CE(f(x), c))`` (Eq. 3, the paper's "Adv."
ablation).

Shape shorthand: ``N`` images, ``C`` classes, ``3 x H x W`` inputs.
"""
import inspect
import os.path as osp
import weakref
from numbers import Number
from typing import Optional, Sequence

import torch
from mmengine.logging import MessageHub, MMLogger
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from torch import Tensor, nn

from mmgfn.registry import MODELS
from mmgfn.utils.config_walk import with_defaults
from mmgfn.utils.errors import ConfigError, check_choice, check_int
from mmgfn.utils.fsdp import fsdp_kind
from ..losses.neighbor_weighted_ce_loss import NeighborWeightedCELoss
from ..utils.attack import (AttackGradScaler, frozen_model, padding_mask,
                            sign_gradient_attack, step_and_bounds)
from ..utils.neighbor_table import (NeighborTable, check_neighbor_file,
                                    check_similarity, check_topk,
                                    find_modules, head_class_weights)

MODES = ('neighbor', 'untargeted')
ETA_UNITS = ('normalized', 'pixel')
SOURCES = ('head', 'file')


@MODELS.register_module()
class NeighborAdversarialDataPreprocessor(ClsDataPreprocessor):
    """ClsDataPreprocessor that perturbs training batches toward neighbours.

    Validation and test batches (``training=False``) are processed exactly as
    by :class:`mmpretrain.models.ClsDataPreprocessor`. Training batches are
    first processed the same way (BGR->RGB, normalisation, padding, batch
    augments such as Mixup/CutMix), then replaced by the perturbed batch
    ``x'``, computed on the normalised batch the model sees and clipped to
    the normalised image of the valid pixel range ``[0, 255]``.

    **Units of eta.** ``eta_unit='normalized'`` (default, the paper's reading:
    ``requires_grad`` on the normalised batch) makes ``eta`` a step on the
    normalised input, i.e. ``eta * std / 255`` in ``[0, 1]`` pixel units
    (0.01 -> about 0.0023 for ImageNet's std). ``eta_unit='pixel'`` makes
    ``eta`` a step in ``[0, 1]`` pixel units (``eta * 255 / std`` on the
    normalised input). Either way ``|x' - x| <= eta`` in its unit.

    **Target of a sample.** Its hard label ``gt_label``; after batch
    augments that mix labels, the class with the largest ``gt_score``.
    The neighbour is drawn uniformly among the label's top-``topk``
    neighbours (independently per sample and step of training).

    **The model.** The attack needs the model that owns this preprocessor,
    which must not become a submodule (a cycle in ``state_dict``) and which
    mmengine does not pass to a data preprocessor. At every training call
    the preprocessor takes the innermost caller on the call stack whose
    ``self`` is a model (or a DDP wrapper of one) whose ``data_preprocessor``
    is this object: mmengine's ``BaseModel.train_step``, a custom
    ``train_step`` however deep its helpers, each of two models that share
    one preprocessor. Nothing is cached, so ``deepcopy``/``pickle`` of a
    model need no care and a copy attacks with its own weights; outside a
    model's methods :meth:`bind` names the model (weakly referenced,
    re-checked at every call, dropped by ``deepcopy``/``pickle``). This
    keeps the component a plain ``data_preprocessor`` of mmpretrain
    configs, where an explicit model argument would need a custom model
    class. Under DDP the attack runs the wrapped module, so no gradient
    synchronisation is triggered. Sharded models are refused with a
    message at the first training step: FSDP1 (a
    ``FullyShardedDataParallel`` wrapper) and FSDP2 (a model passed to
    ``torch.distributed.fsdp.fully_shard``); single-device, DataParallel-free
    and DDP training are what is supported. The preprocessor
    shares its neighbour table with every :class:`NeighborWeightedCELoss`
    of the model that has no table of its own.

    **Model mode during the attack.** ``attack_mode='eval'`` (default) takes
    the gradient of the model in eval mode: BatchNorm uses its running
    statistics and dropout/drop-path are off, so each sample's step depends
    on that sample alone (in training mode, BatchNorm couples the samples of
    a batch and a step can lower a sample's own loss). ``'train'`` keeps the
    training mode (the gradient of the forward pass about to run). The paper
    does not say; for ViTs without dropout both are the same.

    **Signs.** The step takes the sign of the cross-entropy's input
    gradient through :func:`mmgfn.models.utils.ce_sign_gradient`, which does
    not vanish for confident samples (a float32 CE gradient does once
    ``CE < ~6e-8``, and the untargeted step then fails to raise the loss);
    when the backward runs in float16 (float16 logits or float16 autocast)
    it is scaled (:class:`mmgfn.models.utils.AttackGradScaler`) so that small
    gradients keep their sign (float16 rounding still flips a few signs
    against a float64 reference: see the README). In ``attack_mode='eval'``
    every sample's sign is CE's on its own; in ``'train'`` the samples keep
    CE's relative weights (BatchNorm couples them). A sample whose input
    gradient is not finite is left unperturbed for the step and counted;
    the share per step goes to the training log as ``gfn_unperturbed``
    (message hub key ``train/gfn_unperturbed``), with a warning above
    ``grad_scaler.warn_threshold``. No step waits for the GPU: errors found on the
    device are raised asynchronously (:mod:`mmgfn.models.utils.deferred_check`).

    **No trace.** Parameters, their ``.grad``, buffers (BatchNorm statistics)
    and optimizer state are unchanged by the attack; only the input gradient
    is computed (see :func:`mmgfn.models.utils.frozen_model`). Under
    ``--amp`` the attack runs in the same autocast context as the training
    forward.

    **Neighbour table.** A :class:`NeighborTable` submodule
    (``data_preprocessor.neighbor_table`` in checkpoints), filled at the
    first training step (see :meth:`_resolve_table` for which table wins:
    a resumed run keeps its checkpoint's; fine-tuning with
    ``neighbor_source='file'`` uses the file and warns when a ``load_from``
    checkpoint carried another; ``'head'`` keeps a checkpoint's table, else
    builds it from the head's class weight rows) and, with ``'head'``,
    rebuilt every ``refresh_interval`` training steps when that is > 0.
    Evaluation needs no table and no file. With ``mode='untargeted'`` the
    table is filled only for a :class:`NeighborWeightedCELoss` that uses it.

    **Padding** (``pad_size_divisor > 1``, images of different sizes) is not
    perturbed: the step is applied inside each image only.

    Args:
        num_classes (int): Number of classes ``C``.
        eta (float): Step size, in ``eta_unit``. Defaults to 0.01.
        eta_unit (str): ``'normalized'`` or ``'pixel'``.
            Defaults to 'normalized'.
        topk (int): Neighbours per class, ``1 <= k < C``. Defaults to 20.
        num_steps (int): Gradient-sign steps, each ``eta / num_steps`` and
            projected onto the ``eta`` box (1 = the paper). Defaults to 1.
        mode (str): ``'neighbor'`` (Eq. 5) or ``'untargeted'`` (Eq. 3).
            Defaults to 'neighbor'.
        neighbor_source (str): ``'head'`` or ``'file'``. Defaults to 'head'.
        neighbor_file (str, optional): The neighbour file for
            ``neighbor_source='file'``. Defaults to None.
        refresh_interval (int): With ``neighbor_source='head'``, rebuild the
            table every this many training steps (0: build once).
            Defaults to 0.
        attack_mode (str): ``'eval'`` or ``'train'``, the model's mode while
            the step is computed. Defaults to 'eval'.
        similarity (str): ``'cosine'`` or ``'dot'``, the class similarity
            that ranks the neighbours of a table built from the head.
            Defaults to 'cosine'.
        grad_scaler (dict, optional): Arguments of
            :class:`mmgfn.models.utils.AttackGradScaler` (``min_scale``,
            ``warn_threshold``, ...). Defaults to None (its defaults).
        mean, std, pad_size_divisor, pad_value, to_rgb, to_onehot,
        batch_augments: As in :class:`ClsDataPreprocessor`.

    Raises:
        ConfigError: For an unknown mode/unit/source,
            ``topk >= num_classes``, a neighbour file for another number of
            classes, or a missing ``neighbor_file`` (:meth:`check_args`).
    """

    def __init__(self,
                 num_classes: int,
                 eta: float = 0.01,
                 eta_unit: str = 'normalized',
                 topk: int = 20,
                 num_steps: int = 1,
                 mode: str = 'neighbor',
                 neighbor_source: str = 'head',
                 neighbor_file: Optional[str] = None,
                 refresh_interval: int = 0,
                 attack_mode: str = 'eval',
                 similarity: str = 'cosine',
                 grad_scaler: Optional[dict] = None,
                 mean: Optional[Sequence[Number]] = None,
                 std: Optional[Sequence[Number]] = None,
                 pad_size_divisor: int = 1,
                 pad_value: Number = 0,
                 to_rgb: bool = False,
                 to_onehot: bool = False,
                 batch_augments: Optional[dict] = None) -> None:
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            to_rgb=to_rgb,
            to_onehot=to_onehot,
            num_classes=num_classes,
            batch_augments=batch_augments)
        self.check_args(
            dict(num_classes=num_classes, eta=eta, eta_unit=eta_unit,
                 topk=topk, num_steps=num_steps, mode=mode,
                 neighbor_source=neighbor_source,
                 neighbor_file=neighbor_file,
                 refresh_interval=refresh_interval, attack_mode=attack_mode,
                 similarity=similarity))
        self.eta = float(eta)
        self.eta_unit = eta_unit
        self.num_steps = num_steps
        self.mode = mode
        self.neighbor_source = neighbor_source
        self.refresh_interval = refresh_interval
        self.attack_mode = attack_mode
        self.neighbor_file = neighbor_file
        # filled at the first training step (see _resolve_table): evaluation
        # needs neither the file nor a table. A file that exists was checked
        # by check_args; a missing one is an error at the first training
        # step (and before it, in tools/train.py's preflight)
        self.neighbor_table = NeighborTable(num_classes, topk,
                                            similarity=similarity)
        # not a submodule (it must not enter state_dict)
        self.__dict__['_file_table'] = None
        if neighbor_file and osp.isfile(neighbor_file):
            self.__dict__['_file_table'] = NeighborTable.from_file(
                neighbor_file, num_classes=num_classes, topk=topk,
                similarity=similarity)
        self._table_resolved = False
        self._loss_uses_table = False
        self.grad_scaler = AttackGradScaler(**(grad_scaler or {}))
        self._bound = None
        self._train_steps = 0

    @classmethod
    def check_args(cls, args: dict,
                   key: str = 'model.data_preprocessor') -> None:
        """The value checks of the constructor, on its arguments or its
        config dict (missing entries take the constructor's defaults;
        ``num_classes`` missing skips the checks that need it), so that a
        whole-config check refuses a config before building anything.

        Args:
            args (dict): The constructor's arguments, or the config dict.
            key (str): Its config key, named in the messages.
                Defaults to ``'model.data_preprocessor'``.

        Raises:
            ConfigError: One line naming ``<key>.<argument>`` and the fix.
        """
        args = with_defaults(cls, args)
        owner = cls.__name__
        for name, choices in (('mode', MODES), ('eta_unit', ETA_UNITS),
                              ('neighbor_source', SOURCES),
                              ('attack_mode', ('eval', 'train'))):
            check_choice(f'{key}.{name}', args[name], choices, owner)
        eta = args['eta']
        if not isinstance(eta, Number) or not eta > 0:
            raise ConfigError(f'{key}.eta={eta!r} ({owner}) must be > 0')
        for name, low in (('num_steps', 1), ('refresh_interval', 0)):
            check_int(f'{key}.{name}', args[name], low, owner)
        num_classes = args['num_classes']
        if num_classes is not None:
            check_topk(args['topk'], num_classes, key=key, owner=owner)
        source, path = args['neighbor_source'], args['neighbor_file']
        if source == 'file' and not path:
            raise ConfigError(f"{key}.neighbor_source='file' ({owner}) "
                              f'needs {key}.neighbor_file')
        if source == 'head' and path:
            raise ConfigError(
                f'{key}.neighbor_file="{path}" ({owner}) is given but '
                f"{key}.neighbor_source='head'; set "
                f"{key}.neighbor_source='file'")
        check_similarity(args['similarity'], f'{key} ({owner})')
        if isinstance(num_classes, int):
            check_neighbor_file(path, num_classes, key, owner,
                                topk=args['topk'],
                                similarity=args['similarity'])

    # ------------------------------------------------------------ the model
    def bind(self, model: nn.Module) -> None:
        """Name the model to attack when this preprocessor is called outside
        a model's ``train_step`` (tests, custom loops).

        The reference is weak, checked on every call (the model must still
        own this preprocessor), and neither copied nor pickled: a
        ``deepcopy`` of the model finds itself through its own
        ``train_step``.

        Args:
            model (nn.Module): The model whose ``data_preprocessor`` this is
                (a DDP wrapper is unwrapped).

        Raises:
            ValueError: If ``model`` does not own this preprocessor.
            RuntimeError: If ``model`` is wrapped by FSDP.
        """
        model = self._owner(model)
        if model is None:
            raise ValueError('the model does not own this data preprocessor')
        self._bound = weakref.ref(model)
        self._share_table(model)

    @property
    def model(self) -> nn.Module:
        """The model to attack: the one whose ``train_step`` (or any method)
        is calling this preprocessor, found on the call stack at every call;
        else the model given to :meth:`bind`, if it still owns this
        preprocessor."""
        model = self._find_caller_model()
        if model is None and self._bound is not None:
            model = self._owner(self._bound())
        if model is None:
            raise RuntimeError(
                'NeighborAdversarialDataPreprocessor found no model to '
                'attack: call it from the train_step of the model that owns '
                'it (as mmengine does), or call preprocessor.bind(model)')
        self._share_table(model)
        return model

    def _owner(self, module: Optional[nn.Module]) -> Optional[nn.Module]:
        """``module`` (unwrapped from DDP) if it owns this preprocessor."""
        if not isinstance(module, nn.Module) or module is self:
            return None
        fsdp = fsdp_kind(module)
        if fsdp is not None:
            inner = getattr(module, 'module', module)
            if getattr(inner, 'data_preprocessor', None) is self:
                raise RuntimeError(
                    'NeighborAdversarialDataPreprocessor does not support '
                    f'{fsdp}: the attack\'s frozen forward/backward through '
                    'sharded parameters is not validated. Train with DDP '
                    '(MMDistributedDataParallel, the default of '
                    'tools/dist_train.sh)')
            return None
        module = getattr(module, 'module', module)
        if getattr(module, 'data_preprocessor', None) is self:
            return module
        return None

    def _find_caller_model(self) -> Optional[nn.Module]:
        """The innermost caller on the stack whose ``self`` is a model (or a
        DDP wrapper of one) that owns this preprocessor; no depth limit."""
        frame = inspect.currentframe().f_back
        try:
            while frame is not None:
                model = self._owner(frame.f_locals.get('self'))
                if model is not None:
                    return model
                frame = frame.f_back
            return None
        finally:
            del frame

    def _share_table(self, model: nn.Module) -> None:
        """Give the model's neighbour-weighted losses this table (once per
        model; a marker in the model's ``__dict__`` follows deepcopies)."""
        if model.__dict__.get('_gfn_neighbor_table') is self.neighbor_table:
            return
        for loss in find_modules(model, NeighborWeightedCELoss):
            if loss.share_neighbor_table(self.neighbor_table):
                self._loss_uses_table = True
        model.__dict__['_gfn_neighbor_table'] = self.neighbor_table

    def __getstate__(self) -> dict:
        # the bound model is not part of this object (pickle, deepcopy)
        state = self.__dict__.copy()
        state['_bound'] = None
        return state

    # ------------------------------------------------------------- forward
    def forward(self, data: dict, training: bool = False) -> dict:
        """Preprocess as ClsDataPreprocessor; in training, perturb.

        Args:
            data (dict): A dataloader batch.
            training (bool): Whether this is a training batch.

        Returns:
            dict: ``inputs`` (``N x 3 x H x W`` float, normalised; perturbed
            when training) and ``data_samples``.
        """
        sizes = [tuple(img.shape[-2:]) for img in data['inputs']]
        data = super().forward(data, training)
        if not training:
            return data
        inputs, samples = data['inputs'], data['data_samples']
        if samples is None:
            raise ValueError('training batches need data_samples with labels '
                             'for the neighbour attack')
        model = self.model
        self._resolve_table(model)
        self._train_steps += 1
        data['inputs'] = self.perturb(
            model, inputs, self._labels(samples),
            valid=padding_mask(sizes, inputs))
        self.grad_scaler.publish()
        return data

    def perturb(self,
                model: nn.Module,
                inputs: Tensor,
                labels: Tensor,
                targets: Optional[Tensor] = None,
                valid: Optional[Tensor] = None) -> Tensor:
        """The perturbed batch ``x'`` for normalised ``inputs``.

        Args:
            model (nn.Module): An mmpretrain classifier;
                ``model(x, mode='tensor')`` must return ``N x C`` logits.
            inputs (Tensor): ``N x 3 x H x W`` float, normalised.
            labels (Tensor): ``N`` int64 true labels in ``[0, C)``.
            targets (Tensor, optional): ``N`` int64 neighbours to step toward
                (``mode='neighbor'``). Defaults to a random neighbour of each
                label from the table.
            valid (Tensor, optional): ``N x 1 x H x W`` float, 1 on the
                image and 0 on padding (``pad_size_divisor > 1`` or images
                of different sizes), which stays unperturbed. Defaults to
                None (all valid).

        Returns:
            Tensor: ``N x 3 x H x W``, ``|x' - x| <= eta`` (in ``eta_unit``),
            inside the normalised image of pixels ``[0, 255]``.
        """
        if self.mode == 'neighbor':
            if targets is None:
                targets, _ = self.neighbor_table.sample(labels)
        else:
            targets = labels
        normalized = self._enable_normalize
        step, lower, upper = step_and_bounds(
            self.eta, self.eta_unit, self.mean if normalized else None,
            self.std if normalized else None, inputs)
        if valid is not None:
            step = step * valid

        def logits_fn(x: Tensor) -> Tensor:
            logits = model(x, mode='tensor')
            if isinstance(logits, (tuple, list)):
                logits = logits[-1]
            return logits

        eval_mode = self.attack_mode == 'eval'
        with frozen_model(model, eval_mode=eval_mode):
            return sign_gradient_attack(
                logits_fn,
                inputs,
                targets,
                step,
                lower,
                upper,
                num_steps=self.num_steps,
                toward=self.mode == 'neighbor',
                # in training mode BatchNorm couples the samples: keep CE's
                # relative sample weights (see ce_sign_gradient)
                groups=None if eval_mode else torch.zeros_like(targets),
                num_groups=1,
                scaler=self.grad_scaler)

    def _labels(self, samples: list) -> Tensor:
        """``N`` int64 labels: ``gt_score``'s argmax when batch augments
        mixed labels, else ``gt_label``."""
        if 'gt_score' in samples[0]:
            return torch.stack([s.gt_score for s in samples]).argmax(1).to(
                self.device)
        labels = [s.gt_label.view(-1) for s in samples]
        if any(label.numel() != 1 for label in labels):
            raise ValueError('the neighbour attack needs exactly one label '
                             'per sample (multi-label data is not supported)')
        return torch.cat(labels).to(self.device)

    def _resolve_table(self, model: nn.Module) -> None:
        """Fill the neighbour table at the first training step, then refresh
        it from the head every ``refresh_interval`` steps.

        Precedence, decided once and logged:

        * a resumed run (mmengine's ``iter`` > 0 at its first step) keeps
          the table of its checkpoint;
        * fine-tuning from ``load_from`` with ``neighbor_source='file'``
          uses the configured file, and warns when the checkpoint carried a
          different table;
        * ``neighbor_source='head'`` keeps a table that the checkpoint
          carried, else builds it from the head's class weights.

        With ``mode='untargeted'`` the table is filled only when a
        :class:`NeighborWeightedCELoss` of the model uses it.
        """
        table = self.neighbor_table
        if not self._table_resolved:
            self._table_resolved = True
            if self.mode == 'untargeted' and not self._loss_uses_table:
                return
            checkpoint = table.checkpoint_neighbors
            if checkpoint is not None and (_resumed()
                                           or self.neighbor_source == 'head'):
                self._log_table('the checkpoint')
                if self.neighbor_source == 'file':
                    self._warn_if_differs(checkpoint, self._read_file(),
                                          "resumed run keeps its "
                                          "checkpoint's table")
            elif self.neighbor_source == 'file':
                loaded = self._read_file()
                table.load_neighbors(loaded, 'file')
                self._log_table(f'file "{self.neighbor_file}"')
                if checkpoint is not None:
                    self._warn_if_differs(
                        checkpoint, loaded, 'fine-tuning uses the configured '
                        'file, not the table of the load_from checkpoint')
            else:
                self._build_from_head(model)
            return
        if (self.neighbor_source == 'head' and self.refresh_interval > 0
                and self._train_steps % self.refresh_interval == 0
                and table.is_built):
            self._build_from_head(model)

    def _build_from_head(self, model: nn.Module) -> None:
        weights = head_class_weights(model, self.neighbor_table.num_classes)
        try:
            self.neighbor_table.update_from_embeddings(weights, source='head')
        except ValueError as e:
            raise ValueError(
                f"neighbor_source='head' cannot build the neighbour table: "
                f'{e}. The head looks untrained (mmpretrain initialises '
                'some heads to zeros): fine-tune from a trained checkpoint '
                "(load_from) or use neighbor_source='file' "
                '(tools/build_neighbors.py)') from e
        self._log_table('head weights', built=True)

    def _log_table(self, origin: str, built: bool = False) -> None:
        what = 'built from' if built else 'from'
        MMLogger.get_current_instance().info(
            f'neighbour table {what} {origin} at training step '
            f'{self._train_steps} (topk={self.neighbor_table.topk})')

    def _read_file(self) -> Tensor:
        """The ``C x k`` neighbours of ``neighbor_file``."""
        table = self.__dict__['_file_table'] or NeighborTable.from_file(
            self.neighbor_file, num_classes=self.neighbor_table.num_classes,
            topk=self.neighbor_table.topk,
            similarity=self.neighbor_table.similarity)
        return table.neighbors

    def _warn_if_differs(self, checkpoint: Tensor, file: Tensor,
                         what: str) -> None:
        checkpoint = checkpoint[:, :file.size(1)].to(file.device)
        if checkpoint.shape != file.shape or not torch.equal(
                checkpoint, file):
            MMLogger.get_current_instance().warning(
                'the checkpoint\'s neighbour table differs from '
                f'"{self.neighbor_file}": the {what}')


def _resumed() -> bool:
    """Whether mmengine's current run started from a resumed iteration."""
    try:
        return int(MessageHub.get_current_instance().get_info('iter',
                                                              0)) > 0
    except (TypeError, ValueError):
        return False

