"""tools/train.py, tools/test.py and tools/dist_train.sh run for real."""
import json
import os.path as osp
import re

import pytest
from conftest import DIGITS_CONFIG, digits_options, run_tool


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _last_top1(text: str) -> float:
    values = re.findall(r'accuracy/top1: ([0-9.]+)', text)
    assert values, text[-3000:]
    return float(values[-1])


def test_train_then_test_reads_back_metric(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir,
        '--cfg-options', *digits_options(image_folder, max_epochs=3)
    ])
    _check_ok(proc)
    ckpt = osp.join(work_dir, 'epoch_3.pth')
    assert osp.isfile(ckpt)

    out_metrics = str(tmp_path / 'metrics.json')
    proc = run_tool([
        'tools/test.py', DIGITS_CONFIG, ckpt, '--work-dir', work_dir,
        '--out-metrics', out_metrics, '--cfg-options',
        *digits_options(image_folder)
    ])
    _check_ok(proc)
    logged = _last_top1(proc.stdout + proc.stderr)
    with open(out_metrics) as f:
        written = json.load(f)['accuracy/top1']
    assert written == pytest.approx(logged, abs=1e-3)
    # 4 classes told apart by colour and stripes: far above chance (25 %)
    assert written >= 75.0


def test_resume_flag_continues_from_latest(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    opts = digits_options(image_folder, max_epochs=1)
    _check_ok(
        run_tool([
            'tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir,
            '--cfg-options', *opts
        ]))
    opts = digits_options(image_folder, max_epochs=2)
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir, '--resume',
        '--cfg-options', *opts
    ])
    _check_ok(proc)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 4' in log
    assert 'Epoch(train) [1]' not in log
    assert 'Epoch(train) [2]' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))


def test_amp_runs_on_cpu(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir, '--amp',
        '--cfg-options', *digits_options(image_folder, max_epochs=1)
    ])
    _check_ok(proc)
    cfg_dump = open(osp.join(work_dir, 'resnet-tiny_1xb32_digits.py')).read()
    assert 'mmgfn.DeviceAmpOptimWrapper' in cfg_dump
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_dist_train_and_test_two_processes_gloo(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = run_tool([
        'tools/dist_train.sh', DIGITS_CONFIG, '2', '--work-dir', work_dir,
        '--cfg-options', *digits_options(image_folder, max_epochs=1)
    ], env={'PORT': '29517'})
    _check_ok(proc)
    log = proc.stdout + proc.stderr
    assert 'Distributed launcher: pytorch' in log
    assert "'backend': 'gloo'" in log or 'backend=gloo' in log or \
        "backend='gloo'" in log
    # 32 training images, batch 8 per process, 2 processes: 2 iterations
    assert 'Epoch(train) [1][2/2]' in log
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)

    out_metrics = str(tmp_path / 'metrics.json')
    proc = run_tool([
        'tools/dist_test.sh', DIGITS_CONFIG, ckpt, '2', '--work-dir',
        work_dir, '--out-metrics', out_metrics, '--cfg-options',
        *digits_options(image_folder)
    ], env={'PORT': '29518'})
    _check_ok(proc)
    # 32 validation images over 2 processes: 2 batches of 8 each
    assert 'Epoch(test) [2/2]' in proc.stdout + proc.stderr
    with open(out_metrics) as f:
        top1 = json.load(f)['accuracy/top1']
    assert top1 == pytest.approx(_last_top1(proc.stdout + proc.stderr),
                                 abs=1e-3)


def _check_bad_input(proc, *names):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert 'error:' in last, proc.stderr[-2000:]
    for name in names:
        assert name in last, last
    assert 'Traceback' not in proc.stderr


def test_missing_config_is_named(tmp_path):
    missing = str(tmp_path / 'nope.py')
    _check_bad_input(run_tool(['tools/train.py', missing]), missing,
                     'config file')
    _check_bad_input(run_tool(['tools/test.py', missing, 'x.pth']), missing)


def test_unknown_component_type_is_named(image_folder, tmp_path):
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options',
        *digits_options(image_folder), 'model.backbone.type=NoSuchBackbone'
    ])
    _check_bad_input(proc, 'NoSuchBackbone', 'registry')


def test_missing_dataset_folder_is_named(tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *digits_options(missing)
    ])
    _check_bad_input(proc, missing, 'train_dataloader.dataset.data_root')


def test_missing_checkpoint_is_named(image_folder, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    opts = digits_options(image_folder)
    proc = run_tool(['tools/test.py', DIGITS_CONFIG, missing,
                     '--cfg-options', *opts])
    _check_bad_input(proc, missing, 'checkpoint')
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--resume', missing, '--cfg-options', *opts
    ])
    _check_bad_input(proc, missing, '--resume')
    proc = run_tool([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *opts, f'load_from={missing}'
    ])
    _check_bad_input(proc, missing, 'load_from')
