"""Installs mmgfn. Use ``bash tools/setup_env.sh`` for the full pinned stack.

Like OpenMMLab's packages, the wheel carries ``configs/``, ``tools/`` and
``model-index.yml`` under ``mmgfn/.mim/``, where mmengine resolves
``_base_ = ['mmgfn::folder/file.py']`` and ``mim`` finds the tools; an
editable install (``pip install -e .``) links them there instead.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
# what mmgfn/.mim holds: copies in a wheel, links in an editable install
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def link_mim_files() -> None:
    """``mmgfn/.mim/<name>`` -> ``../../<name>`` for an editable install."""
    mim = osp.join(ROOT, 'mmgfn', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        target = osp.join(mim, name)
        if osp.islink(target):
            os.remove(target)
        elif osp.isdir(target):
            shutil.rmtree(target)
        elif osp.exists(target):
            os.remove(target)
        os.symlink(osp.join('..', '..', name), target)


class BuildPyWithMim(build_py):
    """``build_py`` that also copies ``MIM_FILES`` to ``mmgfn/.mim``."""

    def run(self) -> None:
        super().run()
        mim = osp.join(self.build_lib, 'mmgfn', '.mim')
        for name in MIM_FILES:
            src, dst = osp.join(ROOT, name), osp.join(mim, name)
            if osp.isdir(dst) and not osp.islink(dst):
                shutil.rmtree(dst)
            if osp.isdir(src):
                shutil.copytree(
                    src, dst,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            elif osp.isfile(src):
                os.makedirs(mim, exist_ok=True)
                shutil.copyfile(src, dst)


def get_version() -> str:
    version_file = osp.join(osp.dirname(__file__), 'mmgfn', 'version.py')
    scope: dict = {}
    with open(version_file, encoding='utf-8') as f:
        exec(compile(f.read(), version_file, 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str = 'requirements.txt') -> list:
    """Read the pins of ``requirements.txt``, skipping comments and build-only tools."""
    build_only = ('setuptools', 'pytest')
    reqs = []
    with open(osp.join(osp.dirname(__file__), fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith(build_only):
                reqs.append(line)
    return reqs


if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
    link_mim_files()

setup(
    name='mmgfn',
    version=get_version(),
    description='GFN (Gain From Neighbors): robustness to distribution shift for '
    'mmpretrain classifiers and mmdet detectors',
    long_description=open('README.md', encoding='utf-8').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'data')),
    include_package_data=True,
    # the ImageNet-1k/-A/-R wnid lists
    package_data={'mmgfn': ['datasets/meta/*.txt']},
    python_requires='>=3.9',
    install_requires=parse_requirements(),
    extras_require={'tests': ['pytest']},
    license='Apache License 2.0',
    zip_safe=False,
    cmdclass={'build_py': BuildPyWithMim},
)
