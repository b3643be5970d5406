"""Bad settings fail before the Runner starts, with one short line that
names the component, its config key and the fix (through the real tools).

The tools run in this process (:func:`conftest.run_tool_in_process`: their
``main`` with stderr captured and ``SystemExit(2)`` as the exit status);
one test per tool runs it as a process, the exit status and the error line
as the user sees them.
"""
import pytest
import torch
from mmengine.config import Config

from conftest import (DIGITS_CONFIG, digits_options, run_tool,
                      run_tool_in_process, write_coco, write_det_config)
from mmgfn.apis.preflight import check_neighbor_settings
from mmgfn.models.utils import NeighborTable
from mmgfn.utils.errors import ConfigError

GFN_DIGITS = DIGITS_CONFIG.replace('resnet-tiny_1xb32_digits.py',
                                   'gfn_resnet-tiny_1xb32_digits.py')


def _one_line_error(proc, *names) -> str:
    """The tool exited 2 with a short output whose last line names all of
    ``names``; return that line."""
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2, '\n'.join(out[-40:])
    # no environment/config dump, no traceback: the error alone
    assert len(out) < 5, '\n'.join(out[:40])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(('train.py: error: ', 'test.py: error: ')), last
    for name in names:
        assert name in last, last
    assert 'Traceback' not in proc.stderr
    return last


def _train(tmp_path, config, *options, run=run_tool_in_process):
    return run([
        'tools/train.py', config, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *options
    ])


def test_preprocessor_topk_not_below_num_classes(image_folder, tmp_path):
    # tools/train.py as a process: its exit status and its error line
    proc = _train(tmp_path, GFN_DIGITS, *digits_options(image_folder),
                  'data_preprocessor.topk=4', run=run_tool)
    _one_line_error(proc, 'data_preprocessor.topk=4',
                    'NeighborAdversarialDataPreprocessor',
                    'data_preprocessor.topk to at most 3')


def test_loss_topk_not_below_num_classes(image_folder, tmp_path):
    # the preprocessor is fine (3 of 4 classes): the loss is named
    proc = _train(tmp_path, GFN_DIGITS, *digits_options(image_folder),
                  'model.head.loss.topk=4')
    last = _one_line_error(proc, 'model.head.loss.topk=4',
                           'NeighborWeightedCELoss', 'at most 3')
    assert 'Preprocessor' not in last


def test_neighbor_file_for_another_class_count(image_folder, tmp_path):
    # a real 10-class table (as tools/build_neighbors.py writes for the
    # digits) against a 4-class model
    table = NeighborTable(10, 3)
    table.load_neighbors(
        torch.tensor([[(c + i) % 10 for i in (1, 2, 3)] for c in range(10)]),
        'file')
    path = str(tmp_path / 'digits_top3.json')
    table.save(path)
    proc = _train(tmp_path, GFN_DIGITS, *digits_options(image_folder),
                  'data_preprocessor.neighbor_source=file',
                  f'data_preprocessor.neighbor_file={path}')
    _one_line_error(proc, 'data_preprocessor.neighbor_file', path,
                    'for 10 classes', 'has 4', 'tools/build_neighbors.py')


def test_class_balanced_subset_above_smallest_class(image_folder, tmp_path):
    # 8 training images per class; one class loses 3 of them
    import glob
    import os
    for f in sorted(glob.glob(f'{image_folder}/train/class_2/*'))[:3]:
        os.remove(f)
    config = tmp_path / 'subset.py'
    config.write_text(f"""
_base_ = [{DIGITS_CONFIG!r}]
train_dataloader = dict(dataset=dict(
    _delete_=True, type='ClassBalancedSubset', per_class=6,
    dataset=dict(type='mmpretrain.CustomDataset', data_root={image_folder!r},
                 data_prefix='train', pipeline={{{{_base_.train_pipeline}}}})))
""")
    options = [
        o for o in digits_options(image_folder)
        if not o.startswith('train_dataloader.dataset')
    ]
    proc = _train(tmp_path, str(config), *options)
    _one_line_error(proc, 'train_dataloader.dataset.per_class=6',
                    'ClassBalancedSubset', 'class 2 ("class_2") has only 5',
                    'at most 5')


def test_hook_class_count_mismatch(tmp_path):
    root = write_coco(str(tmp_path / 'coco'))  # 2 classes
    config = write_det_config(tmp_path, root, num_classes=3, epochs=1)
    proc = run_tool_in_process(['tools/train.py', config, '--work-dir',
                                str(tmp_path / 'work')])
    _one_line_error(proc, 'custom_hooks[0]', 'BackgroundRoIPerturbationHook',
                    'model.roi_head.bbox_head.num_classes',
                    'detector has 3', 'has 2')


def test_missing_detection_backbone_checkpoint(tmp_path):
    root = write_coco(str(tmp_path / 'coco'))
    missing = str(tmp_path / 'gfn_classifier' / 'epoch_10.pth')
    config = write_det_config(
        tmp_path, root, epochs=1, extra=(
            'model.update(backbone=dict(depth=18, init_cfg=dict('
            f"type='Pretrained', checkpoint={missing!r})))\n"))
    proc = run_tool_in_process(['tools/train.py', config, '--work-dir',
                                str(tmp_path / 'work')])
    _one_line_error(proc, missing, 'model.backbone.init_cfg.checkpoint',
                    'model.backbone.init_cfg=None')


def test_registry_typo_suggests_close_names(image_folder, tmp_path):
    proc = _train(tmp_path, GFN_DIGITS, *digits_options(image_folder),
                  'model.head.loss.type=mmgfn.NeighborWeightedCELos')
    _one_line_error(proc, 'NeighborWeightedCELos',
                    'did you mean mmgfn.NeighborWeightedCELoss')
    # a transform, through tools/test.py, before its Runner (tools/test.py
    # as a process: its exit status and its error line)
    ckpt = tmp_path / 'any.pth'
    ckpt.write_bytes(b'')
    proc = run_tool([
        'tools/test.py', GFN_DIGITS,
        str(ckpt), '--cfg-options', *digits_options(image_folder),
        'test_dataloader.dataset.pipeline.0.type=mmpretrain.LoadImageFromFle'
    ])
    _one_line_error(proc, 'test_dataloader.dataset.pipeline[0].type',
                    'LoadImageFromFle',
                    'did you mean mmpretrain.LoadImageFromFile')


def test_traceback_kept_with_env(image_folder, tmp_path):
    proc = run_tool_in_process([
        'tools/train.py', GFN_DIGITS, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        *digits_options(image_folder), 'model.head.loss.topk=4'
    ], env={'MMGFN_TRACEBACK': '1'})
    assert proc.returncode == 2
    assert 'Traceback' in proc.stderr
    assert 'check_neighbor_settings' in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'train.py: error: model.head.loss.topk=4')


def test_host_classifier_needs_its_scope(image_folder, tmp_path):
    """A host classifier written in an mmgfn-scoped config: with a prefix
    only, its default ClsDataPreprocessor is looked up in mmgfn's scope and
    the error says what to write; written as the README says, it tests."""
    body = f"""
_base_ = ['mmpretrain::_base_/default_runtime.py']
default_scope = 'mmgfn'
model = dict(
    {{head}},
    backbone=dict(type='mmpretrain.ResNet_CIFAR', depth=18, stem_channels=16,
                  base_channels=16),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(type='mmpretrain.LinearClsHead', num_classes=4,
              in_channels=128, loss=dict(type='mmpretrain.CrossEntropyLoss')))
test_dataloader = dict(
    batch_size=8, num_workers=0,
    dataset=dict(type='mmpretrain.CustomDataset', data_root={image_folder!r},
                 data_prefix='val',
                 pipeline=[dict(type='mmpretrain.LoadImageFromFile'),
                           dict(type='mmpretrain.PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='mmpretrain.Accuracy')
test_cfg = dict()
"""
    ckpt = tmp_path / 'random.pth'
    wrong = tmp_path / 'prefixed.py'
    wrong.write_text(body.replace('{head}',
                                  "type='mmpretrain.ImageClassifier'"))
    # the checkpoint is never read: the error comes first
    ckpt.write_bytes(b'')
    proc = run_tool_in_process(['tools/test.py', str(wrong), str(ckpt)])
    _one_line_error(proc, 'ClsDataPreprocessor',
                    "_scope_='mmpretrain'", 'mmpretrain.ClsDataPreprocessor')

    right = tmp_path / 'scoped.py'
    right.write_text(
        body.replace('{head}',
                     "_scope_='mmpretrain', type='ImageClassifier'"))
    from mmengine.registry import DefaultScope
    from mmgfn.registry import MODELS
    cfg = Config.fromfile(str(right))
    with DefaultScope.overwrite_default_scope('mmgfn'):
        model = MODELS.build(cfg.model)
    torch.save({'state_dict': model.state_dict()}, str(ckpt))
    proc = run_tool_in_process(['tools/test.py', str(right), str(ckpt),
                                '--work-dir', str(tmp_path / 'work')])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'accuracy/top1' in proc.stdout + proc.stderr


def test_preprocessor_and_head_class_counts_agree():
    cfg = Config.fromfile(GFN_DIGITS)
    check_neighbor_settings(cfg)  # 10 and 10
    cfg.model.head.num_classes = 4
    with pytest.raises(ConfigError) as info:
        check_neighbor_settings(cfg)
    assert str(info.value) == (
        'data_preprocessor.num_classes=10 (NeighborAdversarialData'
        'Preprocessor) differs from model.head.num_classes=4; set both to '
        'the number of classes of the dataset')
