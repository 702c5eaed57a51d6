"""Data-parallel training and robustness: the loader's rank partition, 2-rank gloo DDP equal
to one process with the combined batch, `--nproc` through the CLI, SIGKILL and resume,
overfitting real LSP crops, TensorBoard events, `--nproc auto`."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import DDP_ENV as ENV
from helpers import RANK_SCRIPT, assert_same_weights, make_random_store, settings, state_dict

from pose_pipeline.data.batches import ShardBatches
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError
from pose_pipeline.train import loop as train_module
from pose_pipeline.train import state as training_state


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


# ---------------------------------------------------------------------------- loader


@pytest.mark.parametrize(
    "num_samples,shard_size,batch_size,buffer_shards", [(24, 8, 4, 8), (100, 8, 6, 2), (10, 8, 2, 1), (77, 5, 4, 3)]
)
def test_ranks_take_disjoint_slices_of_the_single_process_batches(
    tmp_path, num_samples, shard_size, batch_size, buffer_shards
):
    store = open_store(make_random_store(tmp_path / "s.zarr", num_samples, canvas_size=8, shard_size=shard_size))
    images = store.images()
    for world in (2, 3):
        whole = list(ShardBatches(store, batch_size * world, seed=3, buffer_shards=buffer_shards).epoch(1))
        ranks = [
            list(
                ShardBatches(store, batch_size, seed=3, rank=r, world_size=world, buffer_shards=buffer_shards).epoch(1)
            )
            for r in range(world)
        ]
        # every rank gets the same number of batches (uneven shards included: 10 = 8 + 2)
        assert [len(r) for r in ranks] == [len(whole)] * world == [num_samples // (batch_size * world)] * world
        for step, (combined_images, combined_index) in enumerate(whole):
            index = np.concatenate([r[step][1] for r in ranks])
            assert np.array_equal(index, combined_index)  # rank r = positions [rB, (r+1)B)
            assert np.array_equal(np.concatenate([r[step][0] for r in ranks]), combined_images)
            assert np.array_equal(combined_images, images[combined_index])
        seen = np.concatenate([b[1] for r in ranks for b in r])
        assert len(np.unique(seen)) == len(seen)  # disjoint, no sample twice in an epoch


# ----------------------------------------------------------------- DDP vs one process


@pytest.mark.slow  # two gloo ranks in subprocesses
def test_two_gloo_ranks_equal_one_process_with_the_combined_batch(random_store, tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)

    def command(batch_size: int, out: str) -> list[str]:
        s = settings(epochs=2, batch_size=batch_size, checkpoint_every=100, weight_decay=0.01)
        return [
            "train",
            "--settings",
            json.dumps(s),
            "--train-store",
            str(random_store),
            "--out",
            str(tmp_path / out),
            "--device",
            "cpu",
            "--no-progress",
        ]

    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script)]
        + command(4, "ddp"),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "world size 2 (batch 8 = 4 per rank x 2)" in ddp.stderr
    assert ddp.stderr.count("epoch 2/2: train loss") == 1  # rank 0 logs, rank 1 does not
    single = subprocess.run(
        [sys.executable, str(script)] + command(8, "single"), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert "world size 1 (batch 8 = 8 per rank x 1)" in single.stderr

    a, b = state_dict(tmp_path / "single" / "model.pt"), state_dict(tmp_path / "ddp" / "model.pt")
    # Equal up to float summation order (two half-batch gradients averaged vs one batch),
    # which RMSprop's division by the gradients' RMS amplifies for tiny gradients: 2.5e-6 at
    # most here, while a wrong augmentation slice or a loss not averaged per rank (weight
    # decay makes the gradient's scale matter) moves weights by ~1e-2.
    assert_same_weights(a, b, atol=1e-5)
    assert max_difference(a, state_dict(tmp_path / "ddp" / "checkpoints" / "last.pt")) < 1e-5
    rows = {name: list(csv.DictReader(open(tmp_path / name / "log.csv"))) for name in ("ddp", "single")}
    assert [r["step"] for r in rows["ddp"]] == [r["step"] for r in rows["single"]] == ["3", "6"]
    for d, s in zip(rows["ddp"], rows["single"]):  # the logged loss is the global batch's
        assert float(d["train_loss"]) == pytest.approx(float(s["train_loss"]), rel=1e-5)


# ------------------------------------------------------------------------------ CLI


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pose_pipeline", "train", *args]


@pytest.mark.slow  # three training commands in subprocesses
def test_nproc_2_on_the_cli_trains_one_model_and_resumes_it(random_store, tmp_path):
    s = json.dumps(settings(epochs=2, checkpoint_every=100))
    command = cli(
        "--settings",
        s,
        "--train-store",
        str(random_store),
        "--val-store",
        str(random_store),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--nproc",
        "2",
        "--no-progress",
    )
    first = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "launching 2 ranks" in first.stderr and "world size 2" in first.stderr
    assert "BatchNorm statistics per rank" in first.stderr
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "3"), ("2", "6")]  # 24 samples / (4 x 2)
    assert all(r["val_score"] != "" and r["val_metric"] == "PCKh@0.5" for r in rows)
    from pose_pipeline.models import load_model

    model = load_model(tmp_path / "run" / "model.pt")  # no `module.` prefix: loads as a plain model
    assert model.model_config["joints"] == 16
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and not any(k.startswith("module.") for k in state["state_dict"])

    # The same command again finds the finished run's checkpoint: every rank resumes from it.
    again = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr and "step 6" in again.stderr
    assert_same_weights(state_dict(tmp_path / "run" / "model.pt"), state["state_dict"], atol=0)

    # The same checkpoint is not resumed by a different number of ranks (another global batch).
    single = subprocess.run(command[:-3] + ["--no-progress"], env=ENV, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    assert "resumed from" not in single.stderr and "number of processes" in single.stderr


@pytest.mark.slow  # two ranks in subprocesses
def test_a_failing_rank_fails_the_command_with_a_message(random_store, tmp_path):
    s = json.dumps(settings(batch_size=16))  # 24 samples < one global batch of 16 x 2
    result = subprocess.run(
        cli(
            "--settings",
            s,
            "--train-store",
            str(random_store),
            "--out",
            str(tmp_path / "r"),
            "--device",
            "cpu",
            "--nproc",
            "2",
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert "fewer than one batch of 32 (16 per rank x 2 ranks)" in result.stderr
    assert "training failed in rank" in result.stderr
    assert not (tmp_path / "r" / "model.pt").exists()


def test_nproc_inside_a_torchrun_worker_is_refused(monkeypatch):
    from pose_pipeline.util.devices import launch_ranks

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="inside a torchrun worker"):
        launch_ranks(2, "cpu", ["train"])


def test_nproc_auto(monkeypatch):
    from pose_pipeline.util import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.auto_nproc() == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("SLURM_GPUS_ON_NODE", raising=False)
    assert devices.auto_nproc() == 4
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "2")
    assert devices.auto_nproc() == 2


@pytest.mark.slow  # training commands in subprocesses
def test_sigkill_after_a_checkpoint_then_the_same_command_resumes_exactly(random_store, tmp_path):
    s = settings(epochs=8, checkpoint_every=2)
    command = cli(
        "--settings",
        json.dumps(s),
        "--train-store",
        str(random_store),
        "--out",
        str(tmp_path / "b"),
        "--device",
        "cpu",
        "--no-progress",
    )
    last = tmp_path / "b" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert last.exists() and not (tmp_path / "b" / "model.pt").exists()  # killed mid-run
    killed_at = torch.load(last, weights_only=True)["step"]
    assert 2 <= killed_at < 8 * 6

    resumed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {last}" in resumed.stderr

    train_module.train(s, random_store, None, tmp_path / "a", device="cpu", progress=False)
    assert_same_weights(state_dict(tmp_path / "a" / "model.pt"), state_dict(tmp_path / "b" / "model.pt"), atol=1e-6)
    # the killed epoch's train_loss is the mean of all its steps, those before the kill too
    losses = {run: [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / run / "log.csv"))] for run in "ab"}
    assert losses["b"] == pytest.approx(losses["a"], rel=1e-5)


# --------------------------------------------------------------------- it learns


@pytest.fixture
def lsp16(shared_data, tmp_path):
    """16 real LSP crops (the first 16 people of ../shared/data/lsp_sample), converted."""
    import scipy.io

    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions

    lsp = shared_data / "lsp_sample"
    joints = scipy.io.loadmat(lsp / "joints.mat")["joints"]  # (14, 3, 300), LSP-extended
    scipy.io.savemat(tmp_path / "joints16.mat", {"joints": joints[:, :, :16]})
    convert(
        ConvertOptions(
            "lsp",
            tmp_path / "joints16.mat",
            lsp / "images",
            tmp_path / "lsp16.zarr",
            split="all",
            canvas_size=96,
            shard_size=16,
            workers=1,
            progress=False,
        )
    )
    return tmp_path / "lsp16.zarr"


@pytest.mark.slow  # 100 epochs
def test_a_small_model_overfits_16_real_lsp_crops(lsp16, tmp_path):
    # 100 steps on the whole set; sigma 2 (on 16 px heatmaps) gives the peaks enough mass to
    # be learnt within them (with sigma 1 the loss only reaches the all-zero level).
    s = settings(
        epochs=100,
        batch_size=16,
        optimizer="adam",
        lr=2e-3,
        sigma=2.0,
        checkpoint_every=1000,
        schedule={"type": "constant"},
        augmentation={"scale": 0, "rotation": 0, "flip": False, "color": 0},
    )
    s["model"] = {**s["model"], "features": 32}
    # Validating on the same crops also runs the LSP validation metric (PCK@0.2 by torso).
    train_module.train(s, lsp16, lsp16, tmp_path / "o", device="cpu", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "o" / "log.csv")))
    losses = [float(r["train_loss"]) for r in rows]
    pck = [float(r["val_score"]) for r in rows]
    assert {r["val_metric"] for r in rows} == {"PCK@0.2"}

    # Predicting all-zero heatmaps already scores mean(target^2 x weight): falling below that
    # means peaks at the joints, not just a network that learnt to output nothing.
    store = open_store(lsp16)
    from pose_pipeline.core.codec import HeatmapCodec
    from pose_pipeline.data.batches import Samples, make_batch

    _, targets, weights = make_batch(
        Samples(store.images(), store.keypoints_in_canvas(), store.visible),
        store,
        HeatmapCodec(64, 16, sigma=2.0),
        torch.device("cpu"),
    )
    zero_loss = float((targets**2 * weights[:, :, None, None]).mean())
    assert losses[-1] < losses[0] / 5, losses
    assert losses[-1] < zero_loss / 2, (losses[-1], zero_loss)
    assert pck[-1] > pck[0] + 30, pck  # the memorised crops are found again (from ~1 to ~50)


# --------------------------------------------------------------- optional features


def test_tensorboard_events_when_installed(random_store, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_module.train(settings(epochs=2), random_store, random_store, tmp_path / "t", device="cpu", progress=False)
    events = EventAccumulator(str(tmp_path / "t" / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "val/loss", "val/score", "lr", "images_per_s"}
    rows = list(csv.DictReader(open(tmp_path / "t" / "log.csv")))
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [step for step, _ in logged] == [1, 2]
    assert [v for _, v in logged] == pytest.approx([float(r["train_loss"]) for r in rows], rel=1e-5)


def test_without_tensorboard_one_info_line_and_no_event_files(random_store, tmp_path, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with caplog.at_level("INFO", logger="pose_pipeline"):
        train_module.train(settings(epochs=1), random_store, None, tmp_path / "n", device="cpu", progress=False)
    assert sum("tensorboard is not installed" in r.message for r in caplog.records) == 1
    assert not (tmp_path / "n" / "tensorboard").exists()
    assert (tmp_path / "n" / "model.pt").exists()


def test_compile_defaults_off_and_does_not_change_the_run_identity(random_store):
    s = settings()
    assert s["training"]["compile"] is False
    store = open_store(random_store)
    on = {**s, "training": {**s["training"], "compile": True}}
    old = {**s, "training": {k: v for k, v in s["training"].items() if k != "compile"}}
    ids = [training_state.run_identity(x, 2, store, 1) for x in (s, on, old)]
    assert ids[0] == ids[1] == ids[2]  # a run resumes whether compiled or not, and from before the option
    assert training_state.run_identity(s, 2, store, 2) != ids[0]


@pytest.mark.slow
def test_compiled_model_trains(random_store, tmp_path):
    import torch._dynamo

    torch._dynamo.reset()
    summary = train_module.train(
        settings(epochs=1, compile=True), random_store, None, tmp_path / "c", device="cpu", progress=False
    )
    assert summary["steps"] == 6
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it did go through torch.compile
    state = state_dict(tmp_path / "c" / "model.pt")
    assert not any(k.startswith("_orig_mod.") or k.startswith("module.") for k in state)


@pytest.mark.gpu
def test_nproc_2_on_gpus_uses_nccl_and_sync_batchnorm(random_store, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices")
    s = json.dumps(settings(epochs=2, checkpoint_every=100))
    result = subprocess.run(
        cli(
            "--settings",
            s,
            "--train-store",
            str(random_store),
            "--out",
            str(tmp_path / "g"),
            "--device",
            "cuda",
            "--nproc",
            "2",
            "--no-progress",
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stderr and "on cuda:0" in result.stderr
    assert "BatchNorm statistics per rank" not in result.stderr  # SyncBatchNorm on GPUs
    from pose_pipeline.models import load_model

    assert load_model(tmp_path / "g" / "model.pt").model_config["joints"] == 16
