"""GFN in real training setups: the preprocessor finds the right model
(pickling, deep copies, custom train steps, shared preprocessors, FSDP
refused), the neighbour table's precedence (file, load_from, resume), and
evaluation without training-only files.

The tools run in this process (:func:`conftest.run_tool_in_process`): what
these tests check is what the runs log and save, not the processes.
"""
import copy
import io
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope, init_default_scope
from mmpretrain.models import ImageClassifier
from mmpretrain.structures import DataSample

from conftest import (ROOT, digits_options, make_image, run_tool_in_process,
                      write_image_folder)
from mmgfn.models.utils import NeighborTable
from mmgfn.registry import MODELS
from mmgfn.utils import load_from_local

GFN_CONFIG = osp.join(ROOT, 'configs/digits/gfn_resnet-tiny_1xb32_digits.py')


def _model(seed=0, model_type=None):
    cfg = Config.fromfile(GFN_CONFIG)
    cfg.model.head.num_classes = 4
    cfg.model.head.loss.topk = 1
    cfg.model.data_preprocessor = dict(cfg.data_preprocessor, num_classes=4,
                                       topk=1)
    if model_type is not None:
        cfg.model.type = model_type
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    torch.manual_seed(seed)
    return MODELS.build(cfg.model)


def _batch(n=8):
    import numpy as np
    rng = np.random.default_rng(0)
    labels = [i % 4 for i in range(n)]
    return dict(
        inputs=[torch.from_numpy(make_image(c, rng)).permute(2, 0, 1)
                for c in labels],
        data_samples=[DataSample().set_gt_label(c) for c in labels])


def _step(model, batch):
    """One real train_step; returns the batch the model trained on."""
    seen = []
    handle = model.data_preprocessor.register_forward_hook(
        lambda module, args, out: seen.append(out['inputs'].clone()))
    try:
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
        model.train_step(copy.deepcopy(batch), wrapper)
    finally:
        handle.remove()
    return seen[0]


def _expected(model, batch):
    """The perturbation computed explicitly against ``model`` (as it is now:
    a training step moves BatchNorm's statistics), toward each label's only
    neighbour (topk=1) read from the table by hand."""
    pre = model.data_preprocessor
    clean = pre(copy.deepcopy(batch), False)
    labels = torch.tensor([s.gt_label.item() for s in batch['data_samples']])
    targets = pre.neighbor_table.neighbors[labels, 0]
    assert not torch.equal(targets, labels)
    return pre.perturb(model, clean['inputs'], labels, targets)


def test_bound_model_pickles_and_saves():
    model = _model()
    model.data_preprocessor.bind(model)
    _step(model, _batch())
    clone = pickle.loads(pickle.dumps(model))
    torch.save(model, io.BytesIO())
    # the unpickled copy trains against itself
    with torch.no_grad():
        clone.head.fc.weight.neg_()
    expected = _expected(clone, _batch())  # before BatchNorm statistics move
    assert torch.equal(_step(clone, _batch()), expected)


def test_deepcopy_attacks_with_its_own_weights():
    model = _model()
    batch = _batch()
    _step(model, batch)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.head.fc.weight.neg_()
        twin.head.fc.bias.neg_()
    expected, original = _expected(twin, batch), _expected(model, batch)
    assert not torch.equal(expected, original)
    assert torch.equal(_step(twin, batch), expected)
    # the copy's loss uses the copy's table
    loss = twin.head.loss_module
    assert loss.neighbor_table is twin.data_preprocessor.neighbor_table


@MODELS.register_module(force=True)
class DeepStepClassifier(ImageClassifier):
    """A custom train_step whose preprocessor call is 12 helpers deep."""

    def train_step(self, data, optim_wrapper):

        def helper(depth):
            if depth:
                return helper(depth - 1)
            return self.data_preprocessor(data, True)

        with optim_wrapper.optim_context(self):
            data = helper(12)
            losses = self._run_forward(data, mode='loss')
        parsed, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(parsed)
        return log_vars


def test_custom_train_step_calls_through_helpers():
    model = _model(model_type='mmgfn.DeepStepClassifier')
    batch = _batch()
    _step(model, batch)  # builds the table from the head
    expected = _expected(model, batch)
    assert torch.equal(_step(model, batch), expected)


def test_preprocessor_shared_by_two_models_attacks_the_caller():
    first, second = _model(seed=0), _model(seed=1)
    second.data_preprocessor = first.data_preprocessor
    batch = _batch()
    _step(first, batch)  # builds the table from the first model's head
    assert not torch.equal(_expected(first, batch),
                           _expected(second, batch))
    for model in (second, first, second):
        expected = _expected(model, batch)
        assert torch.equal(_step(model, batch), expected)


def test_without_a_model_the_error_says_what_to_do():
    model = _model()
    with pytest.raises(RuntimeError, match='found no model to attack'):
        model.data_preprocessor(_batch(), True)
    other = _model(seed=1)
    with pytest.raises(ValueError, match='does not own'):
        model.data_preprocessor.bind(other)


def _fsdp_rank(rank, world_size, port, out_dir):
    """One process of a 2-process gloo group: a GFN classifier wrapped by
    mmengine's MMFullyShardedDataParallel runs a train_step."""
    import torch.distributed as dist
    from mmengine.model import MMFullyShardedDataParallel
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        model = _model()
        wrapped = MMFullyShardedDataParallel(module=model, device_id='cpu')
        wrapper = OptimWrapper(torch.optim.SGD(wrapped.parameters(), lr=0.0))
        try:
            wrapped.train_step(_batch(), wrapper)
            message = 'trained'
        except RuntimeError as e:
            message = str(e)
        with open(osp.join(out_dir, f'rank{rank}.txt'), 'w') as f:
            f.write(message)
    finally:
        dist.destroy_process_group()


def _sharded_ranks(rank, world_size, out_dir):
    """One process of 2: FSDP1 (:func:`_fsdp_rank`), then FSDP2
    (:func:`_fully_shard_rank`), each in a process group of its own."""
    _fsdp_rank(rank, world_size, 29543, osp.join(out_dir, 'fsdp'))
    _fully_shard_rank(rank, world_size, 29547,
                      osp.join(out_dir, 'fully_shard'))


@pytest.fixture(scope='module')
def sharded(tmp_path_factory):
    """The messages of both sharded setups, from one spawn of 2 gloo
    processes (each imports torch and mmgfn once for both)."""
    import torch.multiprocessing as mp
    tmp = tmp_path_factory.mktemp('sharded')
    for name in ('fsdp', 'fully_shard'):
        (tmp / name).mkdir()
    mp.spawn(_sharded_ranks, args=(2, str(tmp)), nprocs=2)
    return tmp


def test_fsdp_is_refused_with_a_message(sharded):
    for rank in range(2):
        message = (sharded / 'fsdp' / f'rank{rank}.txt').read_text()
        assert 'does not support FullyShardedDataParallel' in message, \
            message



def _fully_shard_rank(rank, world_size, port, out_dir):
    """One process of a 2-process gloo group: a GFN classifier sharded by
    FSDP2's ``fully_shard`` (CPU mesh) runs its own train_step; the
    detection hook is bound to a sharded model."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from mmgfn.engine.hooks import BackgroundRoIPerturbationHook
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    messages = []
    try:
        model = _model()
        fully_shard(model, mesh=init_device_mesh('cpu', (world_size, )))
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.0))
        for attempt in (lambda: model.train_step(_batch(), wrapper),
                        lambda: BackgroundRoIPerturbationHook().bind(model)):
            try:
                attempt()
                messages.append('ran')
            except RuntimeError as e:
                messages.append(str(e))
        with open(osp.join(out_dir, f'rank{rank}.txt'), 'w') as f:
            f.write('\n'.join(messages))
    finally:
        dist.destroy_process_group()


def test_fully_shard_is_refused_with_a_message(sharded):
    """FSDP2 (``fully_shard``, which changes the model's class instead of
    wrapping it) is refused as FSDP1 is, by the classification attack at
    its first training step and by the detection hook's bind."""
    for rank in range(2):
        pre, hook = (sharded / 'fully_shard' /
                     f'rank{rank}.txt').read_text().split('\n')
        assert 'does not support fully_shard' in pre, pre
        assert 'does not support sharded models' in hook, hook


# two 4-class neighbour tables (k = 2) that differ
T1 = [[1, 2], [0, 2], [3, 0], [2, 1]]
T2 = [[3, 2], [2, 3], [0, 1], [1, 0]]
TABLE_KEY = 'data_preprocessor.neighbor_table.neighbors'


def _write_table(path, rows):
    table = NeighborTable(4, topk=2)
    table.load_neighbors(torch.tensor(rows), source='embedding')
    table.save(str(path))
    return str(path)


def _file_options(data_root, neighbor_file, max_epochs=1):
    return digits_options(data_root, max_epochs) + [
        'data_preprocessor.topk=2', 'model.head.loss.topk=2',
        'data_preprocessor.neighbor_source=file',
        f'data_preprocessor.neighbor_file={neighbor_file}'
    ]


def _train(work_dir, options, *flags):
    proc = run_tool_in_process(['tools/train.py', GFN_CONFIG, '--work-dir',
                                str(work_dir), *flags, '--cfg-options',
                                *options])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


def _table_of(checkpoint):
    return load_from_local(str(checkpoint))['state_dict'][TABLE_KEY].tolist()


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
    """One epoch of GFN with the neighbour file T1."""
    tmp = tmp_path_factory.mktemp('table_runs')
    data_root = write_image_folder(str(tmp / 'images'))
    files = dict(t1=_write_table(tmp / 't1.json', T1),
                 t2=_write_table(tmp / 't2.json', T2))
    log = _train(tmp / 'first', _file_options(data_root, files['t1']))
    assert f'neighbour table from file "{files["t1"]}"' in log
    checkpoint = tmp / 'first' / 'epoch_1.pth'
    assert _table_of(checkpoint) == T1
    return dict(tmp=tmp, data_root=data_root, checkpoint=checkpoint, **files)


def test_fine_tuning_uses_the_configured_file_and_warns(first_run):
    work_dir = first_run['tmp'] / 'finetune'
    log = _train(work_dir, _file_options(first_run['data_root'],
                                         first_run['t2']) +
                 [f'load_from={first_run["checkpoint"]}'])
    assert f'neighbour table from file "{first_run["t2"]}"' in log
    assert 'fine-tuning uses the configured file, not the table of the ' \
        'load_from checkpoint' in log
    assert _table_of(work_dir / 'epoch_1.pth') == T2


def test_resume_keeps_the_checkpoint_table(first_run):
    work_dir = first_run['tmp'] / 'resumed'
    log = _train(work_dir, _file_options(first_run['data_root'],
                                         first_run['t2'], max_epochs=2),
                 '--resume', str(first_run['checkpoint']))
    assert 'neighbour table from the checkpoint' in log
    assert "resumed run keeps its checkpoint's table" in log
    assert _table_of(work_dir / 'epoch_2.pth') == T1


def test_plain_checkpoint_is_no_missing_key_alarm(first_run):
    """Fine-tuning from a checkpoint without a table (any plain one): no
    'missing keys' warning about the table."""
    state = torch.load(first_run['checkpoint'], weights_only=False)
    state['state_dict'] = {k: v for k, v in state['state_dict'].items()
                           if 'neighbor_table' not in k}
    plain = first_run['tmp'] / 'plain.pth'
    torch.save(state, plain)
    log = _train(first_run['tmp'] / 'from_plain',
                 _file_options(first_run['data_root'], first_run['t1']) +
                 [f'load_from={plain}'])
    assert 'neighbor_table' not in log.split('Load checkpoint from')[0]
    assert f'neighbour table from file "{first_run["t1"]}"' in log


def test_evaluation_needs_no_neighbour_file(first_run):
    missing = str(first_run['tmp'] / 'never_written.json')
    proc = run_tool_in_process([
        'tools/test.py', GFN_CONFIG, str(first_run['checkpoint']),
        '--work-dir', str(first_run['tmp'] / 'test'), '--cfg-options',
        *_file_options(first_run['data_root'], missing)
    ])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert 'metrics: {"accuracy/top1"' in proc.stdout
    proc = run_tool_in_process([
        'tools/test_robustness.py', GFN_CONFIG, str(first_run['checkpoint']),
        '--suite', 'corrupt', '--corruptions', 'gaussian_noise',
        '--severities', '0', '1', '--allow-partial', '--work-dir',
        str(first_run['tmp'] / 'sweep'), '--cfg-options',
        *_file_options(first_run['data_root'], missing)
    ])
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (first_run['tmp'] / 'sweep' / 'results.json').is_file()
    # training does need it, and says so before anything runs
    proc = run_tool_in_process([
        'tools/train.py', GFN_CONFIG, '--work-dir',
        str(first_run['tmp'] / 'no_file'), '--cfg-options',
        *_file_options(first_run['data_root'], missing)
    ])
    assert proc.returncode != 0
    assert (f'neighbour file "{missing}" does not exist '
            '(data_preprocessor.neighbor_file)') in proc.stderr


def test_untargeted_mode_needs_no_table_on_a_zero_head():
    """The Adv. ablation (untargeted step, plain CE) on a head that starts
    at zeros (mmpretrain's ViT heads): no table is built or needed."""
    cfg = Config.fromfile(GFN_CONFIG)
    cfg.model.head.num_classes = 4
    cfg.model.head.loss = dict(type='mmpretrain.CrossEntropyLoss')
    cfg.model.data_preprocessor = dict(cfg.data_preprocessor, num_classes=4,
                                       topk=2, mode='untargeted')
    DefaultScope._instance_dict.clear()
    init_default_scope('mmgfn')
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        model.head.fc.weight.zero_()
        model.head.fc.bias.zero_()
    _step(model, _batch())  # (a zero head has a zero input gradient)
    assert not model.data_preprocessor.neighbor_table.is_built
