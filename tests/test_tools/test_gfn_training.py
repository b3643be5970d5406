"""GFN training through the real tools: DDP (gloo), --amp, resume.

``--amp`` and ``--resume`` run ``tools/train.py`` in this process
(:func:`conftest.run_tool_in_process`); the distributed launch is a
process of its own, as it is what is checked."""
import json
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from conftest import (ROOT, digits_options, run_tool, run_tool_in_process,
                      write_autocast_recorder, write_image_folder)

from mmgfn.utils import load_from_local

GFN_CONFIG = osp.join(ROOT, 'configs', 'digits',
                      'gfn_resnet-tiny_1xb32_digits.py')

# A hook that saves each rank's weights after training (DDP check).
DUMP_HOOK = '''
import os
import pytest
import torch
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpRankWeights(Hook):

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_train(self, runner):
        model = getattr(runner.model, 'module', runner.model)
        # parameters and the neighbour table (BatchNorm statistics differ
        # between DDP ranks by design: each rank updates them on its data)
        state = {k: v.detach().cpu().clone()
                 for k, v in model.named_parameters()}
        state['neighbors'] = model.data_preprocessor.neighbor_table.neighbors
        torch.save(state, os.path.join(self.out_dir,
                                       f'rank{get_rank()}.pth'))
'''


def _check_ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def _gfn_options(data_root, max_epochs):
    # 4 classes: 2 neighbours each
    return digits_options(data_root, max_epochs) + [
        'data_preprocessor.topk=2', 'model.head.loss.topk=2'
    ]


def test_dist_train_two_processes_keeps_ranks_identical(image_folder,
                                                         tmp_path):
    out_dir = tmp_path / 'ranks'
    out_dir.mkdir()
    (tmp_path / 'dump_rank_weights.py').write_text(DUMP_HOOK)
    config = tmp_path / 'gfn_ddp.py'
    config.write_text(
        f"_base_ = ['{GFN_CONFIG}']\n"
        "custom_imports = dict(imports=['dump_rank_weights'], "
        "allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='DumpRankWeights', out_dir='{out_dir}')]\n")
    proc = run_tool([
        'tools/dist_train.sh', str(config), '2', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        *_gfn_options(image_folder, max_epochs=2)
    ], env={'PORT': '29527', 'PYTHONPATH': str(tmp_path)})
    _check_ok(proc)
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [2][2/2]' in log
    assert 'neighbour table built from head weights' in log
    rank0 = torch.load(out_dir / 'rank0.pth')
    rank1 = torch.load(out_dir / 'rank1.pth')
    assert rank0.keys() == rank1.keys()
    assert 'neighbors' in rank0 and len(rank0) > 10
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key


def test_amp_attack_and_training_forward_run_in_bfloat16(image_folder,
                                                        tmp_path):
    """--amp on the CPU, seen inside the model: in every training
    iteration the backbone runs twice, for the attack (its input requires
    a gradient) and for the loss, both under bfloat16 autocast with
    bfloat16 outputs."""
    config, events_file, env = write_autocast_recorder(tmp_path,
                                                       GFN_CONFIG)
    work_dir = str(tmp_path / 'work')
    proc = run_tool_in_process([
        'tools/train.py', config, '--amp', '--work-dir', work_dir,
        '--cfg-options', *_gfn_options(image_folder, max_epochs=1)
    ], env=env)
    _check_ok(proc)
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    with open(events_file) as f:
        events = [e for e in json.load(f) if e['phase'] == 'train']
    assert [(e['iter'], e['attack']) for e in events] == [
        (i, attack) for i in range(4) for attack in (True, False)]
    for e in events:
        assert (e['autocast'], e['dtype'], e['output']) == (
            True, 'bfloat16', 'bfloat16'), e


def test_resume_keeps_the_neighbour_table(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    opts = _gfn_options(image_folder, max_epochs=3) + [
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=3'
    ]
    proc = run_tool_in_process([
        'tools/train.py', GFN_CONFIG, '--work-dir', work_dir, '--cfg-options',
        *opts, 'train_cfg.max_epochs=1'
    ])
    _check_ok(proc)
    assert 'neighbour table built from head weights at training step 0' in (
        proc.stdout + proc.stderr)
    first = load_from_local(osp.join(work_dir, 'epoch_1.pth'))['state_dict']
    table = first['data_preprocessor.neighbor_table.neighbors']
    head = first['head.fc.weight']

    proc = run_tool_in_process([
        'tools/train.py', GFN_CONFIG, '--work-dir', work_dir, '--resume',
        '--cfg-options', *opts
    ])
    _check_ok(proc)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1, iter: 4' in log
    # a run that did not restore the table would build it at its first step
    assert 'neighbour table built from head weights' not in log
    last = load_from_local(osp.join(work_dir, 'epoch_3.pth'))['state_dict']
    assert torch.equal(last['data_preprocessor.neighbor_table.neighbors'],
                       table)
    assert not torch.equal(last['head.fc.weight'], head)  # it did train


# ------------------------------------- GFN, Nbr. and plain from one seed ---
FINETUNE_CONFIG = osp.join(ROOT, 'configs', 'digits',
                           'finetune_resnet-tiny_1xb32_digits.py')


def _run_recorded(config, options, work_dir):
    """One epoch through the real Runner; returns the initial and final
    parameters, the inputs of each ``mode='loss'`` forward and, per
    training step, the loss module's scores, labels and loss."""
    from mmengine.config import Config, DictAction
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({
        key: DictAction._parse_iterable(value)
        for key, value in (o.split('=', 1) for o in options)
    })
    cfg.work_dir = str(work_dir)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    DefaultScope._instance_dict.clear()
    runner = Runner.from_cfg(cfg)
    model = runner.model
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    inputs, losses = [], []
    model.register_forward_pre_hook(
        lambda m, args, kwargs: inputs.append(kwargs['inputs'].clone())
        if kwargs.get('mode') == 'loss' else None, with_kwargs=True)
    model.head.loss_module.register_forward_hook(
        lambda m, args, kwargs, out: losses.append(
            (args[0].detach().clone(), args[1].clone(), out.detach())),
        with_kwargs=True)
    runner.train()
    final = {k: v.detach().clone() for k, v in model.named_parameters()}
    return dict(initial=initial, final=final, inputs=inputs, losses=losses,
                model=model)


@pytest.fixture(scope='module')
def gfn_epoch(tmp_path_factory):
    """One recorded GFN epoch (:func:`_run_recorded`) on a 4-class image
    folder, shared read-only: (image folder, work dir, the record)."""
    root = tmp_path_factory.mktemp('gfn_epoch')
    images = write_image_folder(str(root / 'images'))
    work_dir = root / 'gfn'
    return images, work_dir, _run_recorded(GFN_CONFIG,
                                           _gfn_options(images, 1), work_dir)


def test_gfn_nbr_and_plain_differ_only_where_they_should(gfn_epoch,
                                                          tmp_path):
    """From one seed, through the Runner and the digits configs: plain
    fine-tuning, Nbr. (the GFN config with loss scale 0, as
    configs/ablations/nbr_vit-b_in1k.py) and GFN start from the same
    weights and the same clean batch. Nbr. and GFN train their first step
    on the same perturbed batch and differ by the loss only (Nbr.'s is
    cross-entropy, GFN's the neighbour-weighted margin loss computed here
    from the table); plain trains on the clean batch. All three end in
    different weights."""
    image_folder, _, gfn_run = gfn_epoch
    opts = digits_options(image_folder, max_epochs=1)
    runs = dict(
        plain=_run_recorded(FINETUNE_CONFIG, opts, tmp_path / 'plain'),
        nbr=_run_recorded(GFN_CONFIG,
                          _gfn_options(image_folder, 1) +
                          ['model.head.loss.scale=0.0'], tmp_path / 'nbr'),
        gfn=gfn_run)
    plain, nbr, gfn = runs['plain'], runs['nbr'], runs['gfn']
    for run in runs.values():
        assert len(run['inputs']) == len(run['losses']) == 4  # 32 / 8
        for k, v in run['initial'].items():
            assert torch.equal(v, plain['initial'][k]), k

    # the first step: the same clean batch, perturbed by at most eta
    x_plain, x_nbr, x_gfn = (r['inputs'][0] for r in (plain, nbr, gfn))
    assert torch.equal(x_nbr, x_gfn)
    step = (x_gfn - x_plain).abs()
    assert 0 < step.max() <= 0.01 + 1e-6

    # the first step's losses: same scores, CE for Nbr., margin loss for GFN
    (s_nbr, y_nbr, l_nbr), (s_gfn, y_gfn, l_gfn) = (
        r['losses'][0] for r in (nbr, gfn))
    assert torch.equal(s_nbr, s_gfn) and torch.equal(y_nbr, y_gfn)
    assert l_nbr == pytest.approx(F.cross_entropy(s_nbr, y_nbr).item(),
                                  rel=1e-5)
    table = gfn['model'].data_preprocessor.neighbor_table.neighbors
    margins = torch.zeros(4, 4)
    for c in range(4):
        for rank, j in enumerate(table[c, :2].tolist(), start=1):
            margins[c, j] = math.log(1 + 0.5**rank)  # alpha 0.5, scale 1
    expected = (torch.logsumexp(s_gfn + margins[y_gfn], 1) -
                s_gfn.gather(1, y_gfn[:, None])[:, 0]).mean()
    assert l_gfn == pytest.approx(expected.item(), rel=1e-5)
    assert l_gfn > l_nbr

    for a, b in (('plain', 'nbr'), ('plain', 'gfn'), ('nbr', 'gfn')):
        assert not torch.equal(runs[a]['final']['head.fc.weight'],
                               runs[b]['final']['head.fc.weight']), (a, b)


def test_unperturbed_share_is_in_the_training_log(gfn_epoch):
    """The share of samples the attack left unperturbed goes to mmengine's
    message hub and from there to ``train.log`` and the scalar log, one
    value per logged iteration (here 0: every sample is attacked)."""
    import glob
    work_dir = gfn_epoch[1]
    logs = glob.glob(str(work_dir / '*' / '*.log'))
    assert len(logs) == 1, logs
    lines = [line for line in open(logs[0]) if 'Epoch(train)' in line]
    assert len(lines) == 4  # 32 images / batch 8, logger interval 1
    assert all('gfn_unperturbed: 0.0000' in line for line in lines), lines
    scalars = glob.glob(
        str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    records = [json.loads(line) for line in open(scalars[0])]
    shares = [r['gfn_unperturbed'] for r in records if 'loss' in r]
    assert shares == [0.0] * 4
