"""A test loop that runs a robustness sweep (ImageNet-C/-P/-A/-R, X-C).

The model is built and its checkpoint loaded once, by the Runner; the loop
then evaluates one *cell* after another, each through mmengine's
:class:`~mmengine.runner.TestLoop` with the cell's dataloader and evaluator
(:class:`mmgfn.evaluation.robustness_sweep.Suite`), appends each finished
cell to ``<work_dir>/cells.jsonl`` and finally writes the summary, the
tables and the plots. Use it from any classifier or detector config::

    _base_ = ['mmgfn::gfn_vit-b_in1k.py',
              'mmgfn::robustness/_base_/imagenet-c.py']
    test_cfg = _base_.robustness_test_cfg

and run ``tools/test.py CONFIG CHECKPOINT`` or ``tools/dist_test.sh CONFIG
CHECKPOINT N``; ``tools/test_robustness.py`` sets the same loop from its
flags, and :func:`mmgfn.apis.run_robustness_sweep` runs it on a built
model.

It is an mmengine test loop: hooks' ``before_test`` / ``after_test`` fire
once per sweep, ``before_test_epoch`` / ``after_test_epoch`` once per cell
(each cell is one test epoch, :attr:`RobustnessTestLoop.dataloader` its
dataloader) and ``before_test_iter`` / ``after_test_iter`` per batch.

Distributed runs evaluate each cell on all ranks (mmengine's sampler splits
the cell's images, the evaluator gathers the results), so every rank holds
the same cell metrics and summary; only rank 0 writes files.
"""
import copy
import hashlib
import json
import os
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           is_main_process)
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop, TestLoop
from mmengine.runner.loops import _parse_losses

from mmgfn.datasets.transforms.insertion import has_resize
from mmgfn.evaluation.functional import IncompleteResultsError
from mmgfn.evaluation.robustness_sweep import (SweepSetup, bad_input_message,
                                               cell_record, check_baseline,
                                               check_dataset_classes,
                                               derive_quantity,
                                               encode_outcomes,
                                               image_identity, read_cells,
                                               summarize, write_reports)
from mmgfn.evaluation.robustness_sweep.cells import check_backends
from mmgfn.registry import LOOPS
from mmgfn.utils.checkpoint import Checkpoint
from mmgfn.utils.errors import ConfigError
from mmgfn.visualization import plot_title, write_plots

#: Summary keys returned by :meth:`RobustnessTestLoop.run` (when present),
#: besides the detection ``P_*`` / ``mPC_*`` / ``rPC_*`` keys.
HEADLINE_KEYS = ('partial', 'mean_corruption_error', 'mCE_alexnet',
                 'relative_mCE_alexnet', 'mCE_vs_baseline',
                 'relative_mCE_vs_baseline', 'mean_FP', 'mean_T5D', 'mFR',
                 'mFR_alexnet', 'top1')


def weights_fingerprint(model: torch.nn.Module) -> str:
    """``'weights:<ModelClass>:<sha256>'``: the identity of weights held in
    memory (the state dict and the non-persistent buffers, e.g. a data
    preprocessor's mean and std), for the resume key of a sweep run on a
    built model without a checkpoint file."""
    model = getattr(model, 'module', model)
    digest = hashlib.sha256()
    state = dict(model.state_dict())
    # non-persistent buffers too (a data preprocessor's mean and std)
    state.update({f'buffer:{k}': v for k, v in model.named_buffers()
                  if k not in state})
    for key, value in state.items():
        digest.update(key.encode('utf-8'))
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(str(tensor.dtype).encode('utf-8'))
            digest.update(str(tuple(tensor.shape)).encode('utf-8'))
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes()
                          if tensor.numel() else b'')
    return f'weights:{type(model).__name__}:{digest.hexdigest()}'


class _OutcomeRecorder(Hook):
    """Keeps ``(sample_idx, identity, wrong)`` of every classified image
    of one cell (top-1 ``pred_label`` against ``gt_label``); detection
    samples (no ``gt_label``) are not kept."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.rows: List[tuple] = []

    def after_test_iter(self, runner, batch_idx: int,
                        data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or []:
            if 'gt_label' not in sample or 'pred_label' not in sample:
                continue
            label = int(sample.gt_label.reshape(-1)[0])
            meta = sample.metainfo
            index = int(meta.get('sample_idx', len(self.rows)))
            path = meta.get('img_path') or f'#{index}'
            self.rows.append((index, image_identity(path, label),
                              int(sample.pred_label.reshape(-1)[0]) != label))

    def outcomes(self, wrong: Optional[int]) -> Optional[dict]:
        """The cell's ``outcomes`` (every rank's images, in dataset
        order), or None when they do not reproduce the metric's ``wrong``
        count (e.g. a metric that is not the top-1 of ``pred_label``)."""
        rows = {r[0]: r for part in all_gather_object(self.rows)
                for r in part}  # a distributed sampler pads with repeats
        if not rows or wrong is None:
            return None
        ordered = [rows[i] for i in sorted(rows)]
        flags = np.array([r[2] for r in ordered], dtype=bool)
        if int(flags.sum()) != int(wrong):
            return None
        return encode_outcomes(flags, [r[1] for r in ordered])


@LOOPS.register_module()
class RobustnessTestLoop(BaseLoop):
    """Evaluate a model on every cell of a robustness suite.

    Built by the Runner from ``test_cfg = dict(type='mmgfn.
    RobustnessTestLoop', suite=..., ...)``; ``test_dataloader`` and
    ``test_evaluator`` are the clean test set and its metric, from which
    each cell's dataloader and evaluator are derived (corrupted on the fly
    or read from the suite's folders). Arguments other than the ones below
    are the fields of
    :class:`~mmgfn.evaluation.robustness_sweep.RobustnessSettings`
    (``suite``, ``corruptions``, ``severities``, ``data_root``,
    ``corrupted_root``, ``step``, ``alexnet_fp``, ``test_pipeline``,
    ``baseline_checkpoint``, ``baseline_results``, ``baseline_clean_error``,
    ``metric_key``, ``allow_partial``).

    Resuming: a cell whose key (:meth:`Suite.cell_key`) is in
    ``<work_dir>/cells.jsonl`` is not evaluated again; its quantity is read
    from the stored metrics. Checks before any cell (:class:`~mmgfn.
    evaluation.robustness_sweep.SweepSetup`, shared with the preflight of
    ``tools/test.py``): the checkpoint's head rows against
    ``model.head.num_classes``, every checkpoint tensor's shape against the
    built model, the data's class count. Each checkpoint file is read once:
    the loop loads the Runner's ``load_from`` itself, from the file it has
    read.

    Outputs in the work dir: ``cells.jsonl``, ``results.json``,
    ``results.csv``, ``results.md`` and PNG plots
    (:func:`mmgfn.evaluation.robustness_sweep.write_reports`). Every top-1
    classification cell of the ``corrupt`` and ``imagenet-c`` suites also
    keeps its per-image outcomes (``outcomes``, see
    :mod:`mmgfn.evaluation.robustness_sweep.outcomes`), for paired
    comparisons of two sweeps.

    Args:
        runner (Runner): The Runner.
        dataloader (dict): The ``test_dataloader`` config (not a built
            DataLoader: each cell builds its own).
        evaluator (dict | list): The ``test_evaluator`` config.
        fp16 (bool): Run the cells under autocast. Defaults to False.
        checkpoint (str, optional): The weights evaluated, for the resume
            key and the reports. Defaults to the Runner's ``load_from``;
            without either, the loaded weights' fingerprint
            (:func:`weights_fingerprint`).
        **settings: The sweep settings (see above).

    Returns (of :meth:`run`):
        dict: The headline numbers of the summary (:data:`HEADLINE_KEYS`
        and the detection ``P_*`` / ``mPC_*`` / ``rPC_*``); the whole
        results are in :attr:`results`.

    Raises:
        ConfigError: Settings or data that cannot give the sweep's numbers,
            in one line; a refused summary (cells missing without
            ``allow_partial``) after the reports are written.
    """

    def __init__(self,
                 runner,
                 dataloader: dict,
                 evaluator: Any,
                 fp16: bool = False,
                 checkpoint: Optional[str] = None,
                 **settings) -> None:
        if not isinstance(dataloader, dict):
            raise ConfigError(
                'RobustnessTestLoop derives each cell\'s dataloader from the '
                'test_dataloader config; give a dict, not a built '
                f'{type(dataloader).__name__}')
        # no dataloader of its own: each cell builds one (hooks read the
        # cell's from runner.test_loop.dataloader)
        super().__init__(runner, None)
        self.fp16 = bool(fp16)
        self.checkpoint = checkpoint or runner._load_from
        cfg = runner.cfg
        self.setup = SweepSetup.for_loop(
            dict(settings, fp16=self.fp16, checkpoint=checkpoint),
            dict(test_dataloader=dataloader,
                 test_evaluator=evaluator,
                 default_scope=cfg.get('default_scope'),
                 model=cfg.get('model'),
                 data_preprocessor=cfg.get('data_preprocessor')),
            self.checkpoint)
        self.settings, self.suite = self.setup.settings, self.setup.suite
        # the Runner would read load_from again: the loop loads it from the
        # checkpoint it has read (Runner.test builds the loop, then loads)
        self._loads_weights = (
            self.setup.checkpoint is not None and not checkpoint
            and not runner._has_loaded and not runner._resume)
        if self._loads_weights:
            runner._load_from = None
        self.evaluator = None
        self.results: Optional[dict] = None
        if self.suite.name in ('imagenet-p', 'imagenet-a', 'imagenet-r') \
                and not any(type(h).__name__ == 'KeepLogitsHook'
                            for h in runner.hooks):
            # FlipRate / SubsetAccuracy rank the logits, as the references
            runner.register_hook(dict(type='mmgfn.KeepLogitsHook'))

    # ---------------------------------------------------------------- run ---
    def run(self) -> dict:
        """Evaluate the unfinished cells, summarise and write the reports."""
        runner, settings, setup = self.runner, self.settings, self.setup
        checkpoint = self.checkpoint
        rows = setup.check_model(runner.model)
        if self._loads_weights:
            self._load(setup.checkpoint)
            runner.logger.info(f'Load checkpoint from {checkpoint}')
        checkpoint_key = osp.abspath(checkpoint) if checkpoint else \
            weights_fingerprint(runner.model)
        baseline_records = setup.baseline_records
        base = settings.baseline_checkpoint

        cells_file = osp.join(runner.work_dir, 'cells.jsonl')
        state = [read_cells(cells_file) if is_main_process() else None]
        broadcast_object_list(state)
        finished = {r['cell_key']: r for r in state[0] if r.get('cell_key')}
        check_backends(self.suite, state[0], cells_file)

        runner.call_hook('before_test')
        main = self._run_cells('main', checkpoint_key, rows, finished,
                               cells_file)
        if base:
            kept = None if checkpoint else {
                k: v.detach().clone()
                for k, v in runner.model.state_dict().items()
            }
            self._load(setup.baseline)
            try:
                baseline_records = self._run_cells(
                    'baseline', osp.abspath(base), rows, finished,
                    cells_file)
            finally:  # the model leaves the loop with its own weights
                if kept is not None:
                    getattr(runner.model, 'module',
                            runner.model).load_state_dict(kept)
                else:
                    self._load(setup.checkpoint)
        runner.call_hook('after_test')
        check_baseline(main, baseline_records, base or
                       settings.baseline_results)
        return self._report(main, baseline_records, rows, checkpoint_key,
                            cells_file)

    def _load(self, checkpoint: Checkpoint) -> None:
        """Load a checkpoint read before into the model, as the Runner's
        ``load_checkpoint`` does (``after_load_checkpoint`` hooks see a
        copy, so that they may edit it)."""
        raw = dict(checkpoint.raw)
        if isinstance(raw.get('state_dict'), dict):
            raw['state_dict'] = dict(raw['state_dict'])
        self.runner.call_hook('after_load_checkpoint', checkpoint=raw)
        Checkpoint.from_state_dict(raw.get('state_dict', raw)).load_into(
            self.runner.model)

    def _report(self, main: List[dict], baseline: Optional[List[dict]],
                rows: Optional[int], checkpoint: str,
                cells_file: str) -> dict:
        """Summarise, write the reports (rank 0) and return the headline."""
        suite = self.suite
        refusal, summary = None, None
        try:
            summary = summarize(suite, main, baseline, rows)
        except IncompleteResultsError as exc:
            refusal = (f'{exc}. The {len(main)} finished cells are kept '
                       f'in {cells_file} (allow_partial: '
                       'test_cfg.allow_partial)')
        except ValueError as exc:
            refusal = f'no summary: {exc}'
        config = self.runner.cfg.filename or type(
            getattr(self.runner.model, 'module', self.runner.model)).__name__
        work_dir = self.runner.work_dir if is_main_process() else None
        self.results = write_reports(
            work_dir, suite, main, baseline, summary, refusal,
            config=config, checkpoint=checkpoint)
        if work_dir is not None:
            plots = write_plots(work_dir, suite, main, baseline, summary,
                                plot_title(config, checkpoint, suite,
                                           summary))
            print(f'results written to {osp.join(work_dir, "results.json")}'
                  f' (+ results.csv, results.md, {len(plots)} plot(s))')
        if refusal:
            raise ConfigError(refusal)
        headline = {k: summary[k] for k in HEADLINE_KEYS if k in summary}
        headline.update({k: v for k, v in summary.items()
                         if k[:2] in ('P_', 'mP', 'rP')})
        return headline

    # -------------------------------------------------------------- cells ---
    def _run_cells(self, role: str, checkpoint: str, rows: Optional[int],
                   finished: Dict[str, dict], cells_file: str) -> List[dict]:
        """Evaluate the unfinished cells with the runner's current weights.

        A cell is finished when ``cells.jsonl`` holds a record with its
        :meth:`Suite.cell_key`; its quantity is read again from the stored
        metrics with the current ``metric_key``.
        """
        suite, metric_key = self.suite, self.settings.metric_key
        records, pending, keys = [], [], {}
        stale = {(r.get('role'), r.get('corruption'), r.get('severity'))
                 for r in finished.values()}
        for cell in suite.cells:
            keys[cell] = suite.cell_key(cell, role, checkpoint)
            if keys[cell] in finished:
                record = copy.deepcopy(finished[keys[cell]])
                records.append(
                    derive_quantity(record, metric_key, suite, cells_file))
            else:
                pending.append(cell)
        skipped = len(suite.cells) - len(pending)
        changed = sum((role, *cell) in stale for cell in pending)
        print_log(
            f'{role} model: skipping {skipped} finished cells, '
            f'{len(pending)} to evaluate' +
            (f' ({changed} of them finished before with another checkpoint '
             'or configuration)' if changed else ''), logger='current')
        if pending:
            from tqdm import tqdm
            bar = tqdm(total=len(pending), unit='cell',
                       disable=not is_main_process(), file=sys.stderr)
            try:
                for cell in pending:
                    bar.set_description(f'{role} {suite.cell_name(cell)}')
                    records.append(self._run_cell(
                        cell, role, checkpoint, rows, keys[cell],
                        cells_file))
                    bar.update(1)
            finally:
                bar.close()
        order = {cell: i for i, cell in enumerate(suite.cells)}
        records.sort(key=lambda r: order[(r['corruption'], r['severity'])])
        return records

    def _run_epoch(self, loop: TestLoop) -> dict:
        """One test epoch over a cell (``TestLoop.run`` without the
        ``before_test`` / ``after_test`` of the whole sweep)."""
        runner = self.runner
        runner.call_hook('before_test_epoch')
        runner.model.eval()
        loop.test_loss.clear()
        for idx, data_batch in enumerate(loop.dataloader):
            loop.run_iter(idx, data_batch)
        metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
        if loop.test_loss:
            metrics.update(_parse_losses(loop.test_loss, 'test'))
        runner.call_hook('after_test_epoch', metrics=metrics)
        return metrics

    def _run_cell(self, cell: Sequence, role: str, checkpoint: str,
                  rows: Optional[int], key: str, cells_file: str) -> dict:
        """Evaluate one cell, one test epoch of mmengine's TestLoop, and
        append its record to ``cells.jsonl`` at once."""
        suite, runner = self.suite, self.runner
        name = suite.cell_name(cell)
        loader, evaluator = suite.build(cell)
        if suite.name in ('imagenet-c', 'imagenet-p') and cell[1] != 0 \
                and not getattr(self, '_warned_resize', False) \
                and has_resize(loader['dataset'].get('pipeline', [])):
            print_log(
                f'the test pipeline resizes the {suite.name} images; the '
                'reference evaluation only center-crops them to 224 '
                '(test_cfg.test_pipeline=\'reference\')',
                logger='current', level=30)
            self._warned_resize = True
        try:
            loop = TestLoop(runner, loader, evaluator, fp16=self.fp16)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f'cell {name}: {exc}') from exc
        self.dataloader, self.evaluator = loop.dataloader, loop.evaluator
        check_dataset_classes(rows, suite, loop.dataloader.dataset)
        recorder = _OutcomeRecorder()
        runner.register_hook(recorder)
        try:
            metrics = self._run_epoch(loop)
        except Exception as exc:  # noqa: BLE001
            msg = bad_input_message(exc)
            if not msg:
                raise
            raise ConfigError(f'cell {name}: {msg}') from exc
        finally:
            runner.hooks.remove(recorder)
        record = cell_record(cell, metrics, self.settings.metric_key, role,
                             checkpoint, suite, len(loop.dataloader.dataset),
                             key)
        if record['quantity'] == 'error' and suite.name in ('corrupt',
                                                            'imagenet-c'):
            outcomes = recorder.outcomes(record.get('wrong'))
            if outcomes is not None:
                record['outcomes'] = outcomes
            else:
                print_log(f'cell {name}: the per-image outcomes do not '
                          f'reproduce {record["metric_key"]}; not kept',
                          logger='current', level=30)
        if is_main_process():
            with open(cells_file, 'a', encoding='utf-8') as f:
                f.write(json.dumps(record) + '\n')
                f.flush()
                os.fsync(f.fileno())
        print_log(
            f'cell {name} ({role}): {record["quantity"]} = '
            f'{record["value"]:.4f}', logger='current')
        return record
