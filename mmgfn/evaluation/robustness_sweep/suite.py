"""The cells of a robustness sweep and the test dataloader of each.

A sweep evaluates one model on *cells*: ``(corruption, severity)`` pairs of
a suite. :class:`Suite` turns the test dataloader / evaluator configs and
the sweep settings (:class:`RobustnessSettings`) into one dataloader and
evaluator config per cell, and gives each cell a resume key
(:meth:`Suite.cell_key`).

Suites (``RobustnessSettings.suite``):

``corrupt``
    The config's own test set, corrupted on the fly: ``mmgfn.
    ImageCorruption`` is inserted right after the pipeline's
    ``LoadImageFromFile`` (of any scope). With ``corrupted_root`` the images
    come instead from pre-generated folders ``<corrupted_root>/<corruption>/
    <severity>/<path relative to the original image prefix>``. Severity 0
    is the clean test set, evaluated once. COCO-C style detection and
    classification alike.
``imagenet-c``
    The released folders ``<data_root>/<corruption>/<severity>/<wnid>/*``
    (:class:`mmgfn.datasets.ImageNetC`); severities default to 1-5, 0 adds
    the config's own test set as the clean cell. ``test_pipeline=
    'reference'`` replaces the config's pipeline by the reference one
    (load, center-crop 224, pack).
``imagenet-p``
    ``<data_root>/<perturbation>/<wnid>/*.mp4`` (:class:`mmgfn.datasets.
    ImageNetP`) at difficulty ``step`` (1-3); flip probability and top-5
    distance (:class:`mmgfn.evaluation.FlipRate`).
``imagenet-a`` / ``imagenet-r``
    ``<data_root>/<wnid>/*`` scored through the 200-logit mask of a
    1000-way classifier (:class:`mmgfn.evaluation.SubsetAccuracy`).

If the config's test dataset already is the suite's dataset type, its
arguments are kept and ``data_root`` is optional.
"""
import copy
import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from mmgfn.datasets.benchmarks import (ALL_CORRUPTIONS,
                                       BENCHMARK_CORRUPTIONS, CLEAN,
                                       REFERENCE_TEST_PIPELINE, SEVERITIES,
                                       SUITE_DATASETS, SUITES, Cell,
                                       imagenet_p_difficulty,
                                       imagenet_p_perturbations,
                                       is_noise_perturbation)
from mmgfn.datasets.transforms.corruption import BACKENDS
from mmgfn.datasets.transforms.insertion import insert_corruption_in_dataset
from mmgfn.utils.config_walk import pipeline_datasets, type_name
from mmgfn.utils.errors import ConfigError, check_file


@dataclass
class RobustnessSettings:
    """What a sweep evaluates and how it is summarised.

    The fields are the arguments of :class:`mmgfn.engine.RobustnessTestLoop`
    and the flags of ``tools/test_robustness.py`` (``--data-root`` is
    ``data_root``).

    Args:
        suite (str): One of :data:`SUITES`.
        corruptions (list[str], optional): Corruptions (imagenet-p:
            perturbations). Defaults to the 15 benchmark corruptions (the 10
            benchmark perturbations).
        severities (list[int], optional): Severities in 0-5; 0 is the clean
            test set. Defaults to 0-5 for corrupt, 1-5 for imagenet-c.
        data_root (str, optional): Root of ImageNet-C/-P/-A/-R.
        corrupted_root (str, optional): corrupt suite: pre-generated images
            ``<root>/<corruption>/<severity>/...`` instead of corrupting on
            the fly.
        step (int): imagenet-p difficulty 1-3. Defaults to 1.
        alexnet_fp (bool): imagenet-p: also normalise by AlexNet's published
            flip probabilities. Defaults to False.
        test_pipeline (str): ``'config'`` or ``'reference'`` (imagenet-c/-p:
            load, center-crop 224, pack). Defaults to ``'config'``.
        baseline_checkpoint (str, optional): A second checkpoint of the same
            model, evaluated on the same cells; CE / FR are relative to it.
        baseline_results (str, optional): ``results.json`` of an earlier
            sweep used as the baseline (exclusive with
            ``baseline_checkpoint``).
        baseline_clean_error (float, optional): imagenet-c: AlexNet's clean
            top-1 error in [0, 1] for the relative mCE.
        metric_key (str, optional): Metric read per cell. Defaults to
            ``accuracy/top1``, else ``coco/bbox_mAP``, else the first key
            ending in ``mAP``.
        allow_partial (bool): Summarise the covered cells when some are
            missing (labelled partial) instead of refusing. Defaults to
            False.
        corruption_backend (str): corrupt suite, on the fly: the
            ``backend`` of the inserted ``mmgfn.ImageCorruption``
            (``'imagecorruptions'`` or ``'torch'``); recorded per cell and
            part of its resume key. Defaults to ``'imagecorruptions'``.
    """
    suite: str
    corruptions: Optional[List[str]] = None
    severities: Optional[List[int]] = None
    data_root: Optional[str] = None
    corrupted_root: Optional[str] = None
    step: int = 1
    alexnet_fp: bool = False
    test_pipeline: str = 'config'
    baseline_checkpoint: Optional[str] = None
    baseline_results: Optional[str] = None
    baseline_clean_error: Optional[float] = None
    metric_key: Optional[str] = None
    allow_partial: bool = False
    corruption_backend: str = 'imagecorruptions'

    def __post_init__(self) -> None:
        self.corruptions = list(self.corruptions) if self.corruptions \
            else None
        self.severities = list(self.severities) if self.severities \
            else None

    def check(self) -> None:
        """Refuse settings that cannot run, each in one line.

        Raises:
            ConfigError: An unknown suite or option value, or options that
                do not go together.
            FileNotFoundError: A root folder that does not exist.
        """
        if self.suite not in SUITES:
            raise ConfigError(f'unknown robustness suite "{self.suite}"; '
                              f'expected one of {", ".join(SUITES)}')
        if self.test_pipeline not in ('config', 'reference'):
            raise ConfigError('test_pipeline must be "config" or '
                              f'"reference", got "{self.test_pipeline}"')
        if self.baseline_checkpoint and self.baseline_results:
            raise ConfigError('give a baseline checkpoint or baseline '
                              'results, not both')
        if self.baseline_checkpoint:
            check_file(self.baseline_checkpoint, 'baseline checkpoint')
        if self.baseline_clean_error is not None and not \
                0 <= self.baseline_clean_error <= 1:
            raise ConfigError('test_cfg.baseline_clean_error must be in '
                              '[0, 1]')
        if self.corrupted_root and self.suite != 'corrupt':
            raise ConfigError('test_cfg.corrupted_root applies to '
                              'the corrupt suite only')
        if self.corrupted_root and not osp.isdir(self.corrupted_root):
            raise FileNotFoundError(
                f'test_cfg.corrupted_root "{self.corrupted_root}" does '
                'not exist')
        if self.data_root and not osp.isdir(self.data_root):
            raise FileNotFoundError(f'test_cfg.data_root '
                                    f'"{self.data_root}" does not exist')
        if self.step < 1:
            raise ConfigError('test_cfg.step must be >= 1')
        if self.corruption_backend not in BACKENDS:
            raise ConfigError(
                f'test_cfg.corruption_backend must be one of '
                f'{", ".join(BACKENDS)}, got "{self.corruption_backend}"')
        if self.corruption_backend != 'imagecorruptions' and (
                self.suite != 'corrupt' or self.corrupted_root):
            raise ConfigError(
                'test_cfg.corruption_backend applies to the corrupt '
                'suite corrupting on the fly only')


def _point_to_corrupted(dataset: dict, root: str, corruption: str,
                        severity: int) -> None:
    """Point the image prefix at ``root/<corruption>/<severity>``."""
    folder = osp.abspath(osp.join(root, corruption, str(severity)))
    if not osp.isdir(osp.join(root, corruption)):
        raise FileNotFoundError(
            f'corruption "{corruption}" is missing from '
            f'test_cfg.corrupted_root: '
            f'"{osp.join(root, corruption)}" does not exist')
    if not osp.isdir(folder):
        raise FileNotFoundError(
            f'severity {severity} of corruption "{corruption}" is missing '
            f'from test_cfg.corrupted_root: "{folder}" does not exist')
    for _, ds in pipeline_datasets(dataset):
        prefix = ds.get('data_prefix', '')
        if isinstance(prefix, str):
            ds['data_prefix'] = folder
            continue
        keys = [k for k in ('img_path', 'img') if k in prefix]
        if not keys:
            raise ConfigError(
                'cannot find the image prefix of the test dataset '
                f'(data_prefix={dict(prefix)}); expected a string or a dict '
                'with "img_path" or "img"')
        prefix = dict(prefix)
        prefix[keys[0]] = folder
        ds['data_prefix'] = prefix


def _canonical(obj: Any, key: Optional[str] = None) -> Any:
    """A JSON-able copy of a (resolved) config value for the resume key.

    Tuples become lists, classes and functions (new-style configs) their
    dotted names, and a relative ``data_root`` an absolute path (it is read
    relative to the working directory).
    """
    if isinstance(obj, dict):
        return {str(k): _canonical(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, str) and key == 'data_root' and obj:
        return osp.abspath(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, '__qualname__'):
        return f'{getattr(obj, "__module__", "")}.{obj.__qualname__}'
    return repr(obj)


def checkpoint_id(path: str) -> str:
    """Size and modification time of a checkpoint: a checkpoint rewritten
    at the same path (retrained) does not reuse the old cells. Weights
    held in memory (no file) are named by their fingerprint instead
    (``path`` starts with ``weights:``) and returned as they are."""
    if path.startswith('weights:'):
        return path
    st = os.stat(path)
    return f'{st.st_size}-{st.st_mtime_ns}'


class Suite:
    """The cells of a suite and the dataloader / evaluator of each.

    A cell is ``(corruption, severity)``: severity is an int for corrupt /
    imagenet-c (0 = clean, named ``'clean'``), None for imagenet-p (the
    corruption is the perturbation) and imagenet-a/-r (the corruption is
    the suite name).

    Args:
        settings (RobustnessSettings): What to evaluate.
        cfg (Config | dict): A config with ``test_dataloader`` and
            ``test_evaluator`` (the clean test set and its metric), and the
            ``default_scope``, ``model``, ``data_preprocessor`` and
            ``test_cfg`` that enter the resume key.
        fp16 (bool, optional): Whether cells run under autocast (part of
            the resume key). Defaults to ``test_cfg.fp16``.
    """

    def __init__(self, settings: RobustnessSettings, cfg: Any,
                 fp16: Optional[bool] = None) -> None:
        self.settings = settings
        self.name = settings.suite
        self.loader = copy.deepcopy(cfg['test_dataloader'])
        self.evaluator = copy.deepcopy(cfg['test_evaluator'])
        self.dataset = self.loader['dataset']
        # what, besides the cell's data and evaluator, decides its numbers
        self.model_config = _canonical(
            dict(
                default_scope=cfg.get('default_scope'),
                model=cfg.get('model'),
                data_preprocessor=cfg.get('data_preprocessor'),
                test_cfg=dict(fp16=bool(
                    (cfg.get('test_cfg') or {}).get('fp16', False)
                    if fp16 is None else fp16))))
        self.cells = self._cells()
        self.data_source = self._data_source()
        self.native = type_name(self.dataset) == SUITE_DATASETS.get(
            self.name)
        if self.name != 'corrupt' and not self.native and \
                not settings.data_root:
            raise ConfigError(
                f'suite {self.name} needs test_cfg.data_root (the '
                f'{self.name} folder) unless the config\'s test dataset is '
                f'mmgfn.{SUITE_DATASETS[self.name]}')
        self._check_cell_folders()

    def _check_cell_folders(self) -> None:
        """Fail before any evaluation if a cell's folder is missing."""
        if self.name == 'corrupt':
            root = self.settings.corrupted_root
        else:
            root = self.settings.data_root or self.dataset.get('data_root')
        if not root or self.name in ('imagenet-a', 'imagenet-r'):
            return
        what = {'corrupt': 'test_cfg.corrupted_root',
                'imagenet-p': 'ImageNet-P',
                'imagenet-c': 'ImageNet-C'}[self.name]
        for corruption, severity in self.cells:
            if severity == 0:
                continue
            if not osp.isdir(osp.join(root, corruption)):
                kind = ('perturbation' if self.name == 'imagenet-p' else
                        'corruption')
                raise FileNotFoundError(
                    f'{kind} "{corruption}" is missing from {what}: '
                    f'"{osp.join(root, corruption)}" does not exist')
            if severity is not None and not osp.isdir(
                    osp.join(root, corruption, str(severity))):
                raise FileNotFoundError(
                    f'severity {severity} of corruption "{corruption}" is '
                    f'missing from {what}: "'
                    f'{osp.join(root, corruption, str(severity))}" does not '
                    'exist')

    def _cells(self) -> List[Cell]:
        settings = self.settings
        if self.name in ('imagenet-a', 'imagenet-r'):
            if settings.corruptions or settings.severities:
                raise ConfigError(
                    'test_cfg.corruptions/test_cfg.severities do not apply '
                    f'to test_cfg.suite {self.name}')
            return [(self.name, None)]
        if self.name == 'imagenet-p':
            if settings.severities:
                raise ConfigError(
                    'test_cfg.severities does not apply to test_cfg.suite '
                    'imagenet-p (use test_cfg.step for difficulty)')
            if settings.corruptions:
                names = list(dict.fromkeys(settings.corruptions))
            elif settings.step in (1, 2, 3):
                names = imagenet_p_perturbations(settings.step)
            else:
                raise ConfigError(
                    'ImageNet-P has difficulties 1-3, got test_cfg.step '
                    f'{settings.step}; name the perturbations with '
                    'test_cfg.corruptions')
            # one difficulty per run: gaussian_noise_2 is difficulty 2, a
            # non-noise perturbation has the difficulty test_cfg.step
            levels = {n: imagenet_p_difficulty(n, settings.step)[1]
                      for n in names}
            if len(set(levels.values())) > 1:
                raise ConfigError(
                    'the perturbations mix difficulties (' + ', '.join(
                        f'{n}: {d}' for n, d in levels.items()) +
                    '); evaluate one difficulty per run (test_cfg.step d with '
                    'the '
                    'noise folders <p>_d)')
            self.difficulty = next(iter(levels.values()))
            if getattr(settings, 'alexnet_fp', False) and self.difficulty != 1:
                raise ConfigError(
                    'test_cfg.alexnet_fp: AlexNet\'s flip probabilities are '
                    'for '
                    f'difficulty 1, these perturbations are difficulty '
                    f'{self.difficulty}')
            return [(p, None) for p in names]
        names = list(dict.fromkeys(settings.corruptions or BENCHMARK_CORRUPTIONS))
        if self.name == 'corrupt' and not settings.corrupted_root:
            unknown = [c for c in names if c not in ALL_CORRUPTIONS]
            if unknown:
                raise ConfigError(
                    f'unknown corruption(s) {", ".join(unknown)}; expected '
                    f'some of {", ".join(ALL_CORRUPTIONS)}')
        default = [0, *SEVERITIES] if self.name == 'corrupt' else list(
            SEVERITIES)
        severities = sorted(set(settings.severities or default))
        bad = [s for s in severities if not 0 <= s <= 5]
        if bad:
            raise ConfigError(f'severities must be in 0-5, got {bad}')
        if 0 in severities and self.name == 'imagenet-c' and type_name(
                self.dataset) == 'ImageNetC':
            raise ConfigError(
                'severity 0 (clean) evaluates the config\'s own test set, '
                'but it is mmgfn.ImageNetC; use a config whose test set is '
                'the clean data with test_cfg.data_root, or drop '
                'severity 0')
        cells = [(CLEAN, 0)] if 0 in severities else []
        cells += [(c, s) for c in names for s in severities if s > 0]
        return cells

    def _data_source(self) -> str:
        settings = self.settings
        if self.name == 'corrupt':
            if settings.corrupted_root:
                return 'pre-generated:' + osp.abspath(
                    settings.corrupted_root)
            inner = (pipeline_datasets(self.dataset) or [('', self.dataset)])[0][1]
            prefix = inner.get('data_prefix', '')
            if not isinstance(prefix, str):
                prefix = ','.join(f'{k}={v}' for k, v in sorted(
                    dict(prefix).items()))
            parts = [osp.abspath(inner.get('data_root') or '.')]
            if prefix:
                parts.append(f'prefix {prefix}')
            if inner.get('ann_file'):
                parts.append(f'ann_file {inner["ann_file"]}')
            return 'on-the-fly:' + ', '.join(parts)
        source = osp.abspath(settings.data_root) if settings.data_root \
            else (
            'config:' + str(self.dataset.get('data_root', '')))
        if self.name == 'imagenet-p':
            source += f'|step={settings.step}'
        return source

    @staticmethod
    def cell_name(cell: Cell) -> str:
        return cell[0] if cell[1] in (None, 0) else f'{cell[0]}/{cell[1]}'

    def _suite_dataset(self, **fields) -> dict:
        """The suite's dataset dict for one cell."""
        if self.native:
            dataset = copy.deepcopy(self.dataset)
            if self.settings.data_root:
                dataset['data_root'] = self.settings.data_root
        else:
            dataset = dict(
                type=f'mmgfn.{SUITE_DATASETS[self.name]}',
                data_root=self.settings.data_root,
                pipeline=copy.deepcopy(self.dataset.get('pipeline', [])),
                test_mode=True)
        if self.name in ('imagenet-c', 'imagenet-p') and getattr(
                self.settings, 'test_pipeline', 'config') == 'reference':
            dataset['pipeline'] = copy.deepcopy(REFERENCE_TEST_PIPELINE)
        dataset.update(fields)
        return dataset

    def test_pipeline(self) -> List[Any]:
        """The test pipeline of the suite's corrupted cells (the first one
        that is not clean), as JSON-serialisable dicts."""
        cells = [c for c in self.cells if c[1] != 0] or self.cells
        loader, _ = self.build(cells[0])
        datasets = pipeline_datasets(loader['dataset'])
        pipeline = datasets[0][1].get('pipeline', []) if datasets else []
        return json.loads(json.dumps(list(pipeline), default=str))

    def build(self, cell: Cell) -> Tuple[dict, object]:
        """Dataloader and evaluator configs of one cell."""
        loader = copy.deepcopy(self.loader)
        evaluator = copy.deepcopy(self.evaluator)
        corruption, severity = cell
        if self.name == 'corrupt':
            if severity:
                if self.settings.corrupted_root:
                    _point_to_corrupted(loader['dataset'],
                                        self.settings.corrupted_root, corruption,
                                        severity)
                else:
                    insert_corruption_in_dataset(
                        loader['dataset'], corruption, severity,
                        self.settings.corruption_backend)
        elif self.name == 'imagenet-c':
            if severity:
                loader['dataset'] = self._suite_dataset(
                    corruption=corruption, severity=severity)
        elif self.name == 'imagenet-p':
            # the noise perturbations hold their difficulty in the folder
            # name and always compare with frame 0 (stride 1)
            dataset = self._suite_dataset(
                perturbation=corruption,
                step=1 if is_noise_perturbation(corruption) else
                self.settings.step)
            if not self.native:
                dataset['classes'] = None  # flip metrics do not use labels
            loader['dataset'] = dataset
            evaluator = dict(type='mmgfn.FlipRate')
        else:
            loader['dataset'] = self._suite_dataset()
            evaluator = dict(type='mmgfn.SubsetAccuracy', indices=self.name)
        return loader, evaluator

    def cell_backend(self, cell: Cell) -> Optional[str]:
        """The corruption backend that makes ``cell``'s images: the
        setting for a corrupt-suite cell corrupted on the fly, None for
        clean cells, pre-generated files and the other suites."""
        if self.name != 'corrupt' or not cell[1] or \
                self.settings.corrupted_root:
            return None
        return self.settings.corruption_backend

    def cell_key(self, cell: Cell, role: str,
                 checkpoint: str) -> str:
        """The resume key of one cell: a sha256 (hex) of the canonical JSON
        of everything that determines its numbers.

        That is the suite, the cell, the checkpoint (absolute path, size
        and modification time), the cell's resolved test dataset (with its
        pipeline) and evaluator, the model and data preprocessor configs
        and the test loop config, and the corruption backend of a cell
        corrupted on the fly by another backend than imagecorruptions (so
        keys of earlier sweeps stay valid). The metric read from a cell is
        not part of it: every cell keeps all its metrics.
        """
        loader, evaluator = self.build(cell)
        content = dict(
            role=role,
            suite=self.name,
            cell=list(cell),
            checkpoint=checkpoint,
            checkpoint_id=checkpoint_id(checkpoint),
            data=self.data_source,
            dataset=_canonical(loader['dataset']),
            evaluator=_canonical(evaluator),
            model=self.model_config)
        backend = self.cell_backend(cell)
        if backend not in (None, 'imagecorruptions'):
            content['corruption_backend'] = backend
        text = json.dumps(content, sort_keys=True, separators=(',', ':'))
        return hashlib.sha256(text.encode('utf-8')).hexdigest()

