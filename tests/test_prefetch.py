"""Overlapped loading: the prefetcher's order, errors and shutdown; the training batches are
the serial loop's; the loss read from the device; the CUDA RNG state in checkpoints."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from helpers import loss_exploding_at, settings

from pose_pipeline.data.store_check import StoreDamage
from pose_pipeline.train import loop as train_module
from pose_pipeline.train import state as training_state
from pose_pipeline.train.setup import setup
from pose_pipeline.train.state import DeviceLoss
from pose_pipeline.util.devices import World
from pose_pipeline.util.prefetch import Prefetcher


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("test-prefetch")]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_in_order_prepared(depth):
    with Prefetcher(range(20), lambda i: i * i, depth, name="test-prefetch") as items:
        assert list(items) == [i * i for i in range(20)]
    assert not prefetch_threads()


def test_a_producer_error_is_raised_in_the_consumer_with_its_message_after_the_good_items():
    def prepare(i):
        if i == 3:
            raise StoreDamage("train.zarr: array image, shard image/c/1/0/0/0 (samples 8-15): checksum mismatch")
        return i

    got = []
    with pytest.raises(StoreDamage, match=r"shard image/c/1/0/0/0 \(samples 8-15\): checksum mismatch"):
        with Prefetcher(range(10), prepare, 2, name="test-prefetch") as items:
            for item in items:
                got.append(item)
    assert got == [0, 1, 2]
    assert not prefetch_threads()


def test_leaving_early_stops_a_producer_blocked_on_a_full_queue():
    prepared = []

    def prepare(i):
        prepared.append(i)
        return i

    items = Prefetcher(range(10_000), prepare, 2, name="test-prefetch")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the consumer, as in a training step
        with items:
            for item in items:
                if item == 5:
                    raise KeyboardInterrupt
    assert not prefetch_threads()
    assert len(prepared) < 5 + 2 + 3  # bounded: at most the queue's depth (and the item in hand) ahead
    assert list(items) == []  # closed: nothing more comes, and asking does not hang


def test_a_slow_consumer_overlaps_a_slow_producer():
    def prepare(i):
        time.sleep(0.02)  # sleeping holds no GIL, as zarrs decoding and a waiting GPU
        return i

    started = time.perf_counter()
    with Prefetcher(range(10), prepare, 2, name="test-prefetch") as items:
        for _ in items:
            time.sleep(0.02)
    assert time.perf_counter() - started < 0.35  # serial: 0.4 s; overlapped ~0.22 s


def test_the_prefetched_batches_are_the_serial_loops(random_store, tmp_path):
    run = setup(World(), settings(), random_store, None, tmp_path, None)
    for host_warp in (True, False):
        serial = list(train_module.run_batches(run, 0, 2, depth=0, host_warp=host_warp))
        ahead = list(train_module.run_batches(run, 0, 2, depth=3, host_warp=host_warp))
        assert len(serial) == len(ahead) == run.epochs * run.steps_per_epoch - 2
        for a, b in zip(serial, ahead):
            if host_warp:
                for x, y in zip(a, b):
                    assert torch.equal(x, y)
            else:
                assert np.array_equal(a.images, b.images) and np.array_equal(a.points, b.points)
                assert np.array_equal(a.to_input, b.to_input) and np.array_equal(a.gain, b.gain)


# ----------------------------------------------------------------- the loss, read late


def test_device_loss_reads_the_mean_and_the_first_non_finite_step():
    losses = DeviceLoss(torch.device("cpu"))
    for step, value in enumerate([1.0, 2.0, 3.0]):
        losses.add(torch.tensor(value), step)
    assert losses.read() == (2.0, None, 0.0)
    for step, value in [(3, float("nan")), (4, 5.0), (5, float("inf"))]:
        losses.add(torch.tensor(value), step)
    mean, bad, value = losses.read()
    assert bad == 3 and np.isnan(value)
    assert mean == pytest.approx((1 + 2 + 3 + 5) / 6)  # non-finite steps add nothing


def test_a_non_finite_loss_after_the_last_checkpoint_is_named_at_the_epoch_end(random_store, tmp_path, monkeypatch):
    monkeypatch.setattr(
        train_module, "heatmap_loss", loss_exploding_at(train_module.heatmap_loss, (5, 6), float("inf"))
    )
    with pytest.raises(train_module.NonFiniteLoss, match="loss is inf at epoch 1, step 5;"):
        train_module.train(
            settings(checkpoint_every=4), random_store, None, tmp_path / "n", device="cpu", progress=False
        )
    assert torch.load(tmp_path / "n" / "checkpoints" / "last.pt", weights_only=True)["step"] == 4


# ---------------------------------------------------------------------- CUDA RNG state


class FakeCuda:
    """torch.cuda as far as the RNG state goes: `count` devices, each with a state."""

    def __init__(self, count: int):
        self.states = [torch.full((8,), i, dtype=torch.uint8) for i in range(count)]

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.states))
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in self.states])
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_all)

    def set_all(self, states):
        for i, s in enumerate(states):
            self.states[i] = s.clone()


def test_checkpoints_carry_and_restore_every_cuda_devices_rng_state(monkeypatch, caplog):
    cuda = FakeCuda(2)
    cuda.install(monkeypatch)
    saved = training_state.rng_state()
    assert [int(s[0]) for s in saved["cuda_rng"]] == [0, 1] and torch.equal(saved["torch_rng"], torch.get_rng_state())
    cuda.states = [torch.zeros(8, dtype=torch.uint8) + 9] * 2  # the generators move on
    training_state.restore_rng(saved)
    assert [int(s[0]) for s in cuda.states] == [0, 1]

    one = FakeCuda(1)  # resumed on a machine with fewer GPUs: the saved state of device 0 on device 0
    one.install(monkeypatch)
    with caplog.at_level("WARNING", logger="pose_pipeline"):
        training_state.restore_rng(saved)
    assert int(one.states[0][0]) == 0 and "2 CUDA devices, this machine 1" in caplog.text


def test_without_cuda_no_cuda_state_is_saved_and_a_saved_one_is_ignored(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    saved = training_state.rng_state()
    assert "cuda_rng" not in saved
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("CUDA touched"))
    training_state.restore_rng({**saved, "cuda_rng": [torch.zeros(8, dtype=torch.uint8)]})


def test_a_checkpoint_restores_the_cuda_state_on_resume(random_store, tmp_path, monkeypatch):
    """Through the run: last.pt holds the fake devices' states and a resume sets them back."""
    cuda = FakeCuda(2)
    cuda.install(monkeypatch)
    train_module.train(settings(epochs=1), random_store, None, tmp_path / "r", device="cpu", progress=False)
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert [int(s[0]) for s in state["cuda_rng"]] == [0, 1]
    cuda.states = [torch.zeros(8, dtype=torch.uint8) + 7] * 2
    train_module.train(settings(epochs=1), random_store, None, tmp_path / "r", device="cpu", progress=False)
    assert [int(s[0]) for s in cuda.states] == [0, 1]  # the same run again: resumed, its RNG state restored


@pytest.fixture
def threaded_on_cpu(monkeypatch):
    """The threads the loop uses on an accelerator, here on the CPU (where it runs serially)."""
    monkeypatch.setattr(train_module, "depth_for", lambda device, depth: depth)
    started = []
    real_thread_start = threading.Thread.start

    def start(thread):
        started.append(thread.name)
        return real_thread_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    return started


def test_the_loop_is_serial_on_the_cpu_and_read_ahead_on_an_accelerator():
    from pose_pipeline.util.prefetch import depth_for

    assert depth_for(torch.device("cpu"), 8) == 0  # torch's threads already use every core
    assert depth_for(torch.device("meta"), 8) == 8


def test_ctrl_c_in_a_step_leaves_no_loader_thread_behind(random_store, tmp_path, monkeypatch, threaded_on_cpu):
    real_step, steps = train_module.train_step, []

    def interrupted(run, batch):
        steps.append(1)
        if len(steps) == 3:
            raise KeyboardInterrupt
        return real_step(run, batch)

    monkeypatch.setattr(train_module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(settings(), random_store, None, tmp_path / "k", device="cpu", progress=False)
    assert any(n.startswith("batches-rank") for n in threaded_on_cpu)  # the threads did run
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith(("batches-rank", "shard-reads-rank"))], names


def test_a_damaged_shard_read_ahead_is_raised_in_the_loop_naming_it(random_store, tmp_path, threaded_on_cpu):
    import shutil

    damaged = tmp_path / "train.zarr"
    shutil.copytree(random_store, damaged)
    shard = damaged / "image" / "c" / "2" / "0" / "0" / "0"  # read in the loader's read-ahead thread
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreDamage, match=r"shard image/c/2/0/0/0 \(samples 16-23\): checksum mismatch"):
        train_module.train(settings(), damaged, None, tmp_path / "d", device="cpu", progress=False)
    assert any(n.startswith("shard-reads-rank") for n in threaded_on_cpu)  # read ahead, in its thread
    assert not [t for t in threading.enumerate() if t.name.startswith(("batches-rank", "shard-reads-rank"))]
