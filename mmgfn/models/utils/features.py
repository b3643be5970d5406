"""One evaluation forward of an mmpretrain classifier, with its features.

Shape shorthand: ``N`` samples, ``C`` classes, ``D`` pre-logits dimensions.
"""
from typing import Tuple

import torch
from torch import Tensor, nn


@torch.no_grad()
def forward_batch(model: nn.Module, data: dict) -> Tuple[Tensor, Tensor,
                                                          Tensor]:
    """Preprocess a dataloader batch (as in evaluation) and run the model.

    One backbone pass gives both the head's pre-logits features (what the
    final linear layer sees, the class-embedding space of GFN's Eq. 4) and
    the logits.

    Args:
        model (nn.Module): An mmpretrain ``ImageClassifier`` in eval mode.
        data (dict): A dataloader batch whose data samples have
            ``gt_label``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``N x D`` float32 features, ``N x C``
        float32 logits and ``N`` int64 labels (the first label of each
        sample), all on the CPU.
    """
    data = model.data_preprocessor(data, False)
    neck_out = model.extract_feat(data['inputs'])
    logits = model.head(neck_out)
    feats = model.head.pre_logits(neck_out)
    labels = torch.cat(
        [s.gt_label.view(-1)[:1] for s in data['data_samples']])
    return (feats.float().flatten(1).cpu(), logits.float().cpu(),
            labels.cpu())
