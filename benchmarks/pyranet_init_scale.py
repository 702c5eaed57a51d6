"""The scale of freshly built models' heatmaps: std of the last stack's output, hourglass against
PyraNet, in training mode (batch statistics) and eval mode (BN's running statistics at their
(0, 1) start, so nothing normalises the stream), at several widths.

    PYTHONPATH=. python benchmarks/pyranet_init_scale.py [--input-size 128] [--features 32,64,256]

Input: 4 images of N(0, 1) noise; each model built after torch.manual_seed(1), 1 stack, 1 block,
16 joints. Prints a markdown table.
"""

from __future__ import annotations

import argparse

import torch

from pose_pipeline.models import hourglass, pyranet


def heatmap_std(model: torch.nn.Module, x: torch.Tensor, training: bool) -> float:
    model.train(training)
    with torch.no_grad():
        return model(x)[-1].std().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--features", default="32,64,256")
    parser.add_argument("--prm", default="B")
    args = parser.parse_args()
    x = torch.randn(4, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(0))
    builders = {
        "hourglass": lambda f: hourglass.HourglassNet(1, 1, 16, f),
        f"PyraNet PRM-{args.prm}": lambda f: pyranet.PyraNet(1, 1, 16, f, args.prm),
    }
    print("| model | features | std, training mode | std, eval mode |")
    print("|---|---|---|---|")
    for features in (int(f) for f in args.features.split(",")):
        for name, build in builders.items():
            torch.manual_seed(1)
            model = build(features)
            train, evaluation = heatmap_std(model, x, True), heatmap_std(model, x, False)
            print(f"| {name} | {features} | {train:.3f} | {evaluation:.3f} |", flush=True)


if __name__ == "__main__":
    main()
