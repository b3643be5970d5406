"""Test (evaluate) a checkpoint (mmpretrain/mmdet conventions).

A config whose ``test_cfg`` is ``mmgfn.RobustnessTestLoop`` (the configs in
``configs/robustness/``) runs a robustness sweep instead: its results are
written to the work dir (``cells.jsonl``, ``results.json``, ...) and its
headline numbers are the metrics below.

Besides the usual log, the metrics are written as JSON to
``<work_dir>/<timestamp>/metrics.json`` (or ``--out-metrics``) and printed
as a last line ``metrics: {...}``.
"""
import argparse
import json
import os
import os.path as osp

import torch
from mmengine.dist import is_main_process

import mmgfn  # noqa: F401  checkpoint loading on torch >= 2.6
from mmgfn.evaluation.robustness_sweep import is_robustness_loop
from mmgfn.utils.compat import (float32_test_outputs,
                                run_mmcv_cpu_ops_in_float32)
from mmgfn.apis.cli import (add_common_args, build_runner,
                             fix_persistent_workers, load_config,
                             parse_tool_args, run_cli, set_work_dir,
                             setup_cpu_distributed)
from mmgfn.apis.preflight import check_test_config
from mmgfn.utils.errors import ConfigError, check_file


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        help='dump the predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--out-metrics',
        help='where to write the metrics as JSON (defaults to '
        '<work_dir>/<timestamp>/metrics.json)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='run inference under autocast (bfloat16 on CPU)')
    add_common_args(parser)
    return parse_tool_args(parser)


def merge_args(cfg, args):
    """Merge CLI arguments into the config."""
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.work_dir, args.config)
    cfg.load_from = args.checkpoint
    if args.amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
    if args.out is not None:
        if is_robustness_loop(cfg.get('test_cfg')):
            raise ConfigError(
                '--out does not apply to a robustness sweep (test_cfg is '
                'mmgfn.RobustnessTestLoop): its cells and metrics are '
                'written to the work dir (cells.jsonl, results.json)')
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ConfigError('--out must be a .pkl or .pickle file, got '
                             f'"{args.out}"')
        cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(
            cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        cfg.test_evaluator.append(
            dict(type='DumpResults', out_file_path=args.out))
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    fix_persistent_workers(cfg)
    return cfg


def main() -> None:
    args = parse_args()
    cfg = merge_args(load_config(args.config), args)
    check_file(args.checkpoint, 'checkpoint')
    check_test_config(cfg)
    setup_cpu_distributed(cfg)
    runner = build_runner(cfg)
    if args.amp and not torch.cuda.is_available():
        # CPU autocast: mmcv's RoIAlign/nms have float32 kernels only, and
        # numpy cannot hold the bfloat16 predictions the metrics receive
        run_mmcv_cpu_ops_in_float32()
        float32_test_outputs(runner.model)
    metrics = runner.test()
    if not is_main_process():
        return
    out = args.out_metrics or osp.join(runner.log_dir, 'metrics.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    metrics = {
        k: float(v) if hasattr(v, '__float__') and not isinstance(v, bool)
        else v
        for k, v in metrics.items()
    }
    with open(out, 'w', encoding='utf-8') as f:
        json.dump(metrics, f, indent=2)
    print(f'metrics: {json.dumps(metrics)}')
    print(f'metrics written to {out}')


if __name__ == '__main__':
    run_cli(main)
