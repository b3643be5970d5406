"""Plots of a robustness sweep (matplotlib, Agg backend): the quantity
against severity per corruption, the CE relative to a baseline model and
ImageNet-P flip probabilities. Every plot is titled with the model, the
suite and whether the summary is partial (:func:`plot_title`)."""
import os.path as osp
from typing import Any, Dict, List, Optional

import numpy as np

from mmgfn.datasets.benchmarks import BENCHMARK_CORRUPTIONS
from mmgfn.evaluation.functional import IMAGENET_P_PERTURBATIONS, SEVERITIES
from mmgfn.evaluation.robustness_sweep.suite import CLEAN, Suite
from mmgfn.evaluation.robustness_sweep.summary import cell_values


def plot_title(config: str, checkpoint: str, suite: Suite,
               summary: Optional[dict]) -> str:
    """``'<config> / <checkpoint>, <suite>[, partial]'``: what a plot
    shows, written into every plot (and its PNG ``Title`` metadata)."""
    model = (f'{osp.splitext(osp.basename(config))[0]} / '
             f'{osp.basename(checkpoint)}')
    if summary is not None:
        partial = bool(summary.get('partial'))
    else:  # refused: partial unless every benchmark cell was asked for
        partial = len([c for c in suite.cells if c[1] != 0]) < \
            _full_grid_size(suite)
    return f'{model}, {suite.name}' + (', partial' if partial else '')


def _full_grid_size(suite: Suite) -> int:
    """Cells of the complete benchmark of the suite."""
    if suite.name == 'imagenet-p':
        return len(IMAGENET_P_PERTURBATIONS)
    if suite.name in ('imagenet-a', 'imagenet-r'):
        return 1
    return len(BENCHMARK_CORRUPTIONS) * len(SEVERITIES)


def line_colours(count: int) -> list:
    """``count`` distinct RGBA colours: tab20 up to 20 lines (the 19
    corruptions fit), evenly spaced hues beyond."""
    import matplotlib
    if count <= 20:
        return [matplotlib.colormaps['tab20'](i) for i in range(count)]
    return [matplotlib.colormaps['hsv'](i / count) for i in range(count)]


def severity_figure(names: List[str], severities: List[int],
                    cells: Dict[tuple, float], base: Dict[tuple, float],
                    ylabel: str, title: str) -> Any:
    """Quantity vs severity, one line per corruption.

    Each corruption has its own colour (:func:`line_colours`) and a small
    horizontal offset (at most +-0.2 severity), so lines that share a point
    (all share the clean value at severity 0) stay visible; the baseline
    model's lines are dashed with hollow square markers. Ticks are the
    integer severities.

    Args:
        names (list[str]): Corruptions, in legend order.
        severities (list[int]): Severities 1-5 evaluated.
        cells (dict): ``{(corruption, severity): value}`` of the model;
            ``('clean', 0)`` is drawn at severity 0.
        base (dict): The same for the baseline model (may be empty).
        ylabel (str): Axis label of the quantity.
        title (str): Figure title (:func:`plot_title`).

    Returns:
        matplotlib.figure.Figure: The figure (the caller saves and closes
        it).
    """
    import matplotlib.pyplot as plt
    clean = (CLEAN, 0) in cells
    xs = np.array(([0] if clean else []) + list(severities), dtype=float)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    spread = min(0.4, 0.06 * (len(names) - 1))
    for i, (c, colour) in enumerate(zip(names, line_colours(len(names)))):
        offset = (spread * (i / (len(names) - 1) - 0.5)
                  if len(names) > 1 else 0.0)
        ys = ([cells[(CLEAN, 0)]] if clean else []) + [
            cells.get((c, s), np.nan) for s in severities]
        ax.plot(xs + offset, ys, marker='o', color=colour, label=c)
        if base:
            bys = ([base.get((CLEAN, 0), np.nan)] if clean else []) + [
                base.get((c, s), np.nan) for s in severities]
            ax.plot(xs + offset, bys, linestyle='--', marker='s',
                    markerfacecolor='none', color=colour,
                    label=f'{c} (baseline)')
    ax.set_xticks([int(x) for x in xs])
    ax.set_xticklabels([str(int(x)) for x in xs])
    ax.set_xlabel('severity (0 = clean)')
    ax.set_ylabel(ylabel)
    ax.set_title(title + (' (dashed: baseline)' if base else ''),
                 fontsize=9)
    ax.legend(fontsize=6, ncol=2 if len(names) < 10 else 3,
              loc='center left', bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def _save(fig: Any, path: str, title: str) -> str:
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=100, metadata={'Title': title},
                bbox_inches='tight')
    plt.close(fig)
    return path


def write_plots(work_dir: str, suite: Suite, main: List[dict],
                baseline: Optional[List[dict]], summary: Optional[dict],
                title: str = '') -> List[str]:
    """PNG plots (matplotlib, Agg backend); returns the written paths.

    ``title`` (:func:`plot_title`) heads every plot.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    title = title or suite.name
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
                   label='baseline', hatch='//')
            ax.legend()
        ax.set_xticks(x + (width / 2 if baseline else 0))
        ax.set_xticklabels(names, rotation=45, ha='right')
        ax.set_ylabel('flip probability')
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return [_save(fig, osp.join(work_dir, 'flip_probability.png'),
                      title)]
    quantity = main[0]['quantity']
    names = list(dict.fromkeys(c for c, s in suite.cells if c != CLEAN))
    severities = sorted({s for _, s in suite.cells if s})
    ylabel = (f'top-1 {quantity}' if quantity == 'error' else
              main[0].get('metric_key') or quantity)
    fig = severity_figure(names, severities, cell_values(main),
                          cell_values(baseline) if baseline else {}, ylabel,
                          title)
    written.append(_save(fig, osp.join(
        work_dir, 'error_vs_severity.png' if quantity == 'error' else
        'map_vs_severity.png'), title))
    ce = ((summary or {}).get('baseline_model') or {}).get('ce')
    if ce:
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(ce) + 2), 3.5))
        ax.bar(range(len(ce)), list(ce.values()),
               color=line_colours(len(ce)))
        ax.axhline(1.0, color='k', linewidth=0.8)
        ax.set_xticks(range(len(ce)))
        ax.set_xticklabels(list(ce), rotation=45, ha='right')
        ax.set_ylabel('CE relative to the baseline')
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        written.append(_save(fig, osp.join(work_dir, 'ce_vs_baseline.png'),
                             title))
    return written
