"""The training loader: shard-level reading and the CPU (cv2) and torch warp paths of make_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_pipeline.data import Augmentation, ShardBatches, make_batch
from pose_pipeline.store import open_store


def reference_epoch(loader: ShardBatches, epoch: int):
    """The plain definition: per buffer, concatenate leftovers and shards, permute, slice."""
    rng = np.random.default_rng([loader.seed, epoch])
    order = rng.permutation(len(loader.shards))
    mine = order[loader.rank::loader.world_size]
    limit, served = loader.batches_per_epoch() * loader.batch_size, 0
    carry_images = np.zeros((0,) + loader.store.images(0, 1).shape[1:], np.uint8)
    carry_index = np.zeros((0,), np.int64)
    for start in range(0, len(mine), loader.buffer_shards):
        group = mine[start:start + loader.buffer_shards]
        images = np.concatenate([carry_images] + [loader.store.images(*loader.shards[s]) for s in group])
        index = np.concatenate([carry_index] + [np.arange(*loader.shards[s]) for s in group])
        perm = rng.permutation(len(index))
        images, index = images[perm], index[perm]
        full = len(index) // loader.batch_size * loader.batch_size
        for b in range(0, full, loader.batch_size):
            if served >= limit:
                return
            yield images[b:b + loader.batch_size], index[b:b + loader.batch_size]
            served += loader.batch_size
        carry_images, carry_index = images[full:], index[full:]
    if len(carry_index) and served < limit:
        yield carry_images[: limit - served], carry_index[: limit - served]


@pytest.mark.parametrize("batch_size,buffer_shards,drop_last", [(5, 2, False), (4, 1, True), (7, 8, False)])
def test_shard_batches_equal_the_plain_definition(random_store, batch_size, buffer_shards, drop_last):
    store = open_store(random_store)
    loader = ShardBatches(store, batch_size, seed=3, buffer_shards=buffer_shards, drop_last=drop_last)
    all_images = store.images()
    for epoch in range(2):
        got = list(loader.epoch(epoch))
        want = list(reference_epoch(loader, epoch))
        assert len(got) == len(want) == loader.batches_per_epoch()
        for (images, index), (ref_images, ref_index) in zip(got, want):
            np.testing.assert_array_equal(index, ref_index)
            np.testing.assert_array_equal(images, ref_images)
            np.testing.assert_array_equal(images, all_images[index])  # each crop is its sample's
            assert images.flags.c_contiguous
        seen = np.concatenate([index for _, index in got])
        if not drop_last:
            assert sorted(seen) == list(range(len(store)))  # every sample once per epoch


def test_cv2_and_torch_warps_agree(random_store):
    store = open_store(random_store)
    images, index = next(iter(ShardBatches(store, 8, seed=1).epoch(0)))
    args = (images, store.keypoints_in_canvas()[index], store.visible[index], store.canvas_size, store.context,
            48, 12, 1.0, store.joint_set.flip_permutation(), torch.device("cpu"), Augmentation())
    x_cv2, targets_cv2, weights_cv2 = make_batch(*args, np.random.default_rng(5), warp="cv2")
    x_auto = make_batch(*args, np.random.default_rng(5))[0]
    x_torch, targets_torch, weights_torch = make_batch(*args, np.random.default_rng(5), warp="torch")
    assert torch.equal(x_auto, x_cv2)  # auto on the CPU is cv2
    assert x_cv2.shape == x_torch.shape == (8, 3, 48, 48) and x_cv2.dtype == torch.float32
    # same affines and bilinear sampling; cv2 rounds the crop to uint8 before the colour gain
    # (at most 1.2 x), so inputs differ by less than one grey level ...
    assert float((x_cv2 - x_torch).abs().max()) < 1.0 / 255
    assert float((x_cv2 - x_torch).abs().mean()) < 0.5 / 255
    # ... while the targets do not depend on the warp at all
    assert torch.equal(targets_cv2, targets_torch) and torch.equal(weights_cv2, weights_torch)
    assert float(targets_cv2.sum()) > 0


def test_make_batch_rejects_an_unknown_warp(random_store):
    store = open_store(random_store)
    with pytest.raises(ValueError, match="warp"):
        make_batch(store.images(0, 2), store.keypoints_in_canvas()[:2], store.visible[:2], store.canvas_size,
                   store.context, 48, 12, 1.0, store.joint_set.flip_permutation(), torch.device("cpu"),
                   warp="scipy")
