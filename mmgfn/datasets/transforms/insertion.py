"""Editing test pipelines: where ``mmgfn.ImageCorruption`` goes.

A corruption is applied to the decoded image, before any resize or crop, so
it is inserted right after the pipeline's image-loading transform (of any
scope). The robustness sweep and the tools' dataloaders
(:func:`mmgfn.apis.build_test_dataloader`) share these helpers.
"""
import copy
from typing import List

from mmgfn.utils.config_walk import pipeline_datasets, type_name
from mmgfn.utils.errors import ConfigError

#: The bare type name of a transform config (:func:`mmgfn.utils.
#: config_walk.type_name`): ``'mmgfn.ImageCorruption'`` ->
#: ``'ImageCorruption'``.
transform_name = type_name


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


def insert_corruption_in_dataset(dataset: dict, corruption: str,
                                 severity: int,
                                 backend: str = 'imagecorruptions',
                                 key: str = 'test_dataloader.dataset'
                                 ) -> List[str]:
    """Insert ``mmgfn.ImageCorruption`` (:func:`insert_corruption`) into
    every pipeline of a dataset config, through dataset wrappers, in
    place; the config keys of the pipelines edited.

    Raises:
        ConfigError: If the dataset (``key``) has no pipeline.
    """
    targets = pipeline_datasets(dataset, key)
    if not targets:
        raise ConfigError(f'the test dataset has no pipeline to corrupt '
                          f'({key}.pipeline)')
    for _, ds in targets:
        ds['pipeline'] = insert_corruption(ds['pipeline'], corruption,
                                           severity, backend)
    return [f'{k}.pipeline' for k, _ in targets]


def has_resize(pipeline: list) -> bool:
    """Whether a pipeline has a ``*Resize*`` step."""
    return any('Resize' in transform_name(t) for t in pipeline)
