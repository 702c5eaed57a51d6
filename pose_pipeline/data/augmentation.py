"""Training augmentation: the parameters of a batch, drawn from one rng, and the pixel ops.

`Augmentation.sample` draws everything a batch gets from the rng training seeds with
(seed, step), so a resumed run and any number of DDP ranks give each sample the same.
Geometric augmentations (scale, rotation, flip, crop shift, half-body) only change the one
canvas -> input affine (`geometry.canvas_to_input_affine`), so a batch is still one warp and
the keypoints follow through that affine exactly. Colour, blur and erasing act on the warped
input on its device (`colour_blur_erase`); keypoints do not move, and joints under an
erased rectangle keep their targets and weights (the network learns to place hidden joints).

Defaults are PyTorch-Pose's set; the others are off unless configured (the schema's
descriptions give the published settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pose_pipeline.core import geometry

# MMPose HalfBodyTransform: a half needs this many labelled joints to be chosen, the upper
# half is preferred with this probability, and its box is enlarged by `HALF_BODY_PADDING`.
HALF_BODY_MIN_UPPER, HALF_BODY_MIN_LOWER, HALF_BODY_UPPER_PROB = 2, 3, 0.7
HALF_BODY_PADDING = 1.5


@dataclass
class Augmentation:
    scale: float = 0.25  # scale drawn from 1 +- scale
    rotation: float = 30.0  # degrees, drawn from +- rotation ...
    rotation_prob: float = 0.4  # ... with this probability, else 0
    flip: bool = True
    color: float = 0.2  # per-channel gain drawn from 1 +- color
    shift: float = 0.0  # crop centre shift per axis, +- this x the box side ...
    shift_prob: float = 0.3  # ... with this probability
    half_body_prob: float = 0.0
    erase_prob: float = 0.0
    erase_area: tuple = (0.02, 0.33)  # fraction of the input's area
    erase_ratio: tuple = (0.3, 3.3)  # height / width, drawn log-uniform
    erase_fill: str = "noise"  # "noise" (uniform) or "mean" (the mean colour)
    blur_prob: float = 0.0
    blur_sigma: tuple = (0.8, 2.0)  # input pixels

    def __post_init__(self):
        for key in ("erase_area", "erase_ratio", "blur_sigma"):
            low, high = getattr(self, key)
            if not 0 <= low <= high:
                raise ValueError(f"augmentation.{key}: [{low}, {high}] is not a range")
        if self.erase_fill not in ("noise", "mean"):
            raise ValueError(f"augmentation.erase_fill: 'noise' or 'mean', not {self.erase_fill!r}")

    def sample(self, rng: np.random.Generator, n: int) -> dict:
        """Per-sample parameters, (n, ...) arrays. The options off by default draw after the
        others and only when on, so a run without them draws exactly what it drew before."""
        params = {
            "scale": rng.uniform(1 - self.scale, 1 + self.scale, n),
            "rotation": np.where(
                rng.random(n) < self.rotation_prob, rng.uniform(-self.rotation, self.rotation, n), 0.0
            ),
            "flip": (rng.random(n) < 0.5) if self.flip else np.zeros(n, bool),
            "gain": rng.uniform(1 - self.color, 1 + self.color, (n, 3)),
        }
        if self.shift:
            on = rng.random(n) < self.shift_prob
            params["shift"] = np.where(on[:, None], rng.uniform(-self.shift, self.shift, (n, 2)), 0.0)
        if self.half_body_prob:
            params["half_body"] = rng.random(n) < self.half_body_prob
            params["half_body_upper"] = rng.random(n) < HALF_BODY_UPPER_PROB
        if self.erase_prob:
            params["erase"] = rng.random(n) < self.erase_prob
            log_ratio = rng.uniform(np.log(self.erase_ratio[0]), np.log(self.erase_ratio[1]), n)
            # area, height / width, where the rectangle sits (fractions of the free room), noise seed
            params["erase_box"] = np.column_stack(
                [rng.uniform(*self.erase_area, n), np.exp(log_ratio), rng.random((n, 2))]
            )
            params["erase_seed"] = rng.integers(0, 2**31, n)
        if self.blur_prob:
            params["blur_sigma"] = np.where(rng.random(n) < self.blur_prob, rng.uniform(*self.blur_sigma, n), 0.0)
        return params


def crop_boxes(params: dict, keypoints_canvas, labelled, upper_lower, canvas_size: int, context: float):
    """Centre (N,2) and side (N,) of each sample's crop in the canvas, before scale and
    rotation; None, None when neither shift nor half-body is drawn (the plain person box).

    Half-body (MMPose's HalfBodyTransform): drawn, and with at least half the joints labelled,
    the box of the upper or the lower body's labelled joints (`geometry.joints_box`), upper
    first when both have enough. Then the shift, a fraction of that box's side."""
    if "shift" not in params and "half_body" not in params:
        return None, None
    n = len(keypoints_canvas)
    # the person box, as `geometry.canvas_to_input_affine` places it without these options
    center, side = np.full((n, 2), (canvas_size - 1) / 2.0), np.full(n, canvas_size / context)
    if "half_body" in params:
        center, side = _half_body(params, keypoints_canvas, np.asarray(labelled) > 0, upper_lower, center, side)
    if "shift" in params:
        center = center + params["shift"] * side[:, None]
    return center, side


def _half_body(params, points, labelled, upper_lower, center, side):
    upper, lower = upper_lower
    in_upper = np.zeros(labelled.shape, bool)
    in_upper[:, upper] = True
    n_upper = (labelled & in_upper).sum(axis=1)
    n_lower = (labelled & ~in_upper).sum(axis=1)
    enough = labelled.sum(axis=1) >= math.ceil(labelled.shape[1] / 2)
    upper_ok, lower_ok = n_upper >= HALF_BODY_MIN_UPPER, n_lower >= HALF_BODY_MIN_LOWER
    take_upper = upper_ok & (params["half_body_upper"] | ~lower_ok)
    active = params["half_body"] & enough & (upper_ok | lower_ok)
    chosen = labelled & np.where(take_upper[:, None], in_upper, ~in_upper)
    half_center, half_side = geometry.joints_box(points, chosen, HALF_BODY_PADDING)
    # a degenerate box (joints on one spot) would zoom without bound, and a sample with no
    # chosen joint has none (side -inf): keep the person box
    active &= half_side >= 1.0
    return np.where(active[:, None], half_center, center), np.where(active, half_side, side)


def erase_rects(params: dict, input_size: int) -> np.ndarray | None:
    """(N,4) int rectangles [x0, y0, x1, y1) in input pixels (empty where not drawn), or None.
    As torchvision's RandomErasing, but a rectangle that does not fit is clipped, not redrawn."""
    if "erase" not in params:
        return None
    area, ratio, fx, fy = params["erase_box"].T
    h = np.clip(np.round(np.sqrt(area * ratio) * input_size), 1, input_size).astype(np.int64)
    w = np.clip(np.round(np.sqrt(area / ratio) * input_size), 1, input_size).astype(np.int64)
    x0 = np.floor(fx * (input_size - w + 1)).astype(np.int64)
    y0 = np.floor(fy * (input_size - h + 1)).astype(np.int64)
    rects = np.column_stack([x0, y0, x0 + w, y0 + h])
    rects[~params["erase"]] = 0
    return rects


# ------------------------------------------------------------------ on the device (torch)


def blur_and_erase(x, batch, mean) -> object:
    """Gaussian blur, then erasing, of warped inputs x (N,3,S,S) in [0,1], in place where
    drawn; `batch` carries the host's `blur_sigma`, `blur_radius`, `erase_rects`,
    `erase_seeds`, `erase_fill`. Erasing comes last so its rectangles stay sharp."""
    if batch.blur_sigma is not None:
        x = gaussian_blur(x, batch.blur_sigma, batch.blur_radius)
    if batch.erase_rects is not None:
        x = erase(x, batch.erase_rects, batch.erase_seeds, batch.erase_fill, mean)
    return x


def gaussian_blur(x, sigma: np.ndarray, radius: int):
    """Blur the samples with sigma > 0, each with its own sigma (input pixels), mirrored at the
    border. The kernel's `radius` is fixed by the configured largest sigma, not the batch's,
    so a sample's blur does not depend on which others share its batch (DDP ranks)."""
    import torch
    import torch.nn.functional as F

    which = np.flatnonzero(sigma > 0)
    if not len(which):
        return x
    n, c, h, w = len(which), x.shape[1], x.shape[2], x.shape[3]
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    s = torch.as_tensor(sigma[which], dtype=torch.float64)[:, None]
    kernel = torch.exp(-(t**2) / (2 * s**2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0).to(x.device, x.dtype)
    index = torch.as_tensor(which, device=x.device)
    sub = F.pad(x[index].reshape(1, n * c, h, w), (radius,) * 4, mode="reflect")
    sub = F.conv2d(sub, kernel.view(n * c, 1, 1, -1), groups=n * c)  # separable: rows, then columns
    sub = F.conv2d(sub, kernel.view(n * c, 1, -1, 1), groups=n * c)
    x[index] = sub.view(n, c, h, w)
    return x


def erase(x, rects: np.ndarray, seeds: np.ndarray, fill: str, mean):
    """Fill each sample's rectangle [x0, y0, x1, y1) with uniform noise (`hash_noise` of its
    seed: the same values on any device) or with the `mean` colour."""
    import torch

    which = np.flatnonzero((rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1]))
    if not len(which):
        return x
    n, size = len(which), x.shape[-1]
    r = torch.as_tensor(rects[which], device=x.device).view(n, 4, 1, 1, 1)
    grid = torch.arange(size, device=x.device)
    cols, rows = grid.view(1, 1, 1, -1), grid.view(1, 1, -1, 1)
    inside = (cols >= r[:, 0]) & (cols < r[:, 2]) & (rows >= r[:, 1]) & (rows < r[:, 3])
    if fill == "noise":
        value = hash_noise(torch.as_tensor(seeds[which], device=x.device), (3, size, size)).to(x.dtype)
    else:
        value = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    index = torch.as_tensor(which, device=x.device)
    x[index] = torch.where(inside, value, x[index])
    return x


def hash_noise(seeds, shape: tuple):
    """(N, *shape) uniform values in [0, 1) from integer `seeds` (< 2**31) by an integer hash
    (Wellons' 32-bit `0x45d9f3b` mix): exact int64 arithmetic, so CPU and GPU, a resumed
    run and any DDP split give each sample the same noise, which torch's generators do not."""
    import torch

    count = math.prod(shape)
    v = torch.arange(count, device=seeds.device, dtype=torch.int64).view(1, -1)
    v = (v + seeds.view(-1, 1).to(torch.int64) * 0x9E3779B1) & 0xFFFFFFFF  # < 2**62 before the mask
    for _ in range(2):
        v = (((v >> 16) ^ v) * 0x45D9F3B) & 0xFFFFFFFF
    v = (v >> 16) ^ v
    return (v.to(torch.float64) / 2**32).view(-1, *shape)
