"""The training log: one writer, one reader (also of logs from before `val_score`), used by
plots and summary."""

from __future__ import annotations

import errno
import math
import os

import matplotlib.axes
import numpy as np
import pytest

from pose_pipeline.errors import UserError
from pose_pipeline.report.charts import plot_training_curves
from pose_pipeline.report.summary import summarize
from pose_pipeline.train.log import COLUMNS, open_tensorboard, read_log, upgrade_row, write_log, write_tensorboard

OLD_LOG = (
    "epoch,step,train_loss,val_loss,val_pckh,lr,images_per_s,elapsed_s\n"
    "1,4,1.0,0.9,40,0.001,10,5\n2,8,0.5,0.6,55.5,0.001,10,12\n"
)


def row(epoch, val_score, metric="PCK@0.2", **more):
    return {
        "epoch": epoch,
        "step": 4 * epoch,
        "train_loss": 1.0 / epoch,
        "val_loss": "" if val_score == "" else 0.5,
        "val_score": val_score,
        "val_metric": metric if val_score != "" else "",
        "lr": 1e-3,
        "images_per_s": 10.0,
        "elapsed_s": 3.0 * epoch,
        **more,
    }


def test_written_rows_read_back(tmp_path):
    write_log(tmp_path / "log.csv", [row(1, ""), row(2, 61.25)])
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    log = read_log(tmp_path / "log.csv")
    assert log.metric == "PCK@0.2"
    assert log.epochs_completed() == 2 and log.elapsed_s() == 6.0
    assert math.isnan(log.rows[0]["val_score"]) and log.rows[1]["val_score"] == 61.25
    np.testing.assert_allclose(log.per_epoch()["val_score"], [np.nan, 61.25])


def test_old_logs_with_val_pckh_are_read_as_val_score(tmp_path):
    (tmp_path / "old.csv").write_text(OLD_LOG)
    log = read_log(tmp_path / "old.csv", ("epoch", "val_score"))
    np.testing.assert_allclose(log.per_epoch()["val_score"], [40.0, 55.5])
    assert log.metric is None  # an old log does not say which metric it held
    # rows restored from an old checkpoint are renamed before they are written again
    assert upgrade_row({"epoch": 1, "val_pckh": 40.0})["val_score"] == 40.0


def test_bad_logs_are_refused_naming_the_problem(tmp_path):
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(UserError, match=r"lacks the columns \['elapsed_s'\]"):
        read_log(tmp_path / "bad.csv", ("epoch", "elapsed_s"))
    (tmp_path / "nan.csv").write_text("epoch,train_loss\n1,lots\n")
    with pytest.raises(UserError, match="line 2: train_loss must be a number"):
        read_log(tmp_path / "nan.csv")
    with pytest.raises(UserError, match="no such training log"):
        read_log(tmp_path / "absent.csv")


def titles_of_training_curves(monkeypatch, logs: dict, out) -> list[str]:
    titles = []
    real_set = matplotlib.axes.Axes.set

    def recording_set(ax, **kwargs):
        titles.append(kwargs.get("title"))
        return real_set(ax, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set", recording_set)
    plot_training_curves(logs, out, dpi=30)
    return titles


def test_curves_are_titled_with_the_logged_metric(tmp_path, monkeypatch):
    write_log(tmp_path / "lsp.csv", [row(1, 20.0), row(2, 30.0)])
    assert "Validation PCK@0.2" in titles_of_training_curves(
        monkeypatch, {"lsp": tmp_path / "lsp.csv"}, tmp_path / "a.png"
    )
    (tmp_path / "old.csv").write_text(OLD_LOG)
    titles = titles_of_training_curves(monkeypatch, {"old": tmp_path / "old.csv"}, tmp_path / "b.png")
    assert "Validation score" in titles and not any("PCKh" in (t or "") for t in titles)


def test_summary_reads_old_and_new_logs_alike(tmp_path, monkeypatch):
    from pose_pipeline.report import summary

    monkeypatch.setattr(summary, "parameter_count", lambda path: 1)
    monkeypatch.setattr(summary, "read_score_json", lambda path, keys: {"metric": "OKS", "table": {}, "rows": []})
    (tmp_path / "old.csv").write_text(OLD_LOG)
    write_log(tmp_path / "new.csv", [row(1, 20.0), row(2, 30.0), row(3, 35.0)])
    entry = {"dataset": "d", "format": "f", "arch": "hourglass", "stacks": 1, "scores": "s.json", "model": "m.pt"}
    rows = summarize(
        [
            {**entry, "name": "old", "log": str(tmp_path / "old.csv")},
            {**entry, "name": "new", "log": str(tmp_path / "new.csv")},
        ],
        tmp_path / "summary.csv",
    )
    assert [(r["epochs"], r["train_time_s"]) for r in rows] == [(2, 12.0), (3, 9.0)]


class FailingSummaryWriter:
    """A SummaryWriter on a disk that is full, or that fails otherwise (`number`)."""

    number = errno.ENOSPC
    made: list[FailingSummaryWriter] = []

    def __init__(self, path):
        self.path, self.scalars, self.closed = path, 0, 0
        FailingSummaryWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars += 1
        raise OSError(self.number, os.strerror(self.number))

    def flush(self):
        pass

    def close(self):
        self.closed += 1


@pytest.fixture
def failing_tensorboard(monkeypatch):
    pytest.importorskip("tensorboard")
    import torch.utils.tensorboard

    FailingSummaryWriter.made = []
    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", FailingSummaryWriter)
    return FailingSummaryWriter


def test_a_full_disk_under_tensorboard_is_one_warning_and_no_more_events(tmp_path, failing_tensorboard, caplog):
    """The events mirror log.csv: a refused write of them is no reason to end a training run."""
    events = tmp_path / "run" / "tensorboard"
    tensorboard = open_tensorboard(events)
    with caplog.at_level("WARNING", logger="pose_pipeline"):
        for epoch in (1, 2, 3):
            write_tensorboard(tensorboard, row(epoch, 50.0))
        tensorboard.close()
    [writer] = failing_tensorboard.made
    assert writer.scalars == 1 and writer.closed == 1  # off after the first refusal, closed once
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == f"{events}: {os.strerror(errno.ENOSPC)}: no more TensorBoard events in this run (log.csv goes on)"


def test_another_tensorboard_error_is_not_hidden(tmp_path, failing_tensorboard, monkeypatch):
    monkeypatch.setattr(failing_tensorboard, "number", errno.EIO)
    with pytest.raises(OSError, match=os.strerror(errno.EIO)):
        write_tensorboard(open_tensorboard(tmp_path / "tensorboard"), row(1, 50.0))


def test_an_events_file_that_cannot_be_made_is_one_warning_and_no_tensorboard(tmp_path, monkeypatch, caplog):
    pytest.importorskip("tensorboard")
    import torch.utils.tensorboard

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"{path}/events.out.tfevents.1")

    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", full)
    with caplog.at_level("WARNING", logger="pose_pipeline"):
        assert open_tensorboard(tmp_path / "tensorboard") is None
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{tmp_path / 'tensorboard'}: {os.strerror(errno.ENOSPC)}: no TensorBoard events")
