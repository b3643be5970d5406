"""tools/test_robustness.py end to end: real models, real files."""
import json
import os
import os.path as osp
import pickle
import shutil
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import (DIGITS_CONFIG, build_digits_model, digits_options,
                      hand_flip_rates, make_image, pythonpath_env, run_tool,
                      run_tool_in_process, save_checkpoint, train_digits,
                      write_videos)
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmgfn.datasets import ImageNetC, load_wnids
from mmgfn.utils.errors import ConfigError

TOOL = 'tools/test_robustness.py'
ALEXNET_FOG, ALEXNET_GAUSSIAN_NOISE = 0.819324, 0.886428


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _check_refused(proc, *phrases):
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('test_robustness.py: error: '), last
    for phrase in phrases:
        assert phrase in last, last


def _lines(path):
    with open(path) as f:
        return f.read().splitlines()


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 4-class digits ResNet trained 2 epochs (checkpoints of both)."""
    images, work = train_digits(tmp_path_factory.mktemp('trained'))
    return dict(
        images=images,
        ckpt=osp.join(work, 'epoch_2.pth'),
        early=osp.join(work, 'epoch_1.pth'))


@pytest.fixture(scope='module')
def tool():
    """The sweep's checks (:mod:`mmgfn.evaluation.robustness_sweep`)."""
    from mmgfn.evaluation import robustness_sweep
    return robustness_sweep


@pytest.fixture(scope='module')
def constant_1000_way(tmp_path_factory):
    """A real 1000-way digits ResNet whose logits are its head bias: the
    1000-way argmax is class 0 (n01440764, in neither ImageNet-A nor -R),
    the best class of ImageNet-A and -R is 1k index 13 (n01534433)."""
    model = build_digits_model(1000)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.bias[0] = 10.0
        model.head.fc.bias[13] = 5.0
    return save_checkpoint(model,
                           str(tmp_path_factory.mktemp('const') / 'const.pth'))


def _write_images(folder, count, label=0, seed=0, ext='png', size=32):
    """``count`` images; ImageNet-C cells as the released files are:
    ``ext='JPEG', size=224`` (AlexNet normalisation is refused on others)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        cv2.imwrite(osp.join(folder, f'{i}.{ext}'),
                    make_image(label, rng, size))


# ---------------------------------------------------------------- corrupt ---
def test_corrupt_suite_resumes_and_reports_against_a_baseline(
        trained, tmp_path):
    work = str(tmp_path / 'work')
    cells_file = osp.join(work, 'cells.jsonl')
    base = [TOOL, DIGITS_CONFIG, trained['ckpt'], '--suite', 'corrupt',
            '--work-dir', work]
    opts = ['--cfg-options', *digits_options(trained['images'])]

    # 1) a subset: its 3 cells are evaluated and kept, the mCE is refused
    proc = run_tool(base + ['--corruptions', 'fog', '--severities', '0',
                            '1', '2'] + opts)
    _check_refused(proc, 'mCE needs 75 cells', 'fog/3,4,5',
                   '--allow-partial')
    first = _lines(cells_file)
    assert len(first) == 3
    with open(osp.join(work, 'results.json')) as f:
        refused = json.load(f)
    assert refused['summary'] is None and 'fog/3,4,5' in refused['refused']

    # 2) rerun with one more corruption and a baseline checkpoint
    proc = run_tool_in_process(base + [
        '--corruptions', 'fog', 'gaussian_noise', '--severities', '0', '1',
        '2', '--allow-partial', '--baseline-checkpoint', trained['early']
    ] + opts)
    _check_ok(proc)
    assert 'main model: skipping 3 finished cells, 2 to evaluate' in \
        proc.stdout
    assert 'baseline model: skipping 0 finished cells, 5 to evaluate' in \
        proc.stdout
    second = _lines(cells_file)
    assert second[:3] == first  # finished cells untouched (time stamps too)
    assert len(second) == 3 + 2 + 5

    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    for cell in results['cells'] + results['baseline_cells']:
        assert cell['value'] == pytest.approx(
            1 - cell['metrics']['accuracy/top1'] / 100)
        assert cell['num_samples'] == 32
    err = {(c['corruption'], c['severity']): c['value']
           for c in results['cells']}
    ref = {(c['corruption'], c['severity']): c['value']
           for c in results['baseline_cells']}
    assert set(err) == set(ref) == {('clean', 0), ('fog', 1), ('fog', 2),
                                    ('gaussian_noise', 1),
                                    ('gaussian_noise', 2)}
    s = results['summary']
    assert s['partial'] is True
    assert s['num_corruptions'] == 2 and s['num_cells'] == 4
    assert s['clean_error'] == err[('clean', 0)]
    fog = err[('fog', 1)] + err[('fog', 2)]
    noise = err[('gaussian_noise', 1)] + err[('gaussian_noise', 2)]
    assert s['mean_corruption_error'] == pytest.approx((fog / 2 + noise / 2)
                                                       / 2)
    base_fog = ref[('fog', 1)] + ref[('fog', 2)]
    base_noise = ref[('gaussian_noise', 1)] + ref[('gaussian_noise', 2)]
    assert s['mCE_alexnet'] is None
    assert s['mCE_vs_baseline'] == pytest.approx(
        (fog / base_fog + noise / base_noise) / 2)
    assert s['baseline_model']['ce']['fog'] == pytest.approx(fog / base_fog)
    dens = [base_fog - 2 * ref[('clean', 0)],
            base_noise - 2 * ref[('clean', 0)]]
    if min(dens) > 0:
        assert s['relative_mCE_vs_baseline'] == pytest.approx(
            ((fog - 2 * err[('clean', 0)]) / dens[0] +
             (noise - 2 * err[('clean', 0)]) / dens[1]) / 2)
    else:  # the baseline is not hurt by a corruption: no relative CE
        assert s['relative_mCE_vs_baseline'] is None
        assert any('relative CE not computed' in n for n in s['notes'])

    rows = _lines(osp.join(work, 'results.csv'))
    assert rows[0] == 'model,corruption,severity,quantity,value'
    assert len(rows) == 1 + 5 + 5
    assert f'main,fog,2,error,{err[("fog", 2)]!r}' in rows
    md = open(osp.join(work, 'results.md')).read()
    assert '| fog |' in md and '- partial: True' in md
    assert 'CE (baseline)' in md
    for name in ('error_vs_severity.png', 'ce_vs_baseline.png'):
        img = cv2.imread(osp.join(work, name))
        assert img is not None and img.shape[0] > 100


def test_pregenerated_folders_and_bad_data_are_named(trained, tmp_path,
                                                     tool):
    gen = str(tmp_path / 'generated')
    val = osp.join(trained['images'], 'val')
    # "fog/1" holds exact copies of the clean images: same error as clean
    shutil.copytree(val, osp.join(gen, 'fog', '1'))
    shutil.copytree(val, osp.join(gen, 'gaussian_noise', '1'))
    broken = osp.join(gen, 'gaussian_noise', '1', 'class_2', '001.jpg')
    with open(broken, 'wb') as f:
        f.write(b'this is not a JPEG')
    work = str(tmp_path / 'work')
    base = [TOOL, DIGITS_CONFIG, trained['ckpt'], '--suite', 'corrupt',
            '--work-dir', work, '--corrupted-root', gen, '--allow-partial']
    opts = ['--cfg-options', *digits_options(trained['images'])]

    proc = run_tool_in_process(
        base + ['--corruptions', 'fog', 'gaussian_noise', '--severities',
                '0', '1'] + opts)
    _check_refused(proc, 'cell gaussian_noise/1', f'"{broken}"',
                   'unreadable image')
    cells = [json.loads(line)
             for line in _lines(osp.join(work, 'cells.jsonl'))]
    assert [(c['corruption'], c['severity']) for c in cells] == [
        ('clean', 0), ('fog', 1)]
    assert cells[1]['data'] == 'pre-generated:' + osp.abspath(gen)
    assert cells[1]['value'] == cells[0]['value']


def test_missing_folders_and_class_counts_are_checked_first(
        trained, tmp_path, tool):
    """The checks the tool runs before building the Runner."""
    cfg = Config.fromfile(DIGITS_CONFIG)
    cfg.merge_from_dict(
        dict(o.split('=', 1) for o in digits_options(trained['images'])
             if o.startswith('test_dataloader.dataset.data_root')))
    gen = str(tmp_path / 'generated')
    os.makedirs(osp.join(gen, 'fog', '1'))
    args = SimpleNamespace(
        suite='corrupt', corruptions=['fog'], severities=[1, 2],
        corrupted_root=gen, data_root=None, step=1)
    with pytest.raises(FileNotFoundError,
                       match='severity 2 of corruption "fog" is missing'):
        tool.Suite(args, cfg)
    args.corruptions = ['snow']
    with pytest.raises(FileNotFoundError, match='corruption "snow"'):
        tool.Suite(args, cfg)
    args.corruptions = ['fog']
    args.severities = [0, 1]
    suite = tool.Suite(args, cfg)
    assert suite.cells == [('clean', 0), ('fog', 1)]

    cfg.model.head.num_classes = 10
    with pytest.raises(ConfigError,
                       match='has 4 classes.*model.head.num_classes is 10'):
        tool.check_num_classes(trained['ckpt'], cfg, 'checkpoint')
    cfg.model.head.num_classes = 4
    assert tool.check_num_classes(trained['ckpt'], cfg, 'checkpoint') == 4
    # the ImageNet-A/R logit mask needs a 1000-way classifier
    for name in ('imagenet-a', 'imagenet-r'):
        with pytest.raises(ConfigError,
                           match='keeps 200 of the 1000 logits.* 4 classes'):
            tool.check_dataset_classes(4, SimpleNamespace(name=name), None)
    tool.check_dataset_classes(1000, SimpleNamespace(name=name), None)
    # ImageNet-C labels are ImageNet-1k's: a 4-class model cannot be scored
    root = str(tmp_path / 'imagenet-c')
    _write_images(osp.join(root, 'fog', '1', 'n01440764'), 1)
    dataset = ImageNetC(root, 'fog', 1)
    with pytest.raises(ConfigError, match='has 4 classes.*the '
                       'imagenet-c dataset has 1000 classes'):
        tool.check_dataset_classes(4, SimpleNamespace(name='imagenet-c'),
                                   dataset)
    tool.check_dataset_classes(1000, SimpleNamespace(name='imagenet-c'),
                               dataset)


# ------------------------------------------------- ImageNet-C, -A with a ---
# ------------------------------------------------- 1000-way model        ---
def test_imagenet_c_and_a_with_a_1000_way_model(constant_1000_way,
                                                tmp_path):
    wnids = load_wnids('imagenet1k')
    root = str(tmp_path / 'imagenet-c')
    for corruption in ('fog', 'gaussian_noise'):
        for severity in ('1', '2'):
            cell = osp.join(root, corruption, severity)
            released = dict(ext='JPEG', size=224)
            _write_images(osp.join(cell, wnids[0]), 2, **released)  # right
            _write_images(osp.join(cell, wnids[1]), 1, **released)  # wrong
            _write_images(osp.join(cell, wnids[6]), 1, **released)  # wrong
    clean = str(tmp_path / 'imagenet')
    _write_images(osp.join(clean, 'val', wnids[0]), 3)
    _write_images(osp.join(clean, 'val', wnids[6]), 1)
    opts = [
        '--cfg-options', 'model.head.num_classes=1000',
        'data_preprocessor.num_classes=1000',
        'test_dataloader.dataset.type=mmgfn.WnidFolderDataset',
        f'test_dataloader.dataset.data_root={clean}',
        'test_dataloader.num_workers=0'
    ]
    work = str(tmp_path / 'work_c')
    proc = run_tool_in_process([
        TOOL, DIGITS_CONFIG, constant_1000_way, '--suite', 'imagenet-c',
        '--data-root', root, '--corruptions', 'fog', 'gaussian_noise',
        '--severities', '0', '1', '2', '--allow-partial',
        '--baseline-clean-error', '0.4348', '--work-dir', work
    ] + opts)
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    err = {(c['corruption'], c['severity']): c['value']
           for c in results['cells']}
    # every prediction is class 0: 2 of 4 right per cell, 3 of 4 clean
    assert err == pytest.approx({('clean', 0): 0.25, ('fog', 1): 0.5,
                                 ('fog', 2): 0.5, ('gaussian_noise', 1): 0.5,
                                 ('gaussian_noise', 2): 0.5})
    s = results['summary']
    assert s['mCE_vs_baseline'] is None
    ce_fog = (0.5 + 0.5) / (2 * ALEXNET_FOG)
    ce_noise = (0.5 + 0.5) / (2 * ALEXNET_GAUSSIAN_NOISE)
    assert s['mCE_alexnet'] == pytest.approx((ce_fog + ce_noise) / 2)
    rel_fog = (1.0 - 2 * 0.25) / (2 * ALEXNET_FOG - 2 * 0.4348)
    rel_noise = (1.0 - 2 * 0.25) / (2 * ALEXNET_GAUSSIAN_NOISE - 2 * 0.4348)
    assert s['relative_mCE_alexnet'] == pytest.approx(
        (rel_fog + rel_noise) / 2)
    assert s['mean_corruption_error'] == pytest.approx(0.5)
    assert s['partial'] is True and s['num_corruptions'] == 2
    assert 'CE (AlexNet)' in open(osp.join(work, 'results.md')).read()

    a_wnids = load_wnids('imagenet-a')
    a_root = str(tmp_path / 'imagenet-a')
    _write_images(osp.join(a_root, a_wnids[0]), 1)
    _write_images(osp.join(a_root, a_wnids[2]), 2)  # 1k index 13
    _write_images(osp.join(a_root, a_wnids[5]), 1)
    work = str(tmp_path / 'work_a')
    proc = run_tool_in_process([
        TOOL, DIGITS_CONFIG, constant_1000_way, '--suite', 'imagenet-a',
        '--data-root', a_root, '--work-dir', work
    ] + opts)
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        summary = json.load(f)['summary']
    # masked to the 200 logits, every image is labelled 2: 2 of 4 right
    # (the 1000-way argmax, class 0, would score 0 of 4)
    assert summary['top1'] == pytest.approx(50.0)
    assert summary['error'] == pytest.approx(0.5)


# ------------------------------------------------------------ ImageNet-P ---
def test_imagenet_p_matches_the_models_frame_predictions(trained, tmp_path):
    root = str(tmp_path / 'imagenet-p')
    videos = {
        'translate': [('class_0', [0, 0, 1, 1, 2, 2]),
                      ('class_1', [1, 1, 1, 3, 3, 3])],
        'gaussian_noise': [('class_0', [0, 0, 0, 1, 0, 0]),
                           ('class_2', [2, 2, 3, 3, 2, 2])],
    }
    write_videos(root, videos)
    work = str(tmp_path / 'work')
    proc = run_tool_in_process([
        TOOL, DIGITS_CONFIG, trained['ckpt'], '--suite', 'imagenet-p',
        '--data-root', root, '--corruptions', 'translate', 'gaussian_noise',
        '--allow-partial', '--work-dir', work, '--cfg-options',
        *digits_options(trained['images'])
    ])
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)

    # the same model on the same decoded frames, scored by hand
    model = build_digits_model(4)
    load_checkpoint(model, trained['ckpt'], map_location='cpu')
    expected_fp, expected_t5d = hand_flip_rates(model, root, videos)

    got = {c['corruption']: c for c in results['cells']}
    for p in videos:
        assert got[p]['value'] == pytest.approx(expected_fp[p], abs=1e-9)
        assert got[p]['T5D'] == pytest.approx(expected_t5d[p], abs=1e-9)
        assert got[p]['num_samples'] == 12  # 2 videos x 6 frames
    s = results['summary']
    assert s['partial'] is True and s['num_perturbations'] == 2
    assert s['mean_FP'] == pytest.approx(
        (expected_fp['translate'] + expected_fp['gaussian_noise']) / 2)
    assert s['mFR'] is None  # no baseline rates given
    assert any('mFR needs baseline' in n for n in s['notes'])
    assert cv2.imread(osp.join(work, 'flip_probability.png')) is not None


# ------------------------------------------- corrupt: the applied severity ---
# a real metric beside the config's Accuracy: it keeps the images the test
# pipeline produced (uint8, C x H x W, BGR) and the predicted labels, one
# pickle per evaluated cell, in evaluation order
RECORD_METRIC = '''
import os
import pickle

from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


@METRICS.register_module()
class RecordPipelineOutputs(BaseMetric):
    default_prefix = 'record'

    def __init__(self, out_dir, **kwargs):
        super().__init__(**kwargs)
        self.out_dir = out_dir

    def process(self, data_batch, data_samples):
        for img, sample, out in zip(data_batch['inputs'],
                                    data_batch['data_samples'],
                                    data_samples):
            self.results.append((sample.img_path, img.numpy().copy(),
                                 int(out['pred_label'])))

    def compute_metrics(self, results):
        index = len(os.listdir(self.out_dir))
        with open(os.path.join(self.out_dir, f'{index:02d}.pkl'), 'wb') as f:
            pickle.dump(results, f)
        return {}
'''


def test_corrupt_cell_is_the_image_corrupted_at_its_severity(
        trained, tmp_path):
    """A sweep cell ``contrast/s`` evaluates the test images corrupted by
    imagecorruptions at severity ``s`` (contrast is deterministic): the
    images the pipeline produced equal the ones corrupted here, and the
    cell's error equals the error of the same checkpoint on the images
    corrupted here."""
    from imagecorruptions import corrupt
    records = tmp_path / 'records'
    records.mkdir()
    (tmp_path / 'record_pipeline_outputs.py').write_text(RECORD_METRIC)
    config = tmp_path / 'digits_recorded.py'
    config.write_text(
        f"_base_ = [{DIGITS_CONFIG!r}]\n"
        "custom_imports = dict(imports=['record_pipeline_outputs'], "
        "allow_failed_imports=False)\n"
        "test_evaluator = [dict(type='mmpretrain.Accuracy', topk=(1, )), "
        f"dict(type='RecordPipelineOutputs', out_dir={str(records)!r})]\n")
    work = str(tmp_path / 'work')
    severities = (1, 2)
    proc = run_tool_in_process([
        TOOL, str(config), trained['ckpt'], '--suite', 'corrupt',
        '--corruptions', 'contrast', '--severities',
        *map(str, severities), '--allow-partial', '--work-dir', work,
        '--cfg-options', *digits_options(trained['images'])
    ], env=pythonpath_env(tmp_path))
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        cells = {(c['corruption'], c['severity']): c
                 for c in json.load(f)['cells']}
    assert set(cells) == {('contrast', s) for s in severities}

    model = build_digits_model(4)
    load_checkpoint(model, trained['ckpt'], map_location='cpu')
    recorded = sorted(os.listdir(records))
    assert len(recorded) == len(severities)
    for severity, name in zip(severities, recorded):
        with open(records / name, 'rb') as f:
            seen = pickle.load(f)
        assert len(seen) == 32
        expected, labels = [], []
        for path, img, _ in seen:
            bgr = cv2.imread(path)
            rgb = corrupt(bgr[..., ::-1], corruption_name='contrast',
                          severity=severity)
            mine = np.clip(np.rint(rgb[..., ::-1]), 0, 255)
            # what the pipeline produced (any rounding) is this severity's
            # image, and far from the image of the mirrored severity
            assert np.abs(img.transpose(1, 2, 0) - mine).max() <= 1, path
            other = corrupt(bgr[..., ::-1], corruption_name='contrast',
                            severity=6 - severity)[..., ::-1]
            assert np.abs(mine - other).max() > 10
            expected.append(torch.from_numpy(
                mine.astype(np.uint8).transpose(2, 0, 1).copy()))
            labels.append(int(osp.basename(osp.dirname(path))[-1]))
        data = model.data_preprocessor(dict(inputs=expected), False)
        with torch.no_grad():
            preds = model(data['inputs'], mode='tensor').argmax(1).tolist()
        assert preds == [pred for _, _, pred in seen]
        error = sum(p != y for p, y in zip(preds, labels)) / len(labels)
        assert cells[('contrast', severity)]['value'] == pytest.approx(error)


def test_corrupt_suite_with_the_torch_backend_never_mixes_backends(
        trained, tmp_path):
    """--corruption-backend torch: every corrupted cell records its
    backend (results.json, results.md), its errors match the reference
    backend's within one sample, and a resume with the other backend is
    refused in one line, in both directions, writing nothing."""
    opts = ['--cfg-options', *digits_options(trained['images'])]
    works = {b: str(tmp_path / b) for b in ('imagecorruptions', 'torch')}

    def sweep(work, backend):
        return run_tool_in_process([
            TOOL, DIGITS_CONFIG, trained['ckpt'], '--suite', 'corrupt',
            '--work-dir', work, '--corruptions', 'fog', 'pixelate',
            '--severities', '0', '2', '--allow-partial',
            '--corruption-backend', backend
        ] + opts)

    cells = {}
    for backend, work in works.items():
        _check_ok(sweep(work, backend))
        with open(osp.join(work, 'results.json')) as f:
            results = json.load(f)
        cells[backend] = {(c['corruption'], c['severity']): c
                          for c in results['cells']}
        assert cells[backend][('clean', 0)].get('corruption_backend') is None
        for name in ('fog', 'pixelate'):
            assert cells[backend][(name, 2)]['corruption_backend'] == backend
        md = '\n'.join(_lines(osp.join(work, 'results.md')))
        assert f'- corruption backend: {backend}' in md
    for cell, ref in cells['imagecorruptions'].items():
        assert abs(cells['torch'][cell]['wrong'] - ref['wrong']) <= 1, cell

    for backend, other in (('torch', 'imagecorruptions'),
                           ('imagecorruptions', 'torch')):
        before = _lines(osp.join(works[backend], 'cells.jsonl'))
        _check_refused(sweep(works[backend], other),
                       f'holds cells corrupted by the {backend} backend',
                       f'this sweep uses {other}',
                       f'or --corruption-backend {backend}')
        assert _lines(osp.join(works[backend], 'cells.jsonl')) == before
    proc = sweep(works['torch'], 'torch')
    _check_ok(proc)
    assert 'main model: skipping 3 finished cells, 0 to evaluate' in \
        proc.stdout


def test_corruption_backend_applies_to_on_the_fly_cells_only(tmp_path):
    from mmgfn.evaluation.robustness_sweep import RobustnessSettings
    for kwargs, phrase in (
            (dict(suite='corrupt', corruption_backend='cupy'),
             'must be one of imagecorruptions, torch, got "cupy"'),
            (dict(suite='corrupt', corrupted_root=str(tmp_path),
                  corruption_backend='torch'),
             'applies to the corrupt suite corrupting on the fly only'),
            (dict(suite='imagenet-a', corruption_backend='torch'),
             'applies to the corrupt suite corrupting on the fly only')):
        with pytest.raises(ConfigError, match=phrase):
            RobustnessSettings(**kwargs).check()
