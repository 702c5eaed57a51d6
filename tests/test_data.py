"""The training loader: shard-level reading and the CPU (cv2) and torch warp paths of make_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.data.batches import Augmentation, Samples, ShardBatches, make_batch
from pose_pipeline.data.store import open_store


@pytest.mark.parametrize("batch_size,buffer_shards", [(5, 2), (4, 1), (7, 8)])
def test_shard_batches_serve_each_sample_its_own_crop_once(random_store, batch_size, buffer_shards):
    # (How ranks split the batches is tested in test_train_ddp.py.)
    store = open_store(random_store)
    loader = ShardBatches(store, batch_size, seed=3, buffer_shards=buffer_shards)
    all_images = store.images()
    orders = []
    for epoch in range(2):
        got = list(loader.epoch(epoch))
        assert len(got) == loader.batches_per_epoch()
        for images, index in got:
            assert len(index) == batch_size
            np.testing.assert_array_equal(images, all_images[index])
            assert images.flags.c_contiguous
        seen = np.concatenate([index for _, index in got])
        assert len(np.unique(seen)) == len(seen)  # no sample twice in an epoch
        assert len(seen) > len(store) - batch_size  # only the partial last batch is left out
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch


def test_cv2_and_torch_warps_agree(random_store):
    store = open_store(random_store)
    images, index = next(iter(ShardBatches(store, 8, seed=1).epoch(0)))
    args = (
        Samples(images, store.keypoints_in_canvas()[index], store.visible[index]),
        store,
        HeatmapCodec(48, 12),
        torch.device("cpu"),
    )
    x_cv2, targets_cv2, weights_cv2 = make_batch(
        *args, augmentation=Augmentation(), rng=np.random.default_rng(5), warp="cv2"
    )
    x_auto = make_batch(*args, augmentation=Augmentation(), rng=np.random.default_rng(5))[0]
    x_torch, targets_torch, weights_torch = make_batch(
        *args, augmentation=Augmentation(), rng=np.random.default_rng(5), warp="torch"
    )
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
        make_batch(
            Samples(store.images(0, 2), store.keypoints_in_canvas()[:2], store.visible[:2]),
            store,
            HeatmapCodec(48, 12),
            torch.device("cpu"),
            warp="scipy",
        )


def test_zarrs_decoding_reads_the_same_crops(random_store):
    pytest.importorskip("zarrs")
    from pose_pipeline.data.store import FAST_CODEC_PIPELINE, fast_codec_pipeline

    assert fast_codec_pipeline() == FAST_CODEC_PIPELINE
    fast, plain = open_store(random_store), open_store(random_store, fast_decode=False)
    np.testing.assert_array_equal(fast.images(), plain.images())
    np.testing.assert_array_equal(fast.images(3, 11), plain.images()[3:11])
    assert type(fast._images._async_array.codec_pipeline).__name__ == "ZarrsCodecPipeline"
    assert type(plain._images._async_array.codec_pipeline).__name__ != "ZarrsCodecPipeline"


def test_zarrs_can_be_switched_off(monkeypatch):
    from pose_pipeline.data.store import fast_codec_pipeline

    monkeypatch.setenv("POSE_PIPELINE_ZARRS", "0")
    assert fast_codec_pipeline() is None


def test_stores_from_before_the_occluded_array_stay_readable(random_store, tmp_path):
    """`occluded` is optional: a store without it (as stores converted before it) opens, reads it
    as all 0, verifies clean, and trains every labelled joint; one with it reads it back."""
    from helpers import make_random_store

    from pose_pipeline.data.batches import trained_joints

    old = open_store(random_store)
    assert not old.has_occluded and "occluded" not in old.array_names() and old.verify() == []
    assert old.occluded.shape == old.visible.shape and not old.occluded.any()
    np.testing.assert_array_equal(trained_joints(old), old.visible)
    new = open_store(make_random_store(tmp_path / "new.zarr", occluded=True))
    assert new.has_occluded and "occluded" in new.array_names() and new.verify() == []
    assert new.occluded.any() and (new.occluded <= new.visible).all()
    np.testing.assert_array_equal(trained_joints(new, train_occluded=False), new.visible * (1 - new.occluded))
