"""The training objective: plain MSE by default, the foreground weighting exactly as documented,
and a run's identity unchanged by the key at its default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import settings
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.loss import heatmap_loss
from pose_pipeline.data.store import open_store
from pose_pipeline.train.state import run_identity


def _targets(seed: int, shape=(2, 3, 16, 16)) -> torch.Tensor:
    codec = HeatmapCodec(input_size=64, heatmap_size=16, sigma=1.5)
    gen = np.random.default_rng(seed)
    points = torch.as_tensor(gen.uniform(-2, 18, size=(shape[0], shape[1], 2)))  # some off the map
    maps, _ = codec.encode(points, torch.ones(shape[:2]))
    return maps.float()


@hsettings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.floats(1.0, 1000.0), stacks=st.integers(1, 3))
def test_foreground_weight_is_one_plus_k_minus_one_times_the_target(seed, k, stacks):
    targets = _targets(seed)
    gen = torch.Generator().manual_seed(seed)
    outputs = [torch.randn(targets.shape, generator=gen) for _ in range(stacks)]
    weights = torch.bernoulli(torch.full(targets.shape[:2], 0.7), generator=gen)
    got = heatmap_loss(outputs, targets, weights, foreground_weight=k)
    pixel_weight = weights[:, :, None, None] * (1 + (k - 1) * targets)
    expected = sum(((o - targets) ** 2 * pixel_weight).mean() for o in outputs)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    plain = heatmap_loss(outputs, targets, weights)
    assert got >= plain - 1e-6  # every pixel weighs at least as much (targets are in [0, 1])
    torch.testing.assert_close(heatmap_loss(outputs, targets, weights, 1.0), plain)


def test_a_peak_pixel_counts_k_times_a_background_pixel():
    targets = torch.zeros(1, 1, 8, 8)
    targets[0, 0, 3, 3] = 1.0
    weights = torch.ones(1, 1)
    miss_peak = targets.clone()
    miss_peak[0, 0, 3, 3] = 0.0  # the peak's error is 1
    miss_background = targets.clone()
    miss_background[0, 0, 6, 6] = 1.0  # one background pixel's error is 1
    for k in (1.0, 10.0, 37.5):
        ratio = heatmap_loss([miss_peak], targets, weights, k) / heatmap_loss([miss_background], targets, weights, k)
        assert ratio.item() == pytest.approx(k)


def test_foreground_weight_at_its_default_keeps_a_runs_identity(random_store):
    store = open_store(random_store)
    now = settings(epochs=1)
    explicit = settings(epochs=1, foreground_weight=1.0)
    assert "foreground_weight" not in now["training"] or now["training"]["foreground_weight"] == 1.0
    assert run_identity(now, 1, store, 1) == run_identity(explicit, 1, store, 1)
    assert run_identity(settings(epochs=1, foreground_weight=10.0), 1, store, 1) != run_identity(now, 1, store, 1)
