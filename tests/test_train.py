"""The training loop: it learns, checkpoints atomically, resumes exactly, stops on NaN."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import settings

from pose_pipeline import train as train_module
from pose_pipeline.errors import UserError
from pose_pipeline.models import load_model


def weights(path) -> dict:
    return load_model(path).state_dict()


def test_trains_logs_and_writes_a_loadable_model(random_store, tmp_path):
    summary = train_module.train(settings(), random_store, random_store, tmp_path / "run", device="cpu",
                                 progress=False)
    assert summary["steps"] == 2 * (24 // 4)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == train_module.LOG_COLUMNS
    assert all(float(r["val_pckh"]) >= 0 and float(r["images_per_s"]) > 0 for r in rows)
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.model_config["joints"] == 16 and model.model_config["stacks"] == 1
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()


def test_resume_after_interruption_equals_an_uninterrupted_run(random_store, tmp_path, monkeypatch, caplog):
    train_module.train(settings(), random_store, None, tmp_path / "a", device="cpu", progress=False)

    real_save = train_module.save_checkpoint
    saves = []

    def save_then_die(path, state):
        real_save(path, state)
        saves.append(state["step"] if "step" in state else None)
        if path.name == "last.pt" and state["step"] == 4:
            raise KeyboardInterrupt  # as if killed right after the step-4 checkpoint

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(settings(), random_store, None, tmp_path / "b", device="cpu", progress=False)
    assert not (tmp_path / "b" / "model.pt").exists()  # nothing looks finished
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)

    with caplog.at_level("INFO", logger="pose_pipeline.train"):
        train_module.train(settings(), random_store, None, tmp_path / "b", device="cpu", progress=False)
    assert any("resumed from" in r.message and "step 4" in r.message for r in caplog.records)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)


def test_changed_settings_do_not_resume_old_checkpoints(random_store, tmp_path, caplog):
    train_module.train(settings(epochs=1), random_store, None, tmp_path / "r", device="cpu", progress=False)
    with caplog.at_level("INFO", logger="pose_pipeline.train"):
        train_module.train(settings(epochs=1, lr=1e-3), random_store, None, tmp_path / "r", device="cpu",
                           progress=False)
    assert not any("resumed from" in r.message for r in caplog.records)
    assert any("other settings" in r.message for r in caplog.records)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(random_store, tmp_path, monkeypatch):
    real_loss = train_module.heatmap_loss
    calls = []

    def loss_that_explodes(outputs, targets, weights):
        calls.append(1)
        loss = real_loss(outputs, targets, weights)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(train_module, "heatmap_loss", loss_that_explodes)
    with pytest.raises(train_module.NonFiniteLoss, match="step 3"):
        train_module.train(settings(), random_store, None, tmp_path / "n", device="cpu", progress=False)
    state = torch.load(tmp_path / "n" / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 2
    assert not (tmp_path / "n" / "model.pt").exists()


def test_foreign_checkpoint_is_refused_and_kept(random_store, tmp_path):
    out = tmp_path / "f"
    (out / "checkpoints").mkdir(parents=True)
    foreign = out / "checkpoints" / "last.pt"
    foreign.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="last.pt"):
        train_module.train(settings(), random_store, None, out, device="cpu", progress=False)
    assert foreign.read_bytes() == b"not a checkpoint at all"


def test_resume_from_a_pytorch_pose_checkpoint(random_store, tmp_path, caplog):
    from pose_pipeline.models import build_model

    model = build_model({"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16}, 16)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    model(torch.rand(2, 3, 64, 64))[0].sum().backward()
    optimizer.step()
    # the layout PyTorch-Pose saves: DataParallel keys, epoch, arch, best_acc, optimizer
    torch.save({"epoch": 1, "arch": "hg", "best_acc": 0.5, "optimizer": optimizer.state_dict(),
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}},
               tmp_path / "checkpoint.pth.tar")
    with caplog.at_level("INFO", logger="pose_pipeline.train"):
        summary = train_module.train(settings(), random_store, None, tmp_path / "r", device="cpu", progress=False,
                                     resume_from=str(tmp_path / "checkpoint.pth.tar"))
    assert any("checkpoint.pth.tar at epoch 2" in r.message for r in caplog.records)
    assert summary["steps"] == 2 * 6  # counted from the checkpoint's epoch; one epoch trained here
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["2"]
