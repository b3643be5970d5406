"""BackgroundRoIPerturbationHook on real mmdet detectors."""
import copy
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.runner import Runner

from conftest import (autocast_recorder, pythonpath_env, run_tool,
                      run_tool_in_process, write_coco,
                      write_det_config as write_config)
from mmgfn.engine.hooks import BackgroundRoIPerturbationHook
from mmgfn.registry import MODELS
from mmgfn.utils.errors import ConfigError


def _runner(cfg_path, work_dir):
    DefaultScope._instance_dict.clear()
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = work_dir
    return Runner.from_cfg(cfg)


def _hook(runner):
    return next(h for h in runner.hooks
                if isinstance(h, BackgroundRoIPerturbationHook))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('roi')
    root = write_coco(str(tmp / 'coco'), num_images=8)
    runner = _runner(write_config(tmp, root), str(tmp / 'work'))
    runner.train()
    return runner


def _batch(runner):
    return next(iter(runner.train_dataloader))


def _background_prob(model, inputs, samples):
    from mmdet.structures.bbox import bbox2roi
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        rois = bbox2roi([s.gt_instances.bboxes for s in samples])
        score = model.roi_head._bbox_forward(feats, rois)['cls_score']
    model.train()
    return F.softmax(score, 1)[:, -1]


def test_background_probability_of_gt_rois_rises(trained):
    model, hook = trained.model, _hook(trained)
    data = model.data_preprocessor(_batch(trained), False)
    x, samples = data['inputs'], data['data_samples']
    x_adv = hook.perturb(x, samples)
    before = _background_prob(model, x, samples)
    after = _background_prob(model, x_adv, samples)
    assert before.numel() >= 4
    assert (after > before).float().mean() >= 0.75, (before, after)
    # bounded step, padding untouched, valid pixel range
    pre = model.data_preprocessor
    diff = (x_adv - x).abs()
    assert diff.max() <= 0.01 + 1e-6
    for i, s in enumerate(samples):
        h, w = s.img_shape
        assert diff[i, :, h:, :].abs().sum() == 0
        assert diff[i, :, :, w:].abs().sum() == 0
    pixels = x_adv * pre.std + pre.mean
    assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3


def test_config_hook_perturbs_what_the_runner_trains_on(tmp_path):
    """Through the Runner and the config's custom_hooks: the batches the
    detector computes its loss on are the perturbed ones (the hook attaches
    itself in before_train)."""
    root = write_coco(str(tmp_path / 'coco'), num_images=4)
    runner = _runner(write_config(tmp_path, root, epochs=1),
                     str(tmp_path / 'work'))
    model = runner.model
    clean, trained_on = [], []
    # registered before the hook's own (before_train): sees clean batches
    model.data_preprocessor.register_forward_hook(
        lambda m, args, out: clean.append(out['inputs'].clone()))
    model.register_forward_pre_hook(
        lambda m, args, kwargs: trained_on.append(kwargs['inputs'].clone())
        if kwargs.get('mode') == 'loss' else None, with_kwargs=True)
    runner.train()
    assert len(trained_on) == 1 and len(clean) >= 1
    diff = (trained_on[0] - clean[0]).abs()
    assert 0 < diff.max() <= 0.01 + 1e-6


def test_padding_of_non_square_images_stays_unperturbed(trained, tmp_path):
    """64 x 40 images are padded to 64 x 64 (pad_size_divisor 32): the step
    leaves the padding as the data preprocessor made it (the shared
    detector: the attack leaves no trace on it)."""
    root = write_coco(str(tmp_path / 'coco'), num_images=4, width=40)
    cfg = Config.fromfile(write_config(tmp_path, root))
    DefaultScope._instance_dict.clear()
    init_default_scope('mmdet')
    model = trained.model
    hook = BackgroundRoIPerturbationHook(eta=0.01, seed=0)
    hook.bind(model, ['person', 'car'])
    loader = Runner.build_dataloader(copy.deepcopy(cfg.train_dataloader))
    data = model.data_preprocessor(next(iter(loader)), False)
    x, samples = data['inputs'], data['data_samples']
    diff = (hook.perturb(x, samples) - x).abs()
    assert x.shape[-2:] == (64, 64)
    for i, s in enumerate(samples):
        h, w = s.img_shape
        assert (h, w) == (64, 40)
        assert diff[i, :, :, w:].max() == 0
        assert diff[i, :, :h, :w].max() > 0


def test_training_batches_are_perturbed_and_leave_no_trace(trained):
    model = copy.deepcopy(trained.model)
    hook = BackgroundRoIPerturbationHook(eta=0.01, seed=0)
    hook.bind(model, ['person', 'car'])
    handle = model.data_preprocessor.register_forward_hook(
        hook._perturb_output, with_kwargs=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = _batch(trained)
    losses = model(**model.data_preprocessor(copy.deepcopy(batch), False),
                   mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    optimizer.step()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    grads = {k: None if v.grad is None else v.grad.clone()
             for k, v in model.named_parameters()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    state = copy.deepcopy(optimizer.state_dict())

    clean = model.data_preprocessor(copy.deepcopy(batch), False)['inputs']
    adv = model.data_preprocessor(copy.deepcopy(batch), True)['inputs']
    assert not torch.equal(clean, adv)
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k
        assert (v.grad is None and grads[k] is None) or torch.equal(
            v.grad, grads[k]), k
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    for i, s in state['state'].items():
        assert torch.equal(
            s['momentum_buffer'],
            optimizer.state_dict()['state'][i]['momentum_buffer'])
    handle.remove()


def test_cascade_rcnn_and_neighbour_targets(tmp_path):
    root = write_coco(str(tmp_path / 'coco'), num_images=4)
    cfg = Config.fromfile(
        write_config(tmp_path, root, model='cascade-rcnn_r50_fpn'))
    for stage in cfg.model.roi_head.bbox_head:
        stage.num_classes = 2
    DefaultScope._instance_dict.clear()
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    hook = BackgroundRoIPerturbationHook(eta=0.01, neighbor_ratio=1.0,
                                         topk=1, seed=0)
    hook.bind(model, ['person', 'car'])
    hook._maybe_build_table(model)
    # 2 classes: the only neighbour of each is the other
    labels = torch.tensor([0, 1, 1, 0])
    assert hook.targets(labels).tolist() == [1, 0, 0, 1]
    hook.neighbor_ratio = 0.0
    assert hook.targets(labels).tolist() == [2, 2, 2, 2]
    runner_cfg = copy.deepcopy(cfg.train_dataloader)
    loader = Runner.build_dataloader(runner_cfg)
    data = model.data_preprocessor(next(iter(loader)), False)
    x_adv = hook.perturb(data['inputs'], data['data_samples'])
    assert 0 < (x_adv - data['inputs']).abs().max() <= 0.01 + 1e-6


def test_refuses_detector_without_roi_head_and_class_mismatch(
        trained, tmp_path):
    root = write_coco(str(tmp_path / 'coco'), num_images=4)
    cfg = Config.fromfile(
        write_config(tmp_path, root, model='retinanet_r50_fpn'))
    DefaultScope._instance_dict.clear()
    init_default_scope('mmdet')
    retina = MODELS.build(cfg.model)
    with pytest.raises(ValueError, match='needs a two-stage detector.*'
                       'RetinaNet has none'):
        BackgroundRoIPerturbationHook().bind(retina)

    # bind: the hook's own class-count check (the one preflight runs too)
    two_classes = trained.model  # bind leaves it as it is
    with pytest.raises(ConfigError, match=r'^custom_hooks '
                       r'\(BackgroundRoIPerturbationHook\): the detector has '
                       '2 classes but the training dataset has 3 '):
        BackgroundRoIPerturbationHook().bind(two_classes,
                                             ['person', 'car', 'bus'])
    BackgroundRoIPerturbationHook().bind(two_classes, ['person', 'car'])

    # through the real tool: a 3-class detector on a 2-class dataset
    path = write_config(tmp_path, root, epochs=1, num_classes=3)
    proc = run_tool_in_process(['tools/train.py', path, '--work-dir',
                                str(tmp_path / 'work')])
    assert proc.returncode == 2
    assert 'the detector has 3 classes but the training dataset has 2' in (
        proc.stdout + proc.stderr)


# saves, per rank, the parameters after training and, per iteration, the
# clean batch the data preprocessor made and the batch the loss saw
RANK_RECORDER = """
import os

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class RecordRankBatches(Hook):
    priority = 'HIGHEST'  # its forward hook runs before the GFN hook's

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.clean, self.trained_on = [], []

    def before_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        model.data_preprocessor.register_forward_hook(self._clean,
                                                      with_kwargs=True)
        model.register_forward_pre_hook(
            lambda m, args, kwargs: self.trained_on.append(
                kwargs['inputs'].clone())
            if kwargs.get('mode') == 'loss' else None, with_kwargs=True)

    def _clean(self, module, args, kwargs, out):
        if kwargs.get('training', args[1] if len(args) > 1 else False):
            self.clean.append(out['inputs'].clone())

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        torch.save(dict(
            params={k: v.detach().clone()
                    for k, v in model.named_parameters()},
            clean=self.clean, trained_on=self.trained_on),
            os.path.join(self.out_dir, f'rank{get_rank()}.pth'))
"""


def test_dist_train_with_hook_perturbs_every_rank_and_keeps_them_equal(
        tmp_path):
    """tools/dist_train.sh, 2 gloo processes: each rank trains on its own
    images, perturbed by the config's hook (by at most eta), and the ranks
    end with identical weights."""
    root = write_coco(str(tmp_path / 'coco'), num_images=8)
    out_dir = tmp_path / 'ranks'
    out_dir.mkdir()
    (tmp_path / 'record_rank_batches.py').write_text(RANK_RECORDER)
    extra = ("\ncustom_imports = dict(imports=['record_rank_batches'], "
             "allow_failed_imports=False)\n"
             "custom_hooks = custom_hooks + [dict(type='RecordRankBatches', "
             f"out_dir={str(out_dir)!r})]\n")
    path = write_config(tmp_path, root, epochs=1, extra=extra)
    env = dict(pythonpath_env(tmp_path), PORT='29537')
    proc = run_tool(['tools/dist_train.sh', path, '2', '--work-dir',
                     str(tmp_path / 'work')], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # 8 images, batch 4 per process, 2 processes: one iteration
    assert 'Epoch(train) [1][1/1]' in proc.stdout + proc.stderr
    ranks = [torch.load(out_dir / f'rank{r}.pth') for r in range(2)]
    for rank in ranks:
        assert len(rank['clean']) == len(rank['trained_on']) == 1
        diff = (rank['trained_on'][0] - rank['clean'][0]).abs()
        assert 0 < diff.max() <= 0.01 + 1e-6
    assert not torch.equal(ranks[0]['clean'][0], ranks[1]['clean'][0])
    assert ranks[0]['params'].keys() == ranks[1]['params'].keys()
    for key, value in ranks[0]['params'].items():
        assert torch.equal(value, ranks[1]['params'][key]), key


def test_num_steps_takes_projected_steps_of_eta_over_num_steps(trained):
    """num_steps=3: three steps of eta / 3 toward background, each
    projected onto the eta box and the pixel range, as computed here with
    the summed background cross-entropy of the RoI head (eval mode)."""
    from mmdet.structures.bbox import bbox2roi
    model = trained.model
    data = model.data_preprocessor(_batch(trained), False)
    x, samples = data['inputs'], data['data_samples']
    hook = BackgroundRoIPerturbationHook(eta=0.01, num_steps=3, seed=0)
    hook.bind(model, ['person', 'car'])
    x3 = hook.perturb(x, samples)

    pre = model.data_preprocessor
    lower, upper = -pre.mean / pre.std, (255 - pre.mean) / pre.std
    rois = bbox2roi([s.gt_instances.bboxes for s in samples])
    background = torch.full((len(rois), ), 2)
    model.eval()
    xt = x
    for _ in range(3):
        xt = xt.clone().requires_grad_(True)
        score = model.roi_head._bbox_forward(model.extract_feat(xt),
                                             rois)['cls_score']
        loss = F.cross_entropy(score, background, reduction='sum')
        (grad, ) = torch.autograd.grad(loss, xt)
        xt = xt.detach() - 0.01 / 3 * grad.sign()
        xt = torch.min(torch.max(xt, x - 0.01), x + 0.01)
        xt = torch.max(torch.min(xt, upper), lower)
    model.train()
    model.zero_grad(set_to_none=True)
    assert torch.isclose(x3, xt, atol=1e-6).float().mean() >= 0.99
    # steps of eta / 3 that partly cancel: sizes between 0 and eta
    diff = (x3 - x).abs()
    assert ((diff > 0.002) & (diff < 0.005)).float().mean() > 0.05
    assert diff.max() <= 0.01 + 1e-6


def test_amp_train_and_test_with_hook(tmp_path):
    """--amp on the CPU, seen inside the detector: bfloat16 autocast for
    the hook's attack forward, the training forward and the test forward
    (mmcv's float32-only CPU RoIAlign/nms run in float32,
    mmgfn.utils.compat)."""
    root = write_coco(str(tmp_path / 'coco'), num_images=4)
    lines, events_file, env = autocast_recorder(tmp_path)
    path = write_config(tmp_path, root, epochs=1, extra=lines)
    work_dir = str(tmp_path / 'work')
    proc = run_tool_in_process(['tools/train.py', path, '--amp',
                                '--work-dir', work_dir], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(events_file) as f:
        events = json.load(f)
    # 4 images, batch 4: one iteration, the attack's forwards (one per
    # image: attack_chunk=1) then the loss's
    assert [(e['phase'], e['iter'], e['attack']) for e in events] == [
        ('train', 0, True)] * 4 + [('train', 0, False)]
    proc = run_tool_in_process(['tools/test.py', path,
                                osp.join(work_dir, 'epoch_1.pth'), '--amp',
                                '--work-dir', work_dir], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'metrics: {"coco/bbox_mAP"' in proc.stdout
    with open(events_file) as f:
        test_events = json.load(f)
    assert [(e['phase'], e['iter']) for e in test_events] == [('test', 0)]
    for e in events + test_events:
        assert (e['autocast'], e['dtype'], e['output']) == (
            True, 'bfloat16', 'bfloat16'), e


def test_neighbour_table_travels_with_checkpoints(trained):
    model = trained.model
    hook = BackgroundRoIPerturbationHook(neighbor_ratio=0.5, topk=1, seed=0)
    hook.bind(model, ['person', 'car'])
    hook._maybe_build_table(model)
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    assert checkpoint['neighbor_table']['neighbors'].tolist() == [[1], [0]]
    # a resumed run: mmengine loads the checkpoint before before_train
    resumed = BackgroundRoIPerturbationHook(neighbor_ratio=0.5, topk=1)
    resumed.after_load_checkpoint(None, checkpoint)
    resumed.bind(model, ['person', 'car'])
    assert bool(resumed.table.built)
    assert resumed.table.neighbors.tolist() == [[1], [0]]
    assert checkpoint['neighbor_table']['similarity'] == 'cosine'


@pytest.mark.parametrize('route', ['before_bind', 'after_bind'])
def test_checkpoint_table_of_the_hook_is_validated(trained, route):
    """A checkpoint whose table makes class 1 its own neighbour is refused
    in one line naming the checkpoint and the row, whether it is read
    before bind (a resumed run) or after; its similarity is restored."""
    model = trained.model
    bad = dict(neighbors=torch.tensor([[1], [1]]), source='head',
               similarity='cosine')
    hook = BackgroundRoIPerturbationHook(neighbor_ratio=0.5, topk=1)
    with pytest.raises(ValueError, match=r'^checkpoint: row 1 .*the class '
                       r'itself: \[1\]$'):
        if route == 'before_bind':
            hook.after_load_checkpoint(None, dict(neighbor_table=bad))
            hook.bind(model, ['person', 'car'])
        else:
            hook.bind(model, ['person', 'car'])
            hook.after_load_checkpoint(None, dict(neighbor_table=bad))
    good = dict(bad, neighbors=torch.tensor([[1], [0]]), similarity='dot')
    hook = BackgroundRoIPerturbationHook(neighbor_ratio=0.5, topk=1)
    hook.bind(model, ['person', 'car'])
    hook.after_load_checkpoint(None, dict(neighbor_table=good))
    assert hook.table.similarity == 'dot'


def test_chunked_attack_equals_the_whole_batch_attack(trained):
    """attack_mode='eval': each image's step depends on that image only,
    so one image at a time (attack_chunk=1, the default) gives the whole
    batch's step (attack_chunk=0), up to float rounding of near-zero
    gradients."""
    model = trained.model
    data = model.data_preprocessor(_batch(trained), False)
    x, samples = data['inputs'], data['data_samples']
    steps = {}
    for chunk in (0, 1):
        hook = BackgroundRoIPerturbationHook(eta=0.01, seed=0,
                                             attack_chunk=chunk)
        hook.bind(model, ['person', 'car'])
        steps[chunk] = hook.perturb(x, samples) - x
        assert hook.grad_scaler.unperturbed.item() == 0
    assert len(x) > 1
    agree = (steps[0].sign() == steps[1].sign()).float().mean().item()
    assert agree >= 0.999, agree
    assert steps[1].abs().max() <= 0.01 + 1e-6


def test_hooked_step_peak_memory_stays_within_5_percent_of_plain():
    """The analysis behind attack_chunk, on the CPU: a Faster R-CNN R-50
    FPN (Bottleneck blocks; narrowed to 16 base channels and 32 FPN
    channels so that activations, not weight gradients, make the peak, as
    at 800x1333), two 320x320 images. Peak bytes allocated during one training step, from
    the profiler's allocation events (benchmark_gfn_step.step_peak_bytes):
    attacking the whole batch at once (attack_chunk=0, the old behaviour)
    needs more than the training step itself (the attack saves the frozen
    stem and stage 1 that training does not differentiate), one image at a
    time stays within 5 %."""
    from conftest import load_tool
    tool = load_tool('tools/analysis_tools/benchmark_gfn_step.py',
                     'benchmark_gfn_step')
    tool.MODELS['faster-rcnn-r50-narrow'] = dict(
        tool.MODELS['faster-rcnn-r50'], base_channels=16, neck_channels=32)
    data = tool.batch('faster-rcnn-r50-narrow', 2, (320, 320))
    peaks = {}
    for name, chunk in (('plain', None), ('whole', 0), ('chunked', 1)):
        model, wrapper = tool.build('faster-rcnn-r50-narrow',
                                    'plain' if chunk is None else 'gfn',
                                    'cpu', attack_chunk=chunk)
        model.train_step(data, wrapper)  # gradients and momenta exist
        peaks[name] = tool.step_peak_bytes(model, wrapper, data)
    assert peaks['whole'] / peaks['plain'] > 1.15, peaks
    assert peaks['chunked'] / peaks['plain'] <= 1.05, peaks
