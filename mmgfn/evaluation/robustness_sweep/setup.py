"""What a sweep needs before its first cell, built and checked once.

:class:`SweepSetup` holds the settings (:class:`RobustnessSettings`), the
cells (:class:`Suite`), the checkpoint and the baseline checkpoint, each
read once (:class:`mmgfn.utils.checkpoint.Checkpoint`), their class count
and the baseline results. The preflight of a sweep config
(:func:`check_robustness_config`, run by ``tools/test.py`` and
``tools/test_robustness.py`` before the Runner is built) makes it and
leaves it for :class:`mmgfn.engine.RobustnessTestLoop`, which takes it
when its configuration is the same (:meth:`SweepSetup.for_loop`) instead
of building and reading everything again.
"""
import json
import os.path as osp
from typing import Any, List, Optional

from mmgfn.utils.checkpoint import Checkpoint, head_rows
from mmgfn.utils.errors import ConfigError, check_dataset_paths
from .suite import RobustnessSettings, Suite, _canonical, checkpoint_id
from .summary import load_baseline_results

#: test_cfg keys of the loop that are not sweep settings
LOOP_KEYS = ('type', '_scope_', 'fp16', 'checkpoint')


def check_dataset_classes(rows: Optional[int], suite: Any,
                          dataset: Any) -> None:
    """Refuse a checkpoint whose class count disagrees with the data."""
    if rows is None or suite.name == 'imagenet-p':
        return
    if suite.name in ('imagenet-a', 'imagenet-r'):
        if rows != 1000:
            raise ConfigError(
                f'{suite.name} keeps 200 of the 1000 logits of an '
                f'ImageNet-1k classifier, but the checkpoint has {rows} '
                'classes (rows of its head weight)')
        return
    classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
    if classes is not None and len(classes) != rows:
        raise ConfigError(
            f'the checkpoint has {rows} classes (rows of its head weight) '
            f'but the {suite.name} dataset has {len(classes)} classes')


def _key(test_cfg: dict, load_from: Optional[str], cfg: Any) -> str:
    """What a setup is made of, as canonical JSON (whether the loop may
    take the setup of the preflight)."""
    return json.dumps(_canonical(dict(
        data=[cfg.get(k) for k in ('test_dataloader', 'test_evaluator',
                                   'default_scope', 'model',
                                   'data_preprocessor')],
        test_cfg=dict({k: v for k, v in test_cfg.items()
                       if k not in LOOP_KEYS},
                      fp16=bool(test_cfg.get('fp16', False)),
                      checkpoint=test_cfg.get('checkpoint')),
        load_from=load_from,
        # a checkpoint rewritten at the same path is read again
        load_from_id=checkpoint_id(load_from)
        if load_from and osp.isfile(load_from) else None)),
        sort_keys=True, default=str)


class SweepSetup:
    """The settings, suite, checkpoints and baseline of one sweep.

    Args:
        test_cfg (dict): The loop's ``test_cfg`` (the settings, ``fp16``
            and ``checkpoint``; ``type`` ignored).
        cfg (Config | dict): ``test_dataloader``, ``test_evaluator``,
            ``default_scope``, ``model`` and ``data_preprocessor``.
        checkpoint (str, optional): The checkpoint evaluated (the config's
            ``load_from``, or ``test_cfg.checkpoint``); None for weights
            already in a built model.

    Raises:
        ConfigError: Bad settings (naming their ``test_cfg`` key), a
            checkpoint whose head rows disagree with
            ``model.head.num_classes``, a baseline with another class
            count.
        FileNotFoundError: A missing folder or file.
    """
    _prepared: Optional[tuple] = None

    def __init__(self, test_cfg: dict, cfg: Any,
                 checkpoint: Optional[str] = None) -> None:
        settings = {k: v for k, v in test_cfg.items() if k not in LOOP_KEYS}
        try:
            self.settings = RobustnessSettings(**settings)
        except TypeError as exc:
            raise ConfigError(f'test_cfg of RobustnessTestLoop: {exc}') \
                from exc
        self.settings.check()
        self.fp16 = bool(test_cfg.get('fp16', False))
        self.suite = Suite(self.settings, cfg, fp16=self.fp16)
        model = cfg.get('model')
        self.model_cfg = model if isinstance(model, dict) else None
        self.checkpoint = Checkpoint(checkpoint) if checkpoint else None
        base = self.settings.baseline_checkpoint
        self.baseline = Checkpoint(base, 'baseline checkpoint') \
            if base else None
        self.rows: Optional[int] = None
        if self.checkpoint is not None and self.model_cfg is not None:
            self.rows = self.checkpoint.check_num_classes(self.model_cfg)
            self._check_rows(self.rows)
            if self.baseline is not None:
                base_rows = self.baseline.check_num_classes(self.model_cfg)
                if base_rows != self.rows:
                    raise ConfigError(
                        f'the checkpoint has {self.rows} classes but the '
                        f'baseline checkpoint has {base_rows}')
        self.baseline_records: Optional[List[dict]] = None
        if self.settings.baseline_results:
            self.baseline_records = load_baseline_results(
                self.settings.baseline_results, self.suite,
                self.settings.metric_key)

    def _check_rows(self, rows: Optional[int]) -> None:
        if self.suite.name in ('imagenet-a', 'imagenet-r'):
            check_dataset_classes(rows, self.suite, None)

    def check_model(self, model: Any) -> Optional[int]:
        """Refuse checkpoints that do not fit the built model; the class
        count of the weights evaluated (the head rows of the checkpoint,
        else of the model)."""
        for ckpt in (self.checkpoint, self.baseline):
            if ckpt is not None:
                ckpt.check_fits(model, self.model_cfg or {})
        rows = self.rows
        if rows is None:
            rows = head_rows(getattr(model, 'module', model).state_dict())
            self._check_rows(rows)
        return rows

    # ------------------------------------------------ preflight -> loop ---
    @classmethod
    def prepare(cls, cfg: Any) -> 'SweepSetup':
        """Build the setup of a sweep config (its ``test_cfg``,
        ``load_from``, data and model) and keep it for the loop that the
        Runner builds from the same config."""
        test_cfg = dict(cfg.test_cfg)
        checkpoint = test_cfg.get('checkpoint') or cfg.get('load_from')
        setup = cls(test_cfg, cfg, checkpoint)
        cls._prepared = (_key(test_cfg, checkpoint, cfg), setup)
        return setup

    @classmethod
    def for_loop(cls, test_cfg: dict, cfg: Any,
                 checkpoint: Optional[str]) -> 'SweepSetup':
        """The setup the preflight prepared for this configuration (taken:
        it is given once), else a new one."""
        prepared, cls._prepared = cls._prepared, None
        key = _key(test_cfg, checkpoint, cfg)
        if prepared is not None and prepared[0] == key:
            return prepared[1]
        return cls(test_cfg, cfg, checkpoint)


def check_robustness_config(cfg: Any) -> SweepSetup:
    """Preflight of a sweep config, before the Runner is built.

    What :class:`mmgfn.engine.RobustnessTestLoop` would refuse once the
    Runner has started logging, checked here so that it takes one line:
    the settings (:meth:`RobustnessSettings.check`), the cells' folders
    (:class:`Suite`), the clean test set's files when a cell reads them,
    the ``baseline_results`` file and the checkpoints' (``load_from``,
    ``test_cfg.baseline_checkpoint``) class counts against
    ``model.head.num_classes`` (:class:`SweepSetup`, kept for the loop).

    Raises:
        ConfigError: Naming the key and the problem.
        FileNotFoundError: Naming the missing folder or file.
    """
    setup = SweepSetup.prepare(cfg)
    suite = setup.suite
    if suite.name == 'corrupt' or any(s == 0 for _, s in suite.cells):
        check_dataset_paths(cfg, ['test_dataloader'])
    return setup
