"""Image <-> crop <-> input geometry: affines and warps.

The one place for affine maths; converter, loader, predictor, the heatmap codec
(`codec.py`, which owns targets, decoding and the input -> heatmap step) and the roundtrip
check all call it.

Conventions
-----------
* Array coordinates: pixel *centres* at integer positions, 0-based, x to the right, y down.
  This is what `cv2.warpAffine` and `torch.nn.functional.grid_sample(align_corners=False)`
  assume, so a crop drawn with an affine here equals `cv2.warpAffine(image, affine, (S, S))`.
* Annotated coordinates keep the dataset's own origin (MPII and LSP are MATLAB 1-based:
  the first pixel's centre is at 1.0). `pixel_origin` converts: array = annotated - origin.
* An affine is a (2,3) float64 matrix [A | t] acting on column vectors (x, y, 1); batches
  are (N,2,3).
* Scaling between two grids (input -> heatmap) keeps pixel edges aligned:
  x_out = (x_in + 0.5) * out/in - 0.5, so flipping an image flips its heatmap exactly.
"""

from __future__ import annotations

import numpy as np

from pose_pipeline.core.joints import PERSON_BOX

# ---------------------------------------------------------------------------- affines


def to_homogeneous(affine: np.ndarray) -> np.ndarray:
    """(...,2,3) -> (...,3,3)."""
    affine = np.asarray(affine, dtype=np.float64)
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), affine.shape[:-2] + (1, 3))
    return np.concatenate([affine, bottom], axis=-2)


def compose(*affines: np.ndarray) -> np.ndarray:
    """compose(A, B, C) maps x -> A(B(C(x))) (rightmost applied first); batches broadcast."""
    result = to_homogeneous(affines[-1])
    for affine in reversed(affines[:-1]):
        result = to_homogeneous(affine) @ result
    return result[..., :2, :]


def invert(affine: np.ndarray) -> np.ndarray:
    return np.linalg.inv(to_homogeneous(affine))[..., :2, :]


def apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply (2,3) or (N,2,3) affines to (...,2) points ((N,J,2) for a batch)."""
    affine = np.asarray(affine, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    if affine.ndim == 3:  # one affine per sample: points (N,J,2)
        return np.einsum("nij,nkj->nki", affine[:, :, :2], points) + affine[:, None, :, 2]
    return points @ affine[:, :2].T + affine[:, 2]


def crop_affine(center, box_size, out_size: int, rotation_deg=0.0) -> np.ndarray:
    """Affine from image array coordinates to an out_size x out_size crop.

    The square box of side `box_size` (image pixels) centred at `center` fills the crop,
    rotated by `rotation_deg` (counter-clockwise as seen on screen). Vectorised: center
    (N,2), box_size (N,), rotation (N,) give (N,2,3).
    """
    center = np.asarray(center, dtype=np.float64)
    box_size = np.asarray(box_size, dtype=np.float64)
    theta = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    zoom = out_size / box_size
    cos, sin = np.cos(theta) * zoom, np.sin(theta) * zoom
    half = (out_size - 1) / 2.0
    cx, cy = center[..., 0], center[..., 1]
    # y points down, so a screen counter-clockwise rotation is [[cos, sin], [-sin, cos]].
    row0 = np.stack([cos, sin, half - cos * cx - sin * cy], axis=-1)
    row1 = np.stack([-sin, cos, half + sin * cx - cos * cy], axis=-1)
    return np.stack([row0, row1], axis=-2)


def person_canvas_affine(center, scale, canvas_size: int, context: float) -> np.ndarray:
    """The converters' canvas: original image array coordinates -> a canvas_size square
    showing the person box (PERSON_BOX x scale, centred at `center`, array coordinates)
    enlarged by `context`. Stores keep it as `affine`; `infer` cuts raw images with it too.
    Vectorised: center (N,2), scale (N,) -> (N,2,3)."""
    return crop_affine(center, PERSON_BOX * np.asarray(scale, dtype=np.float64) * context, canvas_size)


def resize_affine(in_size: int, out_size: int) -> np.ndarray:
    """Affine between two square grids covering the same area (pixel edges aligned)."""
    f = out_size / in_size
    return np.array([[f, 0.0, 0.5 * f - 0.5], [0.0, f, 0.5 * f - 0.5]])


def hflip_affine(size: int) -> np.ndarray:
    """Mirror a size-wide grid left to right: x -> size - 1 - x."""
    return np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]])


def annotated_to_array(points: np.ndarray, pixel_origin: float) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) - pixel_origin


def array_to_annotated(points: np.ndarray, pixel_origin: float) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) + pixel_origin


def warp_image(image: np.ndarray, affine: np.ndarray, out_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """The crop of `image` under `affine` (bilinear, black outside); into `out` if given."""
    import cv2

    return cv2.warpAffine(
        image,
        np.asarray(affine, np.float64),
        (out_size, out_size),
        dst=out,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


# ------------------------------------------------------------------ batched warps (torch)


def warp_batch(images, affines, out_size: int):
    """Warp a batch of crops on their device: images (N,H,W,3) uint8, affines (N,2,3)
    numpy/tensor mapping source pixels to output pixels -> (N,3,out,out) float32 in [0,1].

    Same geometry as `warp_image` (bilinear, zeros outside), as one grid_sample call so it
    runs on the GPU when the batch lives there.
    """
    import torch
    import torch.nn.functional as F

    n, h, w, _ = images.shape
    # grid_sample wants, per output pixel, the source position in [-1, 1] edge coordinates.
    to_norm_src = np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0]])
    from_norm_out = invert(
        np.array([[2.0 / out_size, 0.0, 1.0 / out_size - 1.0], [0.0, 2.0 / out_size, 1.0 / out_size - 1.0]])
    )
    theta = compose(to_norm_src, invert(np.asarray(affines, np.float64)), from_norm_out)
    theta = torch.as_tensor(theta, dtype=torch.float32, device=images.device)
    src = images.permute(0, 3, 1, 2).float().div_(255.0)
    grid = F.affine_grid(theta, [n, 3, out_size, out_size], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ------------------------------------------------------------ the crop-to-input pipeline


def canvas_to_input_affine(
    canvas_size: int, context: float, input_size: int, scale=1.0, rotation_deg=0.0, flip=False, center=None, box=None
) -> np.ndarray:
    """Affine from a stored canvas to the network input, with optional augmentation.

    The canvas holds the person box enlarged by `context`; the input shows the box itself
    scaled by `scale` and rotated by `rotation_deg` about the canvas centre, mirrored when
    `flip`. `center` (N,2) and `box` (N,) (canvas pixels, before `scale`) replace the person
    box, for a shifted or half-body crop. Vectorised over arrays of length N -> (N,2,3).
    """
    scale = np.asarray(scale, dtype=np.float64)
    if center is None:
        center = np.full(scale.shape + (2,), (canvas_size - 1) / 2.0)
    box = canvas_size / context * scale if box is None else np.asarray(box, np.float64) * scale
    affine = crop_affine(center, box, input_size, rotation_deg)
    flip = np.asarray(flip, dtype=bool)
    if flip.any():
        flipped = compose(hflip_affine(input_size), affine)
        affine = np.where(flip[..., None, None], flipped, affine)
    return affine


def joints_box(points: np.ndarray, chosen: np.ndarray, padding: float) -> tuple[np.ndarray, np.ndarray]:
    """The square box around each sample's chosen joints, as MMPose's half-body box for a
    square input: centred on their mean, side max(width, height) x `padding`.
    points (N,J,2), chosen (N,J) bool (at least one per sample) -> (centre (N,2), side (N,))."""
    chosen = np.asarray(chosen, bool)[..., None]
    count = chosen.sum(axis=1)
    center = np.where(chosen, points, 0.0).sum(axis=1) / np.maximum(count, 1)
    extent = np.where(chosen, points, -np.inf).max(axis=1) - np.where(chosen, points, np.inf).min(axis=1)
    return center, extent.max(axis=-1) * padding
