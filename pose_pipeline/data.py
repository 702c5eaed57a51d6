"""Training batches from a converted store.

Reading: whole shards at a time (a single-sample zarr read costs far more than its bytes),
shuffled at shard level and within a buffer of shards, split across DDP ranks.
Augmentation and targets: batched tensor operations (`geometry.warp_batch`,
`geometry.encode_heatmaps`), so on a GPU the warp and the heatmaps run on the device and
the reader only moves uint8 crops. On the CPU the warp is OpenCV's per-sample warpAffine
of the uint8 crops, which measures ~2x faster there than grid_sample on float canvases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pose_pipeline import geometry
from pose_pipeline.store import PoseStore

# Mean RGB of MPII training crops, subtracted from inputs as PyTorch-Pose does, so its
# checkpoints see the input they were trained on.
INPUT_MEAN = (0.4404, 0.4440, 0.4327)


def normalize_input(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    mean = torch.tensor(INPUT_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x.sub_(mean) if inplace else x - mean


@dataclass
class Augmentation:
    scale: float = 0.25  # scale drawn from 1 +- scale
    rotation: float = 30.0  # degrees, drawn from +- rotation ...
    rotation_prob: float = 0.4  # ... with this probability, else 0
    flip: bool = True
    color: float = 0.2  # per-channel gain drawn from 1 +- color

    def sample(self, rng: np.random.Generator, n: int) -> dict:
        return {
            "scale": rng.uniform(1 - self.scale, 1 + self.scale, n),
            "rotation": np.where(rng.random(n) < self.rotation_prob,
                                 rng.uniform(-self.rotation, self.rotation, n), 0.0),
            "flip": (rng.random(n) < 0.5) if self.flip else np.zeros(n, bool),
            "gain": rng.uniform(1 - self.color, 1 + self.color, (n, 3)),
        }


class ShardBatches:
    """Iterate (images uint8 (B,S,S,3), sample indices (B,)) over one epoch of a store.

    Shard order and a buffer of `buffer_shards` shards are shuffled with a seed that
    depends on the epoch, so a resumed run sees the same order. Rank r of a world of W
    takes every W-th shard; every rank gets the same number of batches.
    """

    def __init__(self, store: PoseStore, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, buffer_shards: int = 8, drop_last: bool = True):
        self.store = store
        self.batch_size = batch_size
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.buffer_shards = buffer_shards
        self.drop_last = drop_last
        self.shard_size = int(store.attrs["shard_size"])
        n = len(store)
        self.shards = [(s, min(s + self.shard_size, n)) for s in range(0, n, self.shard_size)]

    def batches_per_epoch(self) -> int:
        per_rank = len(self.store) // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def epoch(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.shards))
        mine = order[self.rank::self.world_size]
        limit = self.batches_per_epoch() * self.batch_size
        served = 0
        carry_images, carry_index = [], np.zeros((0,), np.int64)
        for start in range(0, len(mine), self.buffer_shards):
            group = mine[start:start + self.buffer_shards]
            # The buffer stays a list of blocks (leftover samples, then shards): batches gather
            # from it directly, so each crop is copied once (not concatenated, then permuted).
            blocks = carry_images + [self.store.images(*self.shards[s]) for s in group]
            index = np.concatenate([carry_index] + [np.arange(*self.shards[s]) for s in group])
            block_of = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
            row_of = np.concatenate([np.arange(len(b)) for b in blocks])
            perm = rng.permutation(len(index))
            full = len(index) // self.batch_size * self.batch_size
            for b in range(0, full, self.batch_size):
                if served >= limit:
                    return
                take = perm[b:b + self.batch_size]
                yield _gather(blocks, block_of[take], row_of[take]), index[take]
                served += self.batch_size
            rest = perm[full:]
            carry_images = [_gather(blocks, block_of[rest], row_of[rest])] if len(rest) else []
            carry_index = index[rest]
        if len(carry_index) and served < limit:
            yield carry_images[0][: limit - served], carry_index[: limit - served]


def _gather(blocks: list[np.ndarray], block: np.ndarray, row: np.ndarray) -> np.ndarray:
    out = np.empty((len(block),) + blocks[0].shape[1:], blocks[0].dtype)
    for k, (b, r) in enumerate(zip(block, row)):
        out[k] = blocks[b][r]
    return out


def make_batch(images: np.ndarray, keypoints_canvas: np.ndarray, visible: np.ndarray,
               canvas_size: int, context: float, input_size: int, heatmap_size: int,
               sigma: float, flip_permutation: np.ndarray, device: torch.device,
               augmentation: Augmentation | None = None, rng: np.random.Generator | None = None,
               warp: str = "auto"):
    """Inputs (B,3,in,in), targets (B,J,hm,hm) and weights (B,J) on `device`.

    images: uint8 canvases; keypoints_canvas: (B,J,2) joints projected into the canvas.
    warp: "torch" (`geometry.warp_batch`, grid_sample on the device), "cv2" (per-sample
    `warpAffine` of the uint8 crops, CPU only) or "auto": cv2 on the CPU, where it measures
    faster (benchmarks/RESULTS-loader.md), torch elsewhere. Same affines and bilinear
    sampling; cv2 rounds the warped crop to uint8, so inputs differ by <= 1/255 per pixel.
    Targets and weights do not depend on it.
    """
    n = len(images)
    if augmentation is not None:
        params = augmentation.sample(rng, n)
    else:
        params = {"scale": np.ones(n), "rotation": np.zeros(n), "flip": np.zeros(n, bool),
                  "gain": np.ones((n, 3))}
    to_input = geometry.canvas_to_input_affine(canvas_size, context, input_size,
                                               params["scale"], params["rotation"], params["flip"])
    to_heatmap = geometry.compose(geometry.input_to_heatmap_affine(input_size, heatmap_size), to_input)
    points = geometry.apply(to_heatmap, keypoints_canvas)
    weights = visible.astype(np.float32)
    # A mirrored image's left wrist is drawn where the right one was: swap the channels.
    flipped = params["flip"]
    points[flipped] = points[flipped][:, flip_permutation]
    weights[flipped] = weights[flipped][:, flip_permutation]

    if warp == "auto":
        warp = "cv2" if torch.device(device).type == "cpu" else "torch"
    if warp == "cv2":
        if torch.device(device).type != "cpu":
            raise ValueError(f"warp='cv2' runs on the CPU, not on {device}")
        crops = np.empty((n, input_size, input_size, 3), np.uint8)
        for i in range(n):
            geometry.warp_image(images[i], to_input[i], input_size, out=crops[i])
        # to planar float in one pass: the per-channel gain and mean below run ~2x faster
        # on (N,3,H,W)-contiguous data than on a channels-last view
        x = torch.empty((n, 3, input_size, input_size))
        x.copy_(torch.from_numpy(crops).permute(0, 3, 1, 2)).div_(255.0)
    elif warp == "torch":
        uint8 = torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True)
        x = geometry.warp_batch(uint8, to_input, input_size)
    else:
        raise ValueError(f"warp must be 'auto', 'torch' or 'cv2', not {warp!r}")
    if augmentation is not None and augmentation.color:
        gain = torch.as_tensor(params["gain"], dtype=x.dtype, device=device).view(n, 3, 1, 1)
        x = x.mul_(gain).clamp_(0, 1)
    targets, weights = geometry.encode_heatmaps(
        torch.as_tensor(points, dtype=torch.float32, device=device),
        torch.as_tensor(weights, device=device), heatmap_size, sigma)
    return normalize_input(x, inplace=True), targets, weights
