"""The heatmap codec: the one target representation, modelled on MMPose's `MSRAHeatmap`.

One `HeatmapCodec` owns everything that ties keypoints to heatmaps: the network input size,
the heatmap size (`HEATMAP_STRIDE` times smaller, decided here), the Gaussian sigma of the
targets, the blur applied before decoding, and the affines of the chain

    image -> canvas (the store's `affine`) -> input -> heatmap.

Training (`data.make_batch`), prediction (`predict.predict_store`), validation and the
roundtrip check all take a codec, so they cannot disagree on any of these.

Coordinates follow `geometry`: array coordinates, pixel centres at integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose_pipeline.core import geometry
from pose_pipeline.core.joints import PERSON_BOX

# The models (hourglass, PyraNet) output heatmaps at 1/4 of their input, and halve them
# HOURGLASS_DEPTH times inside each hourglass: heatmap sizes are multiples of 2**HOURGLASS_DEPTH.
HEATMAP_STRIDE = 4
HOURGLASS_DEPTH = 4


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian heatmaps at sub-pixel positions, decoded by a Newton step on the log.

    input_size: network input side; heatmap_size: heatmap side (default input / 4);
    sigma: target Gaussian (heatmap pixels); blur_sigma: Gaussian blur before decoding
    (None or 0: none).
    """

    input_size: int = 256
    heatmap_size: int | None = None
    sigma: float = 1.0
    blur_sigma: float | None = None

    def __post_init__(self):
        if self.heatmap_size is None:
            object.__setattr__(self, "heatmap_size", self.input_size // HEATMAP_STRIDE)
        if not self.blur_sigma:
            object.__setattr__(self, "blur_sigma", None)

    @classmethod
    def from_settings(cls, training: dict, evaluation: dict | None = None) -> HeatmapCodec:
        """The codec of an experiment's `training` settings, decoding with its `evaluation`
        blur (none without evaluation settings)."""
        return cls(
            training["input_size"], training["heatmap_size"], training["sigma"], (evaluation or {}).get("blur_sigma")
        )

    # ------------------------------------------------------------------------- affines

    def input_to_heatmap(self) -> np.ndarray:
        """(2,3) network input -> heatmap (pixel edges aligned, so flips commute)."""
        return geometry.resize_affine(self.input_size, self.heatmap_size)

    def canvas_to_input(self, canvas_size: int, context: float, scale=1.0, rotation_deg=0.0, flip=False) -> np.ndarray:
        """Stored canvas -> network input, with augmentation (`geometry.canvas_to_input_affine`)."""
        return geometry.canvas_to_input_affine(canvas_size, context, self.input_size, scale, rotation_deg, flip)

    def to_heatmap(self, to_input: np.ndarray) -> np.ndarray:
        """Any affine into the network input, continued into the heatmap."""
        return geometry.compose(self.input_to_heatmap(), to_input)

    def image_to_heatmap(self, image_to_canvas: np.ndarray, canvas_size: int, context: float) -> np.ndarray:
        """(N,2,3) original image -> heatmap through a store's canvases (no augmentation)."""
        return geometry.compose(self.to_heatmap(self.canvas_to_input(canvas_size, context)), image_to_canvas)

    def person_to_heatmap(self, center, scale) -> np.ndarray:
        """(N,2,3) original image -> heatmap for the person box (PERSON_BOX x scale around
        `center`, image array coordinates) filling the input."""
        box = PERSON_BOX * np.asarray(scale, np.float64)
        return self.to_heatmap(geometry.crop_affine(center, box, self.input_size))

    # ------------------------------------------------------------------ encode, decode

    def encode(self, points, weights):
        """Gaussian targets centred at sub-pixel heatmap positions.

        points (N,J,2) heatmap array coordinates, weights (N,J) -> (targets (N,J,hm,hm),
        weights (N,J)) as float32 tensors on the points' device. A joint whose centre lies
        outside the heatmap gets an all-zero target and weight 0 (nothing to learn there).
        Accepts numpy or torch inputs.
        """
        import torch

        size, sigma = self.heatmap_size, self.sigma
        points = torch.as_tensor(points, dtype=torch.float32)
        weights = torch.as_tensor(weights, dtype=torch.float32, device=points.device)
        grid = torch.arange(size, dtype=torch.float32, device=points.device)
        px, py = points[..., 0, None], points[..., 1, None]
        inside = ((px > -0.5) & (px < size - 0.5) & (py > -0.5) & (py < size - 0.5)).squeeze(-1)
        weights = weights * inside
        gx = torch.exp(-((grid - px) ** 2) / (2 * sigma**2))  # (N,J,size): separable
        gy = torch.exp(-((grid - py) ** 2) / (2 * sigma**2))
        # masking the (N,J,size) factor, not the (N,J,size,size) product: same values (x 0 or 1)
        targets = (gy * (weights > 0)[..., None])[..., :, None] * gx[..., None, :]
        return targets, weights

    def decode(self, heatmaps):
        """Sub-pixel maxima of (N,J,H,W) heatmaps (numpy, or a torch tensor on any device) ->
        (coords (N,J,2) heatmap array coords, scores (N,J) peak values) as float64 numpy
        arrays, after the codec's blur: `decode_tensor` in float64, the one decode of predict,
        validation and the exported models (a tensor is decoded on its device)."""
        import torch

        if not isinstance(heatmaps, torch.Tensor):
            heatmaps = torch.from_numpy(np.asarray(heatmaps, dtype=np.float64))
        coords, scores = self.decode_tensor(heatmaps)
        return coords.cpu().numpy(), scores.cpu().numpy()

    def decode_tensor(self, heatmaps):
        """As `decode`, for a torch tensor, left on its device as float64 tensors (nothing
        waits for the device)."""
        return decode_heatmaps_torch(heatmaps.detach().double(), self.blur_sigma)


def decode_heatmaps_torch(heatmaps, blur_sigma: float | None = None):
    """Sub-pixel maxima of (N,J,H,W) heatmaps (a torch tensor) -> (coords (N,J,2) heatmap
    array coordinates, scores (N,J) peak values), in the heatmaps' dtype.

    A Newton step on the log-heatmap at the arg-max (second-order Taylor expansion, as in
    DARK). For an exact Gaussian target the log is quadratic, so the step recovers its
    centre exactly; `blur_sigma` first smooths network outputs into that shape (a Gaussian
    blur keeps a Gaussian Gaussian, so targets still decode exactly). Where the Hessian is
    not negative definite (flat or border peaks) it falls back to a quarter-pixel step
    towards the higher neighbour.

    Plain tensor operations without data-dependent control flow, so `torch.jit.trace` and
    `torch.onnx.export` carry it into the exported models (`pose_pipeline.inference.export`).
    """
    import torch
    import torch.nn.functional as F

    if blur_sigma:
        heatmaps = blur_keeping_peaks(heatmaps, blur_sigma)
    h, w = heatmaps.shape[-2], heatmaps.shape[-1]
    flat = heatmaps.flatten(2)
    idx = flat.argmax(dim=-1)  # the first maximum, as numpy's
    scores = flat.gather(-1, idx[..., None])[..., 0]
    y, x = torch.div(idx, w, rounding_mode="floor"), idx % w

    log = torch.log(torch.clamp(heatmaps, min=1e-10))
    padded = F.pad(log, (1, 1, 1, 1), mode="replicate").flatten(2)  # edge values beyond the border
    centre = (y + 1) * (w + 2) + (x + 1)

    def at(dy: int, dx: int):
        return padded.gather(-1, (centre + dy * (w + 2) + dx)[..., None])[..., 0]

    c = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = at(0, 1) - 2 * c + at(0, -1)
    dyy = at(1, 0) - 2 * c + at(-1, 0)
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    interior = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    newton_ok = interior & (dxx < 0) & (det > 1e-12)
    safe_det = torch.where(newton_ok, det, torch.ones_like(det))
    off_x = -(dyy * dx - dxy * dy) / safe_det
    off_y = -(dxx * dy - dxy * dx) / safe_det
    newton_ok = newton_ok & (off_x.abs() <= 1) & (off_y.abs() <= 1)

    inside = interior.to(heatmaps.dtype)
    quarter_x = 0.25 * torch.sign(at(0, 1) - at(0, -1)) * inside
    quarter_y = 0.25 * torch.sign(at(1, 0) - at(-1, 0)) * inside
    coords = torch.stack(
        [
            x.to(heatmaps.dtype) + torch.where(newton_ok, off_x, quarter_x),
            y.to(heatmaps.dtype) + torch.where(newton_ok, off_y, quarter_y),
        ],
        dim=-1,
    )
    return coords, scores


def gaussian_blur_matrix(size: int, blur_sigma: float) -> np.ndarray:
    """(size, size) matrix M with M @ v the Gaussian blur of v: scipy.ndimage's kernel
    (truncated at 4 sigma, normalised) and its `mode="constant"` (zeros beyond the border).
    As a matrix product the blur is one MatMul in an exported graph, in any dtype."""
    radius = int(4.0 * blur_sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * offsets**2 / blur_sigma**2)
    kernel /= kernel.sum()
    distance = np.arange(size)[None, :] - np.arange(size)[:, None]
    return np.where(np.abs(distance) <= radius, kernel[np.clip(distance + radius, 0, 2 * radius)], 0.0)


def blur_keeping_peaks(heatmaps, blur_sigma: float):
    """(N,J,H,W) tensor blurred by `blur_sigma` (heatmap pixels), each map rescaled to its
    former peak height, so scores stay comparable with and without blur."""
    import torch

    rows = torch.as_tensor(
        gaussian_blur_matrix(heatmaps.shape[-2], blur_sigma), dtype=heatmaps.dtype, device=heatmaps.device
    )
    cols = torch.as_tensor(
        gaussian_blur_matrix(heatmaps.shape[-1], blur_sigma).T, dtype=heatmaps.dtype, device=heatmaps.device
    )
    peak = heatmaps.amax(dim=(2, 3), keepdim=True)
    blurred = rows @ heatmaps @ cols
    return blurred * (peak / torch.clamp(blurred.amax(dim=(2, 3), keepdim=True), min=1e-12))
