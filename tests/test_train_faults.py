"""Bad input to training and prediction: one message naming the file and the cause, raised
before any epoch is spent, and nothing written that looks finished."""

from __future__ import annotations

import csv
import errno
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import settings

from pose_pipeline import cli
from pose_pipeline.core.joints import LSP
from pose_pipeline.data.store import open_store
from pose_pipeline.data.store_writer import StoreWriter
from pose_pipeline.train import loop as train_module
from pose_pipeline.train.state import run_identity
from pose_pipeline.util.atomic import exclusive_lock


def train_cli(store, out, *extra, **training) -> list[str]:
    return [
        "train",
        "--settings",
        json.dumps(settings(**training)),
        "--train-store",
        str(store),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("epochs", ["-3", "0"])
def test_epochs_below_one_are_refused_and_nothing_is_written(random_store, tmp_path, epochs, capsys):
    assert cli.main(train_cli(random_store, tmp_path / "run", "--epochs", epochs)) == 1
    assert f"--epochs: must be a whole number at least 1, got {epochs}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(Exception, match="at least one epoch"):
        train_module.train(settings(), random_store, None, tmp_path / "api", device="cpu", epochs=0, progress=False)
    assert not (tmp_path / "api" / "model.pt").exists()


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(random_store, tmp_path, capsys):
    out = tmp_path / "run"
    with exclusive_lock(out, "pose-pipeline train"):
        assert cli.main(train_cli(random_store, out)) == 1
    err = capsys.readouterr().err
    assert f"{out}: pose-pipeline train pid" in err and "is writing here" in err
    assert not (out / "model.pt").exists()
    assert cli.main(train_cli(random_store, out, epochs=1)) == 0  # the lock went with its holder


def test_speed_and_bookkeeping_settings_are_not_the_run_identity(random_store):
    from pose_pipeline.data.store import open_store

    store = open_store(random_store)
    base = run_identity(settings(), 2, store, 1)
    for change in ({"num_threads": 2}, {"checkpoint_every": 7}, {"compile": True}):
        assert run_identity(settings(**change), 2, store, 1) == base, change
    evaluation = {**settings(), "evaluation": {"batch_size": 3, "blur_sigma": 0.0, "flip_test": False}}
    assert run_identity(evaluation, 2, store, 1) == base
    assert run_identity(settings(lr=1e-3), 2, store, 1) != base


def test_changing_threads_or_checkpoint_interval_resumes_instead_of_restarting(random_store, tmp_path, caplog):
    out = tmp_path / "run"
    assert cli.main(train_cli(random_store, out, epochs=1)) == 0
    with caplog.at_level("INFO", logger="pose_pipeline"):
        assert cli.main(train_cli(random_store, out, epochs=1, num_threads=2, checkpoint_every=3)) == 0
    assert "resumed from" in caplog.text


def test_a_missing_val_store_named_on_the_command_line_is_an_error(random_store, tmp_path, capsys):
    missing = tmp_path / "vall.zarr"
    assert cli.main(train_cli(random_store, tmp_path / "run", "--val-store", str(missing))) == 1
    assert f"--val-store {missing}: no such store" in capsys.readouterr().err
    assert not (tmp_path / "run" / "log.csv").exists()


def test_the_val_store_is_checked_before_an_epoch_is_spent(random_store, tmp_path, capsys):
    broken = tmp_path / "val.zarr"
    shutil.copytree(random_store, broken)
    shutil.rmtree(broken / "head_size")
    assert cli.main(train_cli(random_store, tmp_path / "a", "--val-store", str(broken))) == 1
    assert "arrays missing: head_size" in capsys.readouterr().err
    assert not (tmp_path / "a" / "log.csv").exists() and not (tmp_path / "a" / "checkpoints" / "last.pt").exists()

    lsp = tmp_path / "lsp.zarr"
    writer = StoreWriter(lsp, 2, LSP, 64, 2, attrs={"pixel_origin": 1.0, "context": 1.5})
    writer.write_block(np.zeros((2, 64, 64, 3), np.uint8))
    writer.set_metadata(
        keypoints=np.zeros((2, 14, 2), np.float32),
        visible=np.ones((2, 14), np.uint8),
        affine=np.tile(np.eye(2, 3), (2, 1, 1)),
        center=np.zeros((2, 2)),
        scale=np.ones(2),
        head_size=np.full(2, np.nan),
        image_name=np.array(["a", "b"]),
        source_index=np.zeros((2, 2), np.int64),
    )
    writer.commit()
    assert cli.main(train_cli(random_store, tmp_path / "b", "--val-store", str(lsp))) == 1
    assert "joint set lsp, but the training store" in capsys.readouterr().err


def test_bad_settings_json_is_one_message(random_store, tmp_path, capsys):
    argv = ["train", "--settings", "{'model': 1}", "--train-store", str(random_store), "--out", str(tmp_path)]
    assert cli.main(argv) == 1
    assert "--settings: not JSON" in capsys.readouterr().err


def test_an_init_checkpoint_of_another_architecture_names_both(random_store, tmp_path, capsys):
    assert cli.main(train_cli(random_store, tmp_path / "one", epochs=1)) == 0
    other = settings(epochs=1, init_checkpoint=str(tmp_path / "one" / "model.pt"))
    other["model"]["stacks"] = 2
    argv = [
        "train",
        "--settings",
        json.dumps(other),
        "--train-store",
        str(random_store),
        "--out",
        str(tmp_path / "two"),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "a hourglass (1 stacks" in err and "do not fit this run's hourglass (2 stacks" in err
    assert len(err.splitlines()) == 1


def test_predict_refuses_nan_weights_naming_the_tensor(random_store, tmp_path, capsys):
    assert cli.main(train_cli(random_store, tmp_path / "run", epochs=1)) == 0
    model = tmp_path / "run" / "model.pt"
    checkpoint = torch.load(model, weights_only=True)
    name = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point())
    checkpoint["state_dict"][name].fill_(float("nan"))
    torch.save(checkpoint, model)
    argv = [
        "predict",
        "--checkpoint",
        str(model),
        "--store",
        str(random_store),
        "--out-mat",
        str(tmp_path / "p.mat"),
        "--out-csv",
        str(tmp_path / "p.csv"),
        "--device",
        "cpu",
    ]
    assert cli.main(argv) == 1
    assert f"weight {name} holds NaN" in capsys.readouterr().err
    assert not (tmp_path / "p.mat").exists()


def test_disk_full_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    from pose_pipeline.data import inspect

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.png"))

    monkeypatch.setattr(inspect, "run", full)
    assert cli.main(["inspect", str(tmp_path)]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"pose-pipeline inspect: error: {tmp_path / 'out.png'}: No space left on device"
    )


def test_predict_uses_the_input_size_a_checkpoint_was_trained_at(random_store, tmp_path, caplog):
    assert cli.main(train_cli(random_store, tmp_path / "run", epochs=1, input_size=128, heatmap_size=32)) == 0
    for checkpoint in ("model.pt", "checkpoints/best.pt", "checkpoints/last.pt"):
        caplog.clear()
        with caplog.at_level("INFO", logger="pose_pipeline"):
            assert (
                cli.main(
                    [
                        "predict",
                        "--checkpoint",
                        str(tmp_path / "run" / checkpoint),
                        "--store",
                        str(random_store),
                        "--out-mat",
                        str(tmp_path / "p.mat"),
                        "--out-csv",
                        str(tmp_path / "p.csv"),
                        "--device",
                        "cpu",
                        "--no-flip-test",
                    ]
                )
                == 0
            )
        assert "at 128 px" in caplog.text, checkpoint


def test_training_on_a_damaged_store_stops_naming_the_shard(random_store, tmp_path, capsys):
    damaged = tmp_path / "train.zarr"
    shutil.copytree(random_store, damaged)
    shard = damaged / "image" / "c" / "1" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert cli.main(train_cli(damaged, tmp_path / "run", epochs=1)) == 1
    err = capsys.readouterr().err
    assert "array image, shard image/c/1/0/0/0 (samples 8-15): checksum mismatch" in err
    assert not (tmp_path / "run" / "model.pt").exists()


def test_a_kill_during_validation_resumes_into_that_epoch_and_logs_it(random_store, tmp_path, monkeypatch):
    """checkpoint_every landing on an epoch's last step: last.pt must not be written before the
    epoch is validated, or a resume would start at the next epoch without this one's row."""
    store = open_store(random_store)
    steps_per_epoch = len(store) // 4  # settings(): batch 4
    run = settings(epochs=2, checkpoint_every=steps_per_epoch)
    real_validate = train_module.validate

    def killed(run_):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "validate", killed)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(run, random_store, random_store, tmp_path / "r", device="cpu", progress=False)
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    assert not last.exists() or torch.load(last, weights_only=False)["step"] < steps_per_epoch
    monkeypatch.setattr(train_module, "validate", real_validate)
    train_module.train(run, random_store, random_store, tmp_path / "r", device="cpu", progress=False)
    with open(tmp_path / "r" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_score"] != "" for r in rows)
