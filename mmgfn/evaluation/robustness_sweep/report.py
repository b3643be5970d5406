"""Files a robustness sweep writes: ``results.csv`` (long format),
``results.md`` (tables, summary, formulas) and the cell lists of
``results.json``."""
import csv
import json
import os.path as osp
from typing import Any, List, Optional

import numpy as np

from mmgfn.utils.config_walk import type_name
from .suite import CLEAN, Suite
from .summary import DETECTION_METRICS, cell_values


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
                quantity = r.get('quantity') or 'value'
                if quantity == 'mAP':  # detection: every reported AP
                    key = r.get('metric_key') or 'mAP'
                    metrics = r.get('metrics') or {}
                    extra = [k for k in DETECTION_METRICS
                             if k != key and k in metrics]
                    writer.writerow([role, r['corruption'], sev, key,
                                     repr(float(r['value']))])
                    for k in extra:
                        writer.writerow([role, r['corruption'], sev, k,
                                         repr(float(metrics[k]))])
                    continue
                writer.writerow([role, r['corruption'], sev, quantity,
                                 repr(float(r['value']))])
                if r.get('T5D') is not None:
                    writer.writerow([role, r['corruption'], sev, 'T5D',
                                     repr(float(r['T5D']))])


def _grid_table(suite: Suite, main: List[dict],
                baseline: Optional[List[dict]], summary: dict) -> List[str]:
    """Markdown table: corruptions x severities, mean and CE columns."""
    cells = cell_values(main)
    base = cell_values(baseline) if baseline else {}
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
                  if quantity == 'error' else
                  f'Cells hold {main[0].get("metric_key") or quantity}')
                 + ('; s0 is the clean test set.' if with_clean else '.'))
    if base:
        lines.append(f'Baseline cells: {len(base)}.')
    return lines


def _quantity_lines(summary: dict, suite: Suite) -> List[str]:
    """One line per reported quantity: its name and formula."""
    err = 'err(c, s) = wrong / total images of cell (c, s)'
    lines = []
    if 'clean_error' in summary:
        lines.append(f'top-1 error: {err}; clean_error = err on the clean '
                     'test set (severity 0)')
        lines.append('mean_corruption_error = mean_c mean_s err(c, s) '
                     '(unnormalised)')
        lines.append('mCE_alexnet = mean_c [mean_s err(c, s) / AlexNet '
                     'mean error of c] (imagenet-c only)')
        lines.append('relative_mCE_alexnet = mean_c [sum_s (err(c, s) - '
                     'clean_error) / sum_s (AlexNet err(c, s) - AlexNet '
                     'clean error from test_cfg.baseline_clean_error)]')
        lines.append('mCE_vs_baseline = mean_c [sum_s err(c, s) / sum_s '
                     'err_baseline(c, s)]: CE relative to the baseline '
                     'model, not to AlexNet')
        lines.append('relative_mCE_vs_baseline = mean_c [sum_s (err(c, s) '
                     '- clean_error) / sum_s (err_baseline(c, s) - '
                     'clean_error_baseline)]')
        lines.append('c runs over the benchmark corruptions evaluated '
                     '(num_corruptions), s over severities 1-5')
    if summary.get('task') == 'detection':
        lines.append('P_<metric> = the metric on the clean test set '
                     '(severity 0); mPC_<metric> = mean_c mean_s metric(c, '
                     's) over the benchmark corruptions and severities 1-5; '
                     'rPC_<metric> = mPC / P')
        lines.append('bbox_mAP = COCO AP averaged over IoU 0.50:0.95; '
                     'bbox_mAP_50 = AP at IoU 0.5 (VOC style)')
        lines.append('the paper\'s Table 2 says only "mAP": its COCO-C '
                     'column is compared with mPC_bbox_mAP; Foggy '
                     'Cityscapes, RTTS and ExDark (tools/test.py) with '
                     'coco/bbox_mAP_50')
    if 'mean_FP' in summary:
        lines.append('FP = flip probability per perturbation; mean_FP its '
                     'mean; mFR = mean_p FP_p / FP_baseline_p')
        if 'mFR_alexnet' in summary:
            lines.append('mFR_alexnet = mean_p FP_p / FP_AlexNet_p with '
                         'AlexNet\'s flip probabilities as published in '
                         'clovaai/assembled-cnn (mce/eval_robustness.py, '
                         'ALEXNET_FP; difficulty 1)')
    if 'top1' in summary:
        lines.append(f'top1 = 100 * right / total over the 200-class logit '
                     f'mask of {suite.name}; error = wrong / total')
    return lines


#: Arguments of a pipeline step that differ from cell to cell (the
#: corruption inserted into each cell's pipeline).
PER_CELL = dict(ImageCorruption=('corruption', 'severity'))


def pipeline_text(pipeline: List[Any]) -> str:
    """``'LoadImageFromFile -> CenterCrop(crop_size=224) -> PackInputs'``;
    arguments that each cell sets (:data:`PER_CELL`) read ``per cell``."""
    steps = []
    for t in pipeline:
        if not isinstance(t, dict):
            steps.append(str(t))
            continue
        name = type_name(t) or '?'
        per_cell = PER_CELL.get(name, ())
        args = ', '.join(f'{k}=per cell' if k in per_cell else f'{k}={v}'
                         for k, v in t.items() if k != 'type')
        steps.append(f'{name}({args})' if args else name)
    return ' -> '.join(steps) or '(none)'


def write_markdown(path: str, suite: Suite, main: List[dict],
                   baseline: Optional[List[dict]], summary: Optional[dict],
                   refusal: Optional[str], config: str,
                   checkpoint: str) -> None:
    """``results.md``: where the numbers come from, the cell table, the
    summary and the formula of each summary number.

    Args:
        path (str): File to write.
        suite (Suite): The suite.
        main (list[dict]): The model's cell records.
        baseline (list[dict], optional): The baseline's cell records.
        summary (dict, optional): :func:`summarize`'s result (None when
            refused).
        refusal (str, optional): Why there is no summary.
        config (str): The config file (or a description of the model).
        checkpoint (str): The checkpoint evaluated.
    """
    args = suite.settings
    lines = [f'# Robustness: {suite.name}', '',
             f'- config: `{config}`',
             f'- checkpoint: `{checkpoint}`']
    if args.baseline_checkpoint or args.baseline_results:
        lines.append('- baseline: `'
                     f'{args.baseline_checkpoint or args.baseline_results}`')
    lines.append(f'- data: `{suite.data_source}`')
    backends = sorted({r['corruption_backend'] for r in main + (baseline or [])
                       if r.get('corruption_backend')})
    if backends:
        lines.append(f'- corruption backend: {", ".join(backends)}')
    lines.append(f'- test pipeline ({getattr(args, "test_pipeline", "config")}'
                 f'): {pipeline_text(suite.test_pipeline())}')
    lines.append('')
    if suite.name == 'imagenet-p':
        fr = (summary or {}).get('FR') or {}
        fr_alexnet = (summary or {}).get('FR_alexnet')
        lines += ['| perturbation | FP | T5D | FR |' +
                  (' FR (AlexNet) |' if fr_alexnet else ''),
                  '|---|---|---|---|' + ('---|' if fr_alexnet else '')]
        for r in main:
            lines.append(f'| {r["corruption"]} | {_fmt(r["value"])} | '
                         f'{_fmt(r["T5D"])} | {_fmt(fr.get(r["corruption"]))}'
                         ' |' + (f' {_fmt(fr_alexnet.get(r["corruption"]))} |'
                                 if fr_alexnet else ''))
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
                'mean_corruption_error', 'mCE_alexnet',
                'relative_mCE_alexnet', 'mCE_vs_baseline',
                'relative_mCE_vs_baseline', 'metric_key',
                *[f'{q}_{k.split("/")[-1]}' for k in DETECTION_METRICS
                  for q in ('P', 'mPC', 'rPC')],
                *[k for k in summary if k[:2] in ('P_', 'mP', 'rP')],
                'num_perturbations', 'difficulty', 'mean_FP', 'mean_T5D',
                'mFR', 'mT5D', 'mFR_alexnet',
                'top1', 'error')
        for key in dict.fromkeys(keys):
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
        lines += ['', '### What each number is', '']
        lines += [f'- {line}' for line in _quantity_lines(summary, suite)]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')


def cells_for_json(records: Optional[List[dict]]) -> Optional[List[dict]]:
    if records is None:
        return None
    keys = ('corruption', 'severity', 'quantity', 'value', 'wrong', 'total',
            'T5D', 'metric_key', 'metrics', 'num_samples', 'outcomes',
            'finished_at', 'corruption_backend')
    return [{k: r[k] for k in keys if k in r} for r in records]



def write_reports(work_dir: Optional[str], suite: Suite, main: List[dict],
                  baseline: Optional[List[dict]], summary: Optional[dict],
                  refusal: Optional[str], config: str,
                  checkpoint: str) -> dict:
    """The results of a sweep, written to ``work_dir``.

    Writes ``results.json`` (settings, cells, summary or refusal),
    ``results.csv`` and ``results.md``; the plots are drawn by the loop
    (:func:`mmgfn.visualization.write_plots`) after them.

    Args:
        work_dir (str, optional): Output folder; None returns the results
            without writing (the other ranks of a distributed run).
        suite (Suite): The suite.
        main (list[dict]): The model's cell records.
        baseline (list[dict], optional): The baseline's cell records.
        summary (dict, optional): The summary (None when refused).
        refusal (str, optional): Why there is no summary.
        config (str): The config file (or the model's class name).
        checkpoint (str): The checkpoint (or weights fingerprint).

    Returns:
        dict: The content of ``results.json``.
    """
    settings = suite.settings
    results = dict(
        suite=suite.name,
        config=config,
        checkpoint=checkpoint,
        baseline=settings.baseline_checkpoint or settings.baseline_results,
        data=suite.data_source,
        corruptions=list(dict.fromkeys(c for c, _ in suite.cells)),
        severities=sorted({s for _, s in suite.cells if s is not None}),
        allow_partial=settings.allow_partial,
        test_pipeline=dict(
            source=getattr(settings, 'test_pipeline', 'config'),
            pipeline=suite.test_pipeline()),
        cells=cells_for_json(main),
        baseline_cells=cells_for_json(baseline),
        summary=summary,
        refused=refusal)
    if work_dir is None:
        return results
    with open(osp.join(work_dir, 'results.json'), 'w',
              encoding='utf-8') as f:
        json.dump(results, f, indent=2)
    write_csv(osp.join(work_dir, 'results.csv'), main, baseline)
    write_markdown(osp.join(work_dir, 'results.md'), suite, main, baseline,
                   summary, refusal, config, checkpoint)
    return results
