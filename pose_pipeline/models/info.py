"""`pose-pipeline model-info`: parameter count, multiply-adds and output shapes of a model.

FLOPs are torch's own count (`torch.utils.flop_counter.FlopCounterMode`): 2 per multiply-add
of every convolution and matrix product, for a batch of one; bias additions, batch norm,
activations, pooling, upsampling and the residual sums are not counted (the usual convention;
for the hourglass well under 1 % of the total). `macs` = `flops` / 2. The model is built and
run on the `meta` device, so nothing is allocated or computed: an 8-stack model at 256x256
takes well under a second.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import torch
from torch import nn

from pose_pipeline.config.option_bounds import check_value
from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.errors import UserError
from pose_pipeline.models.hourglass import HourglassConfig
from pose_pipeline.models.pyranet import PRM_VARIANTS, PyraNetConfig

INPUT_SIZE = schema_defaults("experiment", "training")["input_size"]  # training's default input side


def count_flops(model: nn.Module, x: torch.Tensor) -> tuple[int, list]:
    """(FLOPs of one forward pass of `model` on `x` by torch's FlopCounterMode, the outputs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        outputs = model(x)
    return int(counter.get_total_flops()), outputs


def model_info(config: dict, joints: int, input_size: int = INPUT_SIZE) -> dict:
    """Size and cost of the model `config` describes (keys arch, stacks, blocks, features, prm)."""
    from pose_pipeline.models import DEFAULT_ARCH, build_model, model_shape

    arch = config.get("arch", DEFAULT_ARCH)
    check_value("--input-size", input_size)
    with torch.device("meta"):
        model = build_model(config, joints).eval()
        x = torch.empty(1, 3, input_size, input_size)
    params = sum(p.numel() for p in model.parameters())
    flops, outputs = count_flops(model, x)
    shape = asdict(model_shape(config))
    prm = shape.pop("prm", None)  # after joints in the output, as before
    info = {"arch": arch, **shape, "joints": joints}
    if prm is not None:
        info["prm"] = prm
    info.update(
        {"params": int(params), "macs": flops // 2, "flops": flops, "outputs": [list(o.shape) for o in outputs]}
    )
    return info


def configure_parser(p: argparse.ArgumentParser) -> None:
    from pose_pipeline.models import ARCHITECTURES, DEFAULT_ARCH

    # defaults: the model config dataclasses (which read the config schema)
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), default=DEFAULT_ARCH, help="model family")
    p.add_argument("--stacks", type=int, default=HourglassConfig.stacks, help="stacked hourglasses")
    p.add_argument("--blocks", type=int, default=HourglassConfig.blocks, help="residual blocks per stack")
    p.add_argument("--features", type=int, default=HourglassConfig.features, help="feature channels")
    p.add_argument("--joints", type=int, required=True, help="joints predicted (heatmap channels)")
    p.add_argument(
        "--prm",
        choices=PRM_VARIANTS,
        default=None,
        help=f"PyraNet pyramid residual module (default {PyraNetConfig.prm})",
    )
    p.add_argument("--input-size", type=int, default=INPUT_SIZE, help="input side in pixels (multiple of 64)")


def run(args: argparse.Namespace) -> int:
    if args.prm is not None and args.arch != "pyranet":
        raise UserError("--prm applies to --arch pyranet only")
    config = {
        "arch": args.arch,
        "stacks": args.stacks,
        "blocks": args.blocks,
        "features": args.features,
        "prm": args.prm,
    }  # None: the family's default
    try:
        info = model_info(config, args.joints, args.input_size)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(info))
    return 0
