"""Figures: the plots of a robustness sweep and of a paired comparison."""
from .comparison_report import comparison_figure, write_comparison
from .robustness_plots import (line_colours, plot_title, severity_figure,
                               write_plots)

__all__ = ['comparison_figure', 'line_colours', 'plot_title',
           'severity_figure', 'write_comparison', 'write_plots']
