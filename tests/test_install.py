"""An installed (wheel, non-editable) mmgfn ships its configs and tools, and
a downstream project inherits them through ``mmgfn::`` from any folder."""
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, write_image_folder

# what the wheel is built from: the files a clean clone has
SOURCES = ('setup.py', 'setup.cfg', 'README.md', 'requirements.txt',
           'MANIFEST.in', 'model-index.yml', 'configs', 'tools', 'mmgfn')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """Build mmgfn's wheel from a copy of the checkout (the checkout stays
    untouched) and ``pip install --target`` it; return the target."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    src.mkdir()
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim',
                                    '*.egg-info')
    for name in SOURCES:
        path = osp.join(ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copyfile(path, src / name)
    run = dict(capture_output=True, text=True, timeout=300)
    proc = subprocess.run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '-q', '-w',
        str(tmp / 'dist'), '.'
    ], cwd=src, **run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = os.listdir(tmp / 'dist')
    assert len(wheels) == 1 and wheels[0].endswith('.whl'), wheels
    site = tmp / 'site'
    proc = subprocess.run([
        sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
        '--target',
        str(site),
        str(tmp / 'dist' / wheels[0])
    ], **run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(site)


def _run(cmd, cwd, site, timeout=300):
    env = dict(os.environ, PYTHONPATH=site, PYTHONUNBUFFERED='1')
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_wheel_ships_configs_tools_and_model_index(installed):
    mim = osp.join(installed, 'mmgfn', '.mim')
    for rel in ('configs/gfn_vit-b_in1k.py',
                'configs/digits/gfn_resnet-tiny_1xb32_digits.py',
                'configs/detection/faster-rcnn_vit-b-gfn_sfp_1x_coco.py',
                'configs/_base_/datasets/rtts.py', 'tools/train.py',
                'tools/test.py', 'model-index.yml'):
        path = osp.join(mim, rel)
        assert osp.isfile(path) and not osp.islink(path), rel
        with open(osp.join(ROOT, rel), 'rb') as a, open(path, 'rb') as b:
            assert a.read() == b.read(), rel
    assert osp.isfile(osp.join(installed, 'mmgfn', 'datasets', 'meta',
                               'imagenet1k_wnids.txt'))


DOWNSTREAM = """
_base_ = ['mmgfn::digits/gfn_resnet-tiny_1xb32_digits.py']
# a downstream project: 4 classes of its own, the rest from mmgfn
model = dict(head=dict(num_classes=4))
data_preprocessor = dict(num_classes=4)
train_dataloader = dict(num_workers=0, batch_size=8,
                        dataset=dict(data_root={root!r}))
val_dataloader = dict(num_workers=0, batch_size=8,
                      dataset=dict(data_root={root!r}))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=1, val_interval=1)
param_scheduler = dict(T_max=1)
default_hooks = dict(logger=dict(interval=1))
"""

# One process, as a downstream user's would be with only the wheel on the
# path: first mim's route (<package>/.mim/tools/train.py CONFIG, run as the
# script it is, with its folder first on sys.path), then checks of where
# mmgfn and its configs came from. The tool runs first, so it imports all it
# needs by itself.
RUN_THEN_CHECK = """
import os.path as osp, runpy, sys
site, tool, work_dir = sys.argv[1:4]
sys.argv = [tool, 'downstream.py', '--work-dir', work_dir]
sys.path.insert(0, osp.dirname(tool))
try:
    runpy.run_path(tool, run_name='__main__')
except SystemExit as exc:
    assert not exc.code, exc.code
del sys.path[0]
print('train ok')
import mmgfn
assert osp.abspath(mmgfn.__file__).startswith(osp.abspath(site)), \\
    mmgfn.__file__
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmgfn.models import NeighborAdversarialDataPreprocessor
from mmgfn.registry import MODELS
# where the bases came from: the installed package
path, scope = Config._get_cfg_path(
    'mmgfn::digits/gfn_resnet-tiny_1xb32_digits.py', 'downstream.py')
assert path.startswith(osp.join(osp.abspath(site), 'mmgfn', '.mim')), path
assert scope == 'mmgfn'
cfg = Config.fromfile('downstream.py')
assert cfg.data_preprocessor.topk == 3 and cfg.model.head.num_classes == 4
init_default_scope(cfg.default_scope)
model_cfg = cfg.model.copy()
model_cfg.data_preprocessor = cfg.data_preprocessor
model = MODELS.build(model_cfg)
assert isinstance(model.data_preprocessor,
                  NeighborAdversarialDataPreprocessor)
assert model.head.fc.out_features == 4
# a top-level ImageNet config (no folder in the path)
vit = Config.fromfile('vit.py')
assert vit.data_preprocessor.topk == 20
assert vit.data_preprocessor.neighbor_source == 'file'
assert vit.train_dataloader.batch_size == 12
print('downstream ok')
"""


def test_downstream_config_inherits_from_wheel_install(installed, tmp_path):
    """From a folder outside the checkout, with only the installed wheel on
    the path for mmgfn: a config inheriting ``mmgfn::`` bases loads, builds
    the model, and trains through the tool the wheel ships."""
    work = tmp_path / 'downstream'
    work.mkdir()
    assert not str(work).startswith(ROOT)
    data = write_image_folder(str(tmp_path / 'images'))
    (work / 'downstream.py').write_text(DOWNSTREAM.format(root=data))
    (work / 'vit.py').write_text("_base_ = ['mmgfn::gfn_vit-b_in1k.py']\n")
    (work / 'check.py').write_text(textwrap.dedent(RUN_THEN_CHECK))
    tool = osp.join(installed, 'mmgfn', '.mim', 'tools', 'train.py')
    proc = _run([sys.executable, 'check.py', installed, tool,
                 str(work / 'work')], work, installed)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # mim's route trained, validated and saved from the downstream folder
    assert 'train ok' in proc.stdout
    assert osp.isfile(work / 'work' / 'epoch_1.pth')
    assert 'Epoch(val) [1]' in proc.stdout + proc.stderr
    assert 'downstream ok' in proc.stdout
