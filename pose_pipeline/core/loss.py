"""The training objective: weighted heatmap MSE summed over stacks (intermediate supervision)."""

from __future__ import annotations

import torch


def heatmap_loss(outputs: list[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Sum over stacks of the mean squared heatmap error; joints with weight 0 (not
    annotated, or outside the heatmap) contribute nothing."""
    w = weights[:, :, None, None]
    return sum(((out.float() - targets) ** 2 * w).mean() for out in outputs)
