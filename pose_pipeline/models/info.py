"""`pose-pipeline model-info`: parameter count, multiply-adds and output shapes of a model.

MACs are counted with forward hooks on every Conv2d and Linear:
output elements x in_channels / groups x kh x kw (Linear: output elements x in_features), for a
batch of one. Bias additions, batch norm, activations, pooling, upsampling and the residual sums are
not counted (the usual convention; for the hourglass they are well under 1 % of the total).
`flops` = 2 x `macs`. The model is built and run on the `meta` device, so nothing is allocated or
computed: an 8-stack model at 256x256 takes well under a second.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from pose_pipeline.errors import UserError


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, list]:
    """(multiply-adds of one forward pass of `model` on `x`, the outputs)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            outputs = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total, outputs


def model_info(config: dict, joints: int, input_size: int = 256) -> dict:
    """Size and cost of the model `config` describes (keys arch, stacks, blocks, features, prm)."""
    from pose_pipeline.models import build_model

    arch = config.get("arch", "hourglass")
    if input_size < 64 or input_size % 64:
        raise UserError(f"input size must be a positive multiple of 64, got {input_size}")
    with torch.device("meta"):
        model = build_model(config, joints).eval()
        x = torch.empty(1, 3, input_size, input_size)
    params = sum(p.numel() for p in model.parameters())
    macs, outputs = count_macs(model, x)
    info = {
        "arch": arch,
        "stacks": config.get("stacks", 2),
        "blocks": config.get("blocks", 1),
        "features": config.get("features", 256),
        "joints": joints,
    }
    if arch == "pyranet":
        info["prm"] = config.get("prm") or "B"
    info.update({
        "params": int(params),
        "macs": int(macs),
        "flops": int(2 * macs),
        "outputs": [list(o.shape) for o in outputs],
    })
    return info


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", choices=["hourglass", "pyranet"], default="hourglass")
    p.add_argument("--stacks", type=int, required=True)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--features", type=int, default=256)
    p.add_argument("--joints", type=int, required=True)
    p.add_argument("--prm", choices=["A", "B", "C", "D"], default=None,
                   help="PyraNet pyramid residual module (default B)")
    p.add_argument("--input", type=int, default=256, help="input side in pixels (multiple of 64)")


def run(args: argparse.Namespace) -> int:
    if args.prm is not None and args.arch != "pyranet":
        raise UserError("--prm applies to --arch pyranet only")
    config = {"arch": args.arch, "stacks": args.stacks, "blocks": args.blocks, "features": args.features}
    if args.arch == "pyranet":
        config["prm"] = args.prm or "B"
    try:
        info = model_info(config, args.joints, args.input)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(info))
    return 0
