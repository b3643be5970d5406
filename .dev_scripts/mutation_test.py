"""Curated mutation testing: plant one-line bugs, check the tests catch them.

Each mutant below is one small, realistic bug (a flipped sign, an
off-by-one, swapped arguments, a skipped call, a wrong reduction) in the
code whose behaviour the project's numbers rest on: the gradient-sign attack
and the classification preprocessor, the neighbour-weighted loss, the
neighbour table, the detection hook, the insertion of corruptions into a
test pipeline (and the corruption transform), the torch corruptions (their
constants against imagecorruptions) and the robustness metric
functions. For every mutant the script runs the fast tests that should
catch it and reports whether they did (*killed*) or not (*survived*).

The working tree is never modified: the repository (tracked and untracked,
not ignored, files; no virtual environment, no byte code) is copied into a
temporary folder, each mutant is applied there by an exact text replacement
that must match exactly once (a mutant whose original text is gone fails
the run loudly, so the list follows the code), and the tests run there with
the copy first on ``PYTHONPATH`` (checked: ``mmgfn.__file__`` must lie in
the copy, not in the editable install). Byte code is not written, so a
mutated module is never served from a stale ``.pyc``. Each test run is a
child forked from a process that imported torch, mmengine and pytest once
(not mmgfn, nor mmcv/mmpretrain/mmdet, whose import mmgfn adjusts), which
saves seconds per mutant; ``--no-fork`` starts a fresh Python instead.

Usage::

    python .dev_scripts/mutation_test.py            # all mutants
    python .dev_scripts/mutation_test.py --list     # the list, checked
    python .dev_scripts/mutation_test.py --only loss-sum-not-mean attack-sign
    python .dev_scripts/mutation_test.py --jobs 2

A mutant's tests are pytest node ids (``file::test``), run with ``-x``.
Before the mutants, the union of the selected mutants' tests runs once on
the unmutated copy and must pass (``--no-baseline`` skips it); a test that
is renamed or removed makes that run (and the mutant's) an *error*, never a
silent kill. A timeout counts as killed and is shown as ``timeout``.

Exit status: 0 when every mutant that was run is killed, 1 when one
survives or errs, 2 for a mutant list that no longer matches the code or a
failing baseline.
"""
import argparse
import json
import os
import os.path as osp
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# test files (pytest node ids are built from these)
LOSS = 'tests/test_models/test_neighbor_weighted_ce_loss.py'
TABLE = 'tests/test_models/test_neighbor_table.py'
PREC = 'tests/test_models/test_attack_precision.py'
HOOK = 'tests/test_engine/test_background_roi_perturbation_hook.py'
METRICS = 'tests/test_evaluation/test_robustness_metrics.py'
TRANSFORMS = 'tests/test_datasets/test_transforms.py'
INSERTION = 'tests/test_datasets/test_corruption_insertion.py'
TRAIN_CALL = 'tests/test_models/test_neighbor_attack_training_call.py'
TOOL_TESTS = 'tests/test_tools/test_robustness_tool.py'
LOOP_TESTS = 'tests/test_engine/test_robustness_loop.py'
GENERATION = 'tests/test_datasets/test_corruption_generation.py'
ANALYSIS = 'tests/test_tools/test_analysis_tools.py'
STANDIN = 'tests/test_utils/test_mmcv_ext.py'
PAIRED = 'tests/test_evaluation/test_paired_comparison.py'
BACKEND = 'tests/test_datasets/test_corruption_backend.py'
CHECKS = 'tests/test_models/test_component_checks.py'
ERRORS = 'tests/test_apis/test_errors.py'

ATTACK_PY = 'mmgfn/models/utils/attack.py'
PRE_PY = ('mmgfn/models/data_preprocessors/'
          'neighbor_adversarial_data_preprocessor.py')
LOSS_PY = 'mmgfn/models/losses/neighbor_weighted_ce_loss.py'
TABLE_PY = 'mmgfn/models/utils/neighbor_table.py'
HOOK_PY = 'mmgfn/engine/hooks/background_roi_perturbation_hook.py'
INFER_PY = 'mmgfn/apis/inference.py'
INSERT_PY = 'mmgfn/datasets/transforms/insertion.py'
SETUP_PY = 'mmgfn/evaluation/robustness_sweep/setup.py'
SETUP_TESTS = 'tests/test_engine/test_sweep_setup.py'
CORRUPT_PY = 'mmgfn/datasets/transforms/corruption.py'
METRICS_PY = 'mmgfn/evaluation/functional/robustness.py'
BENCHMARKS_PY = 'mmgfn/datasets/benchmarks.py'
TOOL_PY = 'mmgfn/evaluation/robustness_sweep/suite.py'
LOOP_PY = 'mmgfn/engine/runner/robustness_test_loop.py'
GENERATION_PY = 'mmgfn/datasets/corruption_generation.py'
EMBEDDINGS_PY = 'mmgfn/apis/embeddings.py'
STANDIN_PY = 'mmgfn/utils/mmcv_ext.py'
OPS_PY = 'mmgfn/utils/mmcv_ops.py'
PAIRED_PY = 'mmgfn/evaluation/functional/paired.py'
OUTCOMES_PY = 'mmgfn/evaluation/robustness_sweep/outcomes.py'
TORCH_C = 'mmgfn/datasets/corruptions/'


@dataclass(frozen=True)
class Mutant:
    """One planted bug.

    Args:
        id (str): Short unique name.
        path (str): File, relative to the repository root.
        old (str): Text to replace; must occur exactly once in ``path``.
        new (str): Its replacement.
        desc (str): What the bug does, in a few words.
        tests (tuple[str]): Pytest node ids expected to catch it.
    """
    id: str
    path: str
    old: str
    new: str
    desc: str
    tests: Tuple[str, ...]


def M(id: str, path: str, old: str, new: str, desc: str,
      *tests: str) -> Mutant:
    return Mutant(id, path, old, new, desc, tuple(tests))


MUTANTS: List[Mutant] = [
    # ------------------------------------- mmcv's ops without a compiler
    M('standin-nms-double-threshold', STANDIN_PY,
      'float32_threshold(iou_threshold))', 'float(iou_threshold))',
      'nms threshold compared as a double: a box at IoU == 0.3 is dropped',
      f'{STANDIN}::test_nms_keeps_a_box_whose_iou_equals_the_threshold'),
    M('standin-nms-stable-order', STANDIN_PY,
      'order = scores.sort(0, descending=True)[1]',
      'order = torch.arange(len(scores), device=scores.device)',
      "ties visited in torchvision's stable order, not mmcv's",
      f'{STANDIN}::test_nms_matches_the_reference'),
    M('standin-nms-no-offset', STANDIN_PY,
      '    if offset:\n', '    if False:\n',
      "nms ignores mmcv's offset=1 box sides",
      f'{STANDIN}::test_nms_matches_the_reference'),
    M('standin-roi-align-not-aligned', STANDIN_PY,
      'int(aligned_height), int(aligned_width), int(sampling_ratio),\n'
      '        bool(aligned))',
      'int(aligned_height), int(aligned_width), int(sampling_ratio),\n'
      '        False)',
      "RoIAlign forward ignores aligned (no half-pixel shift)",
      f'{STANDIN}::test_roi_align_and_its_gradient_match_the_reference'),
    M('standin-roi-align-backward-scale', STANDIN_PY,
      'rois.contiguous().to(dtype), float(spatial_scale),\n'
      '        int(aligned_height), int(aligned_width), batch',
      'rois.contiguous().to(dtype), 1.0,\n'
      '        int(aligned_height), int(aligned_width), batch',
      "RoIAlign gradient ignores spatial_scale",
      f'{STANDIN}::test_roi_align_and_its_gradient_match_the_reference'),
    M('standin-missing-op-returns', STANDIN_PY,
      '        raise MissingMmcvOpError(',
      '        return None and MissingMmcvOpError(',
      'an op the install lacks returns None instead of failing',
      f'{STANDIN}::test_other_ops_import_and_fail_at_their_first_call',
      f'{STANDIN}::test_a_detector_needing_another_op_fails_with_one_line'),
    M('standin-not-recognised', OPS_PY,
      "    return bool(getattr(ext, 'MMGFN_STANDIN', False))",
      '    return False',
      'the stand-in is not told from a full build (collect_env, paths)',
      f'{STANDIN}::test_collect_env_reports_the_standin',
      f'{STANDIN}::test_default_install_imports_mmdet_first_trains_and_tests'),
    # ------------------------------------------------------------- attack
    M('attack-sign', ATTACK_PY,
      'sign = -1.0 if toward else 1.0', 'sign = 1.0 if toward else -1.0',
      'step away from the target instead of toward it',
      f'{TRAIN_CALL}::test_training_call_steps_toward_drawn_neighbours',
      f'{TRAIN_CALL}::test_mixed_labels_use_the_dominant_class'),
    M('attack-true-class-grad', ATTACK_PY,
      '.scatter(1, t, -1.0)', '.scatter(1, t, 1.0)',
      'logit gradient of the target class gets the wrong sign',
      f'{PREC}::test_saturated_samples_step_with_ce_sign'),
    M('attack-no-group-weights', ATTACK_PY,
      'return grad * torch.exp(log_w - top[groups])[:, None]',
      'return grad',
      'rows sharing an input lose CE\'s relative weights',
      f'{PREC}::test_ce_sign_gradient_keeps_relative_weights_within_groups'),
    M('attack-group-max-is-min', ATTACK_PY,
      "reduce='amax'", "reduce='amin'",
      'group weights normalised by the smallest instead of the largest',
      f'{PREC}::test_ce_sign_gradient_is_bounded_and_finite_at_any_margin'),
    M('attack-no-clip', ATTACK_PY,
      'x = torch.max(torch.min(x, _as(upper, x)), _as(lower, x))',
      'x = x',
      'perturbed batch not clipped to the valid pixel range',
      f'{TRAIN_CALL}::'
      'test_step_is_eta_in_its_unit_and_stays_in_pixel_range'),
    M('attack-full-step-each-iteration', ATTACK_PY,
      'alpha = step / num_steps', 'alpha = step',
      'I-FGSM takes the whole budget at every step',
      f'{PREC}::test_iterative_attack_equals_a_reference_loop'),
    M('attack-buffers-not-restored', ATTACK_PY,
      '                b.copy_(saved)', '                pass',
      'BatchNorm statistics advanced by the attack are kept',
      f'{TRAIN_CALL}::test_training_call_leaves_no_trace'),
    M('attack-modes-not-restored', ATTACK_PY,
      'm.training = True', 'm.training = False',
      'submodules left in eval mode after the attack',
      f'{TRAIN_CALL}::test_training_call_leaves_no_trace'),
    M('attack-params-not-frozen', ATTACK_PY,
      '        p.requires_grad_(False)', '        p.requires_grad_(True)',
      'weight gradients computed during the attack',
      f'{TRAIN_CALL}::test_training_call_leaves_no_trace'),
    M('attack-pixel-unit-inverted', ATTACK_PY,
      'step = eta * 255.0 / std if', 'step = eta / 255.0 * std if',
      "eta_unit='pixel' converted the wrong way round",
      f'{TRAIN_CALL}::'
      'test_step_is_eta_in_its_unit_and_stays_in_pixel_range'),
    M('attack-upper-bound', ATTACK_PY,
      'return step, (0.0 - mean) / std, (255.0 - mean) / std',
      'return step, (0.0 - mean) / std, (1.0 - mean) / std',
      'valid range taken as pixels [0, 1] instead of [0, 255]',
      f'{TRAIN_CALL}::'
      'test_step_is_eta_in_its_unit_and_stays_in_pixel_range'),
    M('attack-padding-mask-transposed', ATTACK_PY,
      'mask[i, :, :h, :w] = 1', 'mask[i, :, :w, :h] = 1',
      'padding mask with height and width swapped',
      f'{PREC}::test_padding_mask_by_hand'),
    M('scaler-backoff-grows', ATTACK_PY,
      'overflow, (self._scale * 0.5)', 'overflow, (self._scale * 2)',
      'float16 attack scale doubles after an overflow',
      f'{PREC}::test_attack_grad_scaler_backs_off_on_overflow_and_grows'),
    M('scaler-growth-off-by-one', ATTACK_PY,
      'grow = clean >= self.growth_interval',
      'grow = clean > self.growth_interval',
      'attack scale grows one clean step late',
      f'{PREC}::test_attack_grad_scaler_backs_off_on_overflow_and_grows'),
    M('scaler-overflow-kept', ATTACK_PY,
      'grad = torch.where(finite.view(-1, *[1] * (grad.dim() - 1)), grad,\n'
      '                           0.0)',
      'grad = grad',
      'samples whose float16 gradient overflowed are still stepped',
      f'{PREC}::test_overflowing_samples_are_left_unperturbed',
      f'{PREC}::test_non_finite_sample_is_left_unperturbed_and_counted'),
    M('scaler-no-floor', ATTACK_PY,
      '(self._scale * 0.5).clamp(min=self.min_scale)', 'self._scale * 0.5',
      'attack scale halves without a floor (reaches 0 for good)',
      f'{PREC}::test_scale_has_a_floor_and_recovers'),
    M('scaler-nan-is-overflow', ATTACK_PY,
      'overflow = overflow & logits_finite', 'overflow = overflow',
      'NaN logits back the scale off as an overflow would',
      f'{PREC}::test_nan_logits_do_not_back_off_the_scale'),
    M('scaler-ignores-autocast', ATTACK_PY,
      'return (torch.is_autocast_enabled(device)',
      'return (False',
      'a float32 head under float16 autocast is not scaled',
      f'{PREC}::test_float32_head_under_float16_autocast_is_scaled'),
    M('scaler-counts-finite', ATTACK_PY,
      'bad = (~finite).sum()', 'bad = finite.sum()',
      'the attacked samples are counted as unperturbed',
      f'{PREC}::test_non_finite_sample_is_left_unperturbed_and_counted',
      f'{PREC}::test_unperturbed_share_reaches_the_message_hub_and_warns'),
    M('scaler-share-is-count', ATTACK_PY,
      'self.log_key, unperturbed / max(total, 1))',
      'self.log_key, unperturbed)',
      'the log gets the count of unperturbed samples, not their share',
      f'{PREC}::test_unperturbed_share_reaches_the_message_hub_and_warns'),
    M('scaler-warns-below', ATTACK_PY,
      'if share > self.warn_threshold:', 'if share < self.warn_threshold:',
      'warning below the threshold instead of above',
      f'{PREC}::test_unperturbed_share_reaches_the_message_hub_and_warns'),
    # ------------------------------------------------------- preprocessor
    M('pre-step-toward-label', PRE_PY,
      'targets, _ = self.neighbor_table.sample(labels)',
      'targets = labels',
      'training path steps toward the true label, not a neighbour',
      f'{TRAIN_CALL}::test_training_call_steps_toward_drawn_neighbours'),
    M('pre-toward-inverted', PRE_PY,
      "toward=self.mode == 'neighbor',", "toward=self.mode != 'neighbor',",
      'neighbour mode ascends, untargeted mode descends the CE',
      f'{TRAIN_CALL}::test_training_call_steps_toward_drawn_neighbours'),
    M('pre-attack-mode-ignored', PRE_PY,
      "eval_mode = self.attack_mode == 'eval'", 'eval_mode = True',
      "attack_mode='train' attacks the model in eval mode",
      f'{TRAIN_CALL}::'
      'test_attack_mode_sets_the_batchnorm_statistics_of_the_gradient'),
    M('pre-padding-perturbed', PRE_PY,
      '            step = step * valid', '            step = step',
      'padding of a padded batch is perturbed',
      f'{TRAIN_CALL}::'
      'test_padding_of_smaller_images_is_not_perturbed'),
    M('pre-mixed-label-argmin', PRE_PY,
      "return torch.stack([s.gt_score for s in samples]).argmax(1)",
      "return torch.stack([s.gt_score for s in samples]).argmin(1)",
      'mixed (Mixup/CutMix) labels: the weakest class taken as label',
      f'{TRAIN_CALL}::test_mixed_labels_use_the_dominant_class'),
    M('pre-refresh-inverted', PRE_PY,
      'and self._train_steps % self.refresh_interval == 0',
      'and self._train_steps % self.refresh_interval != 0',
      'refresh_interval rebuilds the table at the wrong steps',
      f'{TRAIN_CALL}::test_refresh_interval_rebuilds_from_the_head'),
    # --------------------------------------------------------------- loss
    M('loss-no-log1p', LOSS_PY,
      'margins = torch.log1p(self.scale * weights).float()',
      'margins = (self.scale * weights).float()',
      'margin s*w instead of log(1 + s*w)',
      f'{LOSS}::test_value_by_hand'),
    M('loss-rank-off-by-one', LOSS_PY,
      'self.alpha**ranks.double()', 'self.alpha**(ranks.double() - 1)',
      'weight alpha^(rank-1) instead of alpha^rank',
      f'{LOSS}::test_value_by_hand'),
    M('loss-margin-on-true-class', LOSS_PY,
      'torch.where(ranks > 0,', 'torch.where(ranks >= 0,',
      'every non-neighbour (and the label) gets weight alpha^0 = 1',
      f'{LOSS}::test_value_by_hand'),
    M('loss-margins-transposed', LOSS_PY,
      'score + margins[dominant]', 'score + margins[:, dominant].t()',
      'margin m_jc of the label column instead of m_cj of its row',
      f'{LOSS}::test_value_by_hand'),
    M('loss-soft-target-sum', LOSS_PY,
      'loss = lse * target.sum(1) - (target * score).sum(1)',
      'loss = lse - (target * score).sum(1)',
      'soft targets: logsumexp not weighted by the target mass',
      f'{LOSS}::test_soft_targets_with_class_weight_by_hand'),
    M('loss-soft-dominant-argmin', LOSS_PY,
      'dominant = target.argmax(1)', 'dominant = target.argmin(1)',
      'soft targets: margins of the weakest class',
      f'{LOSS}::test_soft_targets'),
    M('loss-sum-not-mean', LOSS_PY,
      '                loss = loss.mean()',
      '                loss = loss.sum()',
      "reduction='mean' sums",
      f'{LOSS}::test_weight_avg_factor_reduction',
      f'{LOSS}::test_scale_zero_is_cross_entropy_and_loss_exceeds_ce'),
    M('loss-avg-factor-ignored', LOSS_PY,
      'loss = loss.sum() / avg_factor', 'loss = loss.mean()',
      'avg_factor ignored',
      f'{LOSS}::test_weight_avg_factor_reduction'),
    M('loss-sample-weight-skipped', LOSS_PY,
      'loss = loss * weight.float().view(-1)', 'loss = loss',
      'per-sample weights ignored (mmdet passes them)',
      f'{LOSS}::test_weight_avg_factor_reduction'),
    M('loss-smoothing-denominator', LOSS_PY,
      'self.label_smooth_val / score.size(1))',
      'self.label_smooth_val / (score.size(1) - 1))',
      'label smoothing spreads v / (C - 1) instead of v / C',
      f'{LOSS}::test_label_smoothing_by_hand'),
    M('loss-background-pad-side', LOSS_PY,
      'margins = nn.functional.pad(margins, (0, 1, 0, 1))',
      'margins = nn.functional.pad(margins, (1, 0, 1, 0))',
      'detector scores: background column padded first, not last',
      f'{LOSS}::test_detector_scores_with_background_column'),
    M('loss-weight-dropped', LOSS_PY,
      'return self.loss_weight * loss', 'return loss',
      'loss_weight ignored',
      f'{LOSS}::test_loss_weight_scales_the_loss'),
    M('loss-stale-margins', LOSS_PY,
      'table_obj is table and version == table.version',
      'table_obj is table',
      'margins cached across a rebuilt table',
      f'{LOSS}::test_loss_follows_a_rebuilt_table'),
    M('hook-chunk-rois-not-shifted', HOOK_PY,
      'chunk_rois[:, 0] -= start', 'chunk_rois[:, 0] -= 0',
      'a chunk\'s RoIs keep their batch index (wrong image)',
      f'{HOOK}::test_chunked_attack_equals_the_whole_batch_attack'),
    M('hook-whole-batch-attack', HOOK_PY,
      'chunk = self.attack_chunk if eval_mode and self.attack_chunk else num',
      'chunk = num',
      'the detection attack runs on the whole batch (peak memory 1.3x)',
      f'{HOOK}::test_hooked_step_peak_memory_stays_within_5_percent_of_plain'),
    M('fsdp2-not-refused', 'mmgfn/utils/fsdp.py',
      "return 'fully_shard' if isinstance(module, FSDPModule) else None",
      'return None',
      'a fully_shard model is attacked instead of refused',
      'tests/test_models/test_training_setups.py::'
      'test_fully_shard_is_refused_with_a_message'),
    # -------------------------------------------------------------- table
    M('table-duplicates-accepted', TABLE_PY,
      'dup[:, 1:] = ordered[:, 1:] == ordered[:, :-1]',
      'dup[:, 1:] = ordered[:, 1:] != ordered[:, 1:]',
      'a class twice in one row is accepted (biased draws)',
      f'{TABLE}::test_duplicate_neighbours_are_refused_from_a_file'),
    M('table-checkpoint-unchecked', TABLE_PY,
      "if present and bool(state_dict[prefix + 'built']):",
      'if False:',
      'a checkpoint\'s table is loaded without validation',
      f'{TABLE}::test_a_checkpoint_table_is_validated'),
    M('table-built-unchecked', TABLE_PY,
      "self._check(neighbors, 'built')", 'pass',
      'a built table skips the validation',
      f'{TABLE}::test_a_built_table_goes_through_the_same_validation'),
    M('table-dot-is-cosine', TABLE_PY,
      "if similarity == 'dot':", "if similarity == 'dot-product':",
      "similarity='dot' ranks by the cosine",
      f'{TABLE}::test_dot_similarity_ranks_by_the_dot_product'),
    M('table-old-checkpoint-is-dot', TABLE_PY,
      "state_dict[prefix + 'similarity_id'] = torch.tensor(0)",
      "state_dict[prefix + 'similarity_id'] = torch.tensor(1)",
      'a checkpoint without a recorded similarity is read as dot',
      f'{TABLE}::test_similarity_is_recorded_in_file_and_checkpoint'),
    M('table-self-neighbour', TABLE_PY,
      "    sim.fill_diagonal_(float('-inf'))\n    # stable sort",
      "    sim.fill_diagonal_(float('inf'))\n    # stable sort",
      'a class becomes its own rank-1 neighbour',
      f'{TABLE}::test_neighbors_by_hand'),
    M('table-ascending', TABLE_PY,
      'order = torch.sort(sim, dim=1, descending=True, stable=True).indices\n'
      '    return order[:, :topk].cpu()',
      'order = torch.sort(sim, dim=1, descending=False, stable=True).indices\n'
      '    return order[:, :topk].cpu()',
      'neighbours are the least similar classes',
      f'{TABLE}::test_neighbors_by_hand'),
    M('table-cosine-wrong-axis', TABLE_PY,
      'emb = F.normalize(embeddings.detach().float(), dim=1)',
      'emb = F.normalize(embeddings.detach().float(), dim=0)',
      'embeddings normalised per dimension, not per class',
      f'{TABLE}::test_similarity_is_the_cosine_of_class_rows'),
    M('table-sample-rank-off-by-one', TABLE_PY,
      'return neighbors, rank + 1', 'return neighbors, rank',
      'sampled ranks 0..k-1 instead of 1..k',
      f'{TABLE}::test_table_sample_and_rank_matrix'),
    M('table-sample-skips-last', TABLE_PY,
      '0, self.topk, labels.shape,', '0, self.topk - 1, labels.shape,',
      'the rank-k neighbour is never drawn',
      f'{TABLE}::test_table_sample_and_rank_matrix'),
    M('table-rank-matrix-from-zero', TABLE_PY,
      'torch.arange(1, topk + 1, device=ranks.device)',
      'torch.arange(0, topk, device=ranks.device)',
      'rank matrix starts at 0 (rank-1 neighbour looks like no neighbour)',
      f'{TABLE}::test_table_sample_and_rank_matrix'),
    M('table-keeps-last-columns', TABLE_PY,
      'neighbors = neighbors[:, :self.topk]',
      'neighbors = neighbors[:, -self.topk:]',
      'loading k\' > k neighbours keeps the farthest k',
      f'{TABLE}::test_loading_more_neighbours_keeps_the_closest'),
    M('table-range-check-off-by-one', TABLE_PY,
      '(neighbors >= num_classes)', '(neighbors > num_classes)',
      'neighbour index C accepted',
      f'{TABLE}::test_neighbour_index_out_of_range_or_self_is_refused'),
    M('table-ranks-self-last', TABLE_PY,
      "    sim.fill_diagonal_(float('inf'))\n    order",
      "    sim.fill_diagonal_(float('-inf'))\n    order",
      'similarity ranks put the class itself last',
      f'{TABLE}::test_neighbors_by_hand'),
    M('table-head-drops-first-row', TABLE_PY,
      'return fc.weight[:num_classes].detach()',
      'return fc.weight[1:].detach()',
      'detector head: first class row dropped instead of background',
      f'{PREC}::test_detector_head_rows_drop_the_background'),
    M('table-class-means-unnormalised', TABLE_PY,
      'return sums / counts[:, None].float()', 'return sums',
      'class embeddings are sums, not means',
      f'{TABLE}::test_class_embeddings_are_class_means'),
    # --------------------------------------------------------------- hook
    M('hook-not-attached', HOOK_PY,
      'self._handle = model.data_preprocessor.register_forward_hook(\n'
      '            self._perturb_output, with_kwargs=True)',
      'self._handle = None',
      'before_train never attaches the perturbation',
      f'{PREC}::test_before_train_perturbs_training_batches_only'),
    M('hook-target-last-class', HOOK_PY,
      'targets = torch.full_like(labels, self.num_classes)',
      'targets = torch.full_like(labels, self.num_classes - 1)',
      'RoIs pushed toward the last foreground class, not background',
      f'{PREC}::test_saturated_background_rois_step_with_ce_sign'),
    M('hook-away-from-background', HOOK_PY,
      'upper, self.num_steps, toward=True,',
      'upper, self.num_steps, toward=False,',
      'RoIs pushed away from background',
      f'{PREC}::test_saturated_background_rois_step_with_ce_sign'),
    M('hook-ratio-inverted', HOOK_PY,
      '< \\\n            self.neighbor_ratio',
      '> \\\n            self.neighbor_ratio',
      'neighbour_ratio picks background where it should pick neighbours',
      f'{PREC}::test_hook_targets_follow_neighbor_ratio'),
    M('hook-padding-perturbed', HOOK_PY,
      '            step = step * mask', '            step = step',
      'padding of detection batches perturbed',
      f'{HOOK}::test_padding_of_non_square_images_stays_unperturbed'),
    M('hook-val-perturbed', HOOK_PY,
      "training = kwargs.get('training', args[1] if len(args) > 1 "
      'else False)',
      'training = True',
      'validation batches perturbed too',
      f'{PREC}::test_before_train_perturbs_training_batches_only'),
    M('hook-table-not-saved', HOOK_PY,
      "checkpoint['neighbor_table'] = dict(", "dict(",
      'neighbour table left out of checkpoints',
      f'{PREC}::test_hook_table_travels_with_checkpoints'),
    M('insert-before-loading', INSERT_PY,
      'pipeline.insert(i + 1, step)', 'pipeline.insert(i, step)',
      'ImageCorruption inserted before LoadImageFromFile',
      f'{INSERTION}'),
    M('insert-severity-reversed', INSERT_PY,
      'corruption=corruption,\n                        severity=severity)',
      'corruption=corruption,\n                        severity=6 - severity)',
      'inserted corruption at severity 6 - s',
      f'{INSERTION}'),
    M('tool-severity-reversed', TOOL_PY,
      "                        loader['dataset'], corruption, severity,\n",
      "                        loader['dataset'], corruption, 6 - severity,\n",
      '--suite corrupt evaluates cell s at severity 6 - s',
      f'{TOOL_TESTS}::'
      'test_corrupt_cell_is_the_image_corrupted_at_its_severity'),
    M('corrupt-severity-zero-corrupts', CORRUPT_PY,
      'if self.severity == 0:\n            return results',
      'if self.severity == -1:\n            return results',
      'severity 0 (the clean reference) corrupted',
      f'{TRANSFORMS}::test_severity_zero_is_clean'),
    M('corrupt-no-bgr-swap', CORRUPT_PY,
      "self._corrupt(img[..., ::-1], path)[..., ::-1].copy()",
      "self._corrupt(img, path).copy()",
      'BGR image corrupted as if it were RGB',
      f'{INSERTION}'),
    M('corrupt-seed-ignored', CORRUPT_PY,
      'seed = (zlib.crc32(key) + self.seed) % 2**32',
      'seed = zlib.crc32(key) % 2**32',
      'the transform\'s seed has no effect',
      f'{TRANSFORMS}::test_seed_selects_the_draw'),
    M('corrupt-global-rng-leaked', CORRUPT_PY,
      '                np.random.set_state(state)', '                pass',
      'numpy\'s global random state not restored',
      f'{TRANSFORMS}::test_seeded_corruption_is_reproducible_and_keeps_'
      'global_rng'),
    # ------------------------------------------------------------ metrics
    M('metric-ce-mean-not-sum', METRICS_PY,
      'ce[c] = sum(by_corruption[c]) / den',
      'ce[c] = np.mean(by_corruption[c]) / den',
      'CE divides a mean error by a sum of baseline errors',
      f'{METRICS}::test_mce_normalised_by_alexnet_mean_errors'),
    M('metric-relative-adds-clean', METRICS_PY,
      'num = sum(errors[(c, s)] - clean_error for s in sev)',
      'num = sum(errors[(c, s)] + clean_error for s in sev)',
      'relative CE adds the clean error',
      f'{METRICS}::test_relative_mce_subtracts_clean_error_on_both_sides'),
    M('metric-relative-baseline-clean-kept', METRICS_PY,
      'den = sum(base[(c, s)] - base_clean for s in sev)',
      'den = sum(base[(c, s)] for s in sev)',
      'relative CE does not subtract the baseline\'s clean error',
      f'{METRICS}::test_relative_mce_subtracts_clean_error_on_both_sides'),
    M('metric-mce-median', METRICS_PY,
      'mCE=None if ce is None else float(np.mean(list(ce.values())))',
      'mCE=None if ce is None else float(np.median(list(ce.values())))',
      'mCE is the median CE',
      f'{METRICS}::test_mce_normalised_by_alexnet_mean_errors',
      f'{METRICS}::test_ce_relative_to_a_baseline_model'),
    M('metric-rpc-inverted', METRICS_PY,
      'rPC=mpc / clean_map if', 'rPC=clean_map / mpc if',
      'rPC = P / mPC',
      f'{METRICS}::test_detection_p_mpc_rpc_and_severity_zero_in_any_order'),
    M('metric-mpc-max', METRICS_PY,
      'c: float(np.mean([maps[(c, s)] for s in severities',
      'c: float(np.max([maps[(c, s)] for s in severities',
      'mPC takes the best severity per corruption',
      f'{METRICS}::test_detection_p_mpc_rpc_and_severity_zero_in_any_order'),
    M('metric-noise-pairs-skip-first', METRICS_PY,
      'pairs = [(0, t) for t in range(1, num_frames)]',
      'pairs = [(0, t) for t in range(2, num_frames)]',
      'noise sequences skip the pair (0, 1)',
      f'{METRICS}::test_compared_frame_pairs_follow_the_reference_loops'),
    M('metric-step-subsequences-start-0', METRICS_PY,
      'frames = list(range(i, num_frames, step))',
      'frames = list(range(0, num_frames, step))',
      'every difficulty sub-sequence starts at frame 0',
      f'{METRICS}::test_compared_frame_pairs_follow_the_reference_loops'),
    M('metric-flip-is-equal', METRICS_PY,
      'np.mean([preds[a] != preds[b] for a, b in pairs]))',
      'np.mean([preds[a] == preds[b] for a, b in pairs]))',
      'flip probability counts unchanged predictions',
      f'{METRICS}::test_flip_probability_by_hand'),
    M('metric-t5d-cap-k', METRICS_PY,
      'abs(min(rank_in_b.get(cls, k + 1), k + 1) - i)',
      'abs(min(rank_in_b.get(cls, k + 1), k) - i)',
      'top-5 distance caps a lost class at rank k, not k + 1',
      f'{METRICS}::test_top5_distance_by_hand'),
    M('metric-t5d-rank-from-zero', METRICS_PY,
      'for i, cls in enumerate(top_a, start=1))',
      'for i, cls in enumerate(top_a, start=0))',
      'top-5 distance counts ranks from 0 in frame a',
      f'{METRICS}::test_top5_distance_by_hand'),
    M('metric-topk-ascending', METRICS_PY,
      "order = np.argsort(-scores, axis=-1, kind='stable')",
      "order = np.argsort(scores, axis=-1, kind='stable')",
      'top-k classes are the lowest scores',
      f'{METRICS}::test_topk_classes_breaks_ties_towards_the_lower_index'),
    M('metric-noise-suffix', BENCHMARKS_PY,
      "return 'noise' in name", "return name.endswith('noise')",
      'difficulty folders gaussian_noise_2/_3 compared frame to frame',
      f'{METRICS}::test_noise_difficulty_folders_compare_with_frame_0'),
    M('metric-ratio-inverted', METRICS_PY,
      'ratios.append(values[p] / baseline[p])',
      'ratios.append(baseline[p] / values[p])',
      'mFR = baseline FP / FP',
      f'{METRICS}::test_mfr_needs_baseline_rates'),
    # --------------------------------------------- sweep loop, generator
    M('sweep-every-rank-writes', LOOP_PY,
      "        if is_main_process():\n"
      "            with open(cells_file, 'a', encoding='utf-8') as f:",
      "        if True:\n"
      "            with open(cells_file, 'a', encoding='utf-8') as f:",
      'every rank of a distributed sweep appends its cells',
      f'{LOOP_TESTS}::test_two_gloo_processes_give_the_numbers_of_one'),
    M('sweep-keeps-baseline-weights', LOOP_PY,
      "                    getattr(runner.model, 'module',\n"
      "                            runner.model).load_state_dict(kept)",
      '                    pass',
      'a built model leaves the sweep with the baseline\'s weights',
      f'{LOOP_TESTS}::test_python_call_on_a_built_model'),
    M('generation-settings-unchecked', GENERATION_PY,
      '        if differ:\n            raise ConfigError(',
      '        if False:\n            raise ConfigError(',
      'a resumed generation with another seed or format mixes files',
      f'{GENERATION}::test_resume_with_other_settings_is_refused'),
    M('class-names-unchecked', EMBEDDINGS_PY,
      '        if a == b:\n            continue',
      '        if True:\n            continue',
      'embeddings rows of another class order read as the dataset\'s',
      f'{ANALYSIS}::test_heatmap_refuses_class_count_mismatch'),
    # ----------------------------------------------- paired statistics
    M('mcnemar-one-sided', PAIRED_PY,
      'return min(1.0, 2.0 * _binom_cdf(min(b, c), b + c, 0.5))',
      'return min(1.0, _binom_cdf(min(b, c), b + c, 0.5))',
      'McNemar p is one-sided (not doubled)',
      f'{PAIRED}::test_mcnemar_table_and_exact_p_by_hand'),
    M('mcnemar-max-tail', PAIRED_PY,
      '_binom_cdf(min(b, c), b + c, 0.5)',
      '_binom_cdf(max(b, c), b + c, 0.5)',
      'McNemar tail taken at the larger discordant count',
      f'{PAIRED}::test_mcnemar_table_and_exact_p_by_hand'),
    M('table-b-c-swapped', PAIRED_PY,
      'b=int(np.sum(~a & b)),', 'b=int(np.sum(a & ~b)),',
      'McNemar table counts A\'s errors as B\'s',
      f'{PAIRED}::test_mcnemar_table_and_exact_p_by_hand'),
    M('paired-interval-centre', PAIRED_PY,
      'low, high = _clopper_pearson(c, d, level)',
      'low, high = _clopper_pearson(b, d, level)',
      'interval of B - A instead of A - B',
      f'{PAIRED}::test_paired_interval_is_clopper_pearson_and_agrees_with_the_test'),
    M('paired-interval-scale', PAIRED_PY,
      'return d / n * (2.0 * low - 1.0), d / n * (2.0 * high - 1.0)',
      'return 2.0 * low - 1.0, 2.0 * high - 1.0',
      'difference interval not scaled by the discordant share',
      f'{PAIRED}::test_paired_interval_is_clopper_pearson_and_agrees_with_the_test'),
    M('holm-not-monotone', PAIRED_PY,
      'running = max(running, min(1.0, (m - rank) * p[i]))',
      'running = min(1.0, (m - rank) * p[i])',
      'Holm adjusted p-values not made monotone',
      f'{PAIRED}::test_holm_by_hand'),
    M('holm-bonferroni-rank', PAIRED_PY,
      'min(1.0, (m - rank) * p[i])', 'min(1.0, (m - rank + 1) * p[i])',
      'Holm multiplier off by one',
      f'{PAIRED}::test_holm_by_hand'),
    M('bootstrap-cells-resampled', PAIRED_PY,
      'counts = np.bincount(rng.integers(0, n, size=n), minlength=n)\n'
      '        values[r] = statistic(*[w @ counts / n for w in wrong])',
      'counts = np.bincount(rng.integers(0, n, size=n), minlength=n)\n'
      '        values[r] = statistic(*[w[:, rng.permutation(n)] @ counts / n'
      ' for w in wrong])',
      'each model resampled on its own images (not paired)',
      f'{PAIRED}::test_bootstrap_matches_a_direct_reimplementation'),
    M('ratio-clean-not-subtracted', PAIRED_PY,
      'num, den = num - clean[0], den - clean[1]',
      'num, den = num, den - clean[1]',
      'relative mCE subtracts the clean error of the baseline only',
      f'{PAIRED}::test_relative_ratio_subtracts_clean_errors'),
    M('outcomes-key-unordered', OUTCOMES_PY,
      '    for identity in identities:',
      '    for identity in sorted(identities):',
      'the image-list key ignores the image order',
      f'{PAIRED}::test_outcomes_round_trip_and_count_check'),
    M('outcomes-rank-order', LOOP_PY,
      'ordered = [rows[i] for i in sorted(rows)]',
      'ordered = list(rows.values())',
      'a distributed sweep keeps the outcomes in rank order',
      f'{LOOP_TESTS}::test_two_gloo_processes_give_the_numbers_of_one'),
    # ------------------------------------------------- torch corruptions
    M('tc-gaussian-noise-severity-2', TORCH_C + 'noise.py',
      'GAUSSIAN_NOISE = (.08, .12, 0.18', 'GAUSSIAN_NOISE = (.08, .13, 0.18',
      'gaussian noise of severity 2 with std .13 instead of .12',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[gaussian_noise]'),
    M('tc-shot-noise-severity-4', TORCH_C + 'noise.py',
      'SHOT_NOISE = (60, 25, 12, 5, 3)', 'SHOT_NOISE = (60, 25, 12, 6, 3)',
      'shot noise of severity 4 with 6 photons instead of 5',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[shot_noise]'),
    M('tc-defocus-radius-severity-2', TORCH_C + 'blur.py',
      'DEFOCUS_BLUR = ((3, 0.1), (4, 0.5)',
      'DEFOCUS_BLUR = ((3, 0.1), (5, 0.5)',
      'defocus disk of severity 2 with radius 5 instead of 4',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[defocus_blur]'),
    M('tc-zoom-step-severity-4', TORCH_C + 'blur.py',
      '(1.21, 0.02), (1.26, 0.02),', '(1.21, 0.02), (1.26, 0.03),',
      'zoom blur of severity 4 with zoom steps of .03 instead of .02',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[zoom_blur]'),
    M('tc-motion-shift-direction', TORCH_C + 'ops.py',
      'view = padded[..., py - dy:py - dy + h, px - dx:px - dx + w]',
      'view = padded[..., py - dy:py - dy + h, px + dx:px + dx + w]',
      'motion blur streaks mirrored horizontally',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[motion_blur]'),
    M('tc-fog-decay-severity-3', TORCH_C + 'weather.py',
      'FOG = ((1.5, 2), (2., 2), (2.5, 1.7)',
      'FOG = ((1.5, 2), (2., 2), (2.5, 1.6)',
      'fog of severity 3 with plasma decay 1.6 instead of 1.7',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions[fog]'),
    M('tc-snow-second-layer-unrotated', TORCH_C + 'weather.py',
      'torch.flip(layer, (-2, -1))', 'torch.flip(layer, (-1,))',
      'the second snow layer flipped instead of rotated by 180 degrees',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions[snow]'),
    M('tc-frost-weight-severity-2', TORCH_C + 'weather.py',
      'FROST = ((1, 0.4), (0.8, 0.6)', 'FROST = ((1, 0.4), (0.8, 0.65)',
      'frost of severity 2 blended at .65 instead of .6',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions[frost]'),
    M('tc-contrast-severity-2', TORCH_C + 'digital.py',
      'CONTRAST = (0.4, .3,', 'CONTRAST = (0.4, .31,',
      'contrast of severity 2 keeps .31 instead of .3',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[contrast]'),
    M('tc-pixelate-severity-5', TORCH_C + 'digital.py',
      'PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)',
      'PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.2)',
      'pixelate of severity 5 at .2 instead of .25',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[pixelate]'),
    M('tc-elastic-sigma-swapped', TORCH_C + 'digital.py',
      'sigma = (h * 0.01, w * 0.01)', 'sigma = (w * 0.01, h * 0.01)',
      'elastic field smoothed with the axes\' sigmas swapped',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[elastic_transform]'),
    M('tc-saturate-severity-4', TORCH_C + 'digital.py',
      '(5, 0.1), (20, 0.2))', '(5, 0.15), (20, 0.2))',
      'saturate of severity 4 offset by .15 instead of .1',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[saturate]'),
    M('tc-numpy-uniform-reversed', TORCH_C + 'draws.py',
      'return float(np.random.uniform(low, high))',
      'return float(np.random.uniform(high, low))',
      'numpy-mode scalar draws differ from imagecorruptions\' ones',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[motion_blur]'),
    M('tc-gaussian-taps-in-sequence', TORCH_C + 'ops.py',
      '            out.add_(pair.mul_(float(weights[k])))',
      '            out.add_(padded.narrow(-2, k, n) * float(weights[k]))\n'
      '            out.add_(padded.narrow(-2, 2 * radius - k, n) *'
      ' float(weights[k]))',
      'the Gaussian taps summed one by one, not in scipy\'s pairs',
      f'{BACKEND}::test_gaussian_filter_is_scipy_bit_for_bit[nearest]'),
    M('tc-fft-wraps-around', TORCH_C + 'ops.py',
      'size = (fft_size(h + 2 * ry), fft_size(w + 2 * rx, even=True))',
      'size = (fft_size(h + ry), fft_size(w + rx, even=True))',
      'the FFT of defocus blur too short: the far border wraps around',
      f'{BACKEND}::test_every_corruption_matches_imagecorruptions'
      '[defocus_blur]'),
    M('tc-host-pool-inherited-by-fork', TORCH_C + 'ops.py',
      'os.register_at_fork(after_in_child=_host_pool.cache_clear)',
      'pass',
      'a forked worker reuses the parent\'s thread pool, which has no '
      'threads', f'{BACKEND}::test_host_map_works_in_a_forked_child'),
    M('tc-glass-one-seed-per-batch', TORCH_C + 'blur.py',
      'shuffle_pixels(host[i], c[1], c[2], seeds[i])',
      'shuffle_pixels(host[i], c[1], c[2], seeds[0])',
      'every image of a glass-blur batch shuffled with the first seed',
      f'{BACKEND}::test_glass_shuffle_is_the_forks_kernel_in_threads'),
    M('tc-pixelate-torch-rounding', TORCH_C + 'ops.py',
      '    acc = total * weight.to(torch.int32)[:, None] + (\n'
      '        1 << (PIL_PRECISION_BITS - 1))',
      '    acc = total * weight.to(torch.int32)[:, None] + (\n'
      '        1 << (PIL_PRECISION_BITS - 2))',
      'the torch twin of Pillow\'s BOX resize rounds down a quarter',
      f'{BACKEND}::test_pixelate_and_jpeg_are_exact'),
    M('tc-jpeg-decoded-bgr', TORCH_C + 'digital.py',
      'flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION',
      'flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION',
      'JPEG decoded with red and blue swapped',
      f'{BACKEND}::test_pixelate_and_jpeg_are_exact'),
    M('tc-impulse-torch-salt-share', TORCH_C + 'draws.py',
      '        salt = u < amount / 2', '        salt = u < amount / 3',
      'torch-mode impulse noise turns a third of its flips to salt',
      f'{BACKEND}::test_torch_draws_have_the_noise_statistics'),
    M('tc-poisson-blocks-one-seed', TORCH_C + 'draws.py',
      '            gen = torch.Generator().manual_seed(seeds[i])',
      '            gen = torch.Generator().manual_seed(seeds[0])',
      'every block of the CPU Poisson draws repeats the first one\'s numbers',
      f'{BACKEND}::test_torch_draws_do_not_depend_on_the_thread_count'),
    M('tc-transform-backend-ignored', CORRUPT_PY,
      "        if self.backend == 'imagecorruptions':",
      '        if True:',
      'ImageCorruption(backend=\'torch\') runs imagecorruptions',
      f'{BACKEND}::test_transform_torch_backend_is_what_runs'),
    M('generation-backend-not-passed', GENERATION_PY,
      "corruption, severity, w['seed'], backend=w['backend'],",
      "corruption, severity, w['seed'], backend='imagecorruptions',",
      'the generator\'s --backend torch runs imagecorruptions',
      f'{GENERATION}::test_tool_with_the_torch_backend'),
    M('sweep-backends-mixed', 'mmgfn/evaluation/robustness_sweep/cells.py',
      '        if backend is not None and stored != backend:',
      '        if False:',
      'a resumed sweep mixes cells of both corruption backends',
      f'{TOOL_TESTS}::'
      'test_corrupt_suite_with_the_torch_backend_never_mixes_backends'),
    M('generation-backend-not-recorded', GENERATION_PY,
      'seed_path_root=seed_path_root or src_dir, backend=backend)',
      'seed_path_root=seed_path_root or src_dir)',
      'a resumed generation with the other backend mixes files',
      f'{GENERATION}::test_resume_with_other_settings_is_refused'),
    # the tools' end of a distributed run
    M('dist-group-freed-at-teardown', 'mmgfn/apis/cli.py',
      '        gc.collect()\n', '        pass\n',
      'the DDP wrapper (and the gloo group it holds) is left to the '
      'interpreter\'s teardown',
      'tests/test_tools/test_train_test_tools.py::'
      'test_distributed_run_frees_its_model_before_the_group'),
    # ------------------- each component's value checks, in one place
    M('pre-topk-key-unnamed', PRE_PY,
      "check_topk(args['topk'], num_classes, key=key, owner=owner)",
      "check_topk(args['topk'], num_classes, owner=owner)",
      "the preprocessor's topk error does not name its config key",
      f'{CHECKS}::'
      'test_preprocessor_topk_named_by_constructor_and_preflight'),
    M('pre-neighbor-file-unchecked', PRE_PY,
      '        if isinstance(num_classes, int):\n'
      '            check_neighbor_file(',
      '        if False:\n'
      '            check_neighbor_file(',
      'a neighbour file for another class count fails unnamed',
      f'{CHECKS}::test_preprocessor_neighbor_file_named'),
    M('table-topk-equal-to-classes', TABLE_PY,
      'not 1 <= topk < num_classes:',
      'not 1 <= topk <= num_classes:',
      'topk == num_classes accepted (a class has only C - 1 others)',
      f'{CHECKS}::'
      'test_preprocessor_topk_named_by_constructor_and_preflight'),
    M('loss-topk-range-unchecked', LOSS_PY,
      'check_topk(topk, n, limit=None if path else table_topk,',
      'check_topk(topk, n + topk, limit=None if path else table_topk,',
      "the loss's topk is not checked against the class count",
      f'{CHECKS}::test_loss_topk_named_against_model_and_shared_table',
      f'{ERRORS}::test_loss_topk_not_below_num_classes'),
    M('loss-table-limit-unchecked', LOSS_PY,
      'limit=None if path else table_topk,',
      'limit=None,',
      "the loss's topk may exceed the shared table's",
      f'{CHECKS}::test_loss_topk_named_against_model_and_shared_table'),
    M('preflight-losses-unchecked', 'mmgfn/apis/preflight.py',
      '    for key, loss in losses:\n',
      '    for key, loss in losses[:0]:\n',
      "preflight skips the losses' own checks",
      f'{CHECKS}::test_loss_topk_named_against_model_and_shared_table'),
    M('hook-class-count-unchecked', HOOK_PY,
      'if dataset_classes is None or len(dataset_classes) == num_classes:',
      'if True:',
      "the detector's class count is not checked against the dataset's",
      f'{CHECKS}::test_hook_topk_and_class_count_in_preflight',
      f'{ERRORS}::test_hook_class_count_mismatch'),
    M('hook-bind-skips-class-check', HOOK_PY,
      'self.check_classes(num_classes, dataset_classes,',
      'self.check_classes(num_classes, None,',
      'bind does not check the class counts',
      f'{HOOK}::test_refuses_detector_without_roi_head_and_class_mismatch'),
    M('hook-topk-unchecked', HOOK_PY,
      'if isinstance(num_classes, int) and uses_table:',
      'if False:',
      "the hook's topk is not checked against the detector's classes",
      f'{CHECKS}::test_hook_topk_and_class_count_in_preflight'),
    # ------------------------------- the demo's report and its statistics
    M('demo-wilson-bounds-swapped',
      'mmgfn/evaluation/functional/intervals.py',
      '    return max(0.0, min(p, centre - half)), '
      'min(1.0, max(p, centre + half))',
      '    return min(1.0, max(p, centre + half)), '
      'max(0.0, min(p, centre - half))',
      'the Wilson interval of an error is returned as (high, low)',
      'tests/test_apis/test_demo_report.py::'
      'test_wilson_interval_matches_published_values'),
    M('demo-newcombe-bounds-crossed',
      'mmgfn/evaluation/functional/intervals.py',
      '    return (d - math.sqrt((pa - la)**2 + (ub - pb)**2),',
      '    return (d - math.sqrt((ua - pa)**2 + (pb - lb)**2),',
      "Newcombe's lower bound of a difference takes the upper bound's terms",
      'tests/test_apis/test_demo_report.py::test_wilson_difference_and_mean_by_hand'),
    M('demo-errs-less-lower-bound', 'mmgfn/apis/demo_report.py',
      'if per_cell[c][1] < 0]', 'if per_cell[c][0] < 0]',
      'GFN "errs less" on a cell whose difference interval holds 0',
      'tests/test_apis/test_demo_report.py::'
      'test_chance_level_cells_on_a_constructed_table'),
    M('demo-seed-sd-population', 'mmgfn/apis/demo_report.py',
      'sd=float(arr.std(ddof=1))', 'sd=float(arr.std(ddof=0))',
      'the spread between seeds reports the population sd (ddof 0)',
      'tests/test_apis/test_demo_report.py::test_seed_spread_by_hand'),
    M('demo-spread-dropped-with-two-seeds', 'mmgfn/apis/demo_report.py',
      'if len(evals) > 1 else None', 'if len(evals) > 2 else None',
      'a run with two training seeds reports no spread between them',
      'tests/test_apis/test_demo_report.py::'
      'test_write_demo_report_on_constructed_sweeps'),
    M('demo-class-count-any-entry', 'mmgfn/apis/demo_report.py',
      'if osp.isdir(osp.join(val, d))])', 'if d])',
      'a file beside the class folders counts as a class (chance level)',
      'tests/test_apis/test_demo_report.py::'
      'test_write_demo_report_on_constructed_sweeps'),
    M('demo-comparison-without-baseline', 'mmgfn/apis/demo_report.py',
      "sweeps['gfn'], sweeps[other], baseline=sweeps['baseline'],",
      "sweeps['gfn'], sweeps[other], baseline=None,",
      'the paired comparisons leave out the error relative to the baseline',
      'tests/test_apis/test_demo_report.py::'
      'test_write_demo_report_on_constructed_sweeps'),
    M('tool-runner-failure-ignored', 'mmgfn/apis/tool_runner.py',
      '    if code:\n        if log:', '    if False:\n        if log:',
      'the demo goes on after one of its tools failed',
      'tests/test_apis/test_tool_runner.py::'
      'test_a_failing_tool_stops_the_job_with_its_log'),
    M('tool-runner-children-left', 'mmgfn/apis/tool_runner.py',
      '            for child in multiprocessing.active_children():',
      '            for child in []:',
      "a tool's child processes (dataloader workers) outlive it",
      'tests/test_apis/test_tool_runner.py::'
      'test_a_tool_in_this_process_logs_and_leaves_nothing'),
    M('digits-size-unchecked',
      'tools/dataset_converters/digits_to_imagefolder.py',
      '    if args.size < MIN_DIGIT_SIZE:', '    if False:',
      'the digits tool fails with a traceback for --size 31',
      'tests/test_datasets/test_dataset_converters.py::'
      'test_digits_below_32_pixels_are_refused'),
    # ------------------------------------- the sweep's setup, built once
    M('sweep-setup-built-twice', SETUP_PY,
      '        if prepared is not None and prepared[0] == key:',
      '        if False:',
      'the loop builds the sweep setup again (checkpoints read twice)',
      f'{SETUP_TESTS}::'
      'test_a_sweep_reads_each_checkpoint_once_and_calls_test_hooks_once'),
    M('sweep-runner-reads-load-from', LOOP_PY,
      '        if self._loads_weights:\n            runner._load_from = None',
      '        if False:\n            runner._load_from = None',
      'the Runner reads load_from again after the sweep setup did',
      f'{SETUP_TESTS}::'
      'test_a_sweep_reads_each_checkpoint_once_and_calls_test_hooks_once'),
    M('sweep-load-from-not-loaded', LOOP_PY,
      '            self._load(setup.checkpoint)\n'
      "            runner.logger.info(f'Load checkpoint from {checkpoint}')",
      "            runner.logger.info(f'Load checkpoint from {checkpoint}')",
      'a config-driven sweep evaluates the model without its load_from',
      f'{SETUP_TESTS}::'
      'test_a_sweep_reads_each_checkpoint_once_and_calls_test_hooks_once'),
    M('sweep-before-test-per-cell', LOOP_PY,
      '            metrics = self._run_epoch(loop)',
      '            metrics = loop.run()',
      'hooks\' before_test / after_test fire for every cell',
      f'{SETUP_TESTS}::'
      'test_a_sweep_reads_each_checkpoint_once_and_calls_test_hooks_once'),
    M('tool-settings-hand-kept', 'tools/test_robustness.py',
      'SETTINGS = tuple(f.name for f in dataclasses.fields(RobustnessSettings))',
      "SETTINGS = tuple(f.name for f in dataclasses.fields(\n"
      "    RobustnessSettings))[:-1]",
      'the CLI\'s settings miss the last field of RobustnessSettings',
      f'{SETUP_TESTS}::test_tool_settings_are_the_fields_of_the_settings'),
    M('gfn-keys-hand-kept', INFER_PY,
      '    if name not in inspect.signature(ClsDataPreprocessor).parameters)',
      "    if name not in inspect.signature(ClsDataPreprocessor).parameters\n"
      "    and name not in ('similarity', 'grad_scaler'))",
      'a plain preprocessor keeps GFN arguments ClsDataPreprocessor lacks',
      f'{SETUP_TESTS}::test_plain_preprocessor_drops_every_gfn_argument'),
    M('checkpoint-prefix-kept', 'mmgfn/utils/checkpoint.py',
      "    return key[len('module.'):] if key.startswith('module.') else key",
      '    return key',
      'a wrapped checkpoint\'s keys keep their module. prefix',
      f'{SETUP_TESTS}::'
      'test_checkpoint_strips_the_wrapper_prefix_once_and_checks_fit'),
    M('tool-flag-wording-skipped', 'mmgfn/apis/cli.py',
      'msg = flag_wording(_user_error(exc), flags)',
      'msg = _user_error(exc)',
      "a tool's error line names the library's arguments, not its flags",
      'tests/test_datasets/test_dataset_converters.py::'
      'test_library_problems_name_arguments_the_tools_their_flags'),
    M('converter-skipped-problems-unworded',
      'mmgfn/datasets/converters/common.py',
      '        if wording is not None:\n'
      '            problem = wording(problem)',
      '        if False:\n            problem = wording(problem)',
      "a converter tool's skipped problems suggest arguments, not flags",
      'tests/test_datasets/test_dataset_converters.py::'
      'test_library_problems_name_arguments_the_tools_their_flags'),
]

# --------------------------------------------------------------- running
def _python() -> str:
    return sys.executable


def repository_files(root: str) -> List[str]:
    """Tracked and untracked (not ignored) files, without the virtual
    environment and byte code."""
    out = subprocess.run(
        ['git', 'ls-files', '-z', '--cached', '--others',
         '--exclude-standard'],
        cwd=root, check=True, capture_output=True).stdout.decode()
    files = []
    for rel in sorted(set(filter(None, out.split('\0')))):
        if rel.startswith('.venv/') or '__pycache__' in rel or \
                rel.endswith('.pyc'):
            continue
        if osp.isfile(osp.join(root, rel)):  # deleted but still tracked
            files.append(rel)
    return files


def copy_repository(root: str, dest: str, files: Sequence[str]) -> None:
    for rel in files:
        target = osp.join(dest, rel)
        os.makedirs(osp.dirname(target), exist_ok=True)
        shutil.copy2(osp.join(root, rel), target)


def test_env(copy: str) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [copy] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    return env


def check_imports_copy(copy: str) -> str:
    """``mmgfn.__file__`` as the tests see it; must lie in ``copy``."""
    proc = subprocess.run(
        [_python(), '-c', 'import mmgfn; print(mmgfn.__file__)'],
        cwd=copy, env=test_env(copy), capture_output=True, text=True)
    where = proc.stdout.strip()
    real = osp.realpath(copy) + os.sep
    if proc.returncode or not osp.realpath(where).startswith(real):
        raise SystemExit(f'mutation_test: the copy in {copy} imports mmgfn '
                         f'from "{where}" instead of the copy '
                         f'{proc.stderr[-500:]}')
    return where


def check_mutants(mutants: Sequence[Mutant], root: str) -> List[str]:
    """Problems of the list against the files under ``root``."""
    problems, seen = [], set()
    for m in mutants:
        if m.id in seen:
            problems.append(f'{m.id}: duplicate id')
        seen.add(m.id)
        path = osp.join(root, m.path)
        if not osp.isfile(path):
            problems.append(f'{m.id}: {m.path} does not exist')
            continue
        with open(path, encoding='utf-8') as f:
            count = f.read().count(m.old)
        if count != 1:
            problems.append(f'{m.id}: its original text occurs {count} times '
                            f'in {m.path} (expected once): {m.old!r}')
        if m.old == m.new:
            problems.append(f'{m.id}: replacement equals the original')
        if not m.tests:
            problems.append(f'{m.id}: no tests')
    return problems


# A process that imports the heavy third-party stack once (torch, mmengine,
# cv2, pytest, ...; never mmgfn, mmcv, mmpretrain or mmdet, whose import
# mmgfn adjusts) and forks one child per test run, in which the copy's mmgfn
# is imported afresh. The child checks where mmgfn came from.
SERVER = r"""
import json, os, signal, sys, time
copy = os.path.realpath(sys.argv[1]) + os.sep
for name in ('torch', 'torchvision', 'numpy', 'cv2', 'scipy', 'pytest',
             'imagecorruptions', 'mmengine', 'mmengine.config',
             'mmengine.runner', 'mmengine.model'):
    try:
        __import__(name)
    except ImportError:
        pass
assert not any(m.split('.')[0] in ('mmgfn', 'mmcv', 'mmpretrain', 'mmdet')
               for m in sys.modules), 'imported too early'
import pytest
print('ready', flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.setsid()
        fd = os.open(request['log'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            rc = int(pytest.main(request['args']))
            where = getattr(sys.modules.get('mmgfn'), '__file__', None)
            if not where or not os.path.realpath(where).startswith(copy):
                print(f'mmgfn was imported from {where!r}, not from {copy}')
                rc = 99
        except BaseException as e:  # noqa
            print(f'the test run raised {e!r}')
            rc = 98
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    deadline = time.time() + request['timeout']
    while True:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        if time.time() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            status = 'timeout'
            break
        time.sleep(0.1)
    print(json.dumps(status), flush=True)
"""


class TestServer:
    """Runs pytest in ``copy`` through :data:`SERVER` (see above)."""

    def __init__(self, copy: str) -> None:
        self.proc = subprocess.Popen(
            [_python(), '-c', SERVER, copy], cwd=copy, env=test_env(copy),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != 'ready':
            raise SystemExit('mutation_test: the test server did not start')

    def run(self, args: Sequence[str], timeout: float, log: str):
        """The pytest exit code, or 'timeout'."""
        self.proc.stdin.write(json.dumps(
            dict(args=list(args), timeout=timeout, log=log)) + '\n')
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run_pytest(copy: str, tests: Sequence[str], timeout: float, log: str,
               server: Optional[TestServer] = None) -> Tuple[str, float]:
    """Run ``tests`` in ``copy``: ('passed' | 'failed' | 'error' |
    'timeout', seconds). Output goes to ``log``."""
    args = ['-x', '-q', '-p', 'no:cacheprovider', '--basetemp',
            osp.join(copy, '.pytest_tmp'), *tests]
    start = time.time()
    if server is not None:
        rc = server.run(args, timeout, log)
    else:
        with open(log, 'w') as out:
            proc = subprocess.Popen([_python(), '-m', 'pytest', *args],
                                    cwd=copy, env=test_env(copy),
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = 'timeout'
    if rc == 'timeout':
        return 'timeout', time.time() - start
    # 1: tests failed; 2: a module failed to import (collection error)
    status = {0: 'passed', 1: 'failed', 2: 'failed'}.get(rc, 'error')
    if rc == 2:
        with open(log) as f:
            if 'not found' in f.read():  # a node id that no longer exists
                status = 'error'
    return status, time.time() - start


def run_mutant(m: Mutant, copy: str, timeout: float, log_dir: str,
               server: Optional[TestServer] = None) -> Tuple[str, float]:
    path = osp.join(copy, m.path)
    with open(path, encoding='utf-8') as f:
        original = f.read()
    try:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(original.replace(m.old, m.new, 1))
        status, seconds = run_pytest(copy, m.tests, timeout,
                                     osp.join(log_dir, f'{m.id}.log'), server)
    finally:
        with open(path, 'w', encoding='utf-8') as f:
            f.write(original)
    result = {'failed': 'killed', 'timeout': 'timeout',
              'passed': 'survived'}.get(status, 'error')
    return result, seconds


def _tail(path: str, lines: int = 15) -> str:
    with open(path, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Plant curated one-line bugs in a copy of the '
        'repository and report which ones the tests catch.')
    parser.add_argument('--only', nargs='+', metavar='ID',
                        help='run only these mutants')
    parser.add_argument('--list', action='store_true',
                        help='print the mutants (checked against the code) '
                        'and exit')
    parser.add_argument('--jobs', type=int, default=1,
                        help='mutants run at once, each in its own copy '
                        '(default 1)')
    parser.add_argument('--timeout', type=float, default=300,
                        help='seconds per mutant (default 300)')
    parser.add_argument('--no-baseline', action='store_true',
                        help='skip the run of the tests on the unmutated '
                        'copy')
    parser.add_argument('--no-fork', action='store_true',
                        help='start a fresh python for every test run '
                        'instead of forking a process that has imported '
                        'torch once (slower, for platforms without fork)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the temporary copies and logs')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    problems = check_mutants(MUTANTS, ROOT)
    mutants = MUTANTS
    if args.only:
        known = {m.id for m in MUTANTS}
        unknown = [i for i in args.only if i not in known]
        if unknown:
            print(f'mutation_test: unknown mutant id(s): {", ".join(unknown)}'
                  ' (see --list)', file=sys.stderr)
            return 2
        mutants = [m for m in MUTANTS if m.id in args.only]
    if args.list:
        for m in MUTANTS:
            print(f'{m.id:38s} {m.path}\n    {m.desc}\n    ' +
                  ' '.join(m.tests))
        print(f'{len(MUTANTS)} mutants')
    if problems:
        print('mutation_test: the mutant list no longer matches the code:\n  '
              + '\n  '.join(problems), file=sys.stderr)
        return 2
    if args.list:
        return 0
    if args.jobs < 1:
        print('mutation_test: --jobs must be >= 1', file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix='mmgfn_mutation_')
    servers: List[TestServer] = []
    try:
        files = repository_files(ROOT)
        copies: 'queue.Queue[tuple]' = queue.Queue()
        for j in range(min(args.jobs, len(mutants))):
            copy = osp.join(work, f'copy{j}')
            copy_repository(ROOT, copy, files)
            where = check_imports_copy(copy)
            server = None if args.no_fork else TestServer(copy)
            if server is not None:
                servers.append(server)
            copies.put((copy, server))
        # the copies were taken now: check the list against them too
        problems = check_mutants(mutants, copy)
        if problems:
            print('mutation_test: the mutant list no longer matches the '
                  'code:\n  ' + '\n  '.join(problems), file=sys.stderr)
            return 2
        print(f'{len(files)} files copied to {work}; the tests import '
              f'mmgfn from {where}')
        log_dir = osp.join(work, 'logs')
        os.makedirs(log_dir)
        if not args.no_baseline:
            tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
            copy, server = copies.get()
            log = osp.join(log_dir, 'baseline.log')
            status, seconds = run_pytest(copy, tests,
                                         args.timeout * len(mutants), log,
                                         server)
            copies.put((copy, server))
            if status != 'passed':
                print(f'mutation_test: the tests fail on the unmutated copy '
                      f'({status}, {seconds:.0f} s):\n{_tail(log, 30)}',
                      file=sys.stderr)
                return 2
            print(f'baseline: {len(tests)} test selections pass on the '
                  f'unmutated copy ({seconds:.0f} s)')

        def job(m: Mutant) -> Tuple[str, float]:
            copy, server = copies.get()
            try:
                return run_mutant(m, copy, args.timeout, log_dir, server)
            finally:
                copies.put((copy, server))

        width = max(len(m.path) for m in mutants)
        header = f'{"mutant":38s} {"file":{width}s} {"result":8s} {"s":>5s}'
        print(header + '  description')
        print('-' * (len(header) + 40))
        results: Dict[str, str] = {}
        with ThreadPoolExecutor(args.jobs) as pool:
            for m, (result, seconds) in zip(mutants, pool.map(job, mutants)):
                results[m.id] = result
                print(f'{m.id:38s} {m.path:{width}s} {result:8s} '
                      f'{seconds:5.0f}  {m.desc}', flush=True)
                if result == 'error':
                    print(_tail(osp.join(log_dir, f'{m.id}.log')))
        killed = sum(r in ('killed', 'timeout') for r in results.values())
        survived = [i for i, r in results.items() if r == 'survived']
        errors = [i for i, r in results.items() if r == 'error']
        timeouts = sum(r == 'timeout' for r in results.values())
        print('-' * (len(header) + 40))
        print(f'killed {killed} / total {len(results)}'
              + (f' ({timeouts} by timeout)' if timeouts else '')
              + f' in {time.time() - start:.0f} s')
        if survived:
            print('survived: ' + ' '.join(survived))
        if errors:
            print('errors: ' + ' '.join(errors))
        if args.keep:
            print(f'copies and logs kept in {work}')
        return 0 if not survived and not errors else 1
    finally:
        for server in servers:
            server.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
