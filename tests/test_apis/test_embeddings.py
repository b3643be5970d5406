"""Embeddings files read by the analysis tools: what is accepted, and the
one-line refusal of anything else."""
import pytest
import torch

from mmgfn.apis.embeddings import load_embeddings
from mmgfn.utils.errors import ConfigError


def test_tensor_and_dict_files_load_with_their_class_names(tmp_path):
    emb = torch.arange(6, dtype=torch.float64).reshape(3, 2)
    plain, named = tmp_path / 'plain.pth', tmp_path / 'named.pth'
    torch.save(emb, plain)
    torch.save(dict(embeddings=emb, classes=['a', 'b', 'c']), named)
    data, names = load_embeddings(str(plain))
    assert data.dtype == torch.float32 and names is None
    assert data.tolist() == emb.tolist()
    data, names = load_embeddings(str(named))
    assert names == ['a', 'b', 'c'] and data.tolist() == emb.tolist()


def test_a_file_without_a_2d_tensor_is_refused_naming_it(tmp_path):
    bad = tmp_path / 'bad.pth'
    torch.save(dict(embeddings=torch.zeros(3)), bad)
    with pytest.raises(ConfigError) as err:
        load_embeddings(str(bad))
    message = str(err.value)
    assert f'"{bad}" holds no C x D tensor' in message
    assert '--' not in message  # the package names no tool flag
