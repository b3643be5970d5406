"""Figures: the plots of a robustness sweep."""
from .robustness_plots import (line_colours, plot_title, severity_figure,
                               write_plots)

__all__ = ['line_colours', 'plot_title', 'severity_figure', 'write_plots']
