"""Installs mmgfn. Use ``bash tools/setup_env.sh`` for the full pinned stack."""
import os.path as osp

from setuptools import find_packages, setup


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
)
