"""tools/analysis_tools/benchmark_*.py run on tiny settings and print
ratios consistent with the numbers they print (in this process, see
:func:`conftest.run_tool_in_process`: the checks are of consistency, not
of a process)."""
import argparse
import json
import re

import pytest
import torch
from conftest import load_tool, run_tool_in_process

GFN_STEP = 'tools/analysis_tools/benchmark_gfn_step.py'
COLUMNS = ('model', 'dtype', 'batch', 'plain ms', 'GFN ms', 'time ratio',
           'plain peak MB', 'GFN peak MB', 'memory ratio')


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _table(stdout: str) -> list:
    """The markdown table's rows as dicts keyed by :data:`COLUMNS`."""
    lines = [line for line in stdout.splitlines() if line.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    assert tuple(header) == COLUMNS, lines[0]
    assert set(lines[1]) <= set('|-'), lines[1]
    return [
        dict(zip(COLUMNS, (c.strip() for c in line.strip('|').split('|'))))
        for line in lines[2:]
    ]


def _check_ratio(ratio: str, num: str, den: str) -> None:
    """``ratio`` (2 decimals, ``x``) is ``num / den`` of the unrounded
    values behind ``num`` and ``den`` (1 decimal each)."""
    assert ratio.endswith('x'), ratio
    r, n, d = float(ratio[:-1]), float(num), float(den)
    assert n > 0 and d > 0, (num, den)
    lo = (n - 0.05) / (d + 0.05)
    hi = (n + 0.05) / (d - 0.05) if d > 0.05 else float('inf')
    assert lo - 0.005 <= r <= hi + 0.005, (ratio, num, den)


@pytest.fixture(scope='module')
def gfn_step(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('bench') / 'bench.json')
    stdout = _ok(run_tool_in_process([
        GFN_STEP, '--device', 'cpu', '--models', 'resnet-tiny',
        'faster-rcnn-r18', '--steps', '2', '--warmup', '1', '--batch-size',
        '2', '--det-size', '64', '64', '--json', out
    ]))
    with open(out) as f:
        return stdout, json.load(f)


def test_gfn_step_table_has_a_row_per_model(gfn_step):
    stdout, _ = gfn_step
    rows = _table(stdout)
    assert [r['model'] for r in rows] == [
        'resnet-tiny', 'faster-rcnn-r18 (64x64)'
    ]
    for row in rows:
        assert row['dtype'] == 'float32'
        assert row['batch'] == '2'


def test_gfn_step_ratios_are_the_printed_quotients(gfn_step):
    stdout, _ = gfn_step
    for row in _table(stdout):
        _check_ratio(row['time ratio'], row['GFN ms'], row['plain ms'])
        _check_ratio(row['memory ratio'], row['GFN peak MB'],
                     row['plain peak MB'])


def test_gfn_step_json_matches_the_table(gfn_step):
    stdout, report = gfn_step
    assert report['device'].startswith('CPU')
    results = report['results']
    assert [r['model'] for r in results] == ['resnet-tiny',
                                             'faster-rcnn-r18']
    assert results[1]['image_size'] == [64, 64]
    for r, row in zip(results, _table(stdout)):
        assert r['dtype'] == 'float32' and r['amp'] is False
        assert r['batch_size'] == 2 and r['steps'] == 2
        assert r['time_ratio'] == pytest.approx(r['gfn_ms'] / r['plain_ms'])
        assert r['memory_ratio'] == pytest.approx(r['gfn_peak_mb'] /
                                                  r['plain_peak_mb'])
        assert f"{r['plain_ms']:.1f}" == row['plain ms']
        assert f"{r['gfn_ms']:.1f}" == row['GFN ms']
        assert f"{r['time_ratio']:.2f}x" == row['time ratio']
        assert f"{r['plain_peak_mb']:.1f}" == row['plain peak MB']
        assert f"{r['gfn_peak_mb']:.1f}" == row['GFN peak MB']
        assert f"{r['memory_ratio']:.2f}x" == row['memory ratio']


def test_gfn_step_batches_are_seeded_and_sized():
    tool = load_tool(GFN_STEP, 'benchmark_gfn_step')
    args = argparse.Namespace(det_size=None)
    assert tool.det_size('resnet-tiny', args) is None
    cls = tool.batch('resnet-tiny', 3, tool.det_size('resnet-tiny', args))
    assert [tuple(x.shape) for x in cls['inputs']] == [(3, 32, 32)] * 3
    assert tool.det_size('faster-rcnn-r50', args) == (800, 1333)
    args.det_size = [48, 64]
    size = tool.det_size('faster-rcnn-r18', args)
    det, again = (tool.batch('faster-rcnn-r18', 3, size) for _ in range(2))
    # every second image narrower: the batch is padded, as a real one
    assert [tuple(x.shape) for x in det['inputs']] == [(3, 48, 64),
                                                        (3, 48, 48),
                                                        (3, 48, 64)]
    for x, y, s in zip(det['inputs'], again['inputs'], det['data_samples']):
        assert x.dtype == torch.uint8 and torch.equal(x, y)
        assert tuple(s.img_shape) == tuple(x.shape[1:])
        boxes = s.gt_instances.bboxes
        assert len(boxes) == len(s.gt_instances.labels) == 5
        assert (boxes[:, 2] <= x.shape[2]).all()
        assert (boxes[:, 3] <= x.shape[1]).all()


def test_corruption_generation_benchmark_prints_its_ratio(tmp_path):
    stdout = _ok(run_tool_in_process([
        'tools/analysis_tools/benchmark_corruption_generation.py',
        '--num-images', '2', '--size', '64', '48', '--corruptions',
        'gaussian_noise', '--severities', '1', '--workers', '1',
        '--work-dir', str(tmp_path / 'work')
    ]))
    single = re.search(
        r'single process, imagecorruptions: 2 images in [0-9.]+ s = '
        r'([0-9.]+) images/s', stdout)
    assert single, stdout
    tool = re.findall(
        r'generate_corrupted_dataset, 1 workers \((.*?)\): 2 images in '
        r'[0-9.]+ s = ([0-9.]+) images/s; ratio to single process: '
        r'([0-9.]+)x', stdout)
    assert [what for what, _, _ in tool] == [
        'fork server start included', 'fork server already running'
    ], stdout
    base = float(single.group(1))
    for _, rate, ratio in tool:
        # both rates are printed with 2 decimals
        assert float(ratio) == pytest.approx(
            float(rate) / base, abs=0.01 + 0.01 * float(ratio)), stdout


def test_corruption_backend_benchmark_prints_both_rates_and_ratios(
        tmp_path):
    stdout = _ok(run_tool_in_process([
        'tools/analysis_tools/benchmark_corruption_generation.py',
        '--compare-backends', '--num-images', '2', '--size', '64', '48',
        '--corruptions', 'contrast', 'glass_blur', '--severities', '1', '5',
        '--work-dir', str(tmp_path / 'work')
    ]))
    assert 'images/s, 2 images of 64x48, severities [1, 5]' in stdout
    rows = re.findall(r'^(\w+) +([0-9.]+) +([0-9.]+) +([0-9.]+)x', stdout,
                      re.M)
    assert [r[0] for r in rows] == ['contrast', 'glass_blur'], stdout
    for _, ref, cpu, ratio in rows:
        assert float(ratio) == pytest.approx(
            float(cpu) / float(ref), abs=0.01 + 0.01 * float(ratio))
    assert 'seconds per image: imagecorruptions' in stdout
