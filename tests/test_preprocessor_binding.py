"""NeighborAdversarialDataPreprocessor finds the right model in real
training setups: pickling, deep copies, custom train steps, shared
preprocessors, and FSDP (refused)."""
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

from conftest import ROOT, make_image
from mmgfn.registry import MODELS

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
    a training step moves BatchNorm's statistics)."""
    pre = model.data_preprocessor
    clean = pre(copy.deepcopy(batch), False)
    labels = torch.tensor([s.gt_label.item() for s in batch['data_samples']])
    return pre.perturb(model, clean['inputs'], labels)


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


def test_fsdp_is_refused_with_a_message(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_fsdp_rank, args=(2, 29543, str(tmp_path)), nprocs=2)
    for rank in range(2):
        message = (tmp_path / f'rank{rank}.txt').read_text()
        assert 'does not support FullyShardedDataParallel' in message, \
            message
