"""Loading a classifier and running it over a dataset, outside a Runner.

What ``tools/build_neighbors.py`` and the analysis tools share: a model
built from a config and a checkpoint (with a plain ``ClsDataPreprocessor``,
so that a GFN config whose neighbour file does not exist yet can still be
loaded), a test dataloader with an optional on-the-fly corruption, and one
pass that collects pre-logits features, predictions and labels.

Shape shorthand: ``N`` samples, ``C`` classes, ``D`` feature dimensions.
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader, load_state_dict
from torch import nn

from mmgfn.models.utils.features import forward_batch
from mmgfn.registry import MODELS
from mmgfn.utils.errors import ConfigError, check_file

#: Options of NeighborAdversarialDataPreprocessor that ClsDataPreprocessor
#: does not take.
GFN_PREPROCESSOR_KEYS = ('eta', 'eta_unit', 'topk', 'num_steps', 'mode',
                         'neighbor_source', 'neighbor_file',
                         'refresh_interval', 'attack_mode')


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
        check_file(checkpoint, 'checkpoint')
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        if not isinstance(ckpt, dict):
            raise ConfigError(f'checkpoint "{checkpoint}" holds no state_dict')
        state_dict = ckpt.get('state_dict', ckpt)
        check_checkpoint_fits(model, state_dict, checkpoint, require_head)
        load_state_dict(model, state_dict, strict=False)
        meta = ckpt.get('meta') or {}
        if isinstance(meta, dict) and meta.get('dataset_meta'):
            model.dataset_meta = meta['dataset_meta']
    return model.to(device).eval()


def shape_mismatches(model: nn.Module,
                     state_dict: dict) -> List[Tuple[str, tuple, tuple]]:
    """The tensors of ``state_dict`` whose shape differs from the model's.

    Keys saved from a distributed wrapper (``module.`` prefix) are read
    without it; keys the model does not have are ignored (mmengine loads
    non-strictly).

    Args:
        model (nn.Module): The model (a wrapper's ``module`` is used).
        state_dict (dict): A checkpoint's ``state_dict``.

    Returns:
        list[tuple[str, tuple, tuple]]: ``(key, checkpoint shape, model
        shape)`` in the checkpoint's order.
    """
    own = getattr(model, 'module', model).state_dict()
    mismatched = []
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key in own and hasattr(value, 'shape') and \
                tuple(value.shape) != tuple(own[key].shape):
            mismatched.append((key, tuple(value.shape),
                               tuple(own[key].shape)))
    return mismatched


def check_checkpoint_fits(model: nn.Module,
                          state_dict: dict,
                          checkpoint: str = 'checkpoint',
                          require_head: bool = False) -> None:
    """Refuse a ``state_dict`` whose tensors do not fit ``model``.

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
    own = model.state_dict()
    mismatched = shape_mismatches(model, state_dict)
    if mismatched:
        key, theirs, ours = mismatched[0]
        msg = (f'checkpoint "{checkpoint}" does not fit the model built from '
               f'the config: {key} has shape {list(theirs)} in the checkpoint'
               f' and {list(ours)} in the model')
        head_classes = getattr(getattr(model, 'head', None), 'num_classes',
                               None)
        if key.startswith('head.') and theirs and ours and \
                ours[0] == head_classes:
            msg += (f' (the checkpoint has {theirs[0]} classes, the config\'s '
                    f'model.head.num_classes is {head_classes})')
        if len(mismatched) > 1:
            msg += f'; {len(mismatched) - 1} more tensor(s) differ'
        raise ConfigError(msg)
    if require_head:
        missing = [k for k in own if k.startswith('head.')
                   and k not in state_dict]
        if missing:
            raise ConfigError(
                f'checkpoint "{checkpoint}" has no weights for '
                f'{", ".join(missing)}: the model\'s head would be random')


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
    dataset = loader['dataset']
    inner = dataset
    while 'pipeline' not in inner and isinstance(inner.get('dataset'), dict):
        inner = inner['dataset']  # dataset wrappers
    if corruption:
        test_pipeline = insert_corruption(test_pipeline, corruption,
                                          severity)
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


def insert_corruption(pipeline: list, corruption: str,
                      severity: int,
                      backend: str = 'imagecorruptions') -> list:
    """A copy of ``pipeline`` with ``mmgfn.ImageCorruption`` right after the
    image-loading transform (the first whose type ends in
    ``LoadImageFromFile``); ``backend`` other than the default is set on
    the transform (the default leaves its config as before backends).

    Raises:
        ConfigError: If the pipeline has no such transform.
    """
    pipeline = copy.deepcopy(list(pipeline))
    for i, step in enumerate(pipeline):
        if transform_name(step).endswith('LoadImageFromFile'):
            step = dict(type='mmgfn.ImageCorruption', corruption=corruption,
                        severity=severity)
            if backend != 'imagecorruptions':
                step['backend'] = backend
            pipeline.insert(i + 1, step)
            return pipeline
    raise ConfigError(
        'the test pipeline has no LoadImageFromFile step to insert '
        'mmgfn.ImageCorruption after (types: ' +
        ', '.join(transform_name(t) for t in pipeline) + ')')


def transform_name(cfg: dict) -> str:
    """The bare type name of a transform config: ``'mmgfn.ImageCorruption'``
    -> ``'ImageCorruption'`` (a class given as type -> its name)."""
    name = cfg.get('type', '') if isinstance(cfg, dict) else ''
    if not isinstance(name, str):
        name = getattr(name, '__name__', '')
    return name.split('.')[-1]


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
