"""Robustness aggregates, metrics and datasets against hand computation."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from conftest import make_image
from mmengine.registry import DefaultScope, init_default_scope
from mmpretrain.structures import DataSample

from mmgfn.datasets import (ImageNetA, ImageNetC, ImageNetP, ImageNetR,
                            WnidFolderDataset, indices_in_1k, load_wnids)
from mmgfn.datasets.transforms.corruption import BENCHMARK_CORRUPTIONS
from mmgfn.evaluation import FlipRate, SubsetAccuracy
from mmgfn.evaluation.functional import (ALEXNET_ERRORS,
                                         ALEXNET_FLIP_PROBABILITIES,
                                         IncompleteResultsError,
                                         compared_frame_pairs,
                                         flip_probability,
                                         imagenet_p_difficulty,
                                         imagenet_p_perturbations,
                                         mean_flip_rate,
                                         summarize_corruption_errors,
                                         summarize_detection_robustness,
                                         summarize_flip_rates, top5_distance,
                                         topk_classes)
from mmgfn.registry import DATASETS, METRICS

# the 15 constants as published, in benchmark order
ALEXNET = [
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360,
    0.866816, 0.826572, 0.819324, 0.564592, 0.853204, 0.646056, 0.717840,
    0.606500
]


# ------------------------------------------------------------- ImageNet-C ---
def test_alexnet_constants_cover_the_15_benchmark_corruptions():
    assert list(ALEXNET_ERRORS) == list(BENCHMARK_CORRUPTIONS)
    assert list(ALEXNET_ERRORS.values()) == ALEXNET
    assert ALEXNET_ERRORS['jpeg_compression'] == 0.6065  # key spelled right


def _full_grid(errors_by_severity):
    return {(c, s): errors_by_severity[s - 1]
            for c in BENCHMARK_CORRUPTIONS for s in range(1, 6)}


def test_mce_normalised_by_alexnet_mean_errors():
    cells = _full_grid([0.2, 0.4, 0.6, 0.8, 1.0])
    out = summarize_corruption_errors(cells)
    # sum_s err = 3.0; AlexNet's sum over 5 severities = 5 * its mean error
    expected_ce = [3.0 / (5 * a) for a in ALEXNET]
    assert out['ce']['fog'] == pytest.approx(3.0 / (5 * 0.819324))
    assert out['mCE'] == pytest.approx(sum(expected_ce) / 15)
    assert out['num_corruptions'] == 15
    assert out['num_cells'] == 75
    assert out['partial'] is False and out['missing_cells'] == []
    assert out['baseline'] == 'alexnet'
    assert out['mean_error']['snow'] == pytest.approx(0.6)
    assert out['mean_corruption_error'] == pytest.approx(0.6)
    assert out['relative_mCE'] is None


def test_relative_mce_subtracts_clean_error_on_both_sides():
    cells = _full_grid([0.2, 0.4, 0.6, 0.8, 1.0])
    out = summarize_corruption_errors(
        cells, clean_error=0.1, baseline_clean_error=0.4348)
    # (3.0 - 5 * 0.1) / (5 * a - 5 * 0.4348) per corruption
    expected = [2.5 / (5 * a - 5 * 0.4348) for a in ALEXNET]
    assert out['relative_ce']['brightness'] == pytest.approx(
        2.5 / (5 * 0.564592 - 5 * 0.4348))
    assert out['relative_mCE'] == pytest.approx(sum(expected) / 15)
    assert out['clean_error'] == 0.1
    assert out['baseline_clean_error'] == 0.4348


def test_relative_mce_refused_without_the_baseline_clean_error():
    cells = _full_grid([0.5] * 5)
    with pytest.raises(ValueError, match='baseline_clean_error'):
        summarize_corruption_errors(cells, clean_error=0.1)


def test_missing_cell_is_named_unless_partial_allowed():
    cells = _full_grid([0.5] * 5)
    del cells[('fog', 3)]
    with pytest.raises(IncompleteResultsError, match='fog/3') as info:
        summarize_corruption_errors(cells)
    assert info.value.missing == [('fog', 3)]

    out = summarize_corruption_errors(cells, allow_partial=True)
    assert out['partial'] is True
    assert out['missing_cells'] == [['fog', 3]]
    assert ['fog', 3] not in out['covered_cells']
    assert out['num_cells'] == 74 and out['num_corruptions'] == 15
    # fog: 4 severities of 0.5 against 4 x AlexNet's mean error
    assert out['ce']['fog'] == pytest.approx(2.0 / (4 * 0.819324))


def test_partial_subset_counts_only_what_it_averages():
    cells = {('fog', 1): 0.3, ('fog', 2): 0.5, ('snow', 1): 0.4,
             ('snow', 2): 0.8, ('spatter', 1): 0.9, ('fog', 0): 0.1}
    out = summarize_corruption_errors(cells, severities=(1, 2),
                                      allow_partial=True)
    assert out['corruptions'] == ['snow', 'fog']  # benchmark order
    assert out['num_corruptions'] == 2 and out['num_cells'] == 4
    assert out['mean_error'] == pytest.approx({'fog': 0.4, 'snow': 0.6})
    assert out['mean_corruption_error'] == pytest.approx((0.4 + 0.6) / 2)
    ce_fog = (0.3 + 0.5) / (2 * 0.819324)
    ce_snow = (0.4 + 0.8) / (2 * 0.866816)
    assert out['mCE'] == pytest.approx((ce_fog + ce_snow) / 2)


def test_ce_relative_to_a_baseline_model():
    cells = {('fog', 1): 0.3, ('fog', 2): 0.5, ('snow', 1): 0.4,
             ('snow', 2): 0.8}
    base = {('fog', 1): 0.4, ('fog', 2): 0.6, ('snow', 1): 0.5,
            ('snow', 2): 0.5}
    out = summarize_corruption_errors(
        cells, clean_error=0.1, baseline=base, baseline_clean_error=0.2,
        corruptions=('fog', 'snow'), severities=(1, 2))
    assert out['baseline'] == 'model'
    assert out['ce'] == pytest.approx({'fog': 0.8 / 1.0, 'snow': 1.2 / 1.0})
    assert out['mCE'] == pytest.approx((0.8 + 1.2) / 2)
    # clean-subtracted: (0.8 - 2 * 0.1) / (1.0 - 2 * 0.2), (1.2 - .2) / .6
    assert out['relative_ce'] == pytest.approx({
        'fog': 0.6 / 0.6,
        'snow': 1.0 / 0.6
    })
    assert out['relative_mCE'] == pytest.approx((1.0 + 1.0 / 0.6) / 2)

    del base[('snow', 2)]
    with pytest.raises(ValueError, match='snow/2'):
        summarize_corruption_errors(cells, baseline=base,
                                    corruptions=('fog', 'snow'),
                                    severities=(1, 2))


def test_bad_corruption_inputs_are_refused():
    with pytest.raises(ValueError, match='no AlexNet error for spatter'):
        summarize_corruption_errors({('spatter', 1): 0.5},
                                    corruptions=('spatter', ),
                                    severities=(1, ))
    with pytest.raises(ValueError, match='fog/1'):
        summarize_corruption_errors({('fog', 1): 45.0},
                                    corruptions=('fog', ), severities=(1, ))
    with pytest.raises(ValueError, match='fog/1'):
        summarize_corruption_errors({('fog', 1): float('nan')},
                                    corruptions=('fog', ), severities=(1, ))
    with pytest.raises(ValueError, match='clean_error'):
        summarize_corruption_errors({('fog', 0): 0.1}, severities=(0, 1))
    with pytest.raises(IncompleteResultsError):
        summarize_corruption_errors({}, allow_partial=True)  # nothing covered
    out = summarize_corruption_errors({('spatter', 1): 0.5},
                                      baseline=None,
                                      corruptions=('spatter', ),
                                      severities=(1, ))
    assert out['ce'] is None and out['mCE'] is None
    assert out['mean_corruption_error'] == 0.5


# ---------------------------------------------------------------- COCO-C ---
def test_detection_p_mpc_rpc_and_severity_zero_in_any_order():
    cells = {}
    for c in BENCHMARK_CORRUPTIONS:
        for s in range(1, 6):
            cells[(c, s)] = 0.40 - 0.05 * s  # 0.35, 0.30, ... 0.15
    # the clean cell comes last here, and twice (mmdet evaluates it per
    # corruption): the order must not matter
    cells[('fog', 0)] = 0.5
    cells[('snow', 0)] = 0.5
    out = summarize_detection_robustness(cells)
    assert out['P'] == 0.5
    assert out['mPC'] == pytest.approx((0.35 + 0.30 + 0.25 + 0.20 + 0.15) / 5)
    assert out['rPC'] == pytest.approx(0.25 / 0.5)
    assert out['num_corruptions'] == 15 and out['num_cells'] == 75
    assert out['mean_map']['fog'] == pytest.approx(0.25)
    assert out['partial'] is False


def test_detection_partial_missing_and_clean_checks():
    cells = {('fog', 1): 0.3, ('fog', 2): 0.2, ('snow', 1): 0.1,
             ('clean', 0): 0.4}
    with pytest.raises(IncompleteResultsError, match='fog/3'):
        summarize_detection_robustness(cells)
    out = summarize_detection_robustness(cells, allow_partial=True)
    assert out['partial'] is True
    assert out['covered_cells'] == [['snow', 1], ['fog', 1], ['fog', 2]]
    # mean over corruptions of their mean: fog (0.3 + 0.2) / 2, snow 0.1
    assert out['mPC'] == pytest.approx((0.25 + 0.1) / 2)
    assert out['rPC'] == pytest.approx(0.175 / 0.4)
    with pytest.raises(ValueError, match='clean mAP'):
        summarize_detection_robustness({('fog', 1): 0.3},
                                       corruptions=('fog', ),
                                       severities=(1, ))
    with pytest.raises(ValueError, match='disagree'):
        summarize_detection_robustness(
            {('fog', 0): 0.4, ('snow', 0): 0.3, ('fog', 1): 0.2},
            corruptions=('fog', ), severities=(1, ))
    out = summarize_detection_robustness({('fog', 1): 0.0},
                                         clean_map=0.0,
                                         corruptions=('fog', ),
                                         severities=(1, ))
    assert out['rPC'] is None  # undefined for P = 0


# ------------------------------------------------------------ ImageNet-P ---
def test_compared_frame_pairs_follow_the_reference_loops():
    assert compared_frame_pairs(4, noise=False) == [(0, 1), (1, 2), (2, 3)]
    assert compared_frame_pairs(4, noise=True) == [(0, 1), (0, 2), (0, 3)]
    assert compared_frame_pairs(6, noise=False, step=2) == [(0, 2), (2, 4),
                                                           (1, 3), (3, 5)]
    with pytest.raises(ValueError):
        compared_frame_pairs(1, noise=False)
    with pytest.raises(ValueError):
        compared_frame_pairs(5, noise=True, step=2)


def test_flip_probability_by_hand():
    seqs = [[0, 1, 1, 1], [2, 2, 2, 3]]
    # consecutive: seq 1 flips at 0->1 only (1/3), seq 2 at 2->3 (1/3)
    assert flip_probability(seqs, noise=False) == pytest.approx(1 / 3)
    # against frame 0: seq 1 differs at frames 1, 2, 3 (3/3), seq 2 at 3
    assert flip_probability(seqs, noise=True) == pytest.approx(
        (3 / 3 + 1 / 3) / 2)
    # step 2: sub-sequences [0, 0, 0] and [1, 1, 1] never flip
    assert flip_probability([[0, 1, 0, 1, 0, 1]], noise=False,
                            step=2) == 0.0
    assert flip_probability([[0, 1, 0, 1, 0, 1]], noise=False) == 1.0


def test_top5_distance_by_hand():
    a = [0, 1, 2, 3, 4]
    b = [1, 0, 2, 3, 9]  # classes 0, 1 swap; class 4 leaves the top 5
    # sigma = ranks in b of a's top 5 = 2, 1, 3, 4, >5 (-> 6)
    # d = |2-1| + |1-2| + 0 + 0 + |6-5| = 3
    c = [9, 8, 7, 6, 5]  # none of a's top 5: d = 5+4+3+2+1 = 15
    assert top5_distance([np.array([a, b])], noise=False) == 3.0
    assert top5_distance([np.array([a, c])], noise=False) == 15.0
    # noise: (a, b) = 3 and (a, a) = 0 -> 1.5; consecutive: 3 and 3 -> 3
    assert top5_distance([np.array([a, b, a])], noise=True) == 1.5
    assert top5_distance([np.array([a, b, a])], noise=False) == 3.0


def test_topk_classes_breaks_ties_towards_the_lower_index():
    scores = np.array([0.1, 0.5, 0.5, 0.2, 0.5, 0.0])
    assert topk_classes(scores, 3).tolist() == [1, 2, 4]
    assert topk_classes(scores, 10).tolist() == [1, 2, 4, 3, 0, 5]


def test_mfr_needs_baseline_rates():
    fp = {'translate': 0.2, 'gaussian_noise': 0.1}
    with pytest.raises(ValueError, match='baseline'):
        mean_flip_rate(fp, None)
    assert mean_flip_rate(fp, {'translate': 0.4, 'gaussian_noise': 0.4}) == \
        pytest.approx((0.2 / 0.4 + 0.1 / 0.4) / 2)
    with pytest.raises(ValueError, match='gaussian_noise'):
        mean_flip_rate(fp, {'translate': 0.4})

    with pytest.raises(IncompleteResultsError, match='rotate'):
        summarize_flip_rates(fp)
    out = summarize_flip_rates(fp, {'translate': 2.0, 'gaussian_noise': 1.0},
                               baseline_fp={'translate': 0.4,
                                            'gaussian_noise': 0.4},
                               allow_partial=True)
    assert out['partial'] is True and out['num_perturbations'] == 2
    assert out['perturbations'] == ['gaussian_noise', 'translate']
    assert out['mean_FP'] == pytest.approx(0.15)
    assert out['mean_T5D'] == pytest.approx(1.5)
    assert out['FR'] == pytest.approx({'translate': 0.5,
                                       'gaussian_noise': 0.25})
    assert out['mFR'] == pytest.approx(0.375)
    assert out['mT5D'] is None


# --------------------------------------------------------------- metrics ---
def _sample(scores, label=0, **meta):
    """A predicted sample whose logits are ``scores`` (``pred_logits``, as
    mmgfn.KeepLogitsHook keeps them) with their float32 softmax as
    ``pred_score``."""
    logits = torch.tensor(scores, dtype=torch.float32)
    sample = DataSample().set_pred_score(logits.softmax(-1)).set_gt_label(
        label)
    sample.set_field(logits, 'pred_logits')
    sample.set_metainfo(meta)
    return sample.to_dict()


def test_subset_indices_of_imagenet_a_and_r():
    a, r = indices_in_1k('imagenet-a'), indices_in_1k('imagenet-r')
    assert len(a) == len(r) == 200
    assert list(a[:10]) == [6, 11, 13, 15, 17, 22, 23, 27, 30, 37]
    assert list(r[:10]) == [1, 2, 4, 6, 8, 9, 11, 13, 22, 23]
    assert a[-1] == 988 and r[-1] == 988
    wnids = load_wnids('imagenet1k')
    assert len(wnids) == 1000 and list(wnids) == sorted(set(wnids))
    assert wnids[0] == 'n01440764' and wnids[999] == 'n15075141'
    assert load_wnids('imagenet-a')[0] == 'n01498041' == wnids[6]
    assert load_wnids('imagenet-r')[0] == 'n01443537' == wnids[1]


def test_subset_accuracy_keeps_only_the_subset_logits():
    metric = METRICS.build(dict(type='SubsetAccuracy', indices='imagenet-a',
                                topk=(1, 5)))
    assert isinstance(metric, SubsetAccuracy)
    scores = np.zeros(1000, np.float32)
    scores[0] = 9.0   # tench: the 1000-way argmax, not an ImageNet-A class
    scores[13] = 5.0  # 1k index 13 = ImageNet-A label 2
    scores[6] = 4.0   # ImageNet-A label 0
    samples = [_sample(scores, 2), _sample(scores, 0), _sample(scores, 7)]
    metric.process(None, samples)
    out = metric.evaluate(3)
    # top-1 (masked) is label 2 for every sample: 1 of 3 right
    assert out['accuracy/top1'] == pytest.approx(100 / 3)
    # top-5 holds labels 2, 0 and then the lowest tied indices 1, 3, 4
    assert out['accuracy/top5'] == pytest.approx(200 / 3)


def test_subset_accuracy_refuses_a_model_with_too_few_classes():
    metric = SubsetAccuracy(indices='imagenet-r')
    with pytest.raises(ValueError, match='outputs 4 class scores'):
        metric.process(None, [_sample([0.1, 0.2, 0.3, 0.4], 0)])
    metric = SubsetAccuracy(indices=[3, 1])
    with pytest.raises(ValueError, match='label 2'):
        metric.process(None, [_sample([0.1, 0.2, 0.3, 0.4], 2)])
    metric.process(None, [_sample([0.1, 0.9, 0.3, 0.4], 1)])  # 1 -> label 1
    assert metric.evaluate(1)['accuracy/top1'] == 100.0
    with pytest.raises(ValueError):
        SubsetAccuracy(indices=[1, 1])


def _frame(top1, seq, t, perturbation, num_frames=4):
    scores = np.zeros(6, np.float32)
    scores[top1] = 1.0
    scores[5] = 0.5  # a fixed runner-up
    return _sample(scores, 0, perturbation=perturbation, step=1,
                   sequence_idx=seq, frame_idx=t, num_frames=num_frames)


def test_flip_rate_metric_rebuilds_sequences_in_any_order():
    metric = FlipRate(baseline_fp={'translate': 0.5, 'gaussian_noise': 0.25})
    frames = []
    for seq, preds in enumerate([[0, 1, 1, 1], [2, 2, 2, 3]]):
        for t, p in enumerate(preds):
            frames.append(_frame(p, seq, t, 'translate'))
            frames.append(_frame(p, seq, t, 'gaussian_noise'))
    frames = frames[::-1] + frames[:3]  # shuffled and padded with repeats
    metric.process(None, frames)
    out = metric.evaluate(len(frames))
    assert out['imagenet_p/FP_translate'] == pytest.approx(1 / 3)
    assert out['imagenet_p/FP_gaussian_noise'] == pytest.approx(
        (3 / 3 + 1 / 3) / 2)
    # sequence 0: top-5 [0 5 1 2 3] -> [1 5 0 2 3] on one of 3 pairs:
    # sigma = 3, 2, 1, 4, 5, d = |3-1| + 0 + |1-3| + 0 + 0 = 4
    # sequence 1: [2 5 0 1 3] -> [3 5 0 1 2] on one of 3 pairs:
    # sigma = 5, 2, 3, 4, 1, d = |5-1| + 0 + 0 + 0 + |1-5| = 8
    assert out['imagenet_p/T5D_translate'] == pytest.approx(
        (4 / 3 + 8 / 3) / 2)
    assert out['imagenet_p/mean_FP'] == pytest.approx(
        (1 / 3 + 2 / 3) / 2)
    assert out['imagenet_p/FR_translate'] == pytest.approx((1 / 3) / 0.5)
    assert out['imagenet_p/mFR'] == pytest.approx(
        ((1 / 3) / 0.5 + (2 / 3) / 0.25) / 2)
    assert 'imagenet_p/mT5D' not in out


def test_flip_rate_metric_refuses_incomplete_sequences():
    metric = FlipRate()
    metric.process(None, [_frame(0, 0, 0, 'tilt'), _frame(0, 0, 2, 'tilt')])
    with pytest.raises(ValueError, match='2 of its 4 frames'):
        metric.evaluate(2)
    with pytest.raises(ValueError, match='ImageNetP'):
        FlipRate().process(None, [_sample([0.1, 0.9], 0)])


# -------------------------------------------------------------- datasets ---
def _write_tree(root, folders, per_folder=2, ext='png', seed=0):
    rng = np.random.default_rng(seed)
    for i, folder in enumerate(folders):
        os.makedirs(osp.join(root, folder), exist_ok=True)
        for j in range(per_folder):
            cv2.imwrite(osp.join(root, folder, f'{j}.{ext}'),
                        make_image(i % 4, rng))


PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]


def test_imagenet_c_labels_follow_imagenet1k_order(tmp_path):
    init_default_scope('mmpretrain')
    root = str(tmp_path / 'imagenet-c')
    _write_tree(osp.join(root, 'fog', '3'), ['n01498041', 'n01440764'],
                ext='JPEG')
    ds = DATASETS.build(dict(type='mmgfn.ImageNetC', data_root=root,
                             corruption='fog', severity=3,
                             pipeline=PIPELINE))
    assert isinstance(ds, ImageNetC)
    assert len(ds.metainfo['classes']) == 1000
    labels = sorted({ds.get_data_info(i)['gt_label'] for i in range(len(ds))})
    assert labels == [0, 6]  # positions of the wnids among the 1000
    assert ds.get_data_info(0)['corruption'] == 'fog'
    item = ds[0]
    assert item['inputs'].shape == (3, 32, 32)

    with pytest.raises(FileNotFoundError, match='corruption "snow"'):
        ImageNetC(root, 'snow', 3, pipeline=PIPELINE)
    with pytest.raises(FileNotFoundError, match='severity 2 of corruption '
                       '"fog".*found severities: 3'):
        ImageNetC(root, 'fog', 2, pipeline=PIPELINE)
    with pytest.raises(ValueError, match='1-5'):
        ImageNetC(root, 'fog', 0)
    _write_tree(osp.join(root, 'fog', '3'), ['class_0'])
    with pytest.raises(ValueError, match='class_0.*not one of the 1000'):
        ImageNetC(root, 'fog', 3, pipeline=PIPELINE)
    ds = ImageNetC(root, 'fog', 3, classes=None, pipeline=PIPELINE)
    assert ds.metainfo['classes'] == ('class_0', 'n01440764', 'n01498041')


def test_imagenet_a_and_r_labels_are_subset_positions(tmp_path):
    a_root, r_root = str(tmp_path / 'a'), str(tmp_path / 'r')
    a_wnids, r_wnids = load_wnids('imagenet-a'), load_wnids('imagenet-r')
    _write_tree(a_root, [a_wnids[5], a_wnids[0]], per_folder=1)
    _write_tree(r_root, [r_wnids[199]], per_folder=1)
    a = ImageNetA(a_root, pipeline=PIPELINE)
    r = ImageNetR(r_root, pipeline=PIPELINE)
    assert len(a.metainfo['classes']) == len(r.metainfo['classes']) == 200
    assert sorted(a.get_data_info(i)['gt_label'] for i in range(2)) == [0, 5]
    assert r.get_data_info(0)['gt_label'] == 199
    _write_tree(a_root, ['n01440764'], per_folder=1)  # ImageNet, not A
    with pytest.raises(ValueError, match='n01440764.*not one of the 200'):
        ImageNetA(a_root, pipeline=PIPELINE)
    assert isinstance(
        WnidFolderDataset(r_root, classes=['x', r_wnids[199]],
                          pipeline=PIPELINE), WnidFolderDataset)


def write_video(path, labels, size=32, seed=0):
    """An mp4 (mp4v) whose frame t shows class ``labels[t]``."""
    rng = np.random.default_rng(seed)
    os.makedirs(osp.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (size, size))
    assert writer.isOpened()
    for label in labels:
        writer.write(make_image(label, rng, size))
    writer.release()


def test_imagenet_p_yields_tagged_frames(tmp_path):
    init_default_scope('mmpretrain')
    root = str(tmp_path / 'imagenet-p')
    write_video(osp.join(root, 'translate', 'n01440764', 'a.mp4'),
                [0, 0, 1, 1, 2])
    write_video(osp.join(root, 'translate', 'n01443537', 'b.mp4'), [3, 3, 3])
    ds = DATASETS.build(dict(type='mmgfn.ImageNetP', data_root=root,
                             perturbation='translate', pipeline=PIPELINE))
    assert isinstance(ds, ImageNetP)
    assert len(ds) == 5 + 3  # one item per frame
    # LoadImageFromFile is dropped: frames come decoded
    assert [type(t).__name__ for t in ds.pipeline.transforms] == [
        'PackInputs'
    ]
    item = ds[6]
    assert item['inputs'].shape == (3, 32, 32)
    meta = item['data_samples'].metainfo
    assert (meta['perturbation'], meta['sequence_idx'], meta['frame_idx'],
            meta['num_frames'], meta['step']) == ('translate', 1, 1, 3, 1)
    assert item['data_samples'].gt_label.item() == 1
    assert meta['video_path'].endswith('b.mp4')

    with pytest.raises(FileNotFoundError, match='perturbation "tilt"'):
        ImageNetP(root, 'tilt')
    with pytest.raises(ValueError, match='noise'):
        ImageNetP(root, 'gaussian_noise', step=2)
    bad = osp.join(root, 'translate', 'n01443537', 'broken.mp4')
    with open(bad, 'wb') as f:
        f.write(b'not a video at all')
    with pytest.raises(ValueError, match='unreadable video.*broken.mp4'):
        ImageNetP(root, 'translate', pipeline=PIPELINE)


def teardown_function():
    # leave no default scope behind for the next test
    DefaultScope._instance_dict.clear()


def test_noise_difficulty_folders_compare_with_frame_0():
    """ImageNet-P's harder noise folders (``<noise>_2``, ``_3``) are noise
    perturbations too: their frames are compared with frame 0."""
    from mmgfn.evaluation.functional import is_noise_perturbation
    for name in ('gaussian_noise', 'shot_noise_2', 'speckle_noise_3'):
        assert is_noise_perturbation(name), name
    for name in ('motion_blur', 'translate', 'brightness_2'):
        assert not is_noise_perturbation(name), name


# ------------------------------------------- logits, AlexNet FP, levels ---
def test_tied_probabilities_are_refused_and_logits_preferred():
    probs = torch.tensor([1.0, 0.0, 0.0, 0.0])  # float32 softmax underflow
    only_probs = DataSample().set_pred_score(probs).set_gt_label(0)
    only_probs.set_metainfo(dict(perturbation='tilt', step=1, sequence_idx=0,
                                 frame_idx=0, num_frames=2))
    with pytest.raises(ValueError, match='KeepLogitsHook'):
        FlipRate().process(None, [only_probs.to_dict()])
    with pytest.raises(ValueError, match='KeepLogitsHook'):
        SubsetAccuracy(indices=[1, 2]).process(None, [only_probs.to_dict()])
    # the logits rank 2 before 1: label 1 (index 2) is the masked top-1
    only_probs.set_field(torch.tensor([300.0, 1.0, 2.0, 0.5]), 'pred_logits')
    metric = SubsetAccuracy(indices=[1, 2])
    metric.process(None, [only_probs.set_gt_label(1).to_dict()])
    assert metric.evaluate(1) == {'accuracy/scores': 'logits',
                                  'accuracy/top1': 100.0}


def test_alexnet_flip_probabilities_as_published():
    # clovaai/assembled-cnn, mce/eval_robustness.py, ALEXNET_FP
    assert ALEXNET_FLIP_PROBABILITIES == {
        'gaussian_noise': 0.23653, 'shot_noise': 0.30062,
        'motion_blur': 0.09297, 'zoom_blur': 0.05942, 'spatter': 0.05053,
        'brightness': 0.04889, 'translate': 0.11007, 'rotate': 0.13104,
        'tilt': 0.07050, 'scale': 0.23531, 'speckle_noise': 0.18649,
        'gaussian_blur': 0.02775, 'snow': 0.11928, 'shear': 0.10658}
    fp = {'translate': 0.2, 'rotate': 0.1}
    out = summarize_flip_rates(fp, baseline_fp='alexnet',
                               perturbations=('translate', 'rotate'))
    assert out['baseline'] == 'alexnet'
    assert out['mFR'] == pytest.approx((0.2 / 0.11007 + 0.1 / 0.13104) / 2)
    metric = FlipRate(baseline_fp='alexnet')
    with pytest.raises(ValueError, match='difficulty 1'):
        metric.process(None, [_sample([1.0, 0.0], 0, perturbation='tilt',
                                      step=2, sequence_idx=0, frame_idx=0,
                                      num_frames=3)])


def test_zero_baseline_rate_keeps_the_raw_means():
    out = summarize_flip_rates({'translate': 0.2, 'rotate': 0.1},
                               {'translate': 1.0, 'rotate': 3.0},
                               baseline_fp={'translate': 0.0, 'rotate': 0.4},
                               baseline_t5d={'translate': 2.0, 'rotate': 1.5},
                               perturbations=('translate', 'rotate'))
    assert out['mean_FP'] == pytest.approx(0.15)
    assert out['mean_T5D'] == pytest.approx(2.0)
    assert out['FR'] == {'translate': None, 'rotate': pytest.approx(0.25)}
    assert out['mFR'] is None
    assert out['mT5D'] == pytest.approx((1.0 / 2.0 + 3.0 / 1.5) / 2)
    assert out['notes'] and 'translate' in out['notes'][0]


def test_imagenet_p_difficulty_folders():
    assert imagenet_p_perturbations(1)[:3] == ['gaussian_noise', 'shot_noise',
                                               'motion_blur']
    assert imagenet_p_perturbations(3)[:3] == ['gaussian_noise_3',
                                               'shot_noise_3', 'motion_blur']
    assert imagenet_p_perturbations(2, holdout=True)[0] == 'speckle_noise_2'
    assert imagenet_p_difficulty('gaussian_noise_2') == ('gaussian_noise', 2)
    assert imagenet_p_difficulty('gaussian_noise') == ('gaussian_noise', 1)
    assert imagenet_p_difficulty('translate', step=3) == ('translate', 3)
    out = summarize_flip_rates({'gaussian_noise_2': 0.3, 'translate': 0.1},
                               perturbations=imagenet_p_perturbations(2),
                               allow_partial=True)
    assert out['perturbations'] == ['gaussian_noise_2', 'translate']
    assert out['mean_FP'] == pytest.approx(0.2)
