"""Simple feature pyramid for plain (non-hierarchical) ViT backbones.

ViTDet (Li et al., "Exploring Plain Vision Transformer Backbones for Object
Detection", ECCV 2022) builds a detector's multi-scale features from the
last stride-16 feature map of a ViT alone: deconvolutions up to strides 4
and 8, the map itself at 16, max pooling to 32, then the usual FPN lateral
and output convolutions. mmdet keeps its version in ``projects/ViTDet``,
outside the installed package; this is the same design, so that mmgfn's
detection configs can put the GFN-fine-tuned mmpretrain ViT-B under a
Faster R-CNN.

Shapes: input ``(x, )`` with ``x`` of ``N x C x H/16 x W/16``; output
``num_outs`` maps of ``N x out_channels x H/s x W/s`` for
``s = 4, 8, 16, 32 (, 64)``.
"""
from typing import List, Optional, Tuple

import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmgfn.registry import MODELS


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid on a single stride-16 feature map.

    Args:
        backbone_channel (int): Channels ``C`` of the backbone's map (768
            for ViT-B).
        in_channels (list[int]): Channels of the 4 pyramid levels before the
            lateral convolutions, ``[C/4, C/2, C, C]``.
        out_channels (int): Channels of every output level.
        num_outs (int): Output levels (4, or 5 with an extra stride-64 level
            by max pooling, as the RPN of Faster R-CNN expects).
        norm_cfg (dict): Norm of the deconvolution branch and the
            convolutions. Defaults to ``dict(type='GN', num_groups=32)``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 norm_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(in_channels) != 4:
            raise ValueError(f'in_channels must list the 4 pyramid levels, '
                             f'got {in_channels}')
        if num_outs < 4:
            raise ValueError(f'num_outs must be >= 4, got {num_outs}')
        norm_cfg = norm_cfg or dict(type='GN', num_groups=32)
        c = backbone_channel
        self.num_outs = num_outs
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, 2),
            build_norm_layer(norm_cfg, c // 2)[1], nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, 2))
        self.fpn2 = nn.ConvTranspose2d(c, c // 2, 2, 2)
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.lateral_convs = nn.ModuleList(
            ConvModule(ch, out_channels, 1, norm_cfg=norm_cfg,
                       inplace=False) for ch in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1,
                       norm_cfg=norm_cfg, inplace=False)
            for _ in in_channels)

    def forward(self, inputs: Tuple[Tensor]) -> Tuple[Tensor, ...]:
        """Build the pyramid from the last backbone map.

        Args:
            inputs (tuple[Tensor]): Backbone outputs; the last is used,
                ``N x C x h x w`` (stride 16).

        Returns:
            tuple[Tensor]: ``num_outs`` maps, strides 4, 8, 16, 32, ...
        """
        x = inputs[-1]
        levels = [self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs = [
            conv(lateral(level)) for level, lateral, conv in zip(
                levels, self.lateral_convs, self.fpn_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
