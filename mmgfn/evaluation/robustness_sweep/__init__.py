"""The robustness sweep: suites and cells (:mod:`.suite`), cell records
(:mod:`.cells`), what is built and checked before the first cell
(:mod:`.setup`, :mod:`.checks`), summaries (:mod:`.summary`) and reports
(:mod:`.report`). The loop that runs it is
:class:`mmgfn.engine.RobustnessTestLoop`, which also draws the plots
(:mod:`mmgfn.visualization.robustness_plots`) after the reports."""
from mmgfn.datasets.transforms.insertion import has_resize
from .cells import (bad_input_message, cell_record, derive_quantity,
                    error_counts, is_classification, pick_metric, read_cells)
from .checks import (check_dataset_classes, check_num_classes,
                     check_robustness_config, check_state_shapes,
                     checkpoint_num_classes, head_rows, is_robustness_loop)
from .comparison import (compare_sweeps, comparison_markdown,
                         comparison_sentence, load_outcomes)
from .outcomes import (decode_outcomes, encode_outcomes, image_identity,
                       images_key)
from .report import (cells_for_json, pipeline_text, write_csv,
                     write_markdown, write_reports)
from .setup import SweepSetup
from .suite import (CLEAN, SUITE_DATASETS, SUITES, RobustnessSettings, Suite,
                    checkpoint_id)
from .summary import (DETECTION_METRICS, PAPER_DETECTION_METRIC,
                      cell_values, check_baseline, load_baseline_results,
                      summarize)

__all__ = [
    'CLEAN', 'DETECTION_METRICS', 'PAPER_DETECTION_METRIC', 'SUITES',
    'SUITE_DATASETS', 'RobustnessSettings', 'Suite', 'SweepSetup', 'bad_input_message',
    'cell_record', 'cell_values', 'cells_for_json', 'check_baseline',
    'check_dataset_classes', 'check_num_classes', 'check_robustness_config',
    'check_state_shapes', 'compare_sweeps', 'comparison_markdown',
    'comparison_sentence', 'load_outcomes', 'checkpoint_id', 'checkpoint_num_classes',
    'decode_outcomes', 'derive_quantity', 'encode_outcomes',
    'error_counts', 'image_identity', 'images_key', 'has_resize', 'head_rows',
    'is_classification', 'is_robustness_loop', 'load_baseline_results',
    'pick_metric', 'pipeline_text', 'read_cells', 'summarize', 'write_csv',
    'write_markdown', 'write_reports'
]
