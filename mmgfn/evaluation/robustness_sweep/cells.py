"""Cell records of a robustness sweep: what one evaluated cell stores in
``cells.jsonl`` and the quantity (error, mAP, flip probability) read from
it."""
import datetime
import json
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmgfn.utils.errors import ConfigError
from mmgfn.datasets.benchmarks import Cell
from .suite import Suite, checkpoint_id


def bad_input_message(exc: BaseException) -> str:
    """One-line explanation of a data problem met while evaluating.

    A DataLoader worker re-raises with the worker's traceback in the
    message; its indented source lines spell the messages unformatted
    (``f'failed to load image: {filename}'``), so only the unindented lines
    (the exception's own message) are searched.
    """
    text = '\n'.join(line for line in str(exc).splitlines()
                     if line and not line[0].isspace())
    match = re.search(r'failed to load image: ([^\n]+)', text)
    if match:
        return f'unreadable image "{match.group(1).strip()}"'
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


def pick_metric(metrics: dict, metric_key: Optional[str], suite: Suite,
                 cell: str = '', source: str = '') -> str:
    """The metric a cell's quantity is read from.

    ``cell`` and ``source`` name a finished cell read back from a file
    (``cells.jsonl``, ``test_cfg.baseline_results``) for the message when its
    stored metrics lack ``test_cfg.metric_key``; empty for a cell just evaluated.
    """
    if suite.name == 'imagenet-p':
        return 'imagenet_p/mean_FP'
    if metric_key:
        if metric_key not in metrics:
            if source:
                raise ConfigError(
                    f'test_cfg.metric_key {metric_key} is not among the '
                    'metrics '
                    f'stored for the finished cell {cell} in {source} '
                    f'({", ".join(metrics)}); evaluate into another '
                    'work_dir to compute it')
            raise ConfigError(f'test_cfg.metric_key {metric_key} is not '
                              f'among the metrics: {", ".join(metrics)}')
        return metric_key
    for key in ('accuracy/top1', 'coco/bbox_mAP'):
        if key in metrics:
            return key
    for key in metrics:
        if key.endswith('mAP'):
            return key
    raise ConfigError('no accuracy/top1 or *mAP metric among '
                      f'{", ".join(metrics)}; set test_cfg.metric_key')


def is_classification(metric_key: str) -> bool:
    return 'accuracy' in metric_key or metric_key.endswith('top1')


def error_counts(top1: float, total: int) -> Tuple[int, int]:
    """``(wrong, total)`` from a top-1 accuracy in percent.

    mmpretrain's ``Accuracy`` reports ``100 * correct / total`` computed in
    float32 and no counts; the integer ``correct`` is recovered by rounding
    ``top1 * total / 100``, which is exact while the float32 rounding
    error (about ``1e-5`` percent) stays below half a sample, i.e. for
    ``total`` up to millions. The error is then ``wrong / total`` computed
    from the integers (1 wrong of 60 gives exactly ``1 / 60``).

    Args:
        top1 (float): Top-1 accuracy in [0, 100].
        total (int): Number of scored samples (> 0).

    Returns:
        tuple[int, int]: Wrong and total sample counts.

    Raises:
        ConfigError: If ``top1`` is not ``100 * k / total`` for an integer
            ``k`` (the metric did not score ``total`` samples).
    """
    if total <= 0:
        raise ConfigError('a cell scored no samples')
    correct = int(round(float(top1) * total / 100.0))
    if not 0 <= correct <= total or \
            abs(100.0 * correct / total - float(top1)) > 1e-3:
        raise ConfigError(
            f'top-1 {top1!r} % is not a whole number of the {total} samples '
            'of the cell; cannot derive the error count')
    return total - correct, total


def derive_quantity(record: dict, metric_key: Optional[str],
                    suite: Suite, source: str = '') -> dict:
    """Set the reported quantity of a cell from its stored metrics.

    Sets ``metric_key``, ``quantity`` (``'error'`` in [0, 1] for
    classification, ``'mAP'`` in [0, 1] for detection, ``'FP'`` in [0, 1]
    with ``T5D`` for ImageNet-P) and ``value``; for classification also
    the integer ``wrong`` and ``total`` behind the error. The record's
    ``metrics`` (every metric of the cell) are never changed, so a rerun
    with another ``test_cfg.metric_key`` reads the finished cells again instead
    of evaluating them or mislabelling the old quantity.

    Args:
        record (dict): A cell record with ``metrics`` and ``num_samples``.
        metric_key (str, optional): ``test_cfg.metric_key`` (None: the default).
        suite (Suite): The suite.
        source (str): Where a stored record was read from (``cells.jsonl``,
            the ``test_cfg.baseline_results`` file), named by the message for a
            missing metric; empty for a cell just evaluated. Defaults to
            ''.

    Returns:
        dict: ``record``, updated in place.
    """
    metrics = record['metrics']
    corruption = record['corruption']
    name = suite.cell_name((corruption, record['severity']))
    key = pick_metric(metrics, metric_key, suite, name, source)
    record['metric_key'] = key
    for field in ('wrong', 'total', 'T5D'):
        record.pop(field, None)
    if suite.name == 'imagenet-p':
        record['quantity'] = 'FP'
        record['value'] = metrics[f'imagenet_p/FP_{corruption}']
        record['T5D'] = metrics[f'imagenet_p/T5D_{corruption}']
    elif is_classification(key):
        wrong, total = error_counts(metrics[key], int(record['num_samples']))
        record.update(quantity='error', value=wrong / total, wrong=wrong,
                      total=total)
    else:
        record['quantity'] = 'mAP'
        record['value'] = float(metrics[key])
    return record


def cell_record(cell: Cell, metrics: dict,
                metric_key: Optional[str], role: str, checkpoint: str,
                suite: Suite, num_samples: int, cell_key: str) -> dict:
    """The JSON record of one finished cell (all its metrics)."""
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
        cell_key=cell_key,
        corruption=corruption,
        severity=severity,
        metrics=metrics,
        num_samples=num_samples,
        finished_at=datetime.datetime.now().isoformat(timespec='seconds'))
    backend = suite.cell_backend(cell)
    if backend is not None:
        record['corruption_backend'] = backend
    return derive_quantity(record, metric_key, suite)


def check_backends(suite: Suite, records: List[dict],
                   cells_file: str) -> None:
    """Refuse to resume a sweep whose ``cells.jsonl`` holds cells of the
    same suite and data corrupted on the fly by another corruption backend
    (records from before backends were recorded: imagecorruptions).

    Raises:
        ConfigError: Naming the file, both backends and one such cell.
    """
    for r in records:
        if r.get('suite') != suite.name or \
                r.get('data') != suite.data_source:
            continue
        cell = (r.get('corruption'), r.get('severity'))
        backend = suite.cell_backend(cell)
        stored = r.get('corruption_backend', 'imagecorruptions')
        if backend is not None and stored != backend:
            raise ConfigError(
                f'{cells_file} holds cells corrupted by the {stored} '
                f'backend ({cell[0]} severity {cell[1]}) but this sweep '
                f'uses {backend}; resuming would mix backends: use another '
                'work_dir, or test_cfg.corruption_backend '
                f'{stored}')
