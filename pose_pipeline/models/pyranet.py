"""PyraNet (Yang et al., ICCV 2017, "Learning Feature Pyramids for Human Pose Estimation").

The stacked hourglass of `hourglass.py` with residual units replaced by Pyramid Residual Modules
(PRMs). The stem (conv 7x7/2, layer1-3), the recursion inside one hourglass (`Hourglass._level`)
and the heads between stacks are those of `hourglass.py`, imported from it.

Pyramid Residual Module (pre-activation, `features` = F in and out, mid = F/2, branch width D):

    h    = relu(bn1(x))                                     # shared pre-activation
    f0   = conv3x3(relu(bn2(conv1x1_{F->mid}(h))))          # the bottleneck branch
    P    = g(sum_c f_c(h))                                  # the pyramid, g = conv1x1 after BN-ReLU
    out  = skip(x) + conv1x1_{mid->F}(relu(bn3(f0 + P)))

As in the authors' code (bearpaw/PyraNet, `models/layers/PRM.lua`) the bottleneck and pyramid
branches are summed at the bottleneck width and share the final 1x1 expansion. Pyramid branch c
(c = 1..C) is: fractional max pooling to ratio 2^(-c/C) of the input size, conv 3x3 D->D,
bilinear upsampling back to the input size. C = 4 and D = round(28 * F_out / 256) (at least 4),
i.e. D = 28 at the paper's width 256 (the authors' floor(256 / 9)).

Variants (`prm`):
  A  a separate conv1x1 F->D (+BN-ReLU) per branch; branch outputs summed.
  B  one conv1x1 F->D shared by all branches; summed (the paper's main model, the default).
  C  shared input as B; the C branch outputs are concatenated and g maps C*D -> mid.
  D  shared input as B; branch c is a 3x3 convolution with dilation c at full resolution
     (no pooling, no upsampling); summed.

Fractional max pooling: `F.fractional_max_pool2d` with kernel 2 and `output_size` computed from the
input. Its pseudo-random pooling regions are drawn per sample and channel in training (as in the
paper) and fixed at u = 0.5 in eval, so inference is deterministic; the eval path gathers those
fixed regions itself (`_fixed_fractional_max_pool`, the same values), so the model exports to ONNX.
Both paths are plain tensor ops, so `torch.compile(fullgraph=True)` traces the module without
graph breaks.

Which units are PRMs: following the authors' `hg-prm.lua`, the units running at a resolution of at
least 1/4 of the hourglass input (64, 32, 16 for a 64x64 hourglass) are PRMs - the three upper
branches and the lower branches of the two outer levels, 7 of the 13 units of an hourglass with 1
block. The three coarsest units (8x8, 4x4), where a pyramid has nothing left to pool, keep the
bottleneck; so does the stem.

The two fixes of the paper's Section 4 for multi-branch networks:
  * Initialisation: every convolution of a PRM is drawn from N(0, Var[w]) with
    Var[w] = 1 / (alpha^2 (C_i n_i + C_o n_o)), n_i = k*k*in_channels (fan-in), n_o = k*k*out_channels
    (fan-out), C_i / C_o the number of input / output branches connected to the layer, and
    alpha = 0.5 for ReLU (the paper's value; with C_i = C_o = 1 and n_i = n_o = n this is MSR's 2/n).
    C_i = C for g (it reads the sum, or concatenation, of C branches) and C_o = C for the shared
    conv1x1 of PRM-B/C/D (its output feeds C branches); all other layers have C_i = C_o = 1.
    Biases start at zero, BN at weight 1, bias 0. See `multibranch_init_`. Only the PRMs: the
    stem, the plain bottlenecks and the heads (hourglass.py's single-branch modules) keep
    PyTorch's default init, as in the hourglass (Torch7's default as well, which the authors'
    published code leaves every layer at; it tags g alone, `nBranchIn = C`). Drawn from Var[w]
    too, the score layer made the heatmaps 3x the hourglass's in training mode, and in eval mode
    at init (BN's running statistics still (0, 1)) stem and heads took their std to ~100.
  * Identity mapping: where the hourglass adds its upper and lower branches (upper + upsample(lower)),
    both operands are outputs of residual units, so their variances would add up at every level.
    The last unit of each lower branch (the one whose output is upsampled and added) therefore has
    BN-ReLU-conv1x1 on its skip path instead of the identity (`downsample` = [BN, ReLU, Conv]).

After each hourglass the authors' model applies BN-ReLU and the 1x1 conv-BN-ReLU head; unlike
PyTorch-Pose's hourglass it has no extra residual unit there. This model does the same (`post`).

Size at 16 joints, 8 stacks, 1 block, features 256 (MACs at 256x256 counted as in `models.info`,
convolutions only): PRM-A 29,426,496 params / 24.66 G MACs; PRM-B 28,208,160 / 23.30 G (the paper:
28.1 M); PRM-C 28,819,680 / 23.98 G; PRM-D 28,208,160 / 24.30 G (PRM-D has PRM-B's tensors; its
state dict names the branches `dilated` so the two can be told apart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pose_pipeline.models.hourglass import (
    BOTTLENECK_EXPANSION,
    HOURGLASS_DEPTH,
    Bottleneck,
    Hourglass,
    HourglassConfig,
    add_heads,
    add_stem,
    stacked_forward,
)

PRM_VARIANTS = ("A", "B", "C", "D")
CARDINALITY = 4  # C, the number of pyramid levels
BASE_BRANCH_WIDTH = 28  # D at the paper's width 256
RELU_ALPHA = 0.5  # the paper's alpha for ReLU
# units at a resolution >= 2^-PRM_MAX_POOLINGS of the hourglass input are PRMs
PRM_MAX_POOLINGS = 2


@dataclass(frozen=True)
class PyraNetConfig(HourglassConfig):
    """The shape of a PyraNet: the hourglass's (schema defaults) and the PRM variant.

    The `prm` default lives here, not in the schema: a schema default would be filled into
    hourglass experiments too and change their settings (and so retrain them)."""

    prm: str = "B"


def branch_width(out_channels: int) -> int:
    """D: 28 at width 256, scaled in proportion, at least 4."""
    return max(4, round(BASE_BRANCH_WIDTH * out_channels / 256))


def _conv(
    in_channels: int, out_channels: int, kernel_size: int = 1, *, branches_in: int = 1, branches_out: int = 1, **kwargs
) -> nn.Conv2d:
    """A Conv2d tagged with the number of input / output branches it connects (for the init)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, **kwargs)
    conv.branches_in = branches_in
    conv.branches_out = branches_out
    return conv


def _preact_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """BN-ReLU-conv1x1: the skip path that replaces the identity (keys `.0` BN, `.2` conv)."""
    return nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(), _conv(in_channels, out_channels))


def multibranch_variance(conv: nn.Conv2d, alpha: float = RELU_ALPHA) -> float:
    """Var[w] = 1 / (alpha^2 (C_i n_i + C_o n_o)) for a conv tagged by `_conv` (untagged: C = 1)."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    n_i = k * conv.in_channels // conv.groups
    n_o = k * conv.out_channels // conv.groups
    c_i = getattr(conv, "branches_in", 1)
    c_o = getattr(conv, "branches_out", 1)
    return 1.0 / (alpha**2 * (c_i * n_i + c_o * n_o))


@torch.no_grad()
def multibranch_init_(model: nn.Module, alpha: float = RELU_ALPHA) -> nn.Module:
    """The paper's multi-branch initialisation of every PRM in `model` (`model` itself may be
    one): its convolutions from N(0, Var[w]), biases 0, BN to (1, 0). Layers outside the PRMs
    (the stem, the plain bottlenecks, the heads) keep the init they were built with."""
    for unit in [m for m in model.modules() if isinstance(m, PyramidResidual)]:
        for module in unit.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, math.sqrt(multibranch_variance(module, alpha)))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def fractional_max_pool(x: torch.Tensor, ratio: float, training: bool) -> torch.Tensor:
    """Fractional 2x2 max pooling of `x` to floor(ratio * size); random regions only in training."""
    height, width = x.shape[-2], x.shape[-1]
    out_h, out_w = max(1, int(height * ratio)), max(1, int(width * ratio))
    kernel = (min(2, height - out_h + 1), min(2, width - out_w + 1))
    if not training:
        return _fixed_fractional_max_pool(x, kernel, (out_h, out_w))
    samples = torch.rand((x.shape[0], x.shape[1], 2), dtype=x.dtype, device=x.device)
    return F.fractional_max_pool2d(x, kernel, output_size=(out_h, out_w), _random_samples=samples)


def fractional_pool_starts(size: int, out: int, kernel: int, sample: float = 0.5, dtype=np.float32) -> np.ndarray:
    """The first row (or column) of each pooling region of `F.fractional_max_pool2d` for one
    random sample: ATen's `generate_intervals`, in the input's precision (float32 for float)."""
    starts = np.full(out, size - kernel, np.int64)  # the last region ends at the border
    if out > 1:
        alpha = dtype(size - kernel) / dtype(out - 1)
        index = np.arange(out - 1, dtype=dtype)
        starts[:-1] = ((index + dtype(sample)) * alpha).astype(np.int64) - int(dtype(sample) * alpha)
    return starts


def _fixed_fractional_max_pool(x: torch.Tensor, kernel: tuple[int, int], out: tuple[int, int]) -> torch.Tensor:
    """`F.fractional_max_pool2d` with every sample at u = 0.5 (inference), as the max over
    the kernel's offsets of rows, then columns, gathered at fixed indices: the same values,
    in operations ONNX has (ATen's fractional pooling has no ONNX export)."""
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    for dim, size, k, n in ((2, x.shape[2], kernel[0], out[0]), (3, x.shape[3], kernel[1], out[1])):
        starts = torch.as_tensor(fractional_pool_starts(size, n, k, dtype=dtype), device=x.device)
        pooled = x.index_select(dim, starts)
        for offset in range(1, k):
            pooled = torch.maximum(pooled, x.index_select(dim, starts + offset))
        x = pooled
    return x


class Pyramid(nn.Module):
    """sum_c f_c(h) (or their concatenation for PRM-C), followed by g = BN-ReLU-conv1x1 D -> out."""

    def __init__(self, in_channels: int, width: int, out_channels: int, variant: str, cardinality: int = CARDINALITY):
        super().__init__()
        if variant not in PRM_VARIANTS:
            raise ValueError(f"PRM variant must be one of {', '.join(PRM_VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.cardinality = cardinality
        self.ratios = [2.0 ** (-c / cardinality) for c in range(1, cardinality + 1)]
        if variant == "A":  # one input conv1x1 per branch
            self.conv_in = nn.ModuleList(_conv(in_channels, width) for _ in range(cardinality))
            self.bn_in = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(cardinality))
        else:  # one shared input conv1x1 feeding every branch
            self.conv_in = _conv(in_channels, width, branches_out=cardinality)
            self.bn_in = nn.BatchNorm2d(width)
        if variant == "D":
            self.dilated = nn.ModuleList(
                _conv(width, width, 3, padding=c, dilation=c) for c in range(1, cardinality + 1)
            )
        else:
            self.branches = nn.ModuleList(_conv(width, width, 3, padding=1) for _ in range(cardinality))
        if variant == "C":
            self.bn_out = nn.BatchNorm2d(cardinality * width)
            self.conv_out = _conv(cardinality * width, out_channels)
        else:
            self.bn_out = nn.BatchNorm2d(width)
            self.conv_out = _conv(width, out_channels, branches_in=cardinality)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        size = (h.shape[-2], h.shape[-1])
        outputs = []
        if self.variant == "D":
            shared = F.relu(self.bn_in(self.conv_in(h)))
            outputs = [conv(shared) for conv in self.dilated]
        else:
            if self.variant != "A":
                shared = F.relu(self.bn_in(self.conv_in(h)))
            for c, conv in enumerate(self.branches):
                if self.variant == "A":
                    inp = F.relu(self.bn_in[c](self.conv_in[c](h)))
                else:
                    inp = shared
                y = conv(fractional_max_pool(inp, self.ratios[c], self.training))
                outputs.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        if self.variant == "C":
            merged = torch.cat(outputs, dim=1)
        else:
            merged = outputs[0]
            for y in outputs[1:]:
                merged = merged + y
        return self.conv_out(F.relu(self.bn_out(merged)))


class PyramidResidual(nn.Module):
    """A pre-activation PRM: skip(x) + conv1x1(relu(bn3(bottleneck(h) + pyramid(h)))), h = relu(bn1(x)).

    `project_skip` (or a change of channel count) puts BN-ReLU-conv1x1 on the skip path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        variant: str = PyraNetConfig.prm,
        project_skip: bool = False,
        cardinality: int = CARDINALITY,
    ):
        super().__init__()
        mid = out_channels // BOTTLENECK_EXPANSION
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv(in_channels, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = _conv(mid, mid, 3, padding=1)
        self.pyramid = Pyramid(in_channels, branch_width(out_channels), mid, variant, cardinality)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = _conv(mid, out_channels)
        self.downsample = (
            _preact_conv(in_channels, out_channels) if project_skip or in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(x))
        main = self.conv2(F.relu(self.bn2(self.conv1(h))))
        out = self.conv3(F.relu(self.bn3(main + self.pyramid(h))))
        skip = x if self.downsample is None else self.downsample(x)
        return out + skip


class ProjectedBottleneck(Bottleneck):
    """hourglass.Bottleneck with BN-ReLU-conv1x1 instead of the identity on the skip path."""

    def __init__(self, channels: int):
        super().__init__(channels, channels // BOTTLENECK_EXPANSION)
        self.downsample = _preact_conv(channels, channels)


def _unit_stack(features: int, blocks: int, pyramid: bool, variant: str, project_last: bool) -> nn.Sequential:
    """`blocks` width-preserving units; the last one gets the projected skip when `project_last`."""
    units = []
    for i in range(blocks):
        project = project_last and i == blocks - 1
        if pyramid:
            units.append(PyramidResidual(features, features, variant, project_skip=project))
        elif project:
            units.append(ProjectedBottleneck(features))
        else:
            units.append(Bottleneck(features, features // BOTTLENECK_EXPANSION))
    return nn.Sequential(*units)


class PyramidHourglass(Hourglass):
    """`hourglass.Hourglass` (same recursion, same module layout `hg[level][0..3]`) built from PRMs.

    Level index L (0 = innermost): the upper branch runs at 2^-(depth-1-L) of the input size, the
    lower branch and the bottom at 2^-(depth-L). `hg[L][2]` (lower-out) ends with the projected skip.
    """

    def __init__(self, features: int, blocks: int, variant: str = PyraNetConfig.prm, depth: int = HOURGLASS_DEPTH):
        nn.Module.__init__(self)
        self.depth = depth
        levels = []
        for level in range(depth):
            upper_prm = depth - 1 - level <= PRM_MAX_POOLINGS
            lower_prm = depth - level <= PRM_MAX_POOLINGS
            units = [
                _unit_stack(features, blocks, upper_prm, variant, project_last=False),
                _unit_stack(features, blocks, lower_prm, variant, project_last=False),
                _unit_stack(features, blocks, lower_prm, variant, project_last=True),
            ]
            if level == 0:
                units.append(_unit_stack(features, blocks, lower_prm, variant, project_last=False))
            levels.append(nn.ModuleList(units))
        self.hg = nn.ModuleList(levels)


class PyraNet(nn.Module):
    """Stacked hourglass of PRMs with intermediate supervision; `forward` returns one heatmap per stack.

    Input (N, 3, H, W) with H and W multiples of 64; output heatmaps (N, joints, H/4, W/4).
    Module names follow `hourglass.HourglassNet` (conv1, bn1, layer1-3, hg, fc, score, fc_, score_)
    except that `res` is replaced by `post` (BN-ReLU).
    """

    def __init__(
        self,
        stacks: int,
        blocks: int,
        joints: int,
        features: int = PyraNetConfig.features,
        prm: str = PyraNetConfig.prm,
    ):
        super().__init__()
        if features % 4 or features <= 0:
            raise ValueError(f"pyranet features must be a positive multiple of 4, got {features}")
        if stacks < 1 or blocks < 1 or joints < 1:
            raise ValueError(f"stacks, blocks and joints must be >= 1, got {stacks}, {blocks}, {joints}")
        if prm not in PRM_VARIANTS:
            raise ValueError(f"prm must be one of {', '.join(PRM_VARIANTS)}, got {prm!r}")
        self.num_stacks = stacks
        self.prm = prm

        add_stem(self, features)  # the stem of hourglass.HourglassNet (bottlenecks)

        self.hg = nn.ModuleList(PyramidHourglass(features, blocks, prm) for _ in range(stacks))
        self.post = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(features), nn.ReLU()) for _ in range(stacks))
        add_heads(self, stacks, features, joints)
        multibranch_init_(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return stacked_forward(self, x, self.post)


def build(config: dict, joints: int) -> PyraNet:
    shape = PyraNetConfig.from_dict(config)
    return PyraNet(shape.stacks, shape.blocks, joints, shape.features, shape.prm)


def _prm_variant(state_dict: dict) -> str:
    prefix = next(k for k in state_dict if ".pyramid.conv_out.weight" in k).rsplit("conv_out.weight", 1)[0]
    if f"{prefix}dilated.0.weight" in state_dict:
        return "D"
    if f"{prefix}conv_in.0.weight" in state_dict:
        return "A"
    width = state_dict[f"{prefix}conv_in.weight"].shape[0]
    return "C" if state_dict[f"{prefix}conv_out.weight"].shape[1] > width else "B"


def config_from_state_dict(state_dict: dict[str, torch.Tensor]) -> dict:
    """Recover prm, stacks, blocks, features and joints from a PyraNet state dict (keys without `module.`)."""
    score = state_dict["score.0.weight"]
    stacks = len({k.split(".")[1] for k in state_dict if k.startswith("score.")})
    # hg.0.hg.0.0.<block>.… : the innermost upper branch
    blocks = len({k.split(".")[5] for k in state_dict if k.startswith("hg.0.hg.0.0.")})
    return {
        "arch": "pyranet",
        "prm": _prm_variant(state_dict),
        "stacks": stacks,
        "blocks": blocks,
        "features": int(score.shape[1]),
        "joints": int(score.shape[0]),
    }


def is_state_dict(state_dict: dict) -> bool:
    return "post.0.0.weight" in state_dict and any(".pyramid.conv_out.weight" in k for k in state_dict)
