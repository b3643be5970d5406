"""Robustness benchmark of a classifier or a detector.

One tool for mmpretrain classifiers and mmdet detectors. It builds the
Runner and the model once, loads the checkpoint once, and evaluates one
*cell* after another by swapping the test dataloader (and evaluator):

``--suite corrupt``
    The config's own test set, corrupted on the fly: ``mmgfn.
    ImageCorruption`` is inserted right after the pipeline's
    ``LoadImageFromFile`` (of any scope). With ``--corrupted-root DIR`` the
    images come instead from pre-generated folders laid out ``DIR/
    <corruption>/<severity>/<path relative to the original image
    prefix>``. Cells: ``--corruptions`` (default: the 15 benchmark ones) x
    ``--severities`` (default 0-5); severity 0 is the clean test set,
    evaluated once. Works for COCO-C style detection (any mmdet config
    whose evaluator reports ``coco/bbox_mAP``) as for classification.
``--suite imagenet-c``
    The released ImageNet-C folders ``<data-root>/<corruption>/<severity>/
    <wnid>/*`` (:class:`mmgfn.datasets.ImageNetC`, labels in ImageNet-1k
    order). Severities default to 1-5; add 0 to evaluate the config's own
    test set (ImageNet val) as the clean cell. Note that ImageNet-C images
    are already 224 x 224: the reference evaluation only center-crops them,
    so a test pipeline that resizes first (mmpretrain's ``ResizeEdge 256``)
    gives different numbers; a warning is logged.
``--suite imagenet-p``
    ``<data-root>/<perturbation>/<wnid>/*.mp4`` (:class:`mmgfn.datasets.
    ImageNetP`); cells are the perturbations (``--corruptions``, default the
    10 benchmark ones) at difficulty ``--step``. Reports the flip
    probability FP and top-5 distance T5D (:class:`mmgfn.evaluation.
    FlipRate`).
``--suite imagenet-a`` / ``--suite imagenet-r``
    ``<data-root>/<wnid>/*`` with the 200-logit mask of a 1000-way
    ImageNet-1k classifier (:class:`mmgfn.evaluation.SubsetAccuracy`).

If the config's test dataset already is the suite's dataset type
(``mmgfn.ImageNetC`` / ``ImageNetP`` / ``ImageNetA`` / ``ImageNetR``), its
arguments are kept and ``--data-root`` is optional.

What is reported (all numbers from :mod:`mmgfn.evaluation.functional`):

* Classification (metric ``accuracy/top1``): per cell the top-1 error
  ``1 - top1 / 100``; the unnormalised mean corruption error; for
  ``imagenet-c`` the AlexNet-normalised CE / mCE (with the relative mCE
  when the clean cell is evaluated and ``--baseline-clean-error`` gives
  AlexNet's clean error); with a baseline model (``--baseline-checkpoint``
  or ``--baseline-results``) the CE relative to it, ``sum_s err /
  sum_s err_baseline`` per corruption, their mean (``mCE``) and, when both
  clean cells exist, the clean-subtracted relative mCE. AlexNet
  normalisation is only applied to ``imagenet-c``, whose images the
  constants were measured on; on-the-fly corruptions of other data are
  normalised only by a baseline model.
* Detection (metric ``coco/bbox_mAP``, or another key ending in ``mAP``):
  P (clean), mPC and rPC = mPC / P.
* ImageNet-P: FP and T5D per perturbation, their means, and FR / mFR and
  mT5D against a baseline model's (or supplied) rates.
* ImageNet-A/R: top-1 accuracy and error.

mCE, mPC and mFR average the 15 benchmark corruptions x severities 1-5
(the 10 benchmark perturbations for mFR); held-out corruptions are
reported but never averaged in. If cells are missing (a subset was asked
for), the summary is refused unless ``--allow-partial``, which labels it
``partial`` and lists the covered cells. The finished cells are kept
either way.

Resuming: every finished cell is appended at once to
``<work_dir>/cells.jsonl``; a rerun skips the cells already there for the
same suite, checkpoint (path, size and modification time) and data
(``skipping N finished cells``).

Outputs in the work dir: ``cells.jsonl``, ``results.json`` (cells and
summary), ``results.csv`` (one row per cell and quantity), ``results.md``
(tables) and PNG plots (``error_vs_severity.png`` / ``map_vs_severity.png``
/ ``flip_probability.png``, and ``ce_vs_baseline.png`` with a baseline
model).

Example::

    python tools/test_robustness.py CONFIG CHECKPOINT --suite corrupt \\
        --corruptions fog snow --severities 0 1 3 5 --allow-partial \\
        --baseline-checkpoint PRETRAINED.pth --work-dir work_dirs/robust
"""
import argparse
import copy
import csv
import datetime
import json
import os
import os.path as osp
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from mmengine.config import Config
from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.apis.inference import insert_corruption, transform_name
from mmgfn.datasets.transforms.corruption import (ALL_CORRUPTIONS,
                                                  BENCHMARK_CORRUPTIONS)
from mmgfn.evaluation.functional import (IMAGENET_P_PERTURBATIONS,
                                         SEVERITIES, IncompleteResultsError,
                                         summarize_corruption_errors,
                                         summarize_detection_robustness,
                                         summarize_flip_rates)
from mmgfn.utils.cli import (add_common_args, build_runner, load_config,
                             parse_tool_args, run_cli, set_work_dir,
                             setup_cpu_distributed)
from mmgfn.utils.preflight import (ConfigError, check_dataset_paths,
                                   check_file)

SUITES = ('corrupt', 'imagenet-c', 'imagenet-p', 'imagenet-a', 'imagenet-r')
SUITE_DATASETS = {
    'imagenet-c': 'ImageNetC',
    'imagenet-p': 'ImageNetP',
    'imagenet-a': 'ImageNetA',
    'imagenet-r': 'ImageNetR'
}
CLEAN = 'clean'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Robustness benchmark (ImageNet-C/-P/-A/-R, X-C) of a '
        'classifier or detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--suite', required=True, choices=SUITES)
    parser.add_argument(
        '--corruptions',
        nargs='+',
        help='corruptions (imagenet-p: perturbations) to evaluate; default: '
        'the 15 benchmark corruptions (imagenet-p: the 10 benchmark '
        'perturbations)')
    parser.add_argument(
        '--severities',
        nargs='+',
        type=int,
        help='severities; 0 is the clean test set (default: 0-5 for '
        'corrupt, 1-5 for imagenet-c)')
    parser.add_argument(
        '--data-root',
        help='root of ImageNet-C/-P/-A/-R for the imagenet-* suites')
    parser.add_argument(
        '--corrupted-root',
        help='corrupt suite: read pre-generated images from '
        'DIR/<corruption>/<severity>/<relative path> instead of corrupting '
        'on the fly')
    parser.add_argument(
        '--step',
        type=int,
        default=1,
        help='imagenet-p: frame stride of the difficulty level (1 for the '
        'benchmark; noise perturbations use folders like gaussian_noise_2)')
    parser.add_argument('--work-dir', help='where cells and results go')
    baseline = parser.add_mutually_exclusive_group()
    baseline.add_argument(
        '--baseline-checkpoint',
        help='a second checkpoint of the same config, evaluated on the same '
        'cells; CE / FR are reported relative to it')
    baseline.add_argument(
        '--baseline-results',
        help='results.json of an earlier run of this tool (or a JSON with '
        'the same "cells" list) used as the baseline')
    parser.add_argument(
        '--baseline-clean-error',
        type=float,
        help='imagenet-c: AlexNet\'s clean top-1 error in [0, 1] for the '
        'relative mCE (no public code ships it)')
    parser.add_argument(
        '--metric-key',
        help='metric to read per cell (default: accuracy/top1, else '
        'coco/bbox_mAP, else the first key ending in mAP)')
    parser.add_argument(
        '--allow-partial',
        action='store_true',
        help='summarise the covered cells when some are missing (labelled '
        'partial) instead of refusing')
    add_common_args(parser)
    return parse_tool_args(parser)


# --------------------------------------------------------------- config ---
def _pipeline_datasets(dataset: dict) -> List[dict]:
    """The dataset dicts (through wrappers) that hold a ``pipeline``."""
    if 'pipeline' in dataset:
        return [dataset]
    found = []
    if isinstance(dataset.get('dataset'), dict):
        found += _pipeline_datasets(dataset['dataset'])
    for ds in dataset.get('datasets', None) or []:
        if isinstance(ds, dict):
            found += _pipeline_datasets(ds)
    return found


def _insert_corruption(dataset: dict, corruption: str,
                       severity: int) -> None:
    """Insert ImageCorruption after each ``*LoadImageFromFile`` step."""
    targets = _pipeline_datasets(dataset)
    if not targets:
        raise ConfigError('the test dataset has no pipeline to corrupt '
                          '(test_dataloader.dataset.pipeline)')
    for ds in targets:
        ds['pipeline'] = insert_corruption(ds['pipeline'], corruption,
                                           severity)


def _point_to_corrupted(dataset: dict, root: str, corruption: str,
                        severity: int) -> None:
    """Point the image prefix at ``root/<corruption>/<severity>``."""
    folder = osp.abspath(osp.join(root, corruption, str(severity)))
    if not osp.isdir(osp.join(root, corruption)):
        raise FileNotFoundError(
            f'corruption "{corruption}" is missing from --corrupted-root: '
            f'"{osp.join(root, corruption)}" does not exist')
    if not osp.isdir(folder):
        raise FileNotFoundError(
            f'severity {severity} of corruption "{corruption}" is missing '
            f'from --corrupted-root: "{folder}" does not exist')
    for ds in _pipeline_datasets(dataset):
        prefix = ds.get('data_prefix', '')
        if isinstance(prefix, str):
            ds['data_prefix'] = folder
            continue
        keys = [k for k in ('img_path', 'img') if k in prefix]
        if not keys:
            raise ConfigError(
                'cannot find the image prefix of the test dataset '
                f'(data_prefix={dict(prefix)}); expected a string or a dict '
                'with "img_path" or "img"')
        prefix = dict(prefix)
        prefix[keys[0]] = folder
        ds['data_prefix'] = prefix


def _has_resize(pipeline: list) -> bool:
    return any('Resize' in transform_name(t) for t in pipeline)


class Suite:
    """The cells of a suite and the dataloader / evaluator of each.

    A cell is ``(corruption, severity)``: severity is an int for corrupt /
    imagenet-c (0 = clean, named ``'clean'``), None for imagenet-p (the
    corruption is the perturbation) and imagenet-a/-r (the corruption is
    the suite name).
    """

    def __init__(self, args: argparse.Namespace, cfg: Config) -> None:
        self.args = args
        self.name = args.suite
        self.loader = copy.deepcopy(cfg.test_dataloader)
        self.evaluator = copy.deepcopy(cfg.test_evaluator)
        self.dataset = self.loader['dataset']
        self.cells = self._cells()
        self.data_source = self._data_source()
        self.native = transform_name(self.dataset) == SUITE_DATASETS.get(
            self.name)
        if self.name != 'corrupt' and not self.native and not args.data_root:
            raise ConfigError(
                f'--suite {self.name} needs --data-root (the '
                f'{self.name} folder) unless the config\'s test dataset is '
                f'mmgfn.{SUITE_DATASETS[self.name]}')
        self._check_cell_folders()

    def _check_cell_folders(self) -> None:
        """Fail before any evaluation if a cell's folder is missing."""
        if self.name == 'corrupt':
            root = self.args.corrupted_root
        else:
            root = self.args.data_root or self.dataset.get('data_root')
        if not root or self.name in ('imagenet-a', 'imagenet-r'):
            return
        what = {'corrupt': '--corrupted-root', 'imagenet-p': 'ImageNet-P',
                'imagenet-c': 'ImageNet-C'}[self.name]
        for corruption, severity in self.cells:
            if severity == 0:
                continue
            if not osp.isdir(osp.join(root, corruption)):
                kind = ('perturbation' if self.name == 'imagenet-p' else
                        'corruption')
                raise FileNotFoundError(
                    f'{kind} "{corruption}" is missing from {what}: '
                    f'"{osp.join(root, corruption)}" does not exist')
            if severity is not None and not osp.isdir(
                    osp.join(root, corruption, str(severity))):
                raise FileNotFoundError(
                    f'severity {severity} of corruption "{corruption}" is '
                    f'missing from {what}: "'
                    f'{osp.join(root, corruption, str(severity))}" does not '
                    'exist')

    def _cells(self) -> List[Tuple[str, Optional[int]]]:
        args = self.args
        if self.name in ('imagenet-a', 'imagenet-r'):
            if args.corruptions or args.severities:
                raise ConfigError(f'--corruptions/--severities do not apply '
                                  f'to --suite {self.name}')
            return [(self.name, None)]
        if self.name == 'imagenet-p':
            if args.severities:
                raise ConfigError('--severities does not apply to --suite '
                                  'imagenet-p (use --step for difficulty)')
            names = args.corruptions or list(IMAGENET_P_PERTURBATIONS)
            return [(p, None) for p in dict.fromkeys(names)]
        names = list(dict.fromkeys(args.corruptions or BENCHMARK_CORRUPTIONS))
        if self.name == 'corrupt' and not args.corrupted_root:
            unknown = [c for c in names if c not in ALL_CORRUPTIONS]
            if unknown:
                raise ConfigError(
                    f'unknown corruption(s) {", ".join(unknown)}; expected '
                    f'some of {", ".join(ALL_CORRUPTIONS)}')
        default = [0, *SEVERITIES] if self.name == 'corrupt' else list(
            SEVERITIES)
        severities = sorted(set(args.severities or default))
        bad = [s for s in severities if not 0 <= s <= 5]
        if bad:
            raise ConfigError(f'severities must be in 0-5, got {bad}')
        if 0 in severities and self.name == 'imagenet-c' and transform_name(
                self.dataset) == 'ImageNetC':
            raise ConfigError(
                'severity 0 (clean) evaluates the config\'s own test set, '
                'but it is mmgfn.ImageNetC; use a config whose test set is '
                'the clean data with --data-root, or drop severity 0')
        cells = [(CLEAN, 0)] if 0 in severities else []
        cells += [(c, s) for c in names for s in severities if s > 0]
        return cells

    def _data_source(self) -> str:
        args = self.args
        if self.name == 'corrupt':
            if args.corrupted_root:
                return 'pre-generated:' + osp.abspath(args.corrupted_root)
            inner = (_pipeline_datasets(self.dataset) or [self.dataset])[0]
            prefix = inner.get('data_prefix', '')
            if not isinstance(prefix, str):
                prefix = ','.join(f'{k}={v}' for k, v in sorted(
                    dict(prefix).items()))
            return (f'on-the-fly:{osp.abspath(inner.get("data_root") or ".")}'
                    f'|{prefix}|{inner.get("ann_file", "")}')
        source = osp.abspath(args.data_root) if args.data_root else (
            'config:' + str(self.dataset.get('data_root', '')))
        if self.name == 'imagenet-p':
            source += f'|step={args.step}'
        return source

    @staticmethod
    def cell_name(cell: Tuple[str, Optional[int]]) -> str:
        return cell[0] if cell[1] in (None, 0) else f'{cell[0]}/{cell[1]}'

    def _suite_dataset(self, **fields) -> dict:
        """The suite's dataset dict for one cell."""
        if self.native:
            dataset = copy.deepcopy(self.dataset)
            if self.args.data_root:
                dataset['data_root'] = self.args.data_root
        else:
            dataset = dict(
                type=f'mmgfn.{SUITE_DATASETS[self.name]}',
                data_root=self.args.data_root,
                pipeline=copy.deepcopy(self.dataset.get('pipeline', [])),
                test_mode=True)
        dataset.update(fields)
        return dataset

    def build(self, cell: Tuple[str, Optional[int]]) -> Tuple[dict, object]:
        """Dataloader and evaluator configs of one cell."""
        loader = copy.deepcopy(self.loader)
        evaluator = copy.deepcopy(self.evaluator)
        corruption, severity = cell
        if self.name == 'corrupt':
            if severity:
                if self.args.corrupted_root:
                    _point_to_corrupted(loader['dataset'],
                                        self.args.corrupted_root, corruption,
                                        severity)
                else:
                    _insert_corruption(loader['dataset'], corruption,
                                       severity)
        elif self.name == 'imagenet-c':
            if severity:
                loader['dataset'] = self._suite_dataset(
                    corruption=corruption, severity=severity)
        elif self.name == 'imagenet-p':
            dataset = self._suite_dataset(
                perturbation=corruption, step=self.args.step)
            if not self.native:
                dataset['classes'] = None  # flip metrics do not use labels
            loader['dataset'] = dataset
            evaluator = dict(type='mmgfn.FlipRate')
        else:
            loader['dataset'] = self._suite_dataset()
            evaluator = dict(type='mmgfn.SubsetAccuracy', indices=self.name)
        return loader, evaluator


# ----------------------------------------------------------- checkpoint ---
def checkpoint_num_classes(path: str) -> Optional[int]:
    """Rows of the last 2-D ``head.*weight`` of a checkpoint (None if the
    model has no such classification head, e.g. a detector)."""
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    rows = None
    for key, value in state.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith('head.') and key.endswith('weight') and getattr(
                value, 'ndim', 0) == 2:
            rows = int(value.shape[0])
    return rows


def check_num_classes(path: str, cfg: Config, what: str) -> Optional[int]:
    """Refuse a checkpoint whose head disagrees with the config's."""
    rows = checkpoint_num_classes(path)
    head = cfg.model.get('head') if isinstance(cfg.model, dict) else None
    expected = head.get('num_classes') if isinstance(head, dict) else None
    if rows is not None and expected is not None and rows != expected:
        raise ConfigError(
            f'the {what} "{path}" has {rows} classes (rows of its head '
            f'weight) but the config\'s model.head.num_classes is {expected}')
    return rows


def check_dataset_classes(rows: Optional[int], suite: Suite,
                          dataset) -> None:
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


# ---------------------------------------------------------------- cells ---
def _bad_input_message(exc: BaseException) -> str:
    """One-line explanation of a data problem met while evaluating."""
    text = str(exc)
    match = re.search(r'failed to load image: (\S+)', text)
    if match:
        return f'unreadable image "{match.group(1)}"'
    match = re.search(r'unreadable video "[^"]*"[^\n]*', text)
    if match:
        return match.group(0)
    match = re.search(r'image \S+ is \d+x\d+ pixels; corruptions need[^\n]*',
                      text)
    if match:
        return match.group(0)
    return ''


def read_cells(path: str) -> List[dict]:
    """Records of ``cells.jsonl`` (a torn last line is ignored)."""
    if not osp.isfile(path):
        return []
    records = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def checkpoint_id(path: str) -> str:
    """Size and modification time of a checkpoint: a checkpoint rewritten
    at the same path (retrained) does not reuse the old cells."""
    st = os.stat(path)
    return f'{st.st_size}-{st.st_mtime_ns}'


def _record_key(record: dict) -> tuple:
    return (record['role'], record['suite'], record['checkpoint'],
            record.get('checkpoint_id'), record['data'],
            record['corruption'], record['severity'])


def _pick_metric(metrics: dict, metric_key: Optional[str],
                 suite: Suite) -> str:
    if suite.name == 'imagenet-p':
        return 'imagenet_p/mean_FP'
    if metric_key:
        if metric_key not in metrics:
            raise ConfigError(f'--metric-key {metric_key} is not among the '
                              f'metrics: {", ".join(metrics)}')
        return metric_key
    for key in ('accuracy/top1', 'coco/bbox_mAP'):
        if key in metrics:
            return key
    for key in metrics:
        if key.endswith('mAP'):
            return key
    raise ConfigError('no accuracy/top1 or *mAP metric among '
                      f'{", ".join(metrics)}; pass --metric-key')


def _is_classification(metric_key: str) -> bool:
    return 'accuracy' in metric_key or metric_key.endswith('top1')


def cell_record(cell: Tuple[str, Optional[int]], metrics: dict,
                metric_key: str, role: str, checkpoint: str, suite: Suite,
                num_samples: int) -> dict:
    """The JSON record of one finished cell."""
    corruption, severity = cell
    metrics = {
        k: float(v) if hasattr(v, '__float__') else v
        for k, v in metrics.items()
    }
    record = dict(
        role=role,
        suite=suite.name,
        checkpoint=checkpoint,
        checkpoint_id=checkpoint_id(checkpoint),
        data=suite.data_source,
        corruption=corruption,
        severity=severity,
        metric_key=metric_key,
        metrics=metrics,
        num_samples=num_samples,
        finished_at=datetime.datetime.now().isoformat(timespec='seconds'))
    if suite.name == 'imagenet-p':
        record['quantity'] = 'FP'
        record['value'] = metrics[f'imagenet_p/FP_{corruption}']
        record['T5D'] = metrics[f'imagenet_p/T5D_{corruption}']
    elif _is_classification(metric_key):
        record['quantity'] = 'error'
        record['value'] = 1.0 - metrics[metric_key] / 100.0
    else:
        record['quantity'] = 'mAP'
        record['value'] = metrics[metric_key]
    return record


def run_cells(runner: Runner, suite: Suite, role: str, checkpoint: str,
              rows: Optional[int], finished: Dict[tuple, dict],
              cells_file: str, args: argparse.Namespace,
              test_cfg: dict) -> List[dict]:
    """Evaluate the unfinished cells with the runner's current weights."""
    records, pending = [], []
    for cell in suite.cells:
        key = (role, suite.name, checkpoint, checkpoint_id(checkpoint),
               suite.data_source, *cell)
        if key in finished:
            records.append(finished[key])
        else:
            pending.append(cell)
    skipped = len(suite.cells) - len(pending)
    print_log(
        f'{role} model: skipping {skipped} finished cells, '
        f'{len(pending)} to evaluate', logger='current')
    if not pending:
        return records
    from tqdm import tqdm
    bar = tqdm(
        total=len(pending),
        unit='cell',
        disable=not is_main_process(),
        file=sys.stderr)
    try:
        _evaluate_pending(runner, suite, role, checkpoint, rows, pending,
                          records, cells_file, args, test_cfg, bar)
    finally:
        bar.close()
    order = {cell: i for i, cell in enumerate(suite.cells)}
    records.sort(key=lambda r: order[(r['corruption'], r['severity'])])
    return records


def _evaluate_pending(runner: Runner, suite: Suite, role: str, checkpoint: str,
                      rows: Optional[int], pending: list, records: list,
                      cells_file: str, args: argparse.Namespace,
                      test_cfg: dict, bar: Any) -> None:
    """Evaluate ``pending`` cells, appending each record at once."""
    warned = False
    for cell in pending:
        name = suite.cell_name(cell)
        bar.set_description(f'{role} {name}')
        loader, evaluator = suite.build(cell)
        if suite.name in ('imagenet-c', 'imagenet-p') and cell[1] != 0 \
                and not warned and _has_resize(
                    loader['dataset'].get('pipeline', [])):
            print_log(
                f'the test pipeline resizes the {suite.name} images; the '
                'reference evaluation only center-crops them to 224',
                logger='current', level=30)
            warned = True
        try:
            runner._test_dataloader = loader
            runner._test_evaluator = evaluator
            runner._test_loop = runner.build_test_loop(copy.deepcopy(test_cfg))
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f'cell {name}: {exc}') from exc
        check_dataset_classes(rows, suite, runner.test_loop.dataloader.dataset)
        try:
            metrics = runner.test_loop.run()
        except Exception as exc:  # noqa: BLE001
            msg = _bad_input_message(exc)
            if not msg:
                raise
            raise ConfigError(f'cell {name}: {msg}') from exc
        metric_key = _pick_metric(metrics, args.metric_key, suite)
        record = cell_record(cell, metrics, metric_key, role, checkpoint,
                             suite, len(runner.test_loop.dataloader.dataset))
        if is_main_process():
            with open(cells_file, 'a', encoding='utf-8') as f:
                f.write(json.dumps(record) + '\n')
                f.flush()
                os.fsync(f.fileno())
        print_log(
            f'cell {name} ({role}): {record["quantity"]} = '
            f'{record["value"]:.4f}', logger='current')
        records.append(record)
        bar.update(1)


# -------------------------------------------------------------- summary ---
def _values(records: List[dict]) -> Dict[tuple, float]:
    return {(r['corruption'], r['severity']): float(r['value'])
            for r in records}


def load_baseline_results(path: str, suite: Suite) -> List[dict]:
    """Baseline cells from an earlier ``results.json`` (main model)."""
    check_file(path, 'baseline results')
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    cells = data.get('cells') if isinstance(data, dict) else None
    if not isinstance(cells, list) or not cells:
        raise ConfigError(f'--baseline-results "{path}" has no "cells" list')
    if data.get('suite', suite.name) != suite.name:
        raise ConfigError(f'--baseline-results "{path}" is a '
                          f'{data["suite"]} run, not {suite.name}')
    records = []
    for cell in cells:
        try:
            records.append(
                dict(
                    corruption=cell['corruption'],
                    severity=cell.get('severity'),
                    value=float(cell['value']),
                    T5D=cell.get('T5D')))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f'--baseline-results "{path}": a cell lacks corruption / '
                f'value ({exc})') from exc
    return records


def _with_relative_fallback(fn: Callable[..., dict], notes: List[str],
                            **kwargs) -> dict:
    """Call a summary function; if only its relative CE fails (e.g. a
    baseline not hurt by a corruption), retry without it and keep a note."""
    try:
        return fn(**kwargs)
    except IncompleteResultsError:
        raise
    except ValueError as exc:
        if kwargs.get('clean_error') is None:
            raise
        notes.append(f'relative CE not computed: {exc}')
        kwargs = dict(kwargs, clean_error=None, baseline_clean_error=None)
        return fn(**kwargs)


def summarize(suite: Suite, main: List[dict], baseline: Optional[List[dict]],
              args: argparse.Namespace,
              num_classes: Optional[int] = None) -> dict:
    """The suite's summary (raises IncompleteResultsError when refused).

    ``num_classes`` (rows of the checkpoint's head) gates the AlexNet
    normalisation to ImageNet-1k classifiers.
    """
    notes: List[str] = []
    partial = args.allow_partial
    if suite.name in ('imagenet-a', 'imagenet-r'):
        error = main[0]['value']
        out = dict(top1=100.0 * (1.0 - error), error=error, notes=notes)
        if baseline:
            out['baseline_error'] = baseline[0]['value']
        return out
    if suite.name == 'imagenet-p':
        fp = {r['corruption']: r['value'] for r in main}
        t5d = {r['corruption']: r['T5D'] for r in main}
        base_fp = base_t5d = None
        if baseline:
            base_fp = {r['corruption']: r['value'] for r in baseline}
            if all(r.get('T5D') is not None for r in baseline):
                base_t5d = {r['corruption']: r['T5D'] for r in baseline}
        else:
            notes.append('mFR needs baseline flip probabilities '
                         '(--baseline-checkpoint / --baseline-results); '
                         'raw FP and T5D are reported')
        out = summarize_flip_rates(
            fp, t5d, base_fp, base_t5d, allow_partial=partial)
        out['notes'] = notes
        return out
    cells = _values(main)
    base_cells = _values(baseline) if baseline else None
    metric_key = main[0]['metric_key']
    benchmark = [c for c, s in suite.cells if c in BENCHMARK_CORRUPTIONS]
    holdout = list(dict.fromkeys(
        c for c, s in suite.cells if c not in BENCHMARK_CORRUPTIONS
        and c != CLEAN))
    if not _is_classification(metric_key):
        out = dict(task='detection', metric_key=metric_key, notes=notes)
        out.update(summarize_detection_robustness(
            cells, allow_partial=partial))
        if base_cells is not None:
            out['baseline_model'] = summarize_detection_robustness(
                base_cells, allow_partial=partial)
        return out
    clean = cells.get((CLEAN, 0))
    base_clean = base_cells.get((CLEAN, 0)) if base_cells else None
    out = dict(task='classification', metric_key=metric_key,
               clean_error=clean, notes=notes)
    if not benchmark:
        raise IncompleteResultsError(
            'mCE averages the 15 benchmark corruptions and none was '
            'evaluated', [])
    out['corruption_errors'] = summarize_corruption_errors(
        cells, baseline=None, allow_partial=partial)
    out['alexnet'] = None
    if suite.name == 'imagenet-c' and num_classes not in (None, 1000):
        notes.append(f'no AlexNet normalisation: it applies to ImageNet-1k '
                     f'classifiers and this one has {num_classes} classes')
    elif suite.name == 'imagenet-c':
        out['alexnet'] = _with_relative_fallback(
            summarize_corruption_errors, notes,
            cell_errors=cells,
            clean_error=clean if args.baseline_clean_error is not None
            else None,
            baseline='alexnet',
            baseline_clean_error=args.baseline_clean_error,
            allow_partial=partial)
        if clean is not None and args.baseline_clean_error is None:
            notes.append('relative mCE needs AlexNet\'s clean error: pass '
                         '--baseline-clean-error')
    out['baseline_model'] = None
    if base_cells is not None:
        both = clean is not None and base_clean is not None
        out['baseline_model'] = _with_relative_fallback(
            summarize_corruption_errors, notes,
            cell_errors=cells,
            clean_error=clean if both else None,
            baseline=base_cells,
            baseline_clean_error=base_clean if both else None,
            allow_partial=partial)
    out['holdout'] = summarize_corruption_errors(
        cells, baseline=base_cells, corruptions=holdout,
        allow_partial=True) if holdout else None
    head = out['alexnet'] or out['baseline_model']
    base = out['corruption_errors']
    out.update(
        partial=base['partial'],
        num_corruptions=base['num_corruptions'],
        num_cells=base['num_cells'],
        mean_corruption_error=base['mean_corruption_error'],
        mCE=head['mCE'] if head else None,
        mCE_normalized_by=None if head is None else
        ('alexnet' if head is out['alexnet'] else 'baseline model'),
        relative_mCE=head['relative_mCE'] if head else None)
    if head is None:
        notes.append('no mCE: AlexNet normalisation applies only to '
                     'imagenet-c; pass --baseline-checkpoint or '
                     '--baseline-results for a CE relative to a model')
    return out


# -------------------------------------------------------------- outputs ---
def _fmt(value: Optional[float], digits: int = 4) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def write_csv(path: str, main: List[dict],
              baseline: Optional[List[dict]]) -> None:
    """``results.csv``: one row per cell and quantity (long format)."""
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(['model', 'corruption', 'severity', 'quantity',
                         'value'])
        for role, records in (('main', main), ('baseline', baseline or [])):
            for r in records:
                sev = '' if r['severity'] is None else r['severity']
                writer.writerow([role, r['corruption'], sev, r['quantity'],
                                 repr(float(r['value']))])
                if r.get('T5D') is not None:
                    writer.writerow([role, r['corruption'], sev, 'T5D',
                                     repr(float(r['T5D']))])


def _grid_table(suite: Suite, main: List[dict],
                baseline: Optional[List[dict]], summary: dict) -> List[str]:
    """Markdown table: corruptions x severities, mean and CE columns."""
    cells = _values(main)
    base = _values(baseline) if baseline else {}
    severities = sorted({s for _, s in suite.cells if s})
    names = list(dict.fromkeys(c for c, s in suite.cells if c != CLEAN))
    quantity = main[0]['quantity']
    ce = (summary.get('baseline_model') or {}).get('ce') or {}
    alex = (summary.get('alexnet') or {}).get('ce') or {}
    holdout_ce = (summary.get('holdout') or {}).get('ce') or {}
    with_clean = (CLEAN, 0) in cells
    head = ['corruption'] + (['s0'] if with_clean else []) + [
        f's{s}' for s in severities] + ['mean']
    if alex:
        head.append('CE (AlexNet)')
    if ce or holdout_ce:
        head.append('CE (baseline)')
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    if with_clean:
        row = [CLEAN, _fmt(cells[(CLEAN, 0)])] + [''] * (len(head) - 2)
        lines.append('| ' + ' | '.join(row) + ' |')
    for c in names:
        values = [cells.get((c, s)) for s in severities]
        present = [v for v in values if v is not None]
        row = [c] + ([''] if with_clean else []) + [_fmt(v) for v in values]
        row.append(_fmt(float(np.mean(present)) if present else None))
        if alex:
            row.append(_fmt(alex.get(c)))
        if ce or holdout_ce:
            row.append(_fmt(ce.get(c, holdout_ce.get(c))))
        lines.append('| ' + ' | '.join(row) + ' |')
    lines.append('')
    lines.append((f'Cells hold the top-1 {quantity} in [0, 1]'
                  if quantity == 'error' else f'Cells hold the {quantity}')
                 + ('; s0 is the clean test set.' if with_clean else '.'))
    if base:
        lines.append(f'Baseline cells: {len(base)}.')
    return lines


def write_markdown(path: str, suite: Suite, args: argparse.Namespace,
                   main: List[dict], baseline: Optional[List[dict]],
                   summary: Optional[dict], refusal: Optional[str]) -> None:
    lines = [f'# Robustness: {suite.name}', '',
             f'- config: `{args.config}`',
             f'- checkpoint: `{args.checkpoint}`']
    if args.baseline_checkpoint or args.baseline_results:
        lines.append('- baseline: `'
                     f'{args.baseline_checkpoint or args.baseline_results}`')
    lines.append(f'- data: `{suite.data_source}`')
    lines.append('')
    if suite.name == 'imagenet-p':
        lines += ['| perturbation | FP | T5D | FR |', '|---|---|---|---|']
        fr = (summary or {}).get('FR') or {}
        for r in main:
            lines.append(f'| {r["corruption"]} | {_fmt(r["value"])} | '
                         f'{_fmt(r["T5D"])} | {_fmt(fr.get(r["corruption"]))}'
                         ' |')
    elif suite.name in ('imagenet-a', 'imagenet-r'):
        lines += ['| dataset | top-1 (%) | error |', '|---|---|---|',
                  f'| {suite.name} | {_fmt(100 * (1 - main[0]["value"]), 2)}'
                  f' | {_fmt(main[0]["value"])} |']
    else:
        lines += _grid_table(suite, main, baseline, summary or {})
    lines += ['', '## Summary', '']
    if refusal:
        lines.append(f'Refused: {refusal}')
    elif summary is not None:
        keys = ('partial', 'num_corruptions', 'num_cells', 'clean_error',
                'mean_corruption_error', 'mCE', 'mCE_normalized_by',
                'relative_mCE', 'P', 'mPC', 'rPC', 'num_perturbations',
                'mean_FP', 'mean_T5D', 'mFR', 'mT5D', 'top1', 'error')
        for key in keys:
            if key in summary:
                value = summary[key]
                if isinstance(value, float):
                    value = _fmt(value)
                lines.append(f'- {key}: {value}')
        if summary.get('partial'):
            covered = summary.get('covered_cells') or summary.get(
                'corruption_errors', {}).get('covered_cells') or summary.get(
                    'perturbations')
            lines.append(f'- covered: {covered}')
        for note in summary.get('notes', []):
            lines.append(f'- note: {note}')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


def write_plots(work_dir: str, suite: Suite, main: List[dict],
                baseline: Optional[List[dict]],
                summary: Optional[dict]) -> List[str]:
    """PNG plots (matplotlib, Agg backend); returns the written paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    written = []
    if suite.name in ('imagenet-a', 'imagenet-r'):
        return written
    if suite.name == 'imagenet-p':
        names = [r['corruption'] for r in main]
        x = np.arange(len(names))
        fig, ax = plt.subplots(figsize=(max(4, len(names)), 3.5))
        width = 0.4 if baseline else 0.8
        ax.bar(x, [r['value'] for r in main], width, label='model')
        if baseline:
            base = {r['corruption']: r['value'] for r in baseline}
            ax.bar(x + width, [base.get(n, np.nan) for n in names], width,
                   label='baseline')
            ax.legend()
        ax.set_xticks(x + (width / 2 if baseline else 0))
        ax.set_xticklabels(names, rotation=45, ha='right')
        ax.set_ylabel('flip probability')
        fig.tight_layout()
        path = osp.join(work_dir, 'flip_probability.png')
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return [path]
    cells = _values(main)
    base = _values(baseline) if baseline else {}
    quantity = main[0]['quantity']
    names = list(dict.fromkeys(c for c, s in suite.cells if c != CLEAN))
    severities = sorted({s for _, s in suite.cells if s})
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, c in enumerate(names):
        xs = ([0] if (CLEAN, 0) in cells else []) + severities
        ys = ([cells[(CLEAN, 0)]] if (CLEAN, 0) in cells else []) + [
            cells.get((c, s), np.nan) for s in severities]
        line, = ax.plot(xs, ys, marker='o', label=c)
        if base:
            bys = ([base.get((CLEAN, 0), np.nan)] if (CLEAN, 0) in cells
                   else []) + [base.get((c, s), np.nan) for s in severities]
            ax.plot(xs, bys, linestyle='--', color=line.get_color())
    ax.set_xlabel('severity (0 = clean)')
    ax.set_ylabel(f'top-1 {quantity}' if quantity == 'error' else quantity)
    ax.set_title(suite.name + (' (dashed: baseline)' if base else ''))
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = osp.join(work_dir, 'error_vs_severity.png' if quantity == 'error'
                    else 'map_vs_severity.png')
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    ce = ((summary or {}).get('baseline_model') or {}).get('ce')
    if ce:
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(ce) + 2), 3.5))
        ax.bar(range(len(ce)), list(ce.values()))
        ax.axhline(1.0, color='k', linewidth=0.8)
        ax.set_xticks(range(len(ce)))
        ax.set_xticklabels(list(ce), rotation=45, ha='right')
        ax.set_ylabel('CE relative to the baseline')
        fig.tight_layout()
        path = osp.join(work_dir, 'ce_vs_baseline.png')
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _cells_for_json(records: Optional[List[dict]]) -> Optional[List[dict]]:
    if records is None:
        return None
    keys = ('corruption', 'severity', 'quantity', 'value', 'T5D',
            'metric_key', 'metrics', 'num_samples', 'finished_at')
    return [{k: r[k] for k in keys if k in r} for r in records]


# ----------------------------------------------------------------- main ---
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.work_dir, args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    check_file(args.checkpoint, 'checkpoint')
    if args.baseline_checkpoint:
        check_file(args.baseline_checkpoint, 'baseline checkpoint')
    if args.baseline_clean_error is not None and not \
            0 <= args.baseline_clean_error <= 1:
        raise ConfigError('--baseline-clean-error must be in [0, 1]')
    if args.corrupted_root and args.suite != 'corrupt':
        raise ConfigError('--corrupted-root applies to --suite corrupt only')
    if args.corrupted_root and not osp.isdir(args.corrupted_root):
        raise FileNotFoundError(
            f'--corrupted-root "{args.corrupted_root}" does not exist')
    if args.data_root and not osp.isdir(args.data_root):
        raise FileNotFoundError(f'--data-root "{args.data_root}" does not '
                                'exist')
    if args.step < 1:
        raise ConfigError('--step must be >= 1')
    suite = Suite(args, cfg)
    if args.suite == 'corrupt' or any(s == 0 for _, s in suite.cells):
        check_dataset_paths(cfg, ['test_dataloader'])
    baseline_records = (load_baseline_results(args.baseline_results, suite)
                        if args.baseline_results else None)
    rows = check_num_classes(args.checkpoint, cfg, 'checkpoint')
    if suite.name in ('imagenet-a', 'imagenet-r'):
        check_dataset_classes(rows, suite, None)
    if args.baseline_checkpoint:
        base_rows = check_num_classes(args.baseline_checkpoint, cfg,
                                      'baseline checkpoint')
        if base_rows != rows:
            raise ConfigError(
                f'the checkpoint has {rows} classes but the baseline '
                f'checkpoint has {base_rows}')

    # a test-only Runner: the model is built once, each cell swaps the data
    test_cfg = copy.deepcopy(cfg.get('test_cfg') or {})
    cfg.test_cfg = copy.deepcopy(test_cfg)
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'val_dataloader', 'val_cfg', 'val_evaluator',
                'param_scheduler', 'resume'):
        cfg[key] = None
    cfg.load_from = args.checkpoint
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    work_dir = runner.work_dir
    cells_file = osp.join(work_dir, 'cells.jsonl')
    state = [read_cells(cells_file) if is_main_process() else None]
    broadcast_object_list(state)
    finished = {_record_key(r): r for r in state[0]}

    runner.call_hook('before_run')
    runner.load_or_resume()
    checkpoint = osp.abspath(args.checkpoint)
    main_records = run_cells(runner, suite, 'main', checkpoint, rows,
                             finished, cells_file, args, test_cfg)
    if args.baseline_checkpoint:
        runner.load_checkpoint(args.baseline_checkpoint, map_location='cpu')
        baseline_records = run_cells(
            runner, suite, 'baseline', osp.abspath(args.baseline_checkpoint),
            rows, finished, cells_file, args, test_cfg)
    runner.call_hook('after_run')
    if not is_main_process():
        return

    refusal, summary = None, None
    try:
        summary = summarize(suite, main_records, baseline_records, args,
                            rows)
    except IncompleteResultsError as exc:
        refusal = (f'{exc}. The {len(main_records)} finished cells are kept '
                   f'in {cells_file}; pass --allow-partial to summarise '
                   'them (labelled partial)')
        refusal = refusal.replace(
            '; pass allow_partial=True to summarise the covered cells '
            '(the result is labelled partial)', '').replace(
                '; pass allow_partial=True to summarise the covered ones',
                '')
    except ValueError as exc:
        refusal = f'no summary: {exc}'
    results = dict(
        suite=suite.name,
        config=args.config,
        checkpoint=checkpoint,
        baseline=args.baseline_checkpoint or args.baseline_results,
        data=suite.data_source,
        corruptions=list(dict.fromkeys(c for c, _ in suite.cells)),
        severities=sorted({s for _, s in suite.cells if s is not None}),
        allow_partial=args.allow_partial,
        cells=_cells_for_json(main_records),
        baseline_cells=_cells_for_json(baseline_records),
        summary=summary,
        refused=refusal)
    with open(osp.join(work_dir, 'results.json'), 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)
    write_csv(osp.join(work_dir, 'results.csv'), main_records,
              baseline_records)
    write_markdown(osp.join(work_dir, 'results.md'), suite, args,
                   main_records, baseline_records, summary, refusal)
    plots = write_plots(work_dir, suite, main_records, baseline_records,
                        summary)
    print(f'results written to {osp.join(work_dir, "results.json")} '
          f'(+ results.csv, results.md, {len(plots)} plot(s))')
    if refusal:
        raise ConfigError(refusal)
    headline = {
        k: summary[k]
        for k in ('partial', 'mean_corruption_error', 'mCE', 'relative_mCE',
                  'P', 'mPC', 'rPC', 'mean_FP', 'mean_T5D', 'mFR', 'top1')
        if k in summary
    }
    print(f'summary: {json.dumps(headline)}')


if __name__ == '__main__':
    run_cli(main)
