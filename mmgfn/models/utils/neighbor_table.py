"""The neighbour table of GFN: each class's top-k most similar classes.

GFN (Gain From Neighbors, CVPR 2025), Sec. 3.1 and Eq. 4: the class
embedding ``z_c`` is the mean feature of class ``c``; the similarity of two
classes is the cosine of their embeddings (``similarity='cosine'``, the
default) or their dot product ``<z_i, z_j>`` (``'dot'``, Eq. 4 as
printed); the *similarity rank* of class
``j`` for class ``c`` is ``j``'s position in row ``c`` sorted by decreasing
similarity, the class itself excluded (rank 1 = most similar other class).

Shape shorthand: ``C`` classes, ``D`` embedding dimensions, ``k`` neighbours
per class, ``N`` samples.

The table has two sources:

* ``'embedding'``: class-mean features of a model over a dataset
  (:func:`compute_class_embeddings`, ``tools/build_neighbors.py``);
* ``'head'``: the rows of the classification head's weight matrix
  (:func:`head_class_weights`), which needs no data pass and can be
  refreshed during training.

It is an ``nn.Module`` whose ``neighbors`` (``C x k`` int64) and ``built``
buffers are persistent, with its similarity (``similarity_id``), so a model that
owns a table keeps it in its checkpoints and a resumed run uses the same
neighbours. Saved on its own (:meth:`NeighborTable.save`) it is a JSON file
with its metadata.

Every route that fills a table (a file, a checkpoint, a build from
embeddings) goes through :func:`check_neighbors`: shape ``C x k``, indices
in ``[0, C)``, no class its own neighbour, no class twice in a row.
"""
import json
import os.path as osp
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgfn.utils.errors import ConfigError
from .features import forward_batch

FILE_FORMAT = 'mmgfn-neighbor-table/1'
SIMILARITIES = ('cosine', 'dot')


class NeighborTable(nn.Module):
    """Top-k neighbours of every class, with their similarity ranks.

    ``table.neighbors[c, r - 1]`` is the class of similarity rank ``r``
    (1..k) for class ``c``; a class is never its own neighbour.

    Args:
        num_classes (int): Number of classes ``C`` (>= 2).
        topk (int): Neighbours kept per class, ``1 <= k < C``.
            Defaults to 20 (the paper's k).
        class_names (Sequence[str], optional): Names of the classes, used in
            messages and saved with the table. Defaults to None.
        similarity (str): ``'cosine'`` or ``'dot'``, the class similarity
            a build from embeddings ranks by. Defaults to 'cosine'.

    Raises:
        ValueError: If ``topk`` is not in ``[1, num_classes)`` or the
            similarity is unknown.
    """

    def __init__(self,
                 num_classes: int,
                 topk: int = 20,
                 class_names: Optional[Sequence[str]] = None,
                 similarity: str = 'cosine') -> None:
        super().__init__()
        check_topk(topk, num_classes)
        check_similarity(similarity)
        self.register_buffer(
            'similarity_id',
            torch.tensor(SIMILARITIES.index(similarity), dtype=torch.long))
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f'{len(class_names)} class names given for '
                             f'num_classes={num_classes}')
        self.num_classes = num_classes
        self.topk = topk
        self.class_names = list(class_names) if class_names else None
        self.source = None
        #: Incremented whenever the neighbours change (losses cache on it).
        self.version = 0
        self.register_buffer('neighbors',
                             torch.zeros(num_classes, topk, dtype=torch.long))
        self.register_buffer('built', torch.tensor(False))
        # ``built`` mirrored on the host, so that checks need no device sync
        self._built = False
        self.checkpoint_neighbors: Optional[Tensor] = None

    # ------------------------------------------------------------------ build
    def update_from_embeddings(self, embeddings: Tensor,
                               source: str = 'embedding') -> None:
        """Rebuild the neighbours from class embeddings (Eq. 4, ranked by
        :attr:`similarity`).

        Args:
            embeddings (Tensor): ``C x D`` float, one row per class (class
                means or head weight rows). Rows must be finite and non-zero.
            source (str): What the rows are, recorded as metadata
                (``'embedding'`` or ``'head'``). Defaults to 'embedding'.

        Raises:
            ValueError: For a row count other than ``C`` or a NaN/inf/all-zero
                row (the message names the class).
        """
        neighbors = neighbors_from_embeddings(embeddings, self.topk,
                                              self.class_names,
                                              self.similarity)
        self._check(neighbors, 'built')
        self.neighbors.copy_(neighbors)
        self._set_built(source)

    def _set_built(self, source: str) -> None:
        self.built.fill_(True)
        self._built = True
        self.source = source
        self.version += 1

    def load_neighbors(self,
                       neighbors: Tensor,
                       source: str,
                       origin: Optional[str] = None) -> None:
        """Set the table from a ``C x k'`` index matrix with ``k' >= k``
        (its first ``k`` columns, i.e. ranks 1..k, are kept).

        Args:
            neighbors (Tensor): ``C x k'`` int64 class indices.
            source (str): What they were built from (recorded).
            origin (str, optional): The route, named in errors (a file
                path, ``'checkpoint'``). Defaults to ``source``.

        Raises:
            ValueError: See :func:`check_neighbors`.
        """
        neighbors = torch.as_tensor(neighbors)
        if neighbors.dim() == 2 and neighbors.size(1) > self.topk:
            neighbors = neighbors[:, :self.topk]
        self._check(neighbors, origin or source)
        self.neighbors.copy_(neighbors.to(self.neighbors.device))
        self._set_built(source)

    def _check(self, neighbors: Tensor, source: str) -> None:
        check_neighbors(neighbors, self.num_classes, self.topk, source,
                        self.class_names)

    @property
    def similarity(self) -> str:
        """``'cosine'`` or ``'dot'``, kept in checkpoints as the index
        buffer ``similarity_id`` (a tensor, so that mmengine can broadcast
        the state dict between ranks)."""
        return SIMILARITIES[int(self.similarity_id)]

    @similarity.setter
    def similarity(self, value: str) -> None:
        check_similarity(value)
        self.similarity_id.fill_(SIMILARITIES.index(value))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """Load a checkpoint's table and remember it in
        :attr:`checkpoint_neighbors` (its owner decides which table wins).

        A checkpoint without a table (any plain, non-GFN checkpoint) leaves
        the table as it is; its absence is expected, so these keys are not
        reported as missing.
        """
        names = [prefix + 'neighbors', prefix + 'built']
        present = all(name in state_dict for name in names)
        if present and bool(state_dict[prefix + 'built']):
            # validated before anything is copied into the table
            self._check(torch.as_tensor(state_dict[prefix + 'neighbors']),
                        'checkpoint')
        # a checkpoint written before the similarity was recorded: cosine
        if present and prefix + 'similarity_id' not in state_dict:
            state_dict[prefix + 'similarity_id'] = torch.tensor(0)
        if prefix + 'similarity_id' in state_dict:
            code = int(state_dict[prefix + 'similarity_id'])
            if not 0 <= code < len(SIMILARITIES):
                raise NeighborTableError(
                    f'checkpoint: similarity_id {code} is not one of '
                    f'{list(range(len(SIMILARITIES)))} {list(SIMILARITIES)}')
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if not present:
            for name in names + [prefix + 'similarity_id']:
                if name in missing_keys:
                    missing_keys.remove(name)
            return
        self._built = bool(self.built)  # once per load, not per step
        #: The neighbours a loaded checkpoint carried (``C x k``), or None.
        self.checkpoint_neighbors = (self.neighbors.detach().clone()
                                     if self._built else None)
        self.version += 1  # a checkpoint replaces the neighbours

    # ---------------------------------------------------------------- queries
    @property
    def is_built(self) -> bool:
        """Whether the table holds neighbours (read on the host)."""
        return self._built

    def check_built(self) -> None:
        """Raise RuntimeError if the table has not been built yet."""
        if not self._built:
            raise RuntimeError(
                'the neighbour table is empty: build it from class embeddings '
                'or head weights, or load a neighbour file')

    def sample(self,
               labels: Tensor,
               generator: Optional[torch.Generator] = None
               ) -> Tuple[Tensor, Tensor]:
        """Draw one neighbour per label, uniformly among its top-k.

        Args:
            labels (Tensor): ``N`` int64 class indices in ``[0, C)``.
            generator (torch.Generator, optional): Random source, on any
                device (a CPU generator's draws are moved to the labels'
                device without waiting for it). Defaults to torch's global
                generator, on the labels' device.

        Returns:
            tuple[Tensor, Tensor]: ``N`` neighbour classes and their ``N``
            similarity ranks in ``1..k`` (int64, on the labels' device).
        """
        self.check_built()
        rank = torch.randint(
            0, self.topk, labels.shape,
            device=labels.device if generator is None else generator.device,
            generator=generator).to(labels.device, non_blocking=True)
        neighbors = self.neighbors.to(labels.device)[labels, rank]
        return neighbors, rank + 1

    def rank_matrix(self, topk: Optional[int] = None) -> Tensor:
        """``C x C`` int64 similarity ranks: ``R[c, j]`` in ``1..topk`` for
        the top-``topk`` neighbours of ``c``, 0 elsewhere (also on the
        diagonal)."""
        self.check_built()
        topk = self.topk if topk is None else topk
        check_topk(topk, self.num_classes, limit=self.topk)
        ranks = torch.zeros(
            self.num_classes, self.num_classes, dtype=torch.long,
            device=self.neighbors.device)
        ranks.scatter_(
            1, self.neighbors[:, :topk],
            torch.arange(1, topk + 1, device=ranks.device).expand(
                self.num_classes, topk).contiguous())
        return ranks

    def describe(self, c: int) -> str:
        """``'class 3 ("cat")'`` or ``'class 3'``."""
        if self.class_names:
            return f'class {c} ("{self.class_names[c]}")'
        return f'class {c}'

    # -------------------------------------------------------------------- io
    def save(self, path: str) -> None:
        """Write the table and its metadata as JSON."""
        self.check_built()
        meta = dict(
            format=FILE_FORMAT,
            num_classes=self.num_classes,
            topk=self.topk,
            source=self.source,
            similarity=self.similarity,
            class_names=self.class_names,
            neighbors=self.neighbors.cpu().tolist())
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(meta, f)

    @classmethod
    def from_file(cls,
                  path: str,
                  num_classes: Optional[int] = None,
                  topk: Optional[int] = None,
                  similarity: Optional[str] = None) -> 'NeighborTable':
        """Load a table written by :meth:`save`.

        Args:
            path (str): The JSON file.
            num_classes (int, optional): The number of classes the caller
                expects; a file for another number is refused.
            topk (int, optional): Keep the first ``topk`` neighbours (must be
                <= the file's). Defaults to the file's.
            similarity (str, optional): The similarity the caller expects;
                a file ranked by another is refused. Files written before
                the similarity was recorded are cosine tables. Defaults to
                None (the file's).

        Raises:
            FileNotFoundError: If ``path`` is missing.
            ValueError: If the file is not a neighbour table or disagrees
                with ``num_classes`` / ``topk``; the message names the file.
        """
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'neighbour file "{path}" does not exist (write it with '
                'tools/build_neighbors.py CONFIG CHECKPOINT)')
        try:
            with open(path, encoding='utf-8') as f:
                meta = json.load(f)
            if meta.get('format') != FILE_FORMAT:
                raise ValueError(f'format is {meta.get("format")!r}, '
                                 f'expected {FILE_FORMAT!r}')
            if num_classes is not None and meta['num_classes'] != num_classes:
                raise ValueError(
                    f'it is for {meta["num_classes"]} classes, the model has '
                    f'{num_classes}')
            saved = meta.get('similarity', 'cosine')
            if similarity is not None and saved != similarity:
                raise ValueError(f'its neighbours are ranked by {saved!r} '
                                 f'similarity, {similarity!r} is configured')
            table = cls(meta['num_classes'],
                        meta['topk'] if topk is None else topk,
                        meta.get('class_names'), similarity=saved)
            neighbors = torch.tensor(meta['neighbors'])
            if neighbors.dim() == 2 and neighbors.size(1) > table.topk:
                neighbors = neighbors[:, :table.topk]
            check_neighbors(neighbors, table.num_classes, table.topk,
                            f'neighbour file "{path}"', table.class_names)
            table.load_neighbors(neighbors, meta.get('source') or 'file')
        except NeighborTableError:
            raise
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f'neighbour file "{path}": {e}') from e
        return table


class NeighborTableError(ValueError):
    """An invalid neighbour matrix (the message names its source and row)."""


def check_similarity(similarity: str, where: str = 'similarity') -> None:
    """Raise ConfigError unless ``similarity`` is one of
    :data:`SIMILARITIES` (``where`` names the key or the source)."""
    if similarity not in SIMILARITIES:
        raise ConfigError(f'{where}: similarity={similarity!r} is not one of '
                         f'{list(SIMILARITIES)}')


def check_neighbors(neighbors: Tensor,
                    num_classes: int,
                    topk: int,
                    source: str,
                    class_names: Optional[Sequence[str]] = None) -> None:
    """The one validation of a neighbour matrix, whatever its route.

    Args:
        neighbors (Tensor): ``C x k`` integer class indices; row ``c`` holds
            the neighbours of class ``c`` by rank.
        num_classes (int): ``C``.
        topk (int): ``k``.
        source (str): Where the matrix comes from, named in the error
            (``'neighbour file "PATH"'``, ``'checkpoint'``, ``'built'``).
        class_names (Sequence[str], optional): For the error message.

    Raises:
        NeighborTableError: (a ValueError) one line naming ``source`` and,
            for a bad entry, the row: a shape other than ``C x k``, an index
            outside ``[0, C)``, a class its own neighbour, a class twice in
            one row.
    """
    if neighbors.dim() != 2 or tuple(neighbors.shape) != (num_classes,
                                                          topk):
        raise NeighborTableError(
            f'{source}: neighbour matrix of shape {tuple(neighbors.shape)}, '
            f'expected {num_classes} x {topk} (num_classes={num_classes}, '
            f'topk={topk})')
    if neighbors.is_floating_point() or neighbors.dtype == torch.bool:
        raise NeighborTableError(f'{source}: neighbour indices must be '
                                 f'integers, got {neighbors.dtype}')
    neighbors = neighbors.detach().long().cpu()
    rows = torch.arange(num_classes)[:, None]
    out = (neighbors < 0) | (neighbors >= num_classes)
    own = neighbors == rows
    ordered = neighbors.sort(1).values
    dup = torch.zeros_like(out)
    dup[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    for bad, what in ((out, f'an index outside [0, {num_classes})'),
                      (own, 'the class itself'),
                      (dup, 'a class twice')):
        if bad.any():
            c = int(bad.any(1).nonzero()[0])
            raise NeighborTableError(
                f'{source}: row {c} ({_name(c, class_names)}) has {what}: '
                f'{neighbors[c].tolist()}')


def check_topk(topk: int,
               num_classes: int,
               limit: Optional[int] = None,
               key: str = '',
               owner: str = '',
               classes_key: str = '',
               limit_key: str = '') -> None:
    """The one rule on ``topk``: an integer with ``1 <= topk < num_classes``
    (a class has ``num_classes - 1`` others) and ``<= limit`` (the
    neighbours per class of the table it reads).

    Args:
        topk (int): The value to check.
        num_classes (int): The class count it is checked against.
        limit (int, optional): The table's neighbours per class.
        key (str): The config key of the component (``'model.head.loss'``):
            the message names ``<key>.topk``. Defaults to '' (``topk``).
        owner (str): The component's class name, named in the message.
        classes_key (str): The config key that gives ``num_classes``.
            Defaults to ``<key>.num_classes``.
        limit_key (str): The config key that gives ``limit``.

    Raises:
        ConfigError: One line naming the key, its value and the fix.
    """
    prefix = f'{key}.' if key else ''
    who = f' ({owner})' if owner else ''
    classes_key = classes_key or f'{prefix}num_classes'
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f'{classes_key}={num_classes!r}{who} must be an '
                          'integer >= 2')
    if not isinstance(topk, int) or not 1 <= topk < num_classes:
        raise ConfigError(
            f'{prefix}topk={topk!r}{who} must be an integer in '
            f'[1, num_classes) = [1, {num_classes}): with {classes_key}='
            f'{num_classes} a class has {num_classes - 1} other classes; '
            f'set {prefix}topk to at most {num_classes - 1}')
    if limit is not None and topk > limit:
        source = f' ({limit_key})' if limit_key else ''
        raise ConfigError(
            f'{prefix}topk={topk}{who} exceeds the neighbour table\'s '
            f'{limit} neighbours per class{source}; set {prefix}topk to at '
            f'most {limit}')


def check_neighbor_file(path: Optional[str],
                        num_classes: Optional[int],
                        key: str,
                        owner: str = '',
                        topk: Optional[int] = None,
                        similarity: Optional[str] = None) -> None:
    """An existing ``neighbor_file`` must be a table for ``num_classes``
    classes (with at least ``topk`` neighbours, ranked by ``similarity``).
    A missing file is not checked here: evaluation never reads it, and
    training refuses it at the first step (and in its preflight).

    Args:
        path (str, optional): The file (``None``/``''``: nothing to check).
        num_classes (int, optional): The classes the file must be for.
        key (str): The config key of the component: the message names
            ``<key>.neighbor_file``.
        owner (str): The component's class name, named in the message.
        topk, similarity: As in :meth:`NeighborTable.from_file`.

    Raises:
        ConfigError: Naming the key, the file and the fix.
    """
    if not isinstance(path, str) or not path or '://' in path or \
            not osp.isfile(osp.expanduser(path)):
        return
    try:
        NeighborTable.from_file(osp.expanduser(path), num_classes=num_classes,
                                topk=topk, similarity=similarity)
    except ValueError as e:
        who = f' ({owner})' if owner else ''
        fix = (f'rebuild it with tools/build_neighbors.py for the model, or '
               f'point {key}.neighbor_file at a table for {num_classes} '
               'classes' if num_classes else
               'rebuild it with tools/build_neighbors.py')
        raise ConfigError(f'{key}.neighbor_file{who}: {e}; {fix}') from e


def _name(c: int, class_names: Optional[Sequence[str]]) -> str:
    return f'class {c} ("{class_names[c]}")' if class_names else f'class {c}'


def neighbors_from_embeddings(embeddings: Tensor,
                              topk: int,
                              class_names: Optional[Sequence[str]] = None,
                              similarity: str = 'cosine') -> Tensor:
    """Top-k most similar classes of every class (Eq. 4), self excluded.

    Args:
        embeddings (Tensor): ``C x D`` float class embeddings.
        topk (int): Neighbours per class, ``1 <= k < C``.
        class_names (Sequence[str], optional): For error messages.
        similarity (str): ``'cosine'`` or ``'dot'``. Defaults to 'cosine'.

    Returns:
        Tensor: ``C x k`` int64; column ``r - 1`` holds the class of rank
        ``r``. Ties are broken by the lower class index.

    Raises:
        ValueError: If a row is NaN/inf or all zeros (names the class).
    """
    if embeddings.dim() != 2:
        raise ValueError('class embeddings must be a C x D matrix, got shape '
                         f'{tuple(embeddings.shape)}')
    check_topk(topk, embeddings.size(0))
    emb = embeddings.detach().float()
    finite = torch.isfinite(emb).all(1)
    if not finite.all():
        c = int((~finite).nonzero()[0])
        raise ValueError(f'the embedding of {_name(c, class_names)} is not '
                         'finite (NaN or inf)')
    zero = (emb == 0).all(1)
    if zero.any():
        c = int(zero.nonzero()[0])
        raise ValueError(f'the embedding of {_name(c, class_names)} is all '
                         'zeros: its similarity to other classes is undefined')
    check_similarity(similarity)
    sim = similarity_matrix(emb, similarity)
    sim.fill_diagonal_(float('-inf'))
    # stable sort: equal similarities keep the lower class index first
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    return order[:, :topk].cpu()


def similarity_matrix(embeddings: Tensor,
                      similarity: str = 'cosine') -> Tensor:
    """``C x C`` similarities: cosine ``M_ij = <z_i, z_j> / |z_i||z_j|``
    (``'cosine'``) or ``M_ij = <z_i, z_j>`` (``'dot'``)."""
    if similarity == 'dot':
        emb = embeddings.detach().float()
        return emb @ emb.t()
    emb = F.normalize(embeddings.detach().float(), dim=1)
    return emb @ emb.t()


def similarity_ranks(embeddings: Tensor) -> Tensor:
    """``C x C`` int64 similarity ranks (Eq. 4): ``K[c, j]`` is the position
    of ``j`` in row ``c`` sorted by decreasing similarity; ``K[c, c] = 0``,
    the most similar other class has rank 1."""
    sim = similarity_matrix(embeddings)
    sim.fill_diagonal_(float('inf'))
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(
        1, order,
        torch.arange(order.size(1), device=order.device).expand_as(order)
        .contiguous())
    return ranks


def last_bbox_head(roi_head: nn.Module) -> nn.Module:
    """An mmdet RoI head's box head (the last stage of a cascade)."""
    bbox_head = roi_head.bbox_head
    return bbox_head[-1] if isinstance(bbox_head, nn.ModuleList) \
        else bbox_head


def bbox_classes_key(bbox_head) -> str:
    """The config key of a detector's class count: the box head's
    ``num_classes``, the last stage's for a cascade (``bbox_head`` a list,
    of modules or of config dicts)."""
    if isinstance(bbox_head, (list, tuple, nn.ModuleList)) and bbox_head:
        return f'model.roi_head.bbox_head[{len(bbox_head) - 1}].num_classes'
    return 'model.roi_head.bbox_head.num_classes'


def head_class_weights(model: nn.Module, num_classes: int) -> Tensor:
    """The ``C x D`` class rows of a model's final classification layer.

    mmpretrain heads (``LinearClsHead.fc``, ``VisionTransformerClsHead``'s
    ``layers.head``, ...): the last ``nn.Linear`` under ``model.head`` with
    ``C`` outputs. mmdet two-stage detectors: ``roi_head.bbox_head.fc_cls``
    (the last stage of a cascade), whose ``C + 1``-th row is the background
    and is dropped.

    Raises:
        ValueError: If no such layer exists (names what was searched).
    """
    roi_head = getattr(model, 'roi_head', None)
    if roi_head is not None:
        fc = getattr(last_bbox_head(roi_head), 'fc_cls', None)
        if isinstance(fc, nn.Linear) and fc.out_features in (num_classes,
                                                              num_classes + 1):
            return fc.weight[:num_classes].detach()
        raise ValueError('the detector\'s roi_head.bbox_head has no fc_cls '
                         f'layer with {num_classes} (+1 background) outputs')
    head = getattr(model, 'head', None)
    if head is None:
        raise ValueError(f'{type(model).__name__} has no `head` (mmpretrain) '
                         'or `roi_head` (mmdet): cannot read class weights')
    linears = [
        m for m in head.modules()
        if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    if not linears:
        raise ValueError(f'{type(head).__name__} has no nn.Linear layer with '
                         f'{num_classes} outputs to read class weights from')
    return linears[-1].weight.detach()


@torch.no_grad()
def compute_class_embeddings(model: nn.Module,
                             batches: Iterable[dict],
                             num_classes: int,
                             class_names: Optional[Sequence[str]] = None,
                             progress: bool = False) -> Tensor:
    """Mean pre-logits feature per class of an mmpretrain classifier.

    Args:
        model (nn.Module): An mmpretrain ``ImageClassifier`` in eval mode
            (features: the head's pre-logits, what the final linear layer
            sees; see :func:`forward_batch`).
        batches (Iterable[dict]): Dataloader batches (``inputs``,
            ``data_samples`` with ``gt_label``), preprocessed by
            ``model.data_preprocessor`` as in evaluation.
        num_classes (int): ``C``.
        class_names (Sequence[str], optional): For error messages.
        progress (bool): Show a progress bar. Defaults to False.

    Returns:
        Tensor: ``C x D`` float32 class means (CPU).

    Raises:
        ValueError: If a class has no samples (names it) or a label is
            outside ``[0, C)``.
    """
    sums: Optional[Tensor] = None
    counts = torch.zeros(num_classes, dtype=torch.long)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc='class embeddings', unit='batch')
    for data in batches:
        feats, _, labels = forward_batch(model, data)
        batch_sums, batch_counts = _class_sums(feats, labels, num_classes)
        sums = batch_sums if sums is None else sums + batch_sums
        counts += batch_counts
    if sums is None:
        raise ValueError('the dataset is empty: no class embeddings')
    return _means(sums, counts, class_names)


def class_means(features: Tensor,
                labels: Tensor,
                num_classes: int,
                class_names: Optional[Sequence[str]] = None) -> Tensor:
    """``C x D`` mean of ``N x D`` ``features`` per label (``N`` int64).

    Raises:
        ValueError: If a class has no samples (names it) or a label is
            outside ``[0, C)``.
    """
    sums, counts = _class_sums(features.float(), labels, num_classes)
    return _means(sums, counts, class_names)


def _class_sums(feats: Tensor, labels: Tensor,
                num_classes: int) -> Tuple[Tensor, Tensor]:
    labels = labels.long().cpu()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f'label {int(labels.max())} is outside [0, '
                         f'{num_classes}) (num_classes={num_classes})')
    sums = torch.zeros(num_classes, feats.size(1))
    sums.index_add_(0, labels, feats.cpu())
    return sums, torch.bincount(labels, minlength=num_classes)


def _means(sums: Tensor, counts: Tensor,
           class_names: Optional[Sequence[str]]) -> Tensor:
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        names = ', '.join(_name(c, class_names) for c in missing[:10])
        raise ValueError(f'no samples in the dataset for {names} '
                         f'({len(missing)} class(es)); every class needs an '
                         'embedding')
    return sums / counts[:, None].float()


def find_modules(model: nn.Module, cls: type) -> List[nn.Module]:
    """All submodules of ``model`` that are instances of ``cls``."""
    return [m for m in model.modules() if isinstance(m, cls)]
