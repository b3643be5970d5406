"""GFN training through the real tools: DDP (gloo), --amp, resume."""
import os.path as osp

import torch
from conftest import ROOT, digits_options, run_tool

from mmgfn.utils import load_from_local

GFN_CONFIG = osp.join(ROOT, 'configs', 'digits',
                      'gfn_resnet-tiny_1xb32_digits.py')

# A hook that saves each rank's weights after training (DDP check).
DUMP_HOOK = '''
import os
import torch
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


def test_amp_training_finishes(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    proc = run_tool([
        'tools/train.py', GFN_CONFIG, '--amp', '--work-dir', work_dir,
        '--cfg-options', *_gfn_options(image_folder, max_epochs=1)
    ])
    _check_ok(proc)
    log = proc.stdout + proc.stderr
    assert 'DeviceAmpOptimWrapper' in log or 'bfloat16' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_resume_keeps_the_neighbour_table(image_folder, tmp_path):
    work_dir = str(tmp_path / 'work')
    opts = _gfn_options(image_folder, max_epochs=3) + [
        'default_hooks.checkpoint.interval=1',
        'default_hooks.checkpoint.max_keep_ckpts=3'
    ]
    proc = run_tool(['tools/train.py', GFN_CONFIG, '--work-dir', work_dir,
                     '--cfg-options', *opts, 'train_cfg.max_epochs=1'])
    _check_ok(proc)
    assert 'neighbour table built from head weights at training step 0' in (
        proc.stdout + proc.stderr)
    first = load_from_local(osp.join(work_dir, 'epoch_1.pth'))['state_dict']
    table = first['data_preprocessor.neighbor_table.neighbors']
    head = first['head.fc.weight']

    proc = run_tool(['tools/train.py', GFN_CONFIG, '--work-dir', work_dir,
                     '--resume', '--cfg-options', *opts])
    _check_ok(proc)
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 1' in log.lower() or 'resumed' in log.lower()
    # a run that did not restore the table would build it at its first step
    assert 'neighbour table built from head weights' not in log
    last = load_from_local(osp.join(work_dir, 'epoch_3.pth'))['state_dict']
    assert torch.equal(last['data_preprocessor.neighbor_table.neighbors'],
                       table)
    assert not torch.equal(last['head.fc.weight'], head)  # it did train
