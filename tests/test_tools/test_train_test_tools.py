"""tools/train.py, tools/test.py and tools/dist_train.sh run for real.

The tools run in this process (:func:`conftest.run_tool_in_process`: the
script as ``__main__``, the same Runner and logs) except where the process
is what is checked: the distributed launch, and one exit status and
one-line error per tool."""
import gc
import json
import os.path as osp
import re
import socket

import pytest
import torch
from conftest import (DIGITS_CONFIG, ROOT, digits_options, run_tool,
                      run_tool_in_process, write_autocast_recorder)


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _last_top1(text: str) -> float:
    values = re.findall(r'accuracy/top1: ([0-9.]+)', text)
    assert values, text[-3000:]
    return float(values[-1])


def test_train_then_test_reads_back_metric(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = run_tool_in_process([
        'tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir,
        '--cfg-options', *digits_options(image_folder, max_epochs=3)
    ])
    _check_ok(proc)
    ckpt = osp.join(work_dir, 'epoch_3.pth')
    assert osp.isfile(ckpt)

    out_metrics = str(tmp_path / 'metrics.json')
    proc = run_tool_in_process([
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
        run_tool_in_process([
            'tools/train.py', DIGITS_CONFIG, '--work-dir', work_dir,
            '--cfg-options', *opts
        ]))
    opts = digits_options(image_folder, max_epochs=2)
    proc = run_tool_in_process([
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
    """--amp of train.py and test.py, seen inside the model: every training
    and test forward of the backbone runs under bfloat16 autocast."""
    config, events_file, env = write_autocast_recorder(tmp_path,
                                                       DIGITS_CONFIG)
    work_dir = str(tmp_path / 'work')
    opts = digits_options(image_folder, max_epochs=1)
    proc = run_tool_in_process(['tools/train.py', config, '--work-dir',
                                work_dir, '--amp', '--cfg-options', *opts],
                               env=env)
    _check_ok(proc)
    cfg_dump = open(osp.join(work_dir, osp.basename(config))).read()
    assert 'mmgfn.DeviceAmpOptimWrapper' in cfg_dump
    with open(events_file) as f:
        events = json.load(f)
    # 32 images, batch 8: 4 iterations, one forward each (no attack)
    assert [(e['phase'], e['iter'], e['attack']) for e in events] == [
        ('train', i, False) for i in range(4)]
    proc = run_tool_in_process(['tools/test.py', config,
                                osp.join(work_dir, 'epoch_1.pth'),
                                '--work-dir', work_dir, '--amp',
                                '--cfg-options', *opts], env=env)
    _check_ok(proc)
    with open(events_file) as f:
        test_events = json.load(f)
    assert [(e['phase'], e['iter']) for e in test_events] == [
        ('test', i) for i in range(4)]
    for e in events + test_events:
        assert (e['autocast'], e['dtype'], e['output']) == (
            True, 'bfloat16', 'bfloat16'), e


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_distributed_run_frees_its_model_before_the_group(
        image_folder, tmp_path):
    """A distributed run (gloo, one rank, in this process) leaves no
    ``MMDistributedDataParallel`` behind when its process group is
    destroyed: the finished Runner sits in reference cycles, and a wrapper
    left to them keeps the gloo group alive until the interpreter's
    teardown, where it can abort the rank (SIGABRT). The collector is off
    during the run, so only the tool's own collection can free them."""
    env = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(_free_port()))
    gc.collect()
    gc.disable()
    try:
        proc = run_tool_in_process([
            'tools/train.py', DIGITS_CONFIG, '--work-dir',
            str(tmp_path / 'work'), '--launcher',
            'pytorch', '--cfg-options',
            *digits_options(image_folder, max_epochs=1)
        ], env=env)
        alive = [
            type(obj).__name__ for obj in gc.get_objects()
            if isinstance(obj, torch.nn.parallel.DistributedDataParallel)
        ]
        initialized = torch.distributed.is_initialized()
    finally:
        gc.enable()
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    _check_ok(proc)
    assert 'Distributed launcher: pytorch' in proc.stdout + proc.stderr
    assert not initialized
    assert alive == []


def _check_bad_input(proc, *names):
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert 'error:' in last, proc.stderr[-2000:]
    for name in names:
        assert name in last, last
    assert 'Traceback' not in proc.stderr


def test_missing_config_is_named(tmp_path):
    missing = str(tmp_path / 'nope.py')
    # in-process: tests/test_apis/test_errors.py runs both tools as
    # processes for their exit status and error line
    _check_bad_input(run_tool_in_process(['tools/train.py', missing]),
                     missing, 'config file')
    _check_bad_input(
        run_tool_in_process(['tools/test.py', missing, 'x.pth']), missing)


def test_unknown_component_type_is_named(image_folder, tmp_path):
    proc = run_tool_in_process([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options',
        *digits_options(image_folder), 'model.backbone.type=NoSuchBackbone'
    ])
    _check_bad_input(proc, 'NoSuchBackbone', 'registry')


def test_missing_dataset_folder_is_named(tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = run_tool_in_process([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *digits_options(missing)
    ])
    _check_bad_input(proc, missing, 'train_dataloader.dataset.data_root')


def test_missing_checkpoint_is_named(image_folder, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    opts = digits_options(image_folder)
    proc = run_tool_in_process(['tools/test.py', DIGITS_CONFIG, missing,
                     '--cfg-options', *opts])
    _check_bad_input(proc, missing, 'checkpoint')
    proc = run_tool_in_process([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--resume', missing, '--cfg-options', *opts
    ])
    _check_bad_input(proc, missing, 'load_from, resume=True')
    proc = run_tool_in_process([
        'tools/train.py', DIGITS_CONFIG, '--work-dir',
        str(tmp_path / 'w'), '--cfg-options', *opts, f'load_from={missing}'
    ])
    _check_bad_input(proc, missing, 'load_from')


# ---------------------------------------------------------------- small fixes
EQ4_CONFIG = DIGITS_CONFIG.replace('resnet-tiny_1xb32_digits.py',
                                   'gfn-eq4_resnet-tiny_1xb32_digits.py')


def _digits_model(num_classes=4, seed=0):
    """The digits classifier of the config, randomly initialised."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmgfn.registry import MODELS
    cfg = Config.fromfile(DIGITS_CONFIG)
    cfg.model.head.num_classes = num_classes
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmgfn'):
        return MODELS.build(cfg.model).eval()


def test_test_tool_without_worker_processes(image_folder, tmp_path):
    """test.py with num_workers=0 and a config asking for persistent
    workers runs (torch refuses the pair), as train.py does."""
    import torch
    ckpt = str(tmp_path / 'model.pth')
    torch.save({'state_dict': _digits_model().state_dict()}, ckpt)
    proc = run_tool_in_process([
        'tools/test.py', DIGITS_CONFIG, ckpt, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        *digits_options(image_folder),
        'test_dataloader.persistent_workers=True'
    ])
    _check_ok(proc)
    assert 'persistent_workers' not in proc.stderr
    _last_top1(proc.stdout + proc.stderr)


def _eq4_neighbors(model, image_folder, topk):
    """GFN's Eq. 4 by hand: mean pre-logits feature of each class over the
    training images (read with OpenCV, normalised as the config says),
    cosine similarity, the top-k other classes (ties: lower index)."""
    import glob

    import cv2
    import torch
    feats = []
    for c in range(4):
        files = sorted(glob.glob(f'{image_folder}/train/class_{c}/*'))
        imgs = torch.stack([
            torch.from_numpy(cv2.imread(f)).permute(2, 0, 1).float()
            for f in files
        ])
        x = (imgs - 77.9) / 82.5  # BGR as read; to_rgb=False
        with torch.no_grad():
            feat = model.head.pre_logits(model.extract_feat(x))
        feats.append(feat.mean(0))
    emb = torch.nn.functional.normalize(torch.stack(feats), dim=1)
    sim = emb @ emb.t()
    rows = []
    for c in range(4):
        order = sorted((j for j in range(4) if j != c),
                       key=lambda j: (-float(sim[c, j]), j))
        rows.append(order[:topk])
    return rows


def test_eq4_neighbours_from_plain_dict_checkpoint(image_folder, tmp_path):
    """build_neighbors.py reads a checkpoint whose state_dict is a plain
    dict (no ``_metadata``) and writes GFN's Eq. 4 table; the digits Eq. 4
    config variant trains with that table."""
    import torch
    model = _digits_model(seed=1)
    ckpt = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': dict(model.state_dict())}, ckpt)
    out = str(tmp_path / 'digits_top2.json')
    options = digits_options(image_folder, max_epochs=1) + [
        'data_preprocessor.topk=2', 'model.head.loss.topk=2',
        f'neighbor_file={out}', f'data_preprocessor.neighbor_file={out}'
    ]
    proc = run_tool_in_process([
        'tools/build_neighbors.py', EQ4_CONFIG, ckpt, '--cfg-options',
        *options
    ])
    _check_ok(proc)
    with open(out) as f:
        table = json.load(f)
    assert table['num_classes'] == 4 and table['topk'] == 2
    assert table['neighbors'] == _eq4_neighbors(model, image_folder, 2)

    work_dir = str(tmp_path / 'work')
    proc = run_tool_in_process([
        'tools/train.py', EQ4_CONFIG, '--work-dir', work_dir,
        '--cfg-options', *options, f'load_from={ckpt}'
    ])
    _check_ok(proc)
    state = torch.load(osp.join(work_dir, 'epoch_1.pth'),
                       weights_only=False)['state_dict']
    trained = state['data_preprocessor.neighbor_table.neighbors'].tolist()
    assert trained == table['neighbors']


README_PATH = osp.join(ROOT, 'README.md')


def _readme() -> str:
    with open(README_PATH, encoding='utf-8') as f:
        return f.read()


def test_readme_headings_are_unique():
    prose = re.sub(r'```.*?```', '', _readme(), flags=re.S)
    headings = [line.strip() for line in prose.splitlines()
                if re.match(r'#{1,6} \S', line)]
    repeated = {h for h in headings if headings.count(h) > 1}
    assert not repeated, f'README repeats {sorted(repeated)}'
    assert '### Compatibility fixes applied by mmgfn' in headings


def test_readme_commands_use_one_interpreter():
    """Every command line of the README's shell blocks that runs Python
    runs the environment's interpreter, written one way."""
    text = _readme()
    blocks = re.findall(r'```bash\n(.*?)```', text, re.S)
    lines = [line for b in blocks for line in b.splitlines()]
    runs = [tok for line in lines
            for tok in re.findall(r'(?:^|[\s;&|(])(\S*python3?)\s', line)]
    assert len(runs) > 20, runs
    assert set(runs) == {'.venv/bin/python'}, sorted(set(runs))


def test_readme_says_how_to_train_the_test_only_detectors():
    text = _readme()
    section = text[text.index('## Training'):text.index(
        '## Robustness evaluation')]
    m = re.search(r'RTTS.{0,40}ExDark.*?```bash\n.*?```', section, re.S)
    assert m, 'no paragraph on the RTTS / ExDark detectors'
    para = m.group(0)
    assert 'faster-rcnn_vit-b-gfn_sfp_1x_coco.py' in para
    assert 'tools/train.py' in para and 'tools/test.py' in para
    assert 'foggy-cityscapes' in para


def test_readme_host_model_in_mmgfn_scope_builds(tmp_path):
    """The README's host-model block, pasted into an mmgfn-scoped config,
    builds an mmpretrain classifier with mmgfn's preprocessor and loss."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmgfn.models import (NeighborAdversarialDataPreprocessor,
                              NeighborWeightedCELoss)
    from mmgfn.registry import MODELS
    text = _readme()
    start = text.index('Give a host model written in an mmgfn-scoped config')
    block = re.search(r'```python\n(.*?)```', text[start:], re.S).group(1)
    path = tmp_path / 'host_model.py'
    path.write_text("default_scope = 'mmgfn'\n" + block)
    cfg = Config.fromfile(str(path))
    with DefaultScope.overwrite_default_scope('mmgfn'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'ImageClassifier'
    assert isinstance(model.data_preprocessor,
                      NeighborAdversarialDataPreprocessor)
    assert isinstance(model.head.loss_module, NeighborWeightedCELoss)
    # the same block with a prefix instead of _scope_ is what fails
    path.write_text("default_scope = 'mmgfn'\n" + block.replace(
        "_scope_='mmpretrain',\n    type='ImageClassifier'",
        "type='mmpretrain.ImageClassifier'"))
    cfg = Config.fromfile(str(path))
    with DefaultScope.overwrite_default_scope('mmgfn'):
        with pytest.raises(KeyError, match='ResNet_CIFAR is not in the '
                           'mmgfn::model registry'):
            MODELS.build(cfg.model)


def test_mutation_list_matches_the_code():
    """Every curated bug of .dev_scripts/mutation_test.py still finds its
    original text exactly once (code that moved must take its mutants
    along), and each maps to test files that exist."""
    proc = run_tool(['.dev_scripts/mutation_test.py', '--list'])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    count = int(re.search(r'^(\d+) mutants$', proc.stdout, re.M).group(1))
    tests = re.findall(r'(tests/[\w/]+\.py)::', proc.stdout)
    assert count > 0 and len(tests) >= count
    for path in set(tests):
        assert osp.isfile(osp.join(ROOT, path)), path
