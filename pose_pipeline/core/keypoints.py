"""Keypoint arrays checked where they enter: shape (N, J, 2), real numbers, finite unless allowed.

Below every stage that reads or writes keypoints (prediction files, metrics, OKS), so each
reports a bad array the same way.
"""

from __future__ import annotations

import numpy as np


def check_keypoints(
    points, name: str = "keypoints", num_joints: int | None = None, allow_nan: bool = False
) -> np.ndarray:
    """`points` as a float64 (N,J,2) array, or ValueError saying what is wrong."""
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"{name}: expected shape (N, J, 2), got {points.shape}")
    if num_joints is not None and points.shape[1] != num_joints:
        raise ValueError(f"{name}: expected {num_joints} joints, got {points.shape[1]} (shape {points.shape})")
    if not np.issubdtype(points.dtype, np.number) or np.iscomplexobj(points):
        raise ValueError(f"{name}: expected real numbers, got dtype {points.dtype}")
    points = points.astype(np.float64)
    if not allow_nan:
        bad = ~np.isfinite(points).all(axis=-1)
        if bad.any():
            n, j = np.argwhere(bad)[0]
            raise ValueError(
                f"{name}: {int(bad.sum())} non-finite (NaN/inf) coordinates, first at sample {n}, joint {j}"
            )
    return points
