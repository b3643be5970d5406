"""What ``tools/train.py`` and ``tools/test.py`` share.

The tools follow mmpretrain's and mmdet's (same flags, same precedence of
``work_dir``: CLI > config > ``./work_dirs/<config name>``) and add:

* distributed training and testing without a GPU: under
  ``--launcher pytorch`` (``tools/dist_train.sh``) on a machine where CUDA is
  unavailable, the process group is initialised with the ``gloo`` backend
  and models are wrapped in ``MMDistributedDataParallel`` without
  ``device_ids`` (mmengine 0.10.7 would call ``torch.cuda.set_device``);
* ``--amp`` on the CPU (bfloat16 autocast, see
  :class:`mmgfn.engine.optimizers.DeviceAmpOptimWrapper`);
* preflight checks (:mod:`mmgfn.apis.preflight`) before the Runner starts
  logging, and one-line errors for bad input: missing files (config, dataset
  folder, checkpoint, neighbour file, pretrained weights), an unknown
  component type (with the closest registered names), and component settings
  that cannot work (``topk``, neighbour files for another class count,
  ``ClassBalancedSubset.per_class``, the detection hook's class count), each
  naming the component, its config key and the fix. Set
  ``MMGFN_TRACEBACK=1`` to see the full traceback as well.
"""
import argparse
import gc
import ast
import os
import os.path as osp
import re
import sys
import traceback
from typing import Callable, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmgfn.utils.errors import ConfigError, check_file
from .preflight import registry_hint


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--cfg-options``, ``--launcher`` and ``--local-rank``, as in
    mmpretrain's and mmdet's tools."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the arguments and export ``LOCAL_RANK`` if the launcher did
    not."""
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def load_config(path: str) -> Config:
    """Load a config file, refusing a missing path with a clear message."""
    check_file(path, 'config file')
    return Config.fromfile(path)


def set_work_dir(cfg: Config, work_dir: str, config_path: str) -> None:
    """CLI ``--work-dir`` > ``work_dir`` in the config > config name."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])


def setup_cpu_distributed(cfg: Config) -> None:
    """Prepare a distributed run on a machine without CUDA.

    Initialises the default process group with the ``gloo`` backend from
    torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``) and lets ``MMDistributedDataParallel`` wrap a CPU
    model. Does nothing where CUDA is available or for ``launcher='none'``.

    Raises:
        ConfigError: For a launcher other than ``pytorch`` without CUDA.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ConfigError(
            f'--launcher {launcher} needs GPUs; without CUDA only '
            '--launcher pytorch (tools/dist_train.sh, tools/dist_test.sh) '
            'runs, with the gloo backend')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    if 'DistributedDataParallel' in str(wrapper.get('type')):
        wrapper.setdefault('device_ids', None)  # DDP of a CPU model
    cfg.model_wrapper_cfg = wrapper


def fix_persistent_workers(cfg: Config) -> None:
    """Switch ``persistent_workers`` off in dataloaders without worker
    processes (``num_workers=0``), which torch refuses
    (``persistent_workers option needs num_workers > 0``)."""
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if isinstance(loader, dict) and not loader.get('num_workers', 0):
            loader['persistent_workers'] = False


def enable_amp(cfg: Config) -> None:
    """``--amp``: mixed precision on any device (bfloat16 on the CPU)."""
    cfg.optim_wrapper.type = 'mmgfn.DeviceAmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def build_runner(cfg: Config) -> Runner:
    """Build the default Runner, or ``cfg.runner_type`` from RUNNERS."""
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def _user_error(exc: BaseException) -> str:
    """The one-line explanation of a bad-input error, or '' if ``exc`` is
    not one."""
    if isinstance(exc, (FileNotFoundError, ConfigError)):
        return str(exc)
    if isinstance(exc, KeyError):
        hint = registry_hint(str(exc.args[0]) if exc.args else str(exc))
        if hint:
            return f'unknown component type: {hint}'
    return ''


def shutdown_distributed() -> None:
    """Destroy the process group before the interpreter exits.

    Left to the interpreter's teardown, a gloo process group can abort a
    rank after its work is done (``terminate called without an active
    exception``, exit -6), which torchrun reports as a failed run.

    Destroying the group only drops the default group's own reference: the
    finished Runner lives on in reference cycles (hooks, loops and the
    message hub point back at it), and with it the
    ``MMDistributedDataParallel`` wrapper, whose reducer holds the group.
    The group would then be freed whenever the cyclic garbage collector
    happens to run, or during interpreter finalisation, while gloo's
    threads still hold work. So the cycles are collected first, while the
    interpreter is whole, and the group is freed by the destroy call
    itself.
    """
    if torch.distributed.is_available() and \
            torch.distributed.is_initialized():
        gc.collect()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _flag_value(literal: str) -> str:
    """A Python value as written in a message (``True``, ``("val", )``,
    ``3``) -> what follows its flag on the command line (``''``,
    ``' val'``, ``' 3'``)."""
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return f' {literal}'
    if value is True:
        return ''
    if isinstance(value, (list, tuple)):
        return ''.join(f' {v}' for v in value)
    if isinstance(value, str):
        return f' {value}'
    return f' {literal}'


def flag_wording(message: str, names: Sequence[str]) -> str:
    """Reword a library message for a tool's command line.

    The package's messages name the keyword arguments a Python caller
    passes; a tool whose flags stand for those arguments shows its flags
    instead. Each whole-word occurrence of a name in ``names`` becomes its
    flag (``ann_file`` -> ``--ann-file``), and a name with a value becomes
    the flag and its value (``skip_invalid=True`` -> ``--skip-invalid``,
    ``splits=("val", )`` -> ``--splits val``). A name that is part of a
    dotted config key, of a longer identifier or of a flag is left as it
    is.

    Args:
        message (str): The library's message.
        names (Sequence[str]): Argument names that the tool has flags for
            (``--`` and the name with ``-`` for ``_``).

    Returns:
        str: The message as the tool prints it.
    """
    for name in names:
        flag = '--' + name.replace('_', '-')
        value = (r'(?:=(\([^()]*\)|\[[^\[\]]*\]|"[^"]*"|\'[^\']*\''
                 r'|[\w.+\-]*\w))?')
        pattern = re.compile(rf'(?<![\w.\-]){re.escape(name)}'
                             rf'(?![\w\-]|\.\w){value}')
        message = pattern.sub(
            lambda m: flag + (_flag_value(m.group(1)) if m.group(1) else ''),
            message)
    return message


def run_cli(main: Callable[[], None], flags: Sequence[str] = ()) -> None:
    """Run a tool's ``main`` and turn bad input into one clear line.

    Bad-input errors (see :func:`_user_error`) print
    ``<tool>: error: <message>`` on stderr and exit with status 2; any other
    exception propagates with its traceback. ``MMGFN_TRACEBACK=1`` prints the
    traceback for bad input too.

    Args:
        main (Callable[[], None]): The tool's entry point.
        flags (Sequence[str]): Names of the library arguments the tool has
            flags for: the message speaks of the flags instead (see
            :func:`flag_wording`). Defaults to none.
    """
    try:
        main()
        shutdown_distributed()
    except Exception as exc:  # noqa: BLE001
        msg = flag_wording(_user_error(exc), flags)
        if not msg:
            raise
        if os.environ.get('MMGFN_TRACEBACK') == '1':
            traceback.print_exc()
        tool = osp.basename(sys.argv[0])
        print(f'{tool}: error: {msg}', file=sys.stderr)
        sys.exit(2)


def add_dataset_pass_args(parser: argparse.ArgumentParser,
                          split: str = 'test') -> None:
    """Arguments of the tools that run a classifier over one of a config's
    datasets (``tools/build_neighbors.py``, ``tools/analysis_tools/``):
    ``config``, ``checkpoint``, ``--split``, ``--batch-size``,
    ``--num-workers``, ``--device``, ``--cfg-options``."""
    parser.add_argument('config', help='classification config')
    parser.add_argument('checkpoint', help='checkpoint of the classifier')
    parser.add_argument(
        '--split', default=split, choices=['train', 'val', 'test'],
        help=f'whose dataset to run over, with the test pipeline '
        f'(default: {split})')
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--num-workers', type=int)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value')


def load_tool_config(args: argparse.Namespace) -> Config:
    """``args.config`` with ``args.cfg_options`` merged in."""
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg
