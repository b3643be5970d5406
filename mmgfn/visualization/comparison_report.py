"""Files of a paired comparison of two sweeps: ``<stem>.json``,
``<stem>.md`` and ``<stem>.png``, a figure of the per-cell differences of
error with their intervals (:mod:`mmgfn.evaluation.robustness_sweep.
comparison`)."""
import json
import os
import os.path as osp
from typing import List

import numpy as np

from mmgfn.evaluation.robustness_sweep.comparison import (
    comparison_markdown, comparison_sentence)


def comparison_figure(result: dict, path: str) -> str:
    """Per cell, ``err_A - err_B`` in percentage points with its interval;
    cells that differ after Holm are filled (A better: blue, B better:
    red), the others hollow; the mean corruption error's difference and
    bootstrap interval are the band. Returns ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = result['cells']
    x = np.arange(len(rows))
    diff = np.array([100 * r['difference'] for r in rows])
    low = np.array([100 * r['ci'][0] for r in rows])
    high = np.array([100 * r['ci'][1] for r in rows])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(rows) + 3), 4))
    mean = result['benchmark']['mean_corruption_error']
    ax.axhspan(100 * mean['ci'][0], 100 * mean['ci'][1], color='0.85',
               label=f'mean corruption error {100 * mean["difference"]:+.2f}'
               f' [{100 * mean["ci"][0]:+.2f}, {100 * mean["ci"][1]:+.2f}]')
    ax.axhline(0.0, color='k', lw=0.8)
    ax.errorbar(x, diff, yerr=[diff - low, high - diff], fmt='none',
                ecolor='0.4', lw=0.8)
    colours = ['tab:blue' if r['differs'] and r['difference'] < 0 else
               'tab:red' if r['differs'] else 'white' for r in rows]
    ax.scatter(x, diff, c=colours, edgecolors='k', s=18, zorder=3)
    ax.set_xticks(x, [r['cell'] for r in rows], rotation=90, fontsize=5)
    a, b = result['names']
    ax.set_ylabel(f'error {a} - error {b} (points)')
    ax.set_title(f'{a} vs {b}: {result["num_differ"]} of '
                 f'{result["num_cells"]} cells differ (Holm, '
                 f'{result["alpha"]:g}); filled: differs', fontsize=9)
    ax.legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_comparison(result: dict, out_dir: str,
                     stem: str = 'comparison') -> List[str]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into
    ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, f'{stem}.{ext}')
             for ext in ('json', 'md', 'png')]
    with open(paths[0], 'w', encoding='utf-8') as f:
        json.dump(dict(result, sentence=comparison_sentence(result)), f,
                  indent=2)
    with open(paths[1], 'w', encoding='utf-8') as f:
        f.write(comparison_markdown(result))
    comparison_figure(result, paths[2])
    return paths
