"""Benchmark protocols of tools/test_robustness.py, with real files and runs.

Unreadable images named under DataLoader workers, ranks and masks taken from
logits (not float32 softmax), the ImageNet-C/P test pipeline and the
regeneration recipe, and ImageNet-P baselines and difficulty levels.
"""
import json
import os
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from conftest import (DIGITS_CONFIG, build_digits_model, digits_options,
                      hand_flip_rates, make_image, run_tool,
                      run_tool_in_process, save_checkpoint,
                      write_image_folder, write_videos)
from mmengine.config import Config

from mmgfn.datasets import load_wnids
from mmgfn.utils.errors import ConfigError

TOOL = 'tools/test_robustness.py'


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _last_error(proc):
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


# ------------------------------------------- unreadable image, workers ---
def test_unreadable_image_is_named_under_a_dataloader_worker(tmp_path):
    images = write_image_folder(str(tmp_path / 'images'), per_class=2)
    broken = osp.join(images, 'val', 'class_1', '001.jpg')
    with open(broken, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0 truncated, not a JPEG')
    ckpt = save_checkpoint(
        build_digits_model(4, seed=0), str(tmp_path / 'model.pth'))
    proc = run_tool([
        TOOL, DIGITS_CONFIG, ckpt, '--suite', 'corrupt', '--corruptions',
        'fog', '--severities', '0', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *digits_options(images),
        'test_dataloader.num_workers=1'
    ])
    last = _last_error(proc)
    assert last == ('test_robustness.py: error: cell clean: unreadable '
                    f'image "{broken}"'), last


# ------------------------------------------------ ranks from the logits ---
def _write_images(folder, count, label=0, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        cv2.imwrite(osp.join(folder, f'{i}.png'), make_image(label, rng))


def test_imagenet_a_masks_the_logits_of_a_confident_model(tmp_path):
    """The 1000-way argmax (logit 200 on class 0) lies outside ImageNet-A:
    its float32 softmax gives every ImageNet-A class exactly 0, and the
    masked argmax fell to label 0. The logits rank 1k index 13 (label 2)
    first."""
    model = build_digits_model(1000, seed=0)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
        model.head.fc.bias[0] = 200.0
        model.head.fc.bias[13] = 5.0  # ImageNet-A label 2
        model.head.fc.bias[6] = 4.0  # ImageNet-A label 0
    probs = torch.softmax(model.head.fc.bias.detach(), -1)
    assert probs[13] == probs[6] == 0  # the float32 tie
    ckpt = save_checkpoint(model, str(tmp_path / 'confident.pth'))
    wnids = load_wnids('imagenet-a')
    root = str(tmp_path / 'imagenet-a')
    _write_images(osp.join(root, wnids[0]), 1)
    _write_images(osp.join(root, wnids[2]), 2)
    _write_images(osp.join(root, wnids[5]), 1)
    work = str(tmp_path / 'work')
    proc = run_tool_in_process([
        TOOL, DIGITS_CONFIG, ckpt, '--suite', 'imagenet-a', '--data-root',
        root, '--work-dir', work, '--cfg-options',
        'model.head.num_classes=1000', 'data_preprocessor.num_classes=1000',
        'test_dataloader.num_workers=0'
    ])
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    # by hand: masked logits put label 2 first for every image; 2 of 4
    # images are labelled 2
    assert results['summary']['top1'] == pytest.approx(100 * 2 / 4)
    assert results['cells'][0]['metrics']['accuracy/scores'] == 'logits'


# frame labels of three ImageNet-P clips (two perturbations)
THREE_CLIPS = {
    'translate': [('class_0', [0, 1, 2, 3, 0, 1]),
                  ('class_1', [1, 3, 1, 2, 3, 0])],
    'gaussian_noise': [('class_2', [2, 0, 3, 1, 2, 3])],
}


def _run_three_clips(ckpt, tmp_path, *extra, options=()):
    """Write :data:`THREE_CLIPS` to ``tmp_path/imagenet-p`` and evaluate
    the 4-class ``ckpt`` on both perturbations (``--suite imagenet-p``,
    partial), ``extra`` arguments and ``--cfg-options`` ``options`` added.

    Returns:
        tuple: The data root, the work dir and its ``results.json``.
    """
    root = str(tmp_path / 'imagenet-p')
    write_videos(root, THREE_CLIPS)
    work = str(tmp_path / 'work')
    _check_ok(run_tool_in_process([
        TOOL, DIGITS_CONFIG, ckpt, '--suite', 'imagenet-p', '--data-root',
        root, '--corruptions', 'translate', 'gaussian_noise',
        '--allow-partial', *extra, '--work-dir', work, '--cfg-options',
        'model.head.num_classes=4', 'data_preprocessor.num_classes=4',
        'test_dataloader.num_workers=0', *options
    ]))
    with open(osp.join(work, 'results.json')) as f:
        return root, work, json.load(f)


def test_imagenet_p_ranks_the_logits_of_a_confident_model(tmp_path):
    """Logit 300 on class 0: float32 softmax is [1, 0, 0, 0] on every frame,
    so the ranks of classes 1-3 tied and the top-5 distance came out 0."""
    model = build_digits_model(4, seed=3)
    with torch.no_grad():
        model.head.fc.bias[0] += 300.0
    ckpt = save_checkpoint(model, str(tmp_path / 'confident.pth'))
    root, _, results = _run_three_clips(
        ckpt, tmp_path, options=['test_dataloader.batch_size=4'])
    videos = THREE_CLIPS
    fp, t5d = hand_flip_rates(model, root, videos)
    assert min(t5d.values()) > 0  # the lower ranks do change
    got = {c['corruption']: c for c in results['cells']}
    for p in videos:
        assert got[p]['value'] == pytest.approx(fp[p], abs=1e-12)
        assert got[p]['T5D'] == pytest.approx(t5d[p], abs=1e-12)
        assert got[p]['metrics']['imagenet_p/scores'] == 'logits'
    assert results['summary']['mean_T5D'] == pytest.approx(
        (t5d['translate'] + t5d['gaussian_noise']) / 2)


# ------------------------------------------------------------ ImageNet-P ---
ALEXNET_FP_TRANSLATE, ALEXNET_FP_GAUSSIAN_NOISE = 0.11007, 0.23653


def test_imagenet_p_alexnet_table_and_a_zero_baseline_keep_raw_means(
        tmp_path):
    main = build_digits_model(4, seed=3)
    constant = build_digits_model(4, seed=4)
    with torch.no_grad():
        constant.head.fc.weight.zero_()  # the same logits on every frame
    ckpt = save_checkpoint(main, str(tmp_path / 'main.pth'))
    base = save_checkpoint(constant, str(tmp_path / 'constant.pth'))
    root, work, results = _run_three_clips(ckpt, tmp_path, '--alexnet-fp',
                                           '--baseline-checkpoint', base)
    s = results['summary']
    fp, t5d = hand_flip_rates(main, root, THREE_CLIPS)
    # the baseline model never flips: FP = T5D = 0, every ratio undefined,
    # but the raw means stay
    assert s['mean_FP'] == pytest.approx((fp['translate'] +
                                          fp['gaussian_noise']) / 2)
    assert s['mean_T5D'] == pytest.approx((t5d['translate'] +
                                           t5d['gaussian_noise']) / 2)
    assert s['mFR'] is None and s['mT5D'] is None
    assert s['FR'] == {'gaussian_noise': None, 'translate': None}
    assert any('is 0 on gaussian_noise, translate' in n for n in s['notes'])
    # AlexNet's published rates (clovaai/assembled-cnn), opt-in
    fr_t = fp['translate'] / ALEXNET_FP_TRANSLATE
    fr_g = fp['gaussian_noise'] / ALEXNET_FP_GAUSSIAN_NOISE
    assert s['FR_alexnet'] == pytest.approx({'translate': fr_t,
                                             'gaussian_noise': fr_g})
    assert s['mFR_alexnet'] == pytest.approx((fr_t + fr_g) / 2)
    md = open(osp.join(work, 'results.md')).read()
    assert 'FR (AlexNet)' in md and 'clovaai/assembled-cnn' in md


def test_imagenet_p_difficulty_folders_are_summarised(tmp_path):
    model = build_digits_model(4, seed=3)
    ckpt = save_checkpoint(model, str(tmp_path / 'model.pth'))
    root = str(tmp_path / 'imagenet-p')
    videos = {
        'translate': [('class_0', [0, 1, 2, 3, 0, 1])],
        'gaussian_noise_2': [('class_2', [2, 0, 3, 1, 2, 3])],
    }
    write_videos(root, videos)
    base = [TOOL, DIGITS_CONFIG, ckpt, '--suite', 'imagenet-p',
            '--data-root', root, '--corruptions', 'gaussian_noise_2',
            'translate', '--step', '2', '--allow-partial']
    opts = ['--cfg-options', 'model.head.num_classes=4',
            'data_preprocessor.num_classes=4',
            'test_dataloader.num_workers=0']
    last = _last_error(run_tool_in_process(
        base + ['--alexnet-fp', '--work-dir', str(tmp_path / 'refused')] +
        opts))
    assert 'AlexNet\'s flip probabilities are for difficulty 1' in last
    work = str(tmp_path / 'work')
    proc = run_tool_in_process(base + ['--work-dir', work] + opts)
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        s = json.load(f)['summary']
    # difficulty 2: translate at stride 2, the noise folder against frame 0
    fp, t5d = hand_flip_rates(model, root, videos, step=2)
    assert s['difficulty'] == 2
    assert s['perturbations'] == ['gaussian_noise_2', 'translate']
    assert s['FP'] == pytest.approx(fp)
    assert s['mean_FP'] == pytest.approx(sum(fp.values()) / 2)
    assert s['mean_T5D'] == pytest.approx(sum(t5d.values()) / 2)


def test_imagenet_p_refuses_mixed_difficulties(tmp_path):
    from mmgfn.evaluation import robustness_sweep as tool
    root = tmp_path / 'imagenet-p'
    for name in ('gaussian_noise_2', 'gaussian_noise_3', 'translate'):
        os.makedirs(root / name)
    cfg = Config.fromfile(DIGITS_CONFIG)
    args = SimpleNamespace(
        suite='imagenet-p', corruptions=['gaussian_noise_2', 'translate'],
        severities=None, corrupted_root=None, data_root=str(root), step=1,
        alexnet_fp=False, test_pipeline='config')
    with pytest.raises(ConfigError, match='gaussian_noise_2: 2, '
                       'translate: 1'):
        tool.Suite(args, cfg)
    args.step = 2
    assert tool.Suite(args, cfg).difficulty == 2
    args.corruptions = ['gaussian_noise_2', 'gaussian_noise_3']
    with pytest.raises(ConfigError, match='mix difficulties'):
        tool.Suite(args, cfg)


# ---------------------------------------------- ImageNet-C preprocessing ---
RESIZING_CONFIG = """
_base_ = [{base!r}]
test_pipeline = [
    dict(type='mmpretrain.LoadImageFromFile'),
    dict(type='mmpretrain.ResizeEdge', scale=256, edge='short'),
    dict(type='mmpretrain.CenterCrop', crop_size=224),
    dict(type='mmpretrain.PackInputs'),
]
test_dataloader = dict(num_workers=0, dataset=dict(pipeline=test_pipeline))
"""
OPTS_1000 = ['--cfg-options', 'model.head.num_classes=1000',
             'data_preprocessor.num_classes=1000']


def _predict(model, bgr):
    data = model.data_preprocessor(
        dict(inputs=[torch.from_numpy(bgr).permute(2, 0, 1)]), False)
    with torch.no_grad():
        return int(model(data['inputs'], mode='tensor')[0].argmax())


def test_imagenet_c_reference_pipeline_is_offered_and_recorded(tmp_path):
    """64 x 64 PNG files: the reference pipeline feeds them as they are
    (center-crop 224 keeps them whole); each image sits in the folder of the
    class the model predicts on the raw image, so the reference error is 0.
    They are not the released 224 x 224 JPEGs: no AlexNet normalisation."""
    model = build_digits_model(1000, seed=5)
    ckpt = save_checkpoint(model, str(tmp_path / 'model.pth'))
    config = tmp_path / 'resizing.py'
    config.write_text(RESIZING_CONFIG.format(base=DIGITS_CONFIG))
    wnids = load_wnids('imagenet1k')
    root = str(tmp_path / 'imagenet-c')
    rng = np.random.default_rng(0)
    for i in range(4):
        img = make_image(i % 4, rng, size=64)
        folder = osp.join(root, 'fog', '1', wnids[_predict(model, img)])
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(osp.join(folder, f'{i}.png'), img)
    work = str(tmp_path / 'work')
    proc = run_tool_in_process([
        TOOL, str(config), ckpt, '--suite', 'imagenet-c', '--data-root',
        root, '--corruptions', 'fog', '--severities', '1', '--allow-partial',
        '--test-pipeline', 'reference', '--work-dir', work
    ] + OPTS_1000)
    _check_ok(proc)
    assert 'the test pipeline resizes' not in proc.stdout + proc.stderr
    with open(osp.join(work, 'results.json')) as f:
        results = json.load(f)
    assert [c['value'] for c in results['cells']] == [0.0]
    assert results['test_pipeline'] == dict(
        source='reference',
        pipeline=[dict(type='mmpretrain.LoadImageFromFile'),
                  dict(type='mmpretrain.CenterCrop', crop_size=224),
                  dict(type='mmpretrain.PackInputs')])
    md = open(osp.join(work, 'results.md')).read()
    assert ('- test pipeline (reference): LoadImageFromFile -> '
            'CenterCrop(crop_size=224) -> PackInputs') in md
    s = results['summary']
    assert s['mCE_alexnet'] is None
    assert s['imagenet_c_files']['kind'] == 're-encoded'
    assert any('no AlexNet normalisation' in n and 'does not hold JPEG data'
               in n for n in s['notes'])


def test_imagenet_c_regeneration_follows_the_reference_recipe(tmp_path):
    from PIL import Image

    from mmgfn.datasets.transforms import ImageCorruption
    wnids = load_wnids('imagenet1k')
    val = tmp_path / 'val'
    rng = np.random.default_rng(1)
    sources = {}
    for i, (w, h) in enumerate([(300, 260), (250, 320)]):
        os.makedirs(val / wnids[i])
        path = str(val / wnids[i] / f'ILSVRC2012_val_{i:08d}.JPEG')
        img = cv2.resize(make_image(i, rng, size=64), (w, h))
        cv2.imwrite(path, img)
        sources[path] = (w, h)
    out = str(tmp_path / 'imagenet-c')
    proc = run_tool_in_process([
        'tools/misc/generate_corrupted_dataset.py',
        str(val), out, '--recipe', 'imagenet-c', '--corruptions', 'fog',
        '--severities', '2', '--workers', '1'
    ])
    _check_ok(proc)
    for path, (w, h) in sources.items():
        # by hand: short side to 256 (PIL bilinear), center crop 224, fog 2
        # (seeded by the source path), uint8, JPEG quality 85
        size = (256, int(256 * h / w)) if w < h else (int(256 * w / h), 256)
        left = int(round((size[0] - 224) / 2))
        top = int(round((size[1] - 224) / 2))
        with Image.open(path) as im:
            crop = im.convert('RGB').resize(size, Image.BILINEAR).crop(
                (left, top, left + 224, top + 224))
        bgr = np.ascontiguousarray(np.asarray(crop)[..., ::-1])
        fog = ImageCorruption('fog', 2, 0).transform(
            dict(img=bgr, img_path=path))['img']
        expected = tmp_path / 'expected.jpg'
        Image.fromarray(fog[..., ::-1]).save(
            str(expected), format='JPEG', quality=85, optimize=True)
        rel = osp.relpath(path, str(val))
        with open(osp.join(out, 'fog', '2', rel), 'rb') as f:
            written = f.read()
        assert written == expected.read_bytes()
        with Image.open(osp.join(out, 'fog', '2', rel)) as im:
            assert im.format == 'JPEG' and im.size == (224, 224)
    with open(osp.join(out, 'imagenet_c_recipe.json')) as f:
        recipe = json.load(f)
    assert recipe['jpeg_quality'] == 85 and recipe['center_crop'] == 224

    # AlexNet normalisation on these files is marked as regenerated
    ckpt = save_checkpoint(
        build_digits_model(1000, seed=0), str(tmp_path / 'model.pth'))
    work = str(tmp_path / 'work')
    proc = run_tool_in_process([
        TOOL, DIGITS_CONFIG, ckpt, '--suite', 'imagenet-c', '--data-root',
        out, '--corruptions', 'fog', '--severities', '2', '--allow-partial',
        '--test-pipeline', 'reference', '--work-dir', work
    ] + OPTS_1000 + ['test_dataloader.num_workers=0'])
    _check_ok(proc)
    with open(osp.join(work, 'results.json')) as f:
        s = json.load(f)['summary']
    assert s['imagenet_c_files']['kind'] == 'regenerated'
    assert s['mCE_alexnet'] is not None
    assert any('REGENERATED' in n for n in s['notes'])
    assert 'REGENERATED' in open(osp.join(work, 'results.md')).read()
