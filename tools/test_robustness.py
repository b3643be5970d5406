"""Robustness benchmark of a classifier or a detector (a thin CLI).

One command for mmpretrain classifiers and mmdet detectors: it sets the
config's ``test_cfg`` to :class:`mmgfn.engine.RobustnessTestLoop` with the
settings given by the flags and runs ``Runner.test()``. The Runner builds
the model and loads the checkpoint once; the loop evaluates one *cell*
(corruption x severity) after another, resumes from
``<work_dir>/cells.jsonl`` and writes ``results.json``, ``results.csv``,
``results.md`` and the plots. ``tools/test.py`` runs the same loop from a
config whose ``test_cfg`` names it (``configs/robustness/``), and
:func:`mmgfn.apis.run_robustness_sweep` from Python on a built model.

Suites (``--suite``, :mod:`mmgfn.evaluation.robustness_sweep.suite`):
``corrupt`` (the config's test set corrupted on the fly, or pre-generated
folders with ``--corrupted-root``: COCO-C style detection and
classification), ``imagenet-c``, ``imagenet-p``, ``imagenet-a`` and
``imagenet-r`` (``--data-root``). What is summarised, and the formula of
each number, is in :mod:`mmgfn.evaluation.robustness_sweep.summary` and in
every ``results.md``.

mCE, mPC and mFR average the 15 benchmark corruptions x severities 1-5
(the 10 benchmark perturbations for mFR); held-out corruptions are
reported but never averaged in. If cells are missing, the summary is
refused unless ``--allow-partial``, which labels it ``partial``.

Example::

    python tools/test_robustness.py CONFIG CHECKPOINT --suite corrupt \\
        --corruptions fog snow --severities 0 1 3 5 --allow-partial \\
        --baseline-checkpoint PRETRAINED.pth --work-dir work_dirs/robust
"""
import argparse
import dataclasses
import json
import re

from mmengine.dist import is_main_process

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.evaluation.robustness_sweep import (SUITES, RobustnessSettings,
                                               check_robustness_config)
from mmgfn.apis.cli import (add_common_args, build_runner,
                             fix_persistent_workers, load_config,
                             parse_tool_args, run_cli, set_work_dir,
                             setup_cpu_distributed)
from mmgfn.utils.errors import check_file

#: Flags that are settings of the loop (``--data-root`` is ``data_root``):
#: the fields of RobustnessSettings.
SETTINGS = tuple(f.name for f in dataclasses.fields(RobustnessSettings))


def flag_wording(message: str) -> str:
    """A library message with the loop's config keys named by this tool's
    flags: ``test_cfg.metric_key`` -> ``--metric-key``, ``another
    work_dir`` -> ``another --work-dir``."""
    message = re.sub(
        r'\btest_cfg\.(\w+)', lambda m: '--' + m.group(1).replace('_', '-')
        if m.group(1) in SETTINGS else m.group(0), message)
    return message.replace('another work_dir', 'another --work-dir')


def _in_flags(main):
    """``main`` with the messages of its errors in flag wording."""

    def run() -> None:
        try:
            main()
        except (ValueError, FileNotFoundError) as exc:
            exc.args = tuple(flag_wording(a) if isinstance(a, str) else a
                             for a in exc.args)
            raise

    return run


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
        help='imagenet-p: difficulty level 1-3 (1 for the benchmark): the '
        'frame stride of the non-noise perturbations; the noise ones read '
        'the folders <p>_<step> (e.g. gaussian_noise_2) at stride 1')
    parser.add_argument(
        '--alexnet-fp',
        action='store_true',
        help='imagenet-p: also normalise by AlexNet\'s flip probabilities '
        '(FR_alexnet / mFR_alexnet; the table published in '
        'clovaai/assembled-cnn, difficulty 1 only)')
    parser.add_argument(
        '--test-pipeline',
        choices=('config', 'reference'),
        default='config',
        help='imagenet-c/-p: the config\'s test pipeline (default) or the '
        'reference one (load, center-crop 224, pack: no resize, as '
        'Hendrycks\' evaluation of the 224 x 224 images)')
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
        '--corruption-backend',
        choices=['imagecorruptions', 'torch'],
        default='imagecorruptions',
        help='corrupt suite, on the fly: implementation of the corruptions '
        '(torch: mmgfn.datasets.corruptions, same draws, within one grey '
        'level); recorded per cell, and a resume with the other is refused')
    parser.add_argument(
        '--allow-partial',
        action='store_true',
        help='summarise the covered cells when some are missing (labelled '
        'partial) instead of refusing')
    add_common_args(parser)
    return parse_tool_args(parser)


def sweep_config(args: argparse.Namespace):
    """The config with ``test_cfg`` set to the robustness loop; training
    and validation are switched off (a test-only Runner)."""
    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.work_dir, args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    fp16 = bool((cfg.get('test_cfg') or {}).get('fp16', False))
    cfg.test_cfg = dict(
        type='mmgfn.RobustnessTestLoop', fp16=fp16,
        **{k: getattr(args, k) for k in SETTINGS})
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'val_dataloader', 'val_cfg', 'val_evaluator',
                'param_scheduler', 'resume'):
        cfg[key] = None
    cfg.load_from = args.checkpoint
    fix_persistent_workers(cfg)
    return cfg


def main() -> None:
    args = parse_args()
    check_file(args.checkpoint, 'checkpoint')
    cfg = sweep_config(args)
    check_robustness_config(cfg)
    setup_cpu_distributed(cfg)
    headline = build_runner(cfg).test()
    if is_main_process():
        print(f'summary: {json.dumps(headline)}')


if __name__ == '__main__':
    run_cli(_in_flags(main))
