"""Summaries of a robustness sweep: mCE (unnormalised, against AlexNet and
against a baseline model), P / mPC / rPC for detection, FP / mFR / T5D for
ImageNet-P and the subset accuracy of ImageNet-A/-R. The arithmetic is in
:mod:`mmgfn.evaluation.functional`; this module picks the cells and the
normalisation."""
import json
from typing import Callable, Dict, List, Optional

from mmgfn.datasets.imagenet_c import inspect_imagenet_c_files
from mmgfn.datasets.benchmarks import BENCHMARK_CORRUPTIONS
from mmgfn.evaluation.functional import (IncompleteResultsError,
                                         imagenet_p_perturbations,
                                         summarize_corruption_errors,
                                         summarize_detection_robustness,
                                         summarize_flip_rates)
from mmgfn.utils.errors import ConfigError, check_file
from .cells import derive_quantity, is_classification
from .suite import CLEAN, Suite

#: Detection metrics summarised for every detection sweep (P/mPC/rPC each).
DETECTION_METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50')
#: The paper's Table 2 says only "mAP". COCO-C is read as COCO's
#: AP@[.5:.95] (``coco/bbox_mAP``), the metric of the mmdet robustness
#: benchmark that defines COCO-C; Foggy Cityscapes, RTTS and ExDark (tested
#: with ``tools/test.py``) are usually reported as VOC-style AP50
#: (``coco/bbox_mAP_50``).
PAPER_DETECTION_METRIC = {
    'COCO-C': 'coco/bbox_mAP (mPC)',
    'Foggy Cityscapes': 'coco/bbox_mAP_50',
    'RTTS': 'coco/bbox_mAP_50',
    'ExDark': 'coco/bbox_mAP_50',
}


def cell_values(records: List[dict]) -> Dict[tuple, float]:
    """``{(corruption, severity): value}`` of cell records."""
    return {(r['corruption'], r['severity']): float(r['value'])
            for r in records}




def load_baseline_results(path: str, suite: Suite,
                          metric_key: Optional[str] = None) -> List[dict]:
    """Baseline cells from an earlier ``results.json`` (its main model).

    Cells written by this tool keep all their metrics and sample counts:
    their quantity is read again with the current ``test_cfg.metric_key``
    (:func:`derive_quantity`), so both models report the same metric.
    Other cells need ``corruption``, ``severity`` and ``value`` (and may
    give ``quantity`` and ``T5D``); their quantity, when not given, is
    taken to be the main model's (checked in :func:`check_baseline`).
    """
    check_file(path, 'baseline results')
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    cells = data.get('cells') if isinstance(data, dict) else None
    if not isinstance(cells, list) or not cells:
        raise ConfigError(f'test_cfg.baseline_results "{path}" has no '
                          '"cells" list')
    if data.get('suite', suite.name) != suite.name:
        raise ConfigError(f'test_cfg.baseline_results "{path}" is a '
                          f'{data["suite"]} run, not {suite.name}')
    records = []
    for cell in cells:
        try:
            record = dict(
                role='baseline',
                corruption=cell['corruption'],
                severity=cell.get('severity'))
            if isinstance(cell.get('metrics'), dict) and \
                    cell.get('num_samples'):
                record.update(metrics=cell['metrics'],
                              num_samples=int(cell['num_samples']))
                derive_quantity(record, metric_key, suite,
                                f'test_cfg.baseline_results "{path}"')
            else:
                record.update(
                    value=float(cell['value']),
                    quantity=cell.get('quantity'),
                    T5D=cell.get('T5D'))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f'test_cfg.baseline_results "{path}": a cell lacks corruption / '
                f'value ({exc})') from exc
        records.append(record)
    return records


def check_baseline(main: List[dict], baseline: Optional[List[dict]],
                   source: str) -> None:
    """Refuse a baseline whose cells hold another quantity or metric than
    the main model's (an error against an mAP); fill a missing quantity."""
    if not baseline or not main:
        return
    quantity, key = main[0]['quantity'], main[0].get('metric_key')
    for r in baseline:
        r['quantity'] = r.get('quantity') or quantity
        if r['quantity'] != quantity or (r.get('metric_key') or key) != key:
            raise ConfigError(
                f'the baseline ({source}) reports '
                f'{r.get("metric_key") or r["quantity"]} for cell '
                f'{r["corruption"]}/{r["severity"]} but the model reports '
                f'{key or quantity}')


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


def _alexnet_refusal(suite: Suite, out: dict, notes: List[str]) -> bool:
    """Inspect the ImageNet-C files behind AlexNet's normalisation: refuse
    it (True) on re-encoded files, mark it on regenerated ones."""
    root = suite.settings.data_root or suite.dataset.get('data_root')
    if not root:
        return False
    files = inspect_imagenet_c_files(
        root, [(c, s) for c, s in suite.cells if s])
    out['imagenet_c_files'] = files
    if files['kind'] == 're-encoded':
        notes.append(f'no AlexNet normalisation: {files["reason"]}; '
                     'AlexNet\'s constants were measured on the released '
                     'files')
        return True
    if files['kind'] == 'regenerated':
        notes.append('mCE_alexnet is on REGENERATED ImageNet-C (reference '
                     'recipe, imagenet_c_recipe.json), not the released '
                     'files AlexNet\'s constants were measured on: not '
                     'comparable with published mCE')
    return False


def summarize(suite: Suite, main: List[dict], baseline: Optional[List[dict]],
              num_classes: Optional[int] = None) -> dict:
    """The suite's summary.

    Args:
        suite (Suite): The suite (its settings give ``allow_partial``,
            ``alexnet_fp`` and ``baseline_clean_error``).
        main (list[dict]): The model's cell records.
        baseline (list[dict], optional): The baseline's cell records.
        num_classes (int, optional): Rows of the checkpoint's head; gates
            the AlexNet normalisation to ImageNet-1k classifiers.

    Returns:
        dict: The summary (``results.json``'s ``summary``).

    Raises:
        IncompleteResultsError: Cells are missing and ``allow_partial`` is
            off.
    """
    args = suite.settings
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
        elif not getattr(args, 'alexnet_fp', False):
            notes.append('mFR needs baseline flip probabilities '
                         '(test_cfg.baseline_checkpoint / '
                         'test_cfg.baseline_results, or '
                         'test_cfg.alexnet_fp); raw FP and T5D are reported')
        difficulty = getattr(suite, 'difficulty', 1)
        benchmark = imagenet_p_perturbations(difficulty)
        out = summarize_flip_rates(
            fp, t5d, base_fp, base_t5d, perturbations=benchmark,
            allow_partial=partial)
        out['difficulty'] = difficulty
        out['notes'] = notes + out['notes']
        if getattr(args, 'alexnet_fp', False):
            # AlexNet's published flip probabilities (difficulty 1)
            alexnet = summarize_flip_rates(
                fp, None, 'alexnet', perturbations=benchmark,
                allow_partial=partial)
            out['FR_alexnet'] = alexnet['FR']
            out['mFR_alexnet'] = alexnet['mFR']
            out['notes'] += alexnet['notes']
        return out
    cells = cell_values(main)
    base_cells = cell_values(baseline) if baseline else None
    metric_key = main[0]['metric_key']
    benchmark = [c for c, s in suite.cells if c in BENCHMARK_CORRUPTIONS]
    holdout = list(dict.fromkeys(
        c for c, s in suite.cells if c not in BENCHMARK_CORRUPTIONS
        and c != CLEAN))
    if not is_classification(metric_key):
        return _summarize_detection(main, baseline, metric_key, partial,
                                    notes)
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
    elif suite.name == 'imagenet-c' and _alexnet_refusal(suite, out, notes):
        pass
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
                         'test_cfg.baseline_clean_error')
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
    base = out['corruption_errors']
    alex, model = out['alexnet'] or {}, out['baseline_model'] or {}
    out.update(
        partial=base['partial'],
        num_corruptions=base['num_corruptions'],
        num_cells=base['num_cells'],
        mean_corruption_error=base['mean_corruption_error'],
        mCE_alexnet=alex.get('mCE'),
        relative_mCE_alexnet=alex.get('relative_mCE'),
        mCE_vs_baseline=model.get('mCE'),
        relative_mCE_vs_baseline=model.get('relative_mCE'))
    if not alex and not model:
        notes.append('no mCE: AlexNet normalisation applies only to '
                     'imagenet-c; set test_cfg.baseline_checkpoint or '
                     'test_cfg.baseline_results for a CE relative to a '
                     'model')
    return out


def _metric_cells(records: List[dict], key: str,
                  primary: str) -> Optional[Dict[tuple, float]]:
    """``{(corruption, severity): metric}`` of ``key``, read from each
    cell's stored metrics (None if a cell lacks them)."""
    if key == primary:
        return cell_values(records)
    if not all(key in (r.get('metrics') or {}) for r in records):
        return None
    return {(r['corruption'], r['severity']): float(r['metrics'][key])
            for r in records}


def _summarize_detection(main: List[dict], baseline: Optional[List[dict]],
                         metric_key: str, partial: bool,
                         notes: List[str]) -> dict:
    """P / mPC / rPC for ``metric_key`` and each of
    :data:`DETECTION_METRICS`, named ``P_bbox_mAP``, ``mPC_bbox_mAP_50``,
    ...; the baseline model's under ``baseline_model`` by metric key."""
    out = dict(task='detection', metric_key=metric_key, notes=notes,
               paper_metric=PAPER_DETECTION_METRIC)
    by_metric, base_by_metric = {}, {}
    for key in dict.fromkeys([metric_key, *DETECTION_METRICS]):
        values = _metric_cells(main, key, metric_key)
        if values is None:
            notes.append(f'{key} is not among the metrics of every cell; '
                         'not summarised')
            continue
        name = key.split('/')[-1]
        by_metric[key] = summarize_detection_robustness(
            values, allow_partial=partial)
        for q in ('P', 'mPC', 'rPC'):
            out[f'{q}_{name}'] = by_metric[key][q]
        base_values = _metric_cells(baseline, key, metric_key) \
            if baseline else None
        if base_values is not None:
            base_by_metric[key] = summarize_detection_robustness(
                base_values, allow_partial=partial)
    head = by_metric[metric_key]
    out.update(
        partial=head['partial'],
        num_corruptions=head['num_corruptions'],
        num_cells=head['num_cells'],
        covered_cells=head['covered_cells'],
        by_metric=by_metric,
        baseline_model=base_by_metric or None)
    return out

