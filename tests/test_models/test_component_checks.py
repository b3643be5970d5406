"""Each GFN component owns its value checks (``check_args``): its
constructor runs them on its arguments and preflight runs them on its
config dict, with the same one-line message naming the config key."""
import pytest
import torch
from mmengine.config import Config

from conftest import DIGITS_CONFIG, write_coco, write_det_config
from mmgfn.apis.preflight import check_hooks, check_neighbor_settings
from mmgfn.engine.hooks import BackgroundRoIPerturbationHook
from mmgfn.models.data_preprocessors import \
    NeighborAdversarialDataPreprocessor
from mmgfn.models.losses import NeighborWeightedCELoss
from mmgfn.models.utils import NeighborTable
from mmgfn.utils.errors import ConfigError

GFN_DIGITS = DIGITS_CONFIG.replace('resnet-tiny_1xb32_digits.py',
                                   'gfn_resnet-tiny_1xb32_digits.py')
PRE = NeighborAdversarialDataPreprocessor


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert '\n' not in message
    return message


def _preflight(cfg: Config) -> str:
    return _message(check_neighbor_settings, cfg)


@pytest.mark.parametrize('topk', [0, 4, 2.5])
def test_preprocessor_topk_named_by_constructor_and_preflight(topk):
    built = _message(PRE, num_classes=4, topk=topk)
    assert built.startswith(f'model.data_preprocessor.topk={topk!r} '
                            '(NeighborAdversarialDataPreprocessor) must be')
    assert 'set model.data_preprocessor.topk to at most 3' in built
    # the same rule, on the config dict, under the key the config uses
    cfg = Config.fromfile(GFN_DIGITS)
    cfg.data_preprocessor.num_classes = 4
    cfg.model.head.num_classes = 4
    cfg.data_preprocessor.topk = topk
    assert _preflight(cfg) == built.replace('model.data_preprocessor',
                                            'data_preprocessor')
    cfg.model.data_preprocessor = cfg.pop('data_preprocessor')
    assert _preflight(cfg) == built


@pytest.mark.parametrize('arg,value,words', [
    ('eta', 0, 'model.data_preprocessor.eta=0 '),
    ('eta', 'big', "model.data_preprocessor.eta='big' "),
    ('num_steps', 0, 'model.data_preprocessor.num_steps=0 '),
    ('refresh_interval', -1, 'model.data_preprocessor.refresh_interval=-1'),
    ('mode', 'x', "model.data_preprocessor.mode='x' "),
    ('eta_unit', 'pixels', "model.data_preprocessor.eta_unit='pixels' "),
    ('neighbor_source', 'web', "neighbor_source='web'"),
    ('attack_mode', 'test', "model.data_preprocessor.attack_mode='test'"),
    ('similarity', 'l2', "similarity='l2'"),
])
def test_preprocessor_values_named(arg, value, words):
    args = dict(num_classes=4, topk=2, **{arg: value})
    built = _message(PRE, **args)
    assert words in built, built
    assert _message(PRE.check_args, args) == built
    assert _message(PRE.check_args, args, 'data_preprocessor') == \
        built.replace('model.data_preprocessor', 'data_preprocessor')


def test_preprocessor_neighbor_file_named(tmp_path):
    assert 'needs model.data_preprocessor.neighbor_file' in _message(
        PRE, num_classes=4, topk=2, neighbor_source='file')
    assert "model.data_preprocessor.neighbor_source='head'" in _message(
        PRE, num_classes=4, topk=2, neighbor_file='n.json')
    table = NeighborTable(10, 3)
    table.load_neighbors(
        torch.tensor([[(c + i) % 10 for i in (1, 2, 3)] for c in range(10)]),
        'file')
    path = str(tmp_path / 'n10.json')
    table.save(path)
    args = dict(num_classes=4, topk=2, neighbor_source='file',
                neighbor_file=path)
    built = _message(PRE, **args)
    assert built.startswith('model.data_preprocessor.neighbor_file '
                            '(NeighborAdversarialDataPreprocessor): ')
    assert 'for 10 classes' in built and 'has 4' in built
    assert _message(PRE.check_args, args) == built
    # a file for the right classes passes, a missing one waits for training
    PRE.check_args(dict(args, num_classes=10))
    PRE.check_args(dict(args, neighbor_file=str(tmp_path / 'later.json')))


def test_loss_topk_named_against_model_and_shared_table():
    cfg = Config.fromfile(GFN_DIGITS)
    check_neighbor_settings(cfg)  # 10 classes, topk 3 and 3
    cfg.model.head.loss.topk = 10
    assert _preflight(cfg) == (
        'model.head.loss.topk=10 (NeighborWeightedCELoss) must be an integer'
        ' in [1, num_classes) = [1, 10): with model.head.num_classes=10 a '
        'class has 9 other classes; set model.head.loss.topk to at most 9')
    cfg.model.head.loss.topk = 5
    assert _preflight(cfg) == (
        "model.head.loss.topk=5 (NeighborWeightedCELoss) exceeds the "
        "neighbour table's 3 neighbours per class (data_preprocessor.topk); "
        'set model.head.loss.topk to at most 3')
    cfg.model.head.loss.topk = 0
    assert _preflight(cfg).startswith('model.head.loss.topk=0 (Neighbor'
                                      'WeightedCELoss) must be an integer')
    # the constructor: the same rule under its default key
    assert _message(NeighborWeightedCELoss, topk=0).startswith(
        'model.head.loss.topk=0 (NeighborWeightedCELoss) must be')
    assert 'model.head.loss.topk=4' in _message(NeighborWeightedCELoss,
                                                topk=4, num_classes=4)
    NeighborWeightedCELoss(topk=3, num_classes=4)


@pytest.mark.parametrize('arg,value', [('alpha', 1.0), ('scale', -1.0),
                                       ('reduction', 'avg'),
                                       ('label_smooth_val', 1.0)])
def test_loss_values_named(arg, value):
    built = _message(NeighborWeightedCELoss, **{arg: value})
    assert built.startswith(f'model.head.loss.{arg}={value!r} '
                            '(NeighborWeightedCELoss)'), built
    key = 'model.roi_head.bbox_head.loss_cls'
    assert _message(NeighborWeightedCELoss.check_args, {arg: value},
                    key) == built.replace('model.head.loss', key)


@pytest.mark.parametrize('arg,value', [('eta', 0), ('eta_unit', 'px'),
                                       ('neighbor_ratio', 1.5),
                                       ('attack_mode', 'test'),
                                       ('num_steps', 0),
                                       ('attack_chunk', -1)])
def test_hook_values_named(arg, value):
    built = _message(BackgroundRoIPerturbationHook, **{arg: value})
    assert built.startswith(f'custom_hooks.{arg}={value!r} '
                            '(BackgroundRoIPerturbationHook)'), built
    assert _message(BackgroundRoIPerturbationHook.check_args, {arg: value},
                    'custom_hooks[1]') == built.replace(
                        'custom_hooks', 'custom_hooks[1]')


def test_hook_topk_and_class_count_in_preflight(tmp_path):
    root = write_coco(str(tmp_path / 'coco'))  # 2 classes
    cfg = Config.fromfile(write_det_config(tmp_path, root, num_classes=3))
    check_neighbor_settings(cfg)
    message = _message(check_hooks, cfg)
    assert message == (
        'custom_hooks[0] (BackgroundRoIPerturbationHook): the detector has 3 '
        'classes but the training dataset has 2 (model.roi_head.bbox_head.'
        'num_classes against train_dataloader.dataset); set model.roi_head.'
        "bbox_head.num_classes=2 or the dataset's metainfo.classes")
    # the rule is the hook's own: bind refuses with the same words
    assert _message(BackgroundRoIPerturbationHook.check_classes, 3,
                    ['person', 'car'], 'custom_hooks[0]') == message
    BackgroundRoIPerturbationHook.check_classes(2, ['person', 'car'])
    BackgroundRoIPerturbationHook.check_classes(2, None)
    # topk is the hook's table's: checked where the hook keeps one
    cfg.custom_hooks[0].topk = 3
    check_neighbor_settings(cfg)
    cfg.custom_hooks[0].neighbor_ratio = 0.5
    assert _preflight(cfg).startswith(
        'custom_hooks[0].topk=3 (BackgroundRoIPerturbationHook) must be an '
        'integer in [1, num_classes) = [1, 3): with model.roi_head.bbox_head'
        '.num_classes=3')
