"""Importing mmgfn keeps mmpretrain importable beside transformers 5."""
import os
import subprocess
import sys


def _write_fake_transformers(site: str, version: str) -> None:
    """Install metadata (no module) of a given transformers version."""
    info = os.path.join(site, f'transformers-{version}.dist-info')
    os.makedirs(info)
    with open(os.path.join(info, 'METADATA'), 'w') as f:
        f.write(f'Metadata-Version: 2.1\nName: transformers\n'
                f'Version: {version}\n')


def _import(site: str, first: str) -> subprocess.CompletedProcess:
    code = (f'import sys; sys.path.insert(0, {site!r}); {first}'
            'import mmpretrain.models; print("imported")')
    return subprocess.run([sys.executable, '-c', code],
                          capture_output=True, text=True, timeout=300)


def test_transformers5_guard(tmp_path):
    site = str(tmp_path / 'site')
    _write_fake_transformers(site, '5.1.0')
    # without mmgfn, mmpretrain tries to import its multimodal models
    bare = _import(site, '')
    assert bare.returncode != 0
    guarded = _import(site, 'import mmgfn; ')
    assert guarded.returncode == 0, guarded.stderr[-3000:]
    assert 'imported' in guarded.stdout
    assert 'transformers 5.1.0 is installed' in guarded.stderr
