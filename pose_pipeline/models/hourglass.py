"""Stacked hourglass network (Newell et al., ECCV 2016) in the PyTorch-Pose layout.

Architecture, module names and parameter registration order are those of `HourglassNet` in
PyTorch-Pose (bearpaw/pytorch-pose, `pose/models/hourglass.py`), so that code's checkpoints load
as they are once the `module.` prefix of `nn.DataParallel` is stripped, and an optimizer state
saved there maps onto `model.parameters()` in the same order.

`features` is the hourglass width (256 in the paper and in PyTorch-Pose). The stem conv 7x7/2 has a
quarter of it, layer1 outputs half, layer2 and layer3 full width; bottleneck residuals work at half
width inside. Any multiple of 4 works; 32 or 64 give the same structure for CPU demos.

`HourglassConfig` holds the model's shape (stacks, blocks, features) with the defaults of the
config schema (`experiments.*.model`), as nanoGPT's `GPTConfig` does for its model.

Parameter counts for 16 joints, 1 block, features 256: 3,586,960 (1 stack), 6,730,912 (2),
25,594,624 (8); forward 11.61 / 17.98 / 56.19 GFLOP at 256x256 - the same as PyTorch-Pose.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core.codec import HOURGLASS_DEPTH  # number of 2x poolings inside one hourglass

BOTTLENECK_EXPANSION = 2
# The one home of the model defaults is the config schema; the dataclass reads them there.
_SCHEMA_DEFAULTS = schema_defaults("experiment", "model")


@dataclass(frozen=True)
class HourglassConfig:
    """The shape of a stacked hourglass; defaults are the config schema's (`experiments.*.model`)."""

    stacks: int = _SCHEMA_DEFAULTS["stacks"]
    blocks: int = _SCHEMA_DEFAULTS["blocks"]
    features: int = _SCHEMA_DEFAULTS["features"]

    @classmethod
    def from_dict(cls, config: dict):
        """From a model config (an experiment's `model:`, a checkpoint's `model_config`): this
        family's keys, absent or null ones defaulted; the others (arch, joints) are not shape."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in names and value is not None})


class Bottleneck(nn.Module):
    """Pre-activation bottleneck residual: x + conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(relu(bn(x))))))))).

    The inner width is `mid_channels`, the output `mid_channels * 2`. `downsample` is the 1x1
    projection PyTorch-Pose puts on the skip path when the channel count changes (no BN-ReLU
    before it, unlike PyraNet's projection).
    """

    def __init__(self, in_channels: int, mid_channels: int, project_skip: bool = False):
        super().__init__()
        out_channels = mid_channels * BOTTLENECK_EXPANSION
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, kernel_size=1)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm2d(mid_channels)
        self.conv3 = nn.Conv2d(mid_channels, out_channels, kernel_size=1)
        # A Sequential so the key is `downsample.0.weight`, as in PyTorch-Pose.
        self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1)) if project_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        skip = x if self.downsample is None else self.downsample(x)
        return out + skip


def residual_stack(in_channels: int, mid_channels: int, blocks: int) -> nn.Sequential:
    """`blocks` bottlenecks; only the first may change the channel count (PyTorch-Pose's `_make_residual`)."""
    out_channels = mid_channels * BOTTLENECK_EXPANSION
    layers = [Bottleneck(in_channels, mid_channels, project_skip=in_channels != out_channels)]
    layers += [Bottleneck(out_channels, mid_channels) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class Hourglass(nn.Module):
    """One hourglass: recursive pool / residuals / nearest 2x upsample, with a residual skip per level.

    `hg[i]` belongs to recursion level i+1 (`hg[0]` is the innermost); each holds residual stacks
    [upper, lower-in, lower-out] and the innermost a fourth, the bottom of the hourglass.
    """

    def __init__(self, features: int, blocks: int, depth: int = HOURGLASS_DEPTH):
        super().__init__()
        self.depth = depth
        mid = features // BOTTLENECK_EXPANSION
        self.hg = nn.ModuleList(
            nn.ModuleList(residual_stack(features, mid, blocks) for _ in range(4 if level == 0 else 3))
            for level in range(depth)
        )

    def _level(self, n: int, x: torch.Tensor) -> torch.Tensor:
        stacks = self.hg[n - 1]
        upper = stacks[0](x)
        lower = stacks[1](F.max_pool2d(x, 2, stride=2))
        lower = self._level(n - 1, lower) if n > 1 else stacks[3](lower)
        lower = stacks[2](lower)
        return upper + F.interpolate(lower, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class HourglassNet(nn.Module):
    """Stacked hourglass with intermediate supervision; `forward` returns one heatmap per stack.

    Input (N, 3, H, W) with H and W multiples of 64; output heatmaps (N, joints, H/4, W/4).
    Between stacks the features are merged as x + fc_(y) + score_(heatmaps), as in PyTorch-Pose.
    """

    def __init__(self, stacks: int, blocks: int, joints: int, features: int = HourglassConfig.features):
        super().__init__()
        if features % 4 or features <= 0:
            raise ValueError(f"hourglass features must be a positive multiple of 4, got {features}")
        if stacks < 1 or blocks < 1 or joints < 1:
            raise ValueError(f"stacks, blocks and joints must be >= 1, got {stacks}, {blocks}, {joints}")
        self.num_stacks = stacks
        mid = features // 2

        add_stem(self, features)

        self.hg = nn.ModuleList(Hourglass(features, blocks) for _ in range(stacks))
        self.res = nn.ModuleList(residual_stack(features, mid, blocks) for _ in range(stacks))
        add_heads(self, stacks, features, joints)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return stacked_forward(self, x, self.res)


def add_stem(net: nn.Module, features: int) -> None:
    """The stem both stacked networks share (conv1, bn1, layer1-3), to 1/4 resolution."""
    stem, mid = features // 4, features // 2
    net.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3)
    net.bn1 = nn.BatchNorm2d(stem)
    net.layer1 = residual_stack(stem, stem, 1)
    # PyTorch-Pose passes its running `inplanes` (already doubled by layer1) as layer2's width,
    # so layer2 works at half width and projects to full width; layer3 is then width-preserving.
    net.layer2 = residual_stack(mid, mid, 1)
    net.layer3 = residual_stack(features, mid, 1)


def add_heads(net: nn.Module, stacks: int, features: int, joints: int) -> None:
    """Per stack fc and score, and the fc_ / score_ maps merging a stack's output into the
    next stack's input; PyTorch-Pose's parameter names."""
    # fc: conv -> BN -> ReLU (conv first, as in PyTorch-Pose's `_make_fc`).
    net.fc = nn.ModuleList(
        nn.Sequential(nn.Conv2d(features, features, 1), nn.BatchNorm2d(features), nn.ReLU(inplace=True))
        for _ in range(stacks)
    )
    net.score = nn.ModuleList(nn.Conv2d(features, joints, 1) for _ in range(stacks))
    net.fc_ = nn.ModuleList(nn.Conv2d(features, features, 1) for _ in range(stacks - 1))
    net.score_ = nn.ModuleList(nn.Conv2d(joints, features, 1) for _ in range(stacks - 1))


def joint_axis(key: str) -> int | None:
    """The axis of a state-dict tensor of `add_heads` that runs over the joints (`score` maps
    features to heatmaps: its rows; `score_` maps heatmaps back into features: its columns),
    None for the tensors that do not depend on the joint set."""
    layer, _, name = key.partition(".")
    if layer == "score" and name.endswith((".weight", ".bias")):
        return 0
    if layer == "score_" and name.endswith(".weight"):
        return 1
    return None


def stacked_forward(net: nn.Module, x: torch.Tensor, post: nn.ModuleList) -> list[torch.Tensor]:
    """The pass both stacked networks (hourglass, PyraNet) share: the stem to 1/4 resolution,
    then per stack hourglass -> `post` -> fc -> heatmaps, the heatmaps and features of every
    stack but the last mapped back and added to the next stack's input (intermediate
    supervision: every stack's heatmaps are returned)."""
    x = F.relu(net.bn1(net.conv1(x)))
    x = net.layer1(x)
    x = F.max_pool2d(x, 2, stride=2)
    x = net.layer3(net.layer2(x))

    heatmaps = []
    for i in range(net.num_stacks):
        y = net.fc[i](post[i](net.hg[i](x)))
        score = net.score[i](y)
        heatmaps.append(score)
        if i < net.num_stacks - 1:
            x = x + net.fc_[i](y) + net.score_[i](score)
    return heatmaps


def build(config: dict, joints: int) -> HourglassNet:
    shape = HourglassConfig.from_dict(config)
    return HourglassNet(shape.stacks, shape.blocks, joints, shape.features)


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
    """Recover stacks, blocks, features and joints from an hourglass state dict (keys without `module.`)."""
    score = state_dict["score.0.weight"]
    stacks = len({k.split(".")[1] for k in state_dict if k.startswith("score.")})
    blocks = len({k.split(".")[2] for k in state_dict if k.startswith("res.0.")})
    return {
        "arch": "hourglass",
        "stacks": stacks,
        "blocks": blocks,
        "features": int(score.shape[1]),
        "joints": int(score.shape[0]),
    }


def is_state_dict(state_dict: dict) -> bool:
    return "layer3.0.conv3.weight" in state_dict and "res.0.0.conv1.weight" in state_dict
