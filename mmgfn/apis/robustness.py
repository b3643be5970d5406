"""Run a robustness sweep from Python, on a model already built.

Example::

    from mmengine.config import Config
    from mmgfn.apis import run_robustness_sweep

    cfg = Config.fromfile('configs/gfn_vit-b_in1k.py')   # data + metric
    model = ...                                          # any nn.Module
    results = run_robustness_sweep(
        model, cfg, work_dir='work_dirs/robust', suite='imagenet-c',
        data_root='data/imagenet-c', test_pipeline='reference')
    print(results['summary']['mCE_alexnet'])

It builds a test-only :class:`~mmengine.runner.Runner` around the model
with the config's ``test_dataloader`` and ``test_evaluator`` and runs
:class:`mmgfn.engine.RobustnessTestLoop`; the files written and the
numbers are the same as ``tools/test_robustness.py`` writes.
"""
import copy
import time
import uuid
from typing import Optional, Union

from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn

import mmgfn.engine  # noqa: F401  registers RobustnessTestLoop
from mmgfn.apis.cli import fix_persistent_workers


def run_robustness_sweep(model: nn.Module,
                         cfg: Union[str, Config],
                         work_dir: str,
                         checkpoint: Optional[str] = None,
                         fp16: bool = False,
                         **settings) -> dict:
    """Evaluate a built model on every cell of a robustness suite.

    Args:
        model (nn.Module): The model, with its weights loaded (an mmpretrain
            classifier or mmdet detector: it has ``test_step``). Its weights
            are the same when the call returns, also with a baseline
            checkpoint.
        cfg (str | Config): A config (or its path) that gives
            ``test_dataloader`` and ``test_evaluator`` (the clean test set
            and its metric) and ``default_scope``; its ``model`` is not
            built.
        work_dir (str): Where ``cells.jsonl`` and the reports go; a second
            call with the same weights and settings resumes from it.
        checkpoint (str, optional): The file the weights came from, named
            in the reports and the resume key. Defaults to None: the
            weights' fingerprint
            (:func:`mmgfn.engine.runner.weights_fingerprint`).
        fp16 (bool): Run the cells under autocast. Defaults to False.
        **settings: The sweep settings, as the fields of
            :class:`mmgfn.evaluation.robustness_sweep.RobustnessSettings`
            (``suite`` is required).

    Returns:
        dict: The content of ``results.json``: ``cells``,
        ``baseline_cells``, ``summary`` and the settings.

    Raises:
        ConfigError: As ``tools/test_robustness.py`` (bad settings, missing
            folders, a refused summary after the reports are written).
    """
    cfg = Config.fromfile(cfg) if isinstance(cfg, str) else copy.deepcopy(
        cfg)
    fix_persistent_workers(cfg)
    runner = Runner(
        model=model,
        work_dir=work_dir,
        test_dataloader=cfg.test_dataloader,
        test_evaluator=cfg.test_evaluator,
        test_cfg=dict(
            type='mmgfn.RobustnessTestLoop',
            checkpoint=checkpoint,
            fp16=fp16,
            **settings),
        default_scope=cfg.get('default_scope', 'mmgfn'),
        env_cfg=cfg.get('env_cfg', dict(dist_cfg=dict(backend='nccl'))),
        custom_hooks=cfg.get('custom_hooks'),
        log_level=cfg.get('log_level', 'INFO'),
        # unique: mmengine keys its logger and scope by this name, and two
        # calls within a second would share the first call's log file
        experiment_name=f'robustness_{time.strftime("%Y%m%d_%H%M%S")}_'
        f'{uuid.uuid4().hex[:8]}')
    training = model.training
    try:
        runner.test()
    finally:
        model.train(training)
    return runner.test_loop.results
