"""Tools run one after the other in one process (mmgfn.apis.tool_runner),
as tools/run_demo.py runs its stages: output in each tool's log, failure,
and what a tool leaves behind (argv, folder, child processes)."""
import io
import multiprocessing
import os
import os.path as osp
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest

from mmgfn.apis.tool_runner import StageOutput, run_tool

TOOL = '''
import multiprocessing, os, sys, time
print('argv', sys.argv[1:])
print('step 1 done')
print('noise')
os.chdir({elsewhere!r})
child = multiprocessing.get_context('fork').Process(target=time.sleep,
                                                    args=(60, ))
child.daemon = True
child.start()
print('oops', file=sys.stderr)
sys.exit({code})
'''


def _run(tmp_path, code: int, log: bool = True):
    script = tmp_path / 'tool.py'
    script.write_text(TOOL.format(elsewhere=str(tmp_path), code=code))
    terminal, errors = io.StringIO(), io.StringIO()
    log_file = str(tmp_path / 'logs' / 'tool.log') if log else None
    argv, cwd, stop = list(sys.argv), os.getcwd(), None
    with redirect_stdout(StageOutput(terminal)), \
            redirect_stderr(StageOutput(errors)):
        try:
            run_tool(str(script), ['a', 1], log_file, ('step ', ))
        except SystemExit as exc:
            stop = str(exc)
    assert sys.argv == argv and os.getcwd() == cwd
    return terminal.getvalue(), errors.getvalue(), log_file, stop


def test_a_tool_in_this_process_logs_and_leaves_nothing(tmp_path):
    terminal, errors, log, stop = _run(tmp_path, 0)
    assert stop is None
    assert terminal == '    step 1 done\n'  # only the lines to show
    assert errors == ''
    with open(log) as f:
        text = f.read()
    assert "argv ['a', '1']" in text and 'noise' in text and 'oops' in text
    # the tool's child process (as a dataloader's workers) is ended
    assert multiprocessing.active_children() == []


def test_a_failing_tool_stops_the_job_with_its_log(tmp_path):
    _, errors, log, stop = _run(tmp_path, 3)
    assert stop == f'{osp.basename(sys.argv[0])}: {tmp_path}/tool.py ' \
        f'failed (see {log})'
    assert 'noise' in errors and 'oops' in errors  # the log's tail
    assert multiprocessing.active_children() == []


def test_a_tool_without_log_writes_to_the_terminal(tmp_path):
    terminal, errors, _, stop = _run(tmp_path, 0, log=False)
    assert stop is None
    assert terminal.startswith('+ ' + sys.executable)
    assert 'noise' in terminal and 'oops' in errors
    # a log needs the outputs that can switch to it
    with pytest.raises(TypeError, match='StageOutput'):
        run_tool(str(tmp_path / 'tool.py'), [], str(tmp_path / 'x.log'))
