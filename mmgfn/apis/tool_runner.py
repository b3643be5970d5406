"""Run tool scripts one after the other in one process.

A tool started as a process pays 10-15 s of imports (torch, mmengine,
mmpretrain, mmdet) before it does anything; a job that chains several tools
(``tools/run_demo.py``) runs them here instead, each as ``python script
args`` would from the current folder, with its output in its own log file.
"""
import io
import multiprocessing
import os
import os.path as osp
import runpy
import sys
import time
import traceback
from typing import Optional, Sequence, TextIO

from mmengine.registry import DefaultScope


class StageOutput(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a job that runs tools with
    :func:`run_tool`: the terminal, or while a tool runs with a log, that log
    file, echoing the lines that contain one of the tool's ``show`` strings.

    The loggers that a tool creates keep this object as their stream, so
    that what they write after the tool ends goes to the next tool's log
    rather than to a closed file.

    Args:
        terminal (TextIO): Where the output goes outside a logged tool.
    """

    def __init__(self, terminal: TextIO) -> None:
        self.terminal: TextIO = terminal
        self.log: Optional[TextIO] = None
        self.show: Sequence[str] = ()
        self.line = ''

    def write(self, text: str) -> int:
        if self.log is None:
            return self.terminal.write(text)
        self.log.write(text)
        *lines, self.line = (self.line + text).split('\n')
        for line in lines:
            if any(s in line for s in self.show):
                print(
                    '    ' + line.rstrip().split(' - INFO - ')[-1],
                    file=self.terminal,
                    flush=True)
        return len(text)

    def flush(self) -> None:
        (self.log or self.terminal).flush()

    def fileno(self) -> int:
        return self.terminal.fileno()


def run_tool(script: str,
             args: Sequence,
             log: Optional[str] = None,
             show: Sequence[str] = ()) -> None:
    """Run the tool ``script`` in this process as ``python script args``
    would from the current folder.

    Afterwards ``sys.argv`` and the current folder are restored, the child
    processes the tool left (persistent dataloader workers, which would
    stall the next tool) are ended and mmengine's default scope is cleared;
    the next tool starts in a new second, since mmengine names a run's
    logger and visualizer after the second it starts.

    Args:
        script (str): Path of the tool.
        args (Sequence): Its arguments (each passed as ``str``).
        log (str, optional): File for its output, which needs ``sys.stdout``
            and ``sys.stderr`` to be :class:`StageOutput` objects. Without
            it, the command is printed and the output goes to the terminal.
            Defaults to None.
        show (Sequence[str]): With ``log``, the lines that contain one of
            these are also printed. Defaults to ().

    Raises:
        TypeError: With ``log``, if ``sys.stdout`` or ``sys.stderr`` is not
            a :class:`StageOutput`.
        SystemExit: If the tool fails (exits with a non-zero status or
            raises); the tail of its log is printed first.
    """
    args = [str(a) for a in args]
    if log is None:
        print('+ ' + ' '.join([sys.executable, script, *args]), flush=True)
    outputs = (sys.stdout, sys.stderr) if log else ()
    if not all(isinstance(out, StageOutput) for out in outputs):
        raise TypeError('run_tool with a log needs sys.stdout and sys.stderr '
                        'to be StageOutput objects (see its docstring)')
    if log:
        os.makedirs(osp.dirname(osp.abspath(log)), exist_ok=True)
    argv, cwd, code = list(sys.argv), os.getcwd(), 0
    with open(log or os.devnull, 'w') as f:
        for out in outputs:
            out.log, out.show, out.line = f, show, ''
        sys.argv = [script, *args]
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit as exc:
            code = exc.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
        except Exception:  # noqa: BLE001 - a process would exit with 1
            traceback.print_exc()
            code = 1
        finally:
            for out in outputs:
                out.log = None
            sys.argv = argv
            os.chdir(cwd)
            for child in multiprocessing.active_children():
                child.terminate()
                child.join()
            DefaultScope._instance_dict.clear()
            time.sleep(1 - time.time() % 1)
    if code:
        if log:
            with open(log) as f:
                sys.stderr.write(f.read()[-4000:])
        raise SystemExit(f'{osp.basename(sys.argv[0])}: {script} failed' +
                         (f' (see {log})' if log else ''))
