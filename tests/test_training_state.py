"""RunState: what a run carries between sessions, written into and read from last.pt."""

from __future__ import annotations

import time

import pytest
import torch

from pose_pipeline.train.state import DeviceLoss, RunState, hours_minutes_seconds, seconds_left, store_fingerprint


def test_run_state_round_trips_through_its_checkpoint_fields():
    state = RunState(
        step=12,
        log_rows=[{"epoch": 1, "val_score": 40.0, "val_metric": "PCKh@0.5"}],
        best_score=40.0,
        best_epoch=1,
        elapsed_before=5.0,
        epoch_loss=(0.25, 4),
    )
    saved = state.to_checkpoint()
    assert saved["elapsed_s"] >= 5.0
    back = RunState.from_checkpoint(saved)
    assert (back.step, back.best_score, back.best_epoch, back.epoch_loss) == (12, 40.0, 1, (0.25, 4))
    assert back.log_rows[0]["val_score"] == 40.0 and back.elapsed_before == saved["elapsed_s"]
    assert back.epochs_done(6) == 2


def test_a_state_without_validation_has_no_best_score():
    state = RunState()
    assert state.best_score is None and state.improves(0.0)
    state.best_score = 10.0
    assert not state.improves(10.0) and state.improves(10.5)


def test_checkpoints_from_before_best_score_take_it_from_their_log_rows():
    # best_pckh held -1 before any validation and -epoch in runs without it: not a score
    rows = [{"epoch": 1, "val_pckh": 30.0}, {"epoch": 2, "val_pckh": 45.0}, {"epoch": 3, "val_pckh": 41.0}]
    back = RunState.from_checkpoint({"step": 18, "log_rows": rows, "best_pckh": 45.0, "elapsed_s": 3.0})
    assert (back.best_score, back.best_epoch) == (45.0, 2)
    assert back.log_rows[0]["val_score"] == 30.0 and "val_pckh" not in back.log_rows[0]
    unvalidated = [{"epoch": 1, "val_pckh": ""}]
    back = RunState.from_checkpoint({"step": 6, "log_rows": unvalidated, "best_pckh": 0, "elapsed_s": 1.0})
    assert back.best_score is None and back.best_epoch is None


def test_a_resumed_epochs_loss_carries_on_from_the_checkpoints_mean(caplog):
    """The mean over an epoch's steps is the same whether or not a resume fell between them; a
    checkpoint without the record (written before it) gives the mean of the steps after, saying so."""
    losses = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625]
    whole = DeviceLoss(torch.device("cpu"))
    first = DeviceLoss(torch.device("cpu"))
    for step, value in enumerate(losses):
        whole.add(torch.tensor(value), step)
        if step < 4:
            first.add(torch.tensor(value), step)
    state = RunState.from_checkpoint(RunState(step=10, epoch_loss=(first.read()[0], 4)).to_checkpoint())
    resumed = DeviceLoss(torch.device("cpu"), state.loss_before(4))
    for step, value in enumerate(losses[4:], start=4):
        resumed.add(torch.tensor(value), step)
    assert resumed.read()[0] == pytest.approx(whole.read()[0], rel=1e-12) and resumed.steps == 6
    assert state.loss_before(0) == (0.0, 0)  # an epoch's start
    old = RunState.from_checkpoint({"step": 10, "log_rows": [], "elapsed_s": 1.0})
    assert old.loss_before(4) == (0.0, 0) and "the mean of the steps after the resume" in caplog.text


def test_elapsed_counts_earlier_sessions_and_this_one():
    state = RunState(elapsed_before=100.0, session_start=time.monotonic() - 2.0)
    assert 102.0 <= state.elapsed() < 110.0


def test_time_left_is_the_pace_so_far_times_the_epochs_left():
    assert seconds_left(120.0, 3, 10) == 280.0  # 40 s an epoch, 7 to go
    assert seconds_left(50.0, 10, 10) == 0.0
    assert [hours_minutes_seconds(s) for s in (0.2, 59.6, 3723.4, 90061)] == [
        "0:00:00",
        "0:01:00",
        "1:02:03",
        "25:01:01",
    ]


def test_the_training_data_is_its_sources_content_not_where_they_lay():
    """A store records its sources' paths (score finds a COCO store's annotations by it); a run
    resumes on a store of the same files converted elsewhere, or before paths were recorded."""

    class Store(list):
        def __init__(self, sources):
            super().__init__(range(24))
            self.attrs = {"sources": sources, "converter": {"canvas_size": 64}}

    source = {"file": "a.json", "sha256": "0" * 64}
    here, there = ({**source, "path": f"/{where}/a.json"} for where in ("here", "there"))
    assert store_fingerprint(Store([here])) == store_fingerprint(Store([there])) == store_fingerprint(Store([source]))
    assert store_fingerprint(Store([{**here, "sha256": "1" * 64}])) != store_fingerprint(Store([here]))
