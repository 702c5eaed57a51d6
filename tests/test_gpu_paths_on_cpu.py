"""The GPU code paths, run on the CPU where PyTorch allows, each against the default fp32 path:
the device-side warp and targets in a training run, bf16 autocast, channels_last, torch.compile."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers import settings

from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.loss import heatmap_loss
from pose_pipeline.data.batches import Samples, make_batch
from pose_pipeline.data.store import open_store
from pose_pipeline.models import build_model
from pose_pipeline.train import loop as train_module
from pose_pipeline.util.devices import autocast

CPU = torch.device("cpu")
MODEL = {"arch": "hourglass", "stacks": 2, "blocks": 1, "features": 16}


def batch(store_path, warp: str = "cv2", n: int = 8):
    store = open_store(store_path)
    from pose_pipeline.data.batches import Augmentation

    aug = Augmentation()
    params = aug.sample(np.random.default_rng(5), n)
    return make_batch(
        Samples(store.images(0, n), store.keypoints_in_canvas()[:n], store.visible[:n]),
        store,
        HeatmapCodec(64, 16, sigma=1.0),
        CPU,
        augmentation=aug,
        params=params,
        warp=warp,
    )


def step(model, x, targets, weights, bf16=False, channels_last=True):
    """Forward + loss + backward as train_step runs them; returns (loss, outputs, gradients)."""
    model.zero_grad(set_to_none=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(CPU, bf16=bf16):
        outputs = model(x)
        loss = heatmap_loss(outputs, targets, weights)
    loss.backward()
    return loss.detach(), [o.detach().float() for o in outputs], [p.grad.clone() for p in model.parameters()]


def fresh_model(channels_last=True):
    """A seeded model in eval mode: BatchNorm with its running statistics, since the batch
    statistics of a freshly initialised net on random crops make its gradients chaotic
    (a 1/255 input change turns them around), which no tolerance could compare."""
    torch.manual_seed(0)
    model = build_model(MODEL, 16).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    a, b = torch.cat([g.flatten() for g in a]), torch.cat([g.flatten() for g in b])
    return float(a @ b / (a.norm() * b.norm()))


def test_a_training_step_with_the_device_side_warp_matches_the_cpu_warp(random_store):
    cv2_batch, torch_batch = batch(random_store, "cv2"), batch(random_store, "torch")
    assert float((cv2_batch[0] - torch_batch[0]).abs().max()) <= 1 / 255  # cv2 rounds to uint8
    assert torch.equal(cv2_batch[1], torch_batch[1]) and torch.equal(cv2_batch[2], torch_batch[2])
    model = fresh_model()
    a, b = step(model, *cv2_batch), step(model, *torch_batch)
    assert float(a[0]) == pytest.approx(float(b[0]), rel=1e-4)
    torch.testing.assert_close(b[1][-1], a[1][-1], rtol=0, atol=3e-3)
    assert cosine(a[2], b[2]) > 0.9999


def test_a_training_run_with_the_device_side_warp_and_targets(random_store, tmp_path, monkeypatch):
    """The loop as it runs on a GPU: the prefetch thread leaves warp and targets to the step
    (`finish_batch(warp="torch")` in `train_step`, the main thread), here on the CPU."""
    import csv
    import threading

    train_module.train(settings(epochs=1), random_store, None, tmp_path / "cpu", device="cpu", progress=False)
    real_batches, real_finish, finished = train_module.run_batches, train_module.finish_batch, []

    def finish(batch, codec, device, warp):
        finished.append((warp, threading.current_thread() is threading.main_thread()))
        return real_finish(batch, codec, device, warp)

    monkeypatch.setattr(train_module, "finish_batch", finish)
    monkeypatch.setattr(
        train_module, "run_batches", lambda run, epoch, skip: real_batches(run, epoch, skip, host_warp=False)
    )
    train_module.train(settings(epochs=1), random_store, None, tmp_path / "gpu", device="cpu", progress=False)
    assert finished == [("torch", True)] * 6
    # Training BatchNorm on random crops amplifies the < 1/255 input differences (weights move
    # apart by ~0.6 after 6 steps), so the epoch's loss is what is compared: 2.5 % apart here.
    losses = [float(next(csv.DictReader(open(tmp_path / n / "log.csv")))["train_loss"]) for n in ("cpu", "gpu")]
    assert losses[1] == pytest.approx(losses[0], rel=0.1)


def test_bf16_autocast_on_the_cpu_is_close_to_fp32(random_store):
    x, targets, weights = batch(random_store)
    model = fresh_model()
    fp32, bf16 = step(model, x, targets, weights), step(model, x, targets, weights, bf16=True)
    assert bf16[1][-1].dtype == torch.float32  # .float() as predict_store does; the model ran in bf16
    with torch.no_grad(), autocast(CPU, bf16=True):
        assert model(x)[-1].dtype == torch.bfloat16
    assert float(bf16[0]) == pytest.approx(float(fp32[0]), rel=1e-2)
    torch.testing.assert_close(bf16[1][-1], fp32[1][-1], rtol=0, atol=0.1)
    assert cosine(fp32[2], bf16[2]) > 0.999


def test_channels_last_matches_the_default_layout(random_store):
    x, targets, weights = batch(random_store)
    a = step(fresh_model(channels_last=False), x, targets, weights, channels_last=False)
    b = step(fresh_model(channels_last=True), x, targets, weights, channels_last=True)
    assert float(a[0]) == pytest.approx(float(b[0]), rel=1e-5)
    torch.testing.assert_close(b[1][-1], a[1][-1], rtol=1e-4, atol=1e-5)
    assert cosine(a[2], b[2]) > 0.9999


def _compiler_available() -> bool:
    return any(shutil.which(c) for c in ("cc", "gcc", "clang", "g++"))


@pytest.mark.slow  # ~140 s of compilation on 2 cores
@pytest.mark.skipif(not _compiler_available(), reason="torch.compile on the CPU needs a C++ compiler (none found)")
def test_compiled_step_matches_eager(random_store):
    import torch._dynamo

    torch._dynamo.reset()
    x, targets, weights = batch(random_store, n=4)
    model = fresh_model()
    eager = step(model, x, targets, weights)
    compiled = step(torch.compile(model), x, targets, weights)
    assert float(compiled[0]) == pytest.approx(float(eager[0]), rel=1e-4)
    torch.testing.assert_close(compiled[1][-1], eager[1][-1], rtol=1e-3, atol=1e-4)
    assert cosine(eager[2], compiled[2]) > 0.9999
