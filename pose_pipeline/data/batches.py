"""Training batches from a converted store.

Reading: whole shards at a time (a single-sample zarr read costs far more than its bytes),
shuffled at shard level and within a buffer of shards, split across DDP ranks.
Augmentation and targets: batched tensor operations (`geometry.warp_batch`,
`HeatmapCodec.encode`), so on a GPU the warp and the heatmaps run on the device and
the reader only moves uint8 crops. On the CPU the warp is OpenCV's per-sample warpAffine
of the uint8 crops, which measures ~2x faster there than grid_sample on float canvases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.data.augmentation import Augmentation, blur_and_erase, crop_boxes, erase_rects
from pose_pipeline.data.store import PoseStore
from pose_pipeline.errors import UserError

__all__ = ["Augmentation", "ShardBatches", "make_batch", "prepare_batch", "finish_batch", "trained_joints"]

# Mean RGB of MPII training crops, subtracted from inputs as PyTorch-Pose does, so its
# checkpoints see the input they were trained on.
INPUT_MEAN = (0.4404, 0.4440, 0.4327)


def normalize_input(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    mean = torch.tensor(INPUT_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean) if inplace else x - mean


def trained_joints(store: PoseStore, train_occluded: bool = True) -> np.ndarray:
    """(N,J) uint8, 1 where a joint gets training loss: every labelled joint (`visible`), less
    the occluded ones (labelled but hidden) unless `train_occluded`. Missing joints never."""
    labelled = np.asarray(store.visible) == 1
    if train_occluded:
        return labelled.astype(np.uint8)
    if not store.has_occluded:
        raise UserError(
            f"{store.path}: training.train_occluded is false, but this store was converted before "
            "stores recorded which labelled joints are occluded; convert it again"
        )
    return (labelled & (np.asarray(store.occluded) == 0)).astype(np.uint8)


class ShardBatches:
    """Iterate (images uint8 (B,S,S,3), sample indices (B,)) over one epoch of a store.

    The epoch is a sequence of global batches of `batch_size * world_size` samples that
    depends only on the seed, the epoch and the global batch size: shard order and a
    buffer of `buffer_shards` shards are shuffled with a seed that depends on the epoch,
    so a resumed run sees the same order. Rank r of a world of W takes positions
    [r*B, (r+1)*B) of each global batch, so the ranks' slices are disjoint, every rank
    gets the same number of batches, and W ranks of batch B see exactly the batches of
    one process with batch W*B (what makes a DDP run equal a single-process one).

    Each rank reads only its own samples: a shard it needs much of is read whole (one
    zarr read amortises the per-read cost), a shard it needs little of sample by sample.
    """

    # Read a shard whole when a rank needs more than this fraction of it: one zarr read of a
    # single sample costs several times a sample's share of a whole-shard read
    # (BENCHMARKS.md, "Several processes (DDP)").
    WHOLE_SHARD_FRACTION = 0.3

    def __init__(
        self,
        store: PoseStore,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        buffer_shards: int = 8,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.store = store
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.buffer_shards = buffer_shards
        self.shard_size = int(store.attrs["shard_size"])
        n = len(store)
        self.shards = [(s, min(s + self.shard_size, n)) for s in range(0, n, self.shard_size)]

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        """Global steps per epoch (the same on every rank); a partial last batch is dropped."""
        return len(self.store) // self.global_batch_size

    def epoch(self, epoch: int, allocate=None, read_ahead: bool = True):
        """The epoch's batches for this rank (`epochs`)."""
        return self.epochs(epoch, epoch + 1, allocate, read_ahead)

    def epochs(self, first: int, stop: int, allocate=None, read_ahead: bool = True):
        """The batches of epochs `first` to `stop - 1` for this rank, one epoch after the other.
        `allocate(shape)`: where each batch's crops are gathered (e.g. a pinned torch tensor
        on CUDA, copied to the device without staging); by default a new numpy array.
        `read_ahead`: the next shard buffer (the next epoch's first at an epoch's end) is read
        in a background thread while this one's batches are served; same batches either way."""
        from pose_pipeline.util.prefetch import Prefetcher

        plans = (plan for epoch in range(first, stop) for plan in self._plan(epoch))
        held_index, held_images = np.zeros(0, np.int64), None  # carry samples already read
        with Prefetcher(
            plans, self._read, depth=1 if read_ahead else 0, name=f"shard-reads-rank{self.rank}"
        ) as buffers:
            for mine, keep, parts_index, parts_images in buffers:
                if len(held_index):
                    parts_index, parts_images = [held_index] + parts_index, [held_images] + parts_images
                pool = _Pool(parts_index, parts_images)
                for batch in mine:
                    yield pool.take(batch, allocate), batch
                # carry samples that came with whole-shard reads are kept, not read again
                held_index, held_images = keep, (pool.take(keep) if len(keep) else None)

    def _plan(self, epoch: int):
        """Per buffer of shards: (this rank's batches in it, the carried samples to keep for the
        next buffer, the reads: whole shards this rank needs much of, other samples one run of
        consecutive indices at a time, not those already held). Index work only, no reads."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.shards))
        size, width = self.global_batch_size, self.batch_size
        left = self.batches_per_epoch()
        carry = np.zeros(0, np.int64)  # shuffled but not yet served, taken into the next buffer
        held = np.zeros(0, np.int64)
        for start in range(0, len(order), self.buffer_shards):
            group = order[start : start + self.buffer_shards]
            index = np.concatenate([carry] + [np.arange(*self.shards[s]) for s in group])
            index = index[rng.permutation(len(index))]
            count = min(len(index) // size, left)
            mine = index[: count * size].reshape(count, self.world_size, width)[:, self.rank]
            carry = index[len(index) // size * size :]
            todo = np.unique(mine.ravel())
            todo = todo[~np.isin(todo, held)]
            whole = [
                self.shards[s]
                for s in group
                if np.count_nonzero((todo >= self.shards[s][0]) & (todo < self.shards[s][1]))
                > self.WHOLE_SHARD_FRACTION * (self.shards[s][1] - self.shards[s][0])
            ]
            covered = np.concatenate([held] + [np.arange(lo, hi) for lo, hi in whole])
            single = todo[~np.isin(todo, covered)]
            runs = np.split(single, np.flatnonzero(np.diff(single) != 1) + 1) if len(single) else []
            left -= count
            held = carry[np.isin(carry, np.concatenate([covered, single]))] if left > 0 else np.zeros(0, np.int64)
            yield mine, held, whole, runs
            if left <= 0:
                return

    def _read(self, plan):
        """The reads of one buffer's plan: (batches, keep, parts' indices, parts' images)."""
        mine, keep, whole, runs = plan
        parts_index = [np.arange(lo, hi) for lo, hi in whole]
        parts_images = [self.store.images(lo, hi) for lo, hi in whole]
        if runs:
            parts_index.append(np.concatenate(runs))
            parts_images.append(np.concatenate([self.store.images(r[0], r[-1] + 1) for r in runs]))
        return mine, keep, parts_index, parts_images


class _Pool:
    """Images read for one shard buffer, looked up by sample index. The blocks stay as read:
    a batch gathers its crops from them directly, so each crop is copied once (concatenating
    the buffer first would copy every crop of it once more)."""

    def __init__(self, parts_index: list[np.ndarray], parts_images: list[np.ndarray]):
        self.parts = parts_images
        self.index = np.concatenate(parts_index) if parts_index else np.zeros(0, np.int64)
        self.part_of = np.repeat(np.arange(len(parts_images)), [len(p) for p in parts_images])
        self.row_of = (
            np.concatenate([np.arange(len(p)) for p in parts_images]) if parts_images else np.zeros(0, np.int64)
        )
        self.order = np.argsort(self.index)

    def take(self, index: np.ndarray, allocate=None):
        at = self.order[np.searchsorted(self.index, index, sorter=self.order)]
        shape = (len(index),) + self.parts[0].shape[1:]
        out = np.empty(shape, self.parts[0].dtype) if allocate is None else allocate(shape)
        rows = out if isinstance(out, np.ndarray) else out.numpy()  # a torch tensor: its memory
        for k, (part, row) in enumerate(zip(self.part_of[at], self.row_of[at])):
            rows[k] = self.parts[part][row]
        return out


@dataclass
class HostBatch:
    """A batch as the host prepares it: uint8 crops (a pinned tensor on CUDA) and the per-sample
    affines, heatmap points, weights and colour gains, all that `finish_batch` needs."""

    images: object  # (B,S,S,3) uint8: numpy array or torch tensor
    to_input: np.ndarray  # (B,2,3) canvas -> input, augmentation included
    points: np.ndarray  # (B,J,2) joints in heatmap coordinates (flipped channels swapped)
    weights: np.ndarray  # (B,J) float32
    gain: np.ndarray | None  # (B,3) colour gains, None without colour augmentation
    # blur and erasing (`augmentation.blur_and_erase`), None where not configured
    blur_sigma: np.ndarray | None = None  # (B,) input pixels, 0: no blur
    blur_radius: int = 0
    erase_rects: np.ndarray | None = None  # (B,4) [x0, y0, x1, y1) input pixels
    erase_seeds: np.ndarray | None = None  # (B,) noise seeds
    erase_fill: str = "noise"


class Samples(NamedTuple):
    """A batch's canvases of one store with their joints, as `prepare_batch` takes them."""

    images: np.ndarray  # (B,S,S,3) uint8 canvases
    keypoints_canvas: np.ndarray  # (B,J,2) joints projected into the canvas
    visible: np.ndarray  # (B,J) labelled joints


def make_batch(
    samples: Samples,
    store: PoseStore,
    codec: HeatmapCodec,
    device: torch.device,
    *,
    augmentation: Augmentation | None = None,
    rng: np.random.Generator | None = None,
    params: dict | None = None,
    warp: str = "auto",
):
    """Inputs (B,3,in,in), targets (B,J,hm,hm) and weights (B,J) on `device`.

    samples: uint8 canvases of `store` (its canvas size, context and joint set apply) and
    their joints projected into the canvas; codec: input and heatmap
    sizes and the targets. params: augmentation parameters already drawn
    (`Augmentation.sample`), else drawn here from `rng`.
    warp: "torch" (`geometry.warp_batch`, grid_sample on the device), "cv2" (per-sample
    `warpAffine` of the uint8 crops, CPU only) or "auto": cv2 on the CPU, where it measures
    faster (BENCHMARKS.md, loader), torch elsewhere. Same affines and bilinear
    sampling; cv2 rounds the warped crop to uint8, so inputs differ by <= 1/255 per pixel.
    Targets and weights do not depend on it.

    The work comes in two halves: `prepare_batch` (host: augmentation parameters, affines,
    keypoints) and `finish_batch` (the warp and targets, on `device`); training runs the
    first in a background thread (`prefetch`).
    """
    host = prepare_batch(*samples, store, codec, augmentation=augmentation, rng=rng, params=params)
    return finish_batch(host, codec, device, warp)


def prepare_batch(
    images,
    keypoints_canvas: np.ndarray,
    visible: np.ndarray,
    store: PoseStore,
    codec: HeatmapCodec,
    *,
    augmentation: Augmentation | None = None,
    rng: np.random.Generator | None = None,
    params: dict | None = None,
) -> HostBatch:
    """The host half of `make_batch`: parameters, affines and keypoints of the batch."""
    n = len(images)
    if params is None and augmentation is not None:
        params = augmentation.sample(rng, n)
    elif params is None:
        params = {"scale": np.ones(n), "rotation": np.zeros(n), "flip": np.zeros(n, bool), "gain": np.ones((n, 3))}
    # shift and half-body move and resize the crop box in the canvas: still one affine
    center, box = crop_boxes(
        params, keypoints_canvas, visible, store.joint_set.body_halves(), store.canvas_size, store.context
    )
    to_input = codec.canvas_to_input(
        store.canvas_size, store.context, params["scale"], params["rotation"], params["flip"], center, box
    )
    points = geometry.apply(codec.to_heatmap(to_input), keypoints_canvas)
    weights = visible.astype(np.float32)
    # A mirrored image's left wrist is drawn where the right one was: swap the channels.
    flipped, flip_permutation = params["flip"], store.joint_set.flip_permutation()
    points[flipped] = points[flipped][:, flip_permutation]
    weights[flipped] = weights[flipped][:, flip_permutation]
    gain = params["gain"] if augmentation is not None and augmentation.color else None
    batch = HostBatch(images, to_input, points, weights, gain)
    if "blur_sigma" in params:
        batch.blur_sigma, batch.blur_radius = params["blur_sigma"], math.ceil(3 * augmentation.blur_sigma[1])
    if "erase" in params:
        batch.erase_rects, batch.erase_seeds = erase_rects(params, codec.input_size), params["erase_seed"]
        batch.erase_fill = augmentation.erase_fill
    return batch


def finish_batch(batch: HostBatch, codec: HeatmapCodec, device: torch.device, warp: str = "auto"):
    """The device half of `make_batch`: the warp, colour gain, mean and targets on `device`."""
    n, input_size, to_input = len(batch.images), codec.input_size, batch.to_input
    if warp == "auto":
        warp = "cv2" if torch.device(device).type == "cpu" else "torch"
    if warp == "cv2":
        if torch.device(device).type != "cpu":
            raise ValueError(f"warp='cv2' runs on the CPU, not on {device}")
        images = np.asarray(batch.images)
        crops = np.empty((n, input_size, input_size, 3), np.uint8)
        for i in range(n):
            geometry.warp_image(images[i], to_input[i], input_size, out=crops[i])
        # to planar float in one pass: the per-channel gain and mean below run faster on
        # (N,3,H,W)-contiguous data than on a channels-last view
        x = torch.empty((n, 3, input_size, input_size))
        x.copy_(torch.from_numpy(crops).permute(0, 3, 1, 2)).div_(255.0)
    elif warp == "torch":
        images = batch.images if isinstance(batch.images, torch.Tensor) else np.ascontiguousarray(batch.images)
        # from pinned memory (training on CUDA) the copy runs asynchronously
        uint8 = torch.as_tensor(images).to(device, non_blocking=True)
        x = geometry.warp_batch(uint8, to_input, input_size)
    else:
        raise ValueError(f"warp must be 'auto', 'torch' or 'cv2', not {warp!r}")
    if batch.gain is not None:
        gain = torch.as_tensor(batch.gain, dtype=x.dtype, device=device).view(n, 3, 1, 1)
        x = x.mul_(gain).clamp_(0, 1)
    x = blur_and_erase(x, batch, INPUT_MEAN)
    targets, weights = codec.encode(
        torch.as_tensor(batch.points, dtype=torch.float32, device=device), torch.as_tensor(batch.weights, device=device)
    )
    return normalize_input(x, inplace=True), targets, weights
