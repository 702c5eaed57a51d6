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

    def canvas_to_input(
        self, canvas_size: int, context: float, scale=1.0, rotation_deg=0.0, flip=False, center=None, box=None
    ) -> np.ndarray:
        """Stored canvas -> network input, with augmentation (`geometry.canvas_to_input_affine`)."""
        return geometry.canvas_to_input_affine(
            canvas_size, context, self.input_size, scale, rotation_deg, flip, center, box
        )

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
        (coords (N,J,2) heatmap array coords, scores (N,J) the maps' values there) as float64
        numpy arrays, after the codec's blur: `decode_tensor` in float64, the one decode of
        predict, validation and the exported models (a tensor is decoded on its device)."""
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
    array coordinates, scores (N,J) the map's value at the decoded pixel), in the heatmaps'
    dtype.

    The position is the arg-max of the map blurred by `blur_sigma` (`blur_heatmaps`: the
    map mirrored beyond its border, not rescaled), refined by a Newton step on its log
    (`subpixel_offsets`). The score is the unblurred map's value at that arg-max pixel: a
    value the map holds, within its [min, max], on the map's own scale (a Gaussian target's
    peak height, not its lower blurred one), so scores stay comparable with and without
    blur. Nothing is divided by the blurred maximum: rescaling by peak / blurred maximum
    flips a map whose blurred maximum is <= 0 (its arg-min decoded, with a score of any size
    and sign).

    Non-finite values (NaN, +-inf) say nothing about where the joint is (an overflow, a
    masked pixel): each becomes its map's lowest finite value (0 in a map without any), so
    it wins the arg-max only on a map without a higher finite value, the blur stays finite
    and scores and coordinates are finite. Coordinates lie within [0, W-1] x [0, H-1].

    Plain tensor operations without data-dependent control flow, so `torch.jit.trace` and
    `torch.onnx.export` carry it into the exported models (`pose_pipeline.inference.export`).
    """
    import torch

    heatmaps = finite_or_lowest(heatmaps)
    smoothed = blur_heatmaps(heatmaps, blur_sigma) if blur_sigma else heatmaps
    w = heatmaps.shape[-1]
    idx = smoothed.flatten(2).argmax(dim=-1)  # the first maximum, as numpy's
    scores = heatmaps.flatten(2).gather(-1, idx[..., None])[..., 0]
    y, x = torch.div(idx, w, rounding_mode="floor"), idx % w
    off_x, off_y = subpixel_offsets(smoothed, x, y)
    coords = torch.stack([x.to(heatmaps.dtype) + off_x, y.to(heatmaps.dtype) + off_y], dim=-1)
    return coords, scores


def finite_or_lowest(heatmaps):
    """(N,J,H,W) tensor with each non-finite value replaced by its map's lowest finite value
    (0 in a map without any finite value)."""
    import torch

    finite = torch.isfinite(heatmaps)
    lowest = torch.where(finite, heatmaps, torch.full_like(heatmaps, float("inf"))).amin(dim=(2, 3), keepdim=True)
    lowest = torch.where(torch.isfinite(lowest), lowest, torch.zeros_like(lowest))
    return torch.where(finite, heatmaps, lowest)


def subpixel_offsets(heatmaps, x, y):
    """(off_x, off_y) (N,J) from the integer peaks (x, y) of finite (N,J,H,W) heatmaps.

    A Newton step on the log-heatmap at the peak (second-order Taylor expansion, as in DARK).
    For an exact Gaussian target the log is quadratic, so the step recovers its centre
    exactly; a Gaussian blur keeps a Gaussian Gaussian, so blurred targets still decode
    exactly away from the border. Where the Hessian is not negative definite (flat or
    border peaks) it falls back to a quarter-pixel step towards the higher neighbour, and
    on the border to none (so coordinates stay within the map). The log is of the map
    clamped at 1e-10: a map shifted by its minimum instead would not be Gaussian any more
    and lose the exact decode; where the peak is <= 1e-10 the clamped neighbourhood is flat,
    so the offset is 0 and the decode is the integer arg-max.
    """
    import torch
    import torch.nn.functional as F

    h, w = heatmaps.shape[-2], heatmaps.shape[-1]
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
    return torch.where(newton_ok, off_x, quarter_x), torch.where(newton_ok, off_y, quarter_y)


def gaussian_blur_matrix(size: int, blur_sigma: float) -> np.ndarray:
    """(size, size) matrix M with M @ v the Gaussian blur of v: scipy.ndimage's kernel
    (truncated at 4 sigma, normalised) and its default `mode="reflect"` (the map mirrored
    about its edges, d c b a | a b c d, as often as the kernel reaches). Every row sums to 1,
    so the blur of a map plus a constant is its blur plus that constant: the padding cannot
    favour the border (zeros beyond it would lift a negative map's corners above its peak),
    and it is local (padding with the map's minimum would let one low outlier anywhere pull
    every border peak down); a peak on the border stays there.
    As a matrix product the blur is one MatMul in an exported graph, in any dtype."""
    size = int(size)  # torch.jit.trace hands sizes over as tensors
    radius = int(4.0 * blur_sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * offsets**2 / blur_sigma**2)
    kernel /= kernel.sum()
    source = (np.arange(size)[:, None] + offsets[None, :]) % (2 * size)  # mirrored twice: the period
    source = np.where(source < size, source, 2 * size - 1 - source)
    matrix = np.zeros((size, size))
    np.add.at(matrix, (np.repeat(np.arange(size), len(offsets)), source.ravel()), np.tile(kernel, size))
    return matrix


def blur_heatmaps(heatmaps, blur_sigma: float):
    """(N,J,H,W) tensor blurred by `blur_sigma` (heatmap pixels), not rescaled: each value
    is a weighted mean of its map's values (`gaussian_blur_matrix`)."""
    import torch

    rows = torch.as_tensor(
        gaussian_blur_matrix(heatmaps.shape[-2], blur_sigma), dtype=heatmaps.dtype, device=heatmaps.device
    )
    cols = torch.as_tensor(
        gaussian_blur_matrix(heatmaps.shape[-1], blur_sigma).T, dtype=heatmaps.dtype, device=heatmaps.device
    )
    return rows @ heatmaps @ cols
