"""The training objective: weighted heatmap MSE summed over stacks (intermediate supervision)."""

from __future__ import annotations

import torch


def heatmap_loss(
    outputs: list[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor, foreground_weight: float = 1.0
) -> torch.Tensor:
    """Sum over stacks of the mean squared heatmap error; joints with weight 0 (not
    annotated, or outside the heatmap) contribute nothing.

    `foreground_weight` k > 1 weighs each pixel's error by 1 + (k - 1) x its target value, so a
    joint's peak counts k times a background pixel: on sparse targets (a few pixels of Gaussian
    in a 32 x 32 or 64 x 64 map) the plain mean is dominated by the background, and a model that
    outputs zeros everywhere sits on a flat, low loss it is slow to leave."""
    w = weights[:, :, None, None]
    if foreground_weight != 1.0:
        w = w * (1.0 + (foreground_weight - 1.0) * targets)
    return sum(((out.float() - targets) ** 2 * w).mean() for out in outputs)
