"""The training loop: it learns, checkpoints atomically, resumes exactly, stops on NaN."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
import torch
from helpers import loss_exploding_at, make_random_store, settings

from pose_pipeline import cli
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate import metrics
from pose_pipeline.inference.engine import predict_store
from pose_pipeline.models import build_model, load_model
from pose_pipeline.train import loop as train_module
from pose_pipeline.train.log import COLUMNS
from pose_pipeline.train.state import hours_minutes_seconds, run_identity


def weights(path) -> dict:
    return load_model(path).state_dict()


def test_trains_logs_and_writes_a_loadable_model(random_store, tmp_path, caplog):
    with caplog.at_level("INFO", logger="pose_pipeline"):
        summary = train_module.train(
            settings(), random_store, random_store, tmp_path / "run", device="cpu", progress=False
        )
    assert summary["steps"] == 2 * (24 // 4)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [(r["epoch"], r["step"]) for r in rows] == [("1", "6"), ("2", "12")]
    assert tuple(rows[0]) == COLUMNS
    assert float(rows[0]["elapsed_s"]) < float(rows[1]["elapsed_s"])
    # a line per epoch with the time so far and the time left at the pace of the epochs so far
    lines = [r.message for r in caplog.records if r.message.startswith("epoch ")]
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert lines[0].startswith("epoch 1/2: train loss ") and lines[1].startswith("epoch 2/2: train loss ")
    assert lines[0].endswith(f", {hours_minutes_seconds(elapsed[0])} elapsed, {hours_minutes_seconds(elapsed[0])} left")
    assert lines[1].endswith(f", {hours_minutes_seconds(elapsed[1])} elapsed, 0:00:00 left")
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.model_config["joints"] == 16 and model.model_config["stacks"] == 1
    # it trained: the weights moved away from the seeded initialisation
    torch.manual_seed(0)
    initial = build_model(settings()["model"], 16).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items() if v.is_floating_point())
    # the log holds the validation of the weights it names: validating model.pt again (the
    # weights after epoch 2) gives row 2's loss and score, under the metric the row names
    store = open_store(random_store)
    preds, _, loss = predict_store(model, store, HeatmapCodec(64, 16, sigma=1.0, blur_sigma=1.0), flip_test=False)
    metric, score = metrics.validation_score(preds, store.keypoints, store.visible, store.head_size, store.joint_set)
    assert rows[1]["val_metric"] == metric == "PCKh@0.5"
    assert float(rows[1]["val_loss"]) == pytest.approx(loss, rel=1e-5)
    assert float(rows[1]["val_score"]) == pytest.approx(score, abs=1e-3)
    # best.pt: the first epoch with the highest logged score
    scores = [float(r["val_score"]) for r in rows]
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 1 + scores.index(max(scores)) == summary["best_epoch"]
    assert best["val_score"] == pytest.approx(max(scores), abs=1e-3) and summary["best_score"] == best["val_score"]


def test_validate_every_skips_epochs_without_changing_what_is_learnt(random_store, tmp_path, caplog):
    """`evaluation.validate_every: 2` over 3 epochs validates epochs 2 and 3 (the last always);
    epoch 1's val columns stay empty, best.pt is the better of the validated epochs, and the
    weights equal those of a run validated every epoch."""
    every = settings(epochs=3)
    every["evaluation"] = {**every["evaluation"], "validate_every": 2}
    with caplog.at_level("INFO", logger="pose_pipeline"):
        summary = train_module.train(every, random_store, random_store, tmp_path / "b", device="cpu", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert [r["val_score"] == "" for r in rows] == [True, False, False]
    assert rows[0]["val_loss"] == rows[0]["val_metric"] == ""
    lines = [r.message for r in caplog.records if r.message.startswith("epoch ")]
    assert "not validated this epoch" in lines[0] and "val PCKh@0.5 " in lines[1] and "val PCKh@0.5 " in lines[2]
    scores = {int(r["epoch"]): float(r["val_score"]) for r in rows[1:]}
    best = torch.load(tmp_path / "b" / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == summary["best_epoch"] == max(scores, key=lambda e: (scores[e], -e))
    assert best["val_score"] == pytest.approx(max(scores.values()), abs=1e-3)

    train_module.train(settings(epochs=3), random_store, random_store, tmp_path / "a", device="cpu", progress=False)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    assert [r["val_score"] for r in rows_a[1:]] == [r["val_score"] for r in rows[1:]]


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

    with caplog.at_level("INFO", logger="pose_pipeline"):
        train_module.train(settings(), random_store, None, tmp_path / "b", device="cpu", progress=False)
    assert any("resumed from" in r.message and "step 4" in r.message for r in caplog.records)
    a, b = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "b" / "model.pt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    # without validation best.pt is the last epoch, whether or not the run was interrupted
    best = torch.load(tmp_path / "b" / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 2 and all(torch.equal(best["state_dict"][k], b[k]) for k in b)
    # the interrupted epoch's train_loss is the mean of all its steps, those before the resume too
    losses = {run: [float(r["train_loss"]) for r in csv.DictReader(open(tmp_path / run / "log.csv"))] for run in "ab"}
    assert losses["b"] == pytest.approx(losses["a"], rel=1e-5)


class SlowFirstCall(torch.nn.Module):
    """A stand-in for torch.compile's module: its first call takes `seconds` (the compiling)."""

    def __init__(self, net, seconds: float):
        super().__init__()
        self.net, self.seconds, self.calls = net, seconds, 0

    def forward(self, x):
        if self.calls == 0:
            time.sleep(self.seconds)
        self.calls += 1
        return self.net(x)


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_compiling_is_announced_and_left_out_of_images_per_s(random_store, tmp_path, monkeypatch, caplog):
    """training.compile: one line before the compiling; the session's first step, which
    compiles, is not in the first epoch's images/s (an epoch of that step alone has none)."""
    monkeypatch.setattr(torch, "compile", lambda net: SlowFirstCall(net, 3.0))
    with caplog.at_level("INFO", logger="pose_pipeline"):
        train_module.train(
            settings(epochs=1, compile=True), random_store, None, tmp_path / "a", device="cpu", progress=False
        )
    assert "compiling the model with torch.compile (the first steps take minutes on a CPU)" in caplog.text
    [row] = list(csv.DictReader(open(tmp_path / "a" / "log.csv")))
    assert float(row["images_per_s"]) > 24 / 3.0  # the 6 steps' 24 images came in less than the compiling took

    caplog.clear()
    with caplog.at_level("INFO", logger="pose_pipeline"):
        one_step = settings(epochs=2, compile=True, batch_size=24, checkpoint_every=1)
        train_module.train(one_step, random_store, None, tmp_path / "b", device="cpu", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "b" / "log.csv")))
    assert rows[0]["images_per_s"] == "" and float(rows[1]["images_per_s"]) > 0
    [line] = [r.message for r in caplog.records if r.message.startswith("epoch 1/")]
    assert "compiling, images/s not measured" in line


def test_changed_settings_do_not_resume_old_checkpoints(random_store, tmp_path, caplog):
    train_module.train(settings(epochs=1), random_store, None, tmp_path / "r", device="cpu", progress=False)
    with caplog.at_level("INFO", logger="pose_pipeline"):
        train_module.train(
            settings(epochs=1, lr=1e-3), random_store, None, tmp_path / "r", device="cpu", progress=False
        )
    assert not any("resumed from" in r.message for r in caplog.records)
    assert any("other settings" in r.message for r in caplog.records)


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(random_store, tmp_path, monkeypatch):
    loss_that_explodes = loss_exploding_at(train_module.heatmap_loss, (3,), float("nan"))

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


def pytorch_pose_checkpoint(path, epoch: int = 1):
    """A checkpoint in the layout PyTorch-Pose saves: DataParallel keys, epoch, arch, best_acc, optimizer."""
    model = build_model({"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16}, 16)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    model(torch.rand(2, 3, 64, 64))[0].sum().backward()
    optimizer.step()
    torch.save(
        {
            "epoch": epoch,
            "arch": "hg",
            "best_acc": 0.5,
            "optimizer": optimizer.state_dict(),
            "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
        },
        path,
    )
    return path


def test_resume_from_a_pytorch_pose_checkpoint(random_store, tmp_path, caplog):
    checkpoint = pytorch_pose_checkpoint(tmp_path / "checkpoint.pth.tar")
    with caplog.at_level("INFO", logger="pose_pipeline"):
        summary = train_module.train(
            settings(), random_store, None, tmp_path / "r", device="cpu", progress=False, resume_from=str(checkpoint)
        )
    assert any("checkpoint.pth.tar at epoch 2" in r.message for r in caplog.records)
    assert summary["steps"] == 2 * 6  # counted from the checkpoint's epoch; one epoch trained here
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    assert [r["epoch"] for r in rows] == ["2"]


def test_without_validation_best_pt_is_the_last_epoch_and_no_score_is_claimed(
    random_store, tmp_path, capsys, monkeypatch
):
    """Before: best.pt was the first epoch (never written after a resume at epoch >= 1) and
    the run claimed "best validation score 0.00"."""
    checkpoint = pytorch_pose_checkpoint(tmp_path / "checkpoint.pth.tar")
    out = tmp_path / "r"
    monkeypatch.chdir(tmp_path)  # no store at the default validation path, results/stores/d/val.zarr
    assert (
        cli.main(
            [
                "train",
                "--settings",
                json.dumps(settings(epochs=3)),
                "--train-store",
                str(random_store),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--resume",
                str(checkpoint),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "no validation" in printed and "score" not in printed
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    final = weights(out / "model.pt")
    assert best["epoch"] == 3 and best["val_score"] == ""
    assert all(torch.equal(best["state_dict"][k], final[k]) for k in final)


def test_validation_follows_the_experiments_evaluation_settings(random_store, tmp_path, monkeypatch):
    calls = []
    real_predict = train_module.predict_store

    def recording_predict(model, store, codec, **kwargs):
        calls.append((codec, kwargs))
        return real_predict(model, store, codec, **kwargs)

    monkeypatch.setattr(train_module, "predict_store", recording_predict)
    s = {**settings(epochs=1), "evaluation": {"batch_size": 5, "blur_sigma": 0.5, "flip_test": True}}
    train_module.train(s, random_store, random_store, tmp_path / "e", device="cpu", progress=False)
    ((codec, kwargs),) = calls
    assert kwargs["batch_size"] == 5 and codec.blur_sigma == 0.5
    assert (codec.input_size, codec.heatmap_size, codec.sigma) == (64, 16, 1.0)
    # the evaluation settings decide what validation reports, not what is learnt: a run resumes across them
    store = open_store(random_store)
    assert run_identity(s, 1, store, 1) == run_identity(settings(epochs=1), 1, store, 1)


def test_train_occluded_false_gives_occluded_joints_no_loss(tmp_path, monkeypatch, caplog):
    """training.train_occluded: true (the default) trains every labelled joint, false leaves the
    occluded ones (labelled but hidden) out of the loss weights; missing joints never get loss.
    A store without the `occluded` array (converted before it) cannot do false: an error."""
    store_path = make_random_store(tmp_path / "occ.zarr", occluded=True)
    store = open_store(store_path)
    assert store.has_occluded and store.occluded.any() and (store.occluded <= store.visible).all()
    given = []
    real_prepare = train_module.prepare_batch

    def recording_prepare(images, keypoints_canvas, visible, *args, **kwargs):
        given.append(int(np.asarray(visible).sum()))
        return real_prepare(images, keypoints_canvas, visible, *args, **kwargs)

    monkeypatch.setattr(train_module, "prepare_batch", recording_prepare)
    for train_occluded, expected in ((True, store.visible), (False, store.visible * (1 - store.occluded))):
        given.clear()
        with caplog.at_level("INFO", logger="pose_pipeline"):
            train_module.train(
                settings(epochs=1, train_occluded=train_occluded),
                store_path,
                None,
                tmp_path / f"r{train_occluded}",
                device="cpu",
                progress=False,
            )
        assert sum(given) == expected.sum()  # one epoch serves each of the 24 samples once
    assert any(f"{store.occluded.sum()} occluded joints get no loss" in r.message for r in caplog.records)
    # the default keeps the identity runs had before the key; false is another run
    identity = {v: run_identity(settings(epochs=1, train_occluded=v), 1, store, 1) for v in (True, False)}
    assert identity[True] == run_identity(settings(epochs=1), 1, store, 1) != identity[False]
    with pytest.raises(UserError, match="convert it again"):
        train_module.train(
            settings(epochs=1, train_occluded=False),
            make_random_store(tmp_path / "old.zarr"),
            None,
            tmp_path / "o",
            device="cpu",
            progress=False,
        )


def test_augmentation_keys_at_their_defaults_keep_a_runs_identity(random_store):
    """The augmentation keys added later (shift, half-body, erasing, blur) draw nothing while off:
    a run from before them (its settings without the keys) resumes; switching one on is a new run."""
    from pose_pipeline.train.state import AUGMENTATION_KEYS_ADDED

    store = open_store(random_store)
    now = settings(epochs=1)
    before = {**now, "training": {**now["training"]}}
    before["training"]["augmentation"] = {
        k: v for k, v in now["training"]["augmentation"].items() if k not in AUGMENTATION_KEYS_ADDED
    }
    assert set(now["training"]["augmentation"]) > set(before["training"]["augmentation"])
    assert run_identity(now, 1, store, 1) == run_identity(before, 1, store, 1)
    half_body = settings(epochs=1, augmentation={"half_body_prob": 0.3})
    assert run_identity(half_body, 1, store, 1) != run_identity(now, 1, store, 1)


def test_training_config_is_the_settings_checked_and_filled_and_records_as_a_dict():
    """The train stages read a TrainingConfig; what is recorded stays the schema-filled dict."""
    from pose_pipeline.config.schema import validate_config
    from pose_pipeline.config.training import TrainingConfig

    written = {"epochs": 3, "schedule": {"type": "step"}, "augmentation": {"flip": False}}
    config = {"datasets": {"d": {"format": "mpii", "synthetic": {}}}, "experiments": {"e": {"dataset": "d"}}}
    config["experiments"]["e"].update(model={"arch": "hourglass"}, training=written)
    filled = validate_config(config)["experiments"]["e"]["training"]
    training = TrainingConfig.from_settings(written)
    assert training.asdict() == filled
    assert (training.epochs, training.schedule["type"], training.augmentation["flip"]) == (3, "step", False)
    assert TrainingConfig.from_settings(filled) == training
    with pytest.raises(UserError, match=r"training: unknown key 'checkpoint_evry' \(did you mean 'checkpoint_every'"):
        TrainingConfig.from_settings({"checkpoint_evry": 10})
    with pytest.raises(UserError, match=r"training\.schedule: unknown key 'tpye' \(did you mean 'type'\?\)"):
        TrainingConfig.from_settings({"schedule": {"tpye": "step"}})
