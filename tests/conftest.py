"""Shared test fixtures: the real data samples beside the checkout (../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def _shared_dir(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data sample {path} is absent (CI has ../shared; a fresh clone does not)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """../shared/data: real LSP, MPII and COCO samples; the test skips where it is absent."""
    return _shared_dir("data")


@pytest.fixture
def shared_fixtures() -> Path:
    """../shared/fixtures: reference checkpoints and outputs."""
    return _shared_dir("fixtures")


def make_random_store(path, num_samples: int = 24, canvas_size: int = 64, shard_size: int = 8,
                      seed: int = 0):
    """A small MPII-layout store of random crops and poses (for mechanics, not accuracy)."""
    import numpy as np

    from pose_pipeline import geometry
    from pose_pipeline.joints import MPII
    from pose_pipeline.store import StoreWriter

    rng = np.random.default_rng(seed)
    writer = StoreWriter(path, num_samples, MPII, canvas_size, shard_size,
                         attrs={"dataset": "random", "split": "train", "format": "mpii", "pixel_origin": 1.0,
                                "context": 1.5, "converter": {}, "sources": [{"file": "random", "sha256": "0"}]})
    images = rng.integers(0, 256, (num_samples, canvas_size, canvas_size, 3), dtype=np.uint8)
    for start in range(0, num_samples, shard_size):
        writer.write_block(images[start:start + shard_size])
    center = rng.uniform(100, 200, (num_samples, 2))
    scale = rng.uniform(0.8, 1.2, num_samples)
    affine = geometry.crop_affine(center - 1.0, 200 * scale * 1.5, canvas_size)
    keypoints = center[:, None] + rng.uniform(-80, 80, (num_samples, MPII.num_joints, 2)) * scale[:, None, None]
    writer.set_metadata(keypoints=keypoints.astype(np.float32),
                        visible=(rng.random((num_samples, MPII.num_joints)) > 0.1).astype(np.uint8),
                        affine=affine, center=center, scale=scale, head_size=np.full(num_samples, 30.0),
                        image_name=np.array([f"{i:04d}.jpg" for i in range(num_samples)], dtype=str),
                        source_index=np.stack([np.arange(num_samples), np.zeros(num_samples, int)], 1))
    return writer.commit()


@pytest.fixture
def random_store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("store") / "train.zarr")
