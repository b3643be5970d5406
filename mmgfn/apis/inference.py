"""Loading a classifier and running it over a dataset, outside a Runner.

What ``tools/build_neighbors.py`` and the analysis tools share: a model
built from a config and a checkpoint (with a plain ``ClsDataPreprocessor``,
so that a GFN config whose neighbour file does not exist yet can still be
loaded), a test dataloader with an optional on-the-fly corruption, and one
pass that collects pre-logits features, predictions and labels.

Shape shorthand: ``N`` samples, ``C`` classes, ``D`` feature dimensions.
"""
import copy
import inspect
from typing import Dict, Optional

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_state_dict
from mmpretrain.models import ClsDataPreprocessor
from torch import nn

from mmgfn.datasets.transforms.insertion import (  # noqa: F401
    insert_corruption, transform_name)
from mmgfn.models.data_preprocessors import \
    NeighborAdversarialDataPreprocessor
from mmgfn.models.utils.features import forward_batch
from mmgfn.registry import MODELS
from mmgfn.utils.checkpoint import (Checkpoint,  # noqa: F401
                                    shape_mismatches)
from mmgfn.utils.config_walk import iter_datasets

#: Options of NeighborAdversarialDataPreprocessor that ClsDataPreprocessor
#: does not take (read off the two constructors).
GFN_PREPROCESSOR_KEYS = tuple(
    name for name in inspect.signature(
        NeighborAdversarialDataPreprocessor).parameters
    if name not in inspect.signature(ClsDataPreprocessor).parameters)


def plain_preprocessor_cfg(cfg: Config) -> dict:
    """The config's data preprocessor as a plain ``ClsDataPreprocessor``
    (same normalisation, no attack, no batch augments)."""
    pre = dict(cfg.model.get('data_preprocessor') or cfg.get(
        'data_preprocessor') or {})
    for key in GFN_PREPROCESSOR_KEYS + ('batch_augments', '_scope_'):
        pre.pop(key, None)
    pre['type'] = 'mmpretrain.ClsDataPreprocessor'
    return pre


def load_classifier(cfg: Config,
                    checkpoint: Optional[str],
                    device: str = 'cpu',
                    require_head: bool = False) -> nn.Module:
    """Build the config's mmpretrain classifier, load ``checkpoint``, eval.

    Before loading, every tensor of the checkpoint's ``state_dict`` that the
    model also has is compared by shape (mmengine's loader would only warn
    and keep the model's random initialisation for a mismatched tensor).

    Args:
        cfg (Config): A classification config.
        checkpoint (str, optional): Checkpoint path; None keeps the
            initialisation.
        device (str): Defaults to 'cpu'.
        require_head (bool): Also refuse a checkpoint without weights for
            the model's head (its predictions would come from a random
            head). Defaults to False (class embeddings only need the
            backbone and neck).

    Returns:
        nn.Module: The model, in eval mode, with a plain ClsDataPreprocessor.

    Raises:
        FileNotFoundError: If the checkpoint is missing.
        ConfigError: (a ValueError) If a checkpoint tensor's shape differs
            from the model's (names the key and both shapes; for the head,
            both class counts), or, with ``require_head``, the checkpoint
            has no head weights (names the keys).
    """
    init_default_scope(cfg.get('default_scope', 'mmgfn'))
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg['data_preprocessor'] = plain_preprocessor_cfg(cfg)
    model_cfg.pop('train_cfg', None)
    model = MODELS.build(model_cfg)
    if checkpoint:
        ckpt = Checkpoint(checkpoint)
        ckpt.check_fits(model, require_head=require_head)
        load_state_dict(model, ckpt.state_dict, strict=False)
        if ckpt.meta.get('dataset_meta'):
            model.dataset_meta = ckpt.meta['dataset_meta']
    return model.to(device).eval()


def check_checkpoint_fits(model: nn.Module,
                          state_dict: dict,
                          checkpoint: str = 'checkpoint',
                          require_head: bool = False) -> None:
    """Refuse a ``state_dict`` whose tensors do not fit ``model``
    (:meth:`mmgfn.utils.checkpoint.Checkpoint.check_fits`).

    Args:
        model (nn.Module): The model built from the config.
        state_dict (dict): The checkpoint's ``state_dict`` (keys as in
            ``model.state_dict()``).
        checkpoint (str): The checkpoint's path, for the message.
        require_head (bool): Also refuse a ``state_dict`` without the
            model's ``head.*`` tensors. Defaults to False.

    Raises:
        ConfigError: On the first mismatched shape: one line with the key,
            both shapes and, for a head tensor, both class counts.
    """
    Checkpoint.from_state_dict(state_dict, checkpoint).check_fits(
        model, require_head=require_head)


def build_test_dataloader(cfg: Config,
                          split: str = 'test',
                          batch_size: Optional[int] = None,
                          num_workers: Optional[int] = None,
                          corruption: Optional[str] = None,
                          severity: int = 0):
    """A deterministic dataloader over one of the config's datasets.

    Args:
        cfg (Config): The config.
        split (str): ``'train'``, ``'val'`` or ``'test'``: whose dataset.
            The *test* pipeline is always used (no augmentation).
        batch_size (int, optional): Defaults to the config's.
        num_workers (int, optional): Defaults to the config's.
        corruption (str, optional): Insert ``mmgfn.ImageCorruption`` with
            this corruption after the image is loaded.
        severity (int): Its severity (1-5). Defaults to 0 (clean).
    """
    loader = copy.deepcopy(cfg.get(f'{split}_dataloader'))
    if not loader:
        raise ValueError(f'the config has no {split}_dataloader')
    test_pipeline = copy.deepcopy(cfg.test_dataloader.dataset.get(
        'pipeline') or cfg.val_dataloader.dataset.pipeline)
    if corruption:
        test_pipeline = insert_corruption(test_pipeline, corruption,
                                          severity)
    # through dataset wrappers: the first that has a pipeline or wraps none
    inner = next(ds for _, ds in iter_datasets(
        loader['dataset'], stop=lambda d: 'pipeline' in d)
                 if 'pipeline' in ds or not isinstance(ds.get('dataset'),
                                                       dict))
    inner['pipeline'] = test_pipeline
    loader['sampler'] = dict(type='DefaultSampler', shuffle=False)
    loader.pop('batch_sampler', None)
    if batch_size:
        loader['batch_size'] = batch_size
    if num_workers is not None:
        loader['num_workers'] = num_workers
        if num_workers == 0:
            loader['persistent_workers'] = False
    return Runner.build_dataloader(loader)


@torch.no_grad()
def collect_outputs(model: nn.Module,
                    dataloader,
                    features: bool = True,
                    progress: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """One pass of an mmpretrain classifier over a dataloader.

    Args:
        model (nn.Module): The classifier, in eval mode.
        dataloader: Batches with ``gt_label``.
        features (bool): Also collect pre-logits features.
            Defaults to True.
        progress (str, optional): Show a progress bar with this title.

    Returns:
        dict: ``labels`` (``N`` int64), ``preds`` (``N`` int64 top-1),
        ``logits`` (``N x C``) and, if asked, ``features`` (``N x D``), all
        on the CPU.
    """
    out = dict(labels=[], preds=[], logits=[], features=[])
    batches = dataloader
    if progress:
        from tqdm import tqdm
        batches = tqdm(dataloader, desc=progress, unit='batch')
    for data in batches:
        feats, logits, labels = forward_batch(model, data)
        if features:
            out['features'].append(feats)
        out['logits'].append(logits)
        out['labels'].append(labels)
    result = {k: torch.cat(v) for k, v in out.items() if v}
    result['preds'] = result['logits'].argmax(1)
    return result
