"""The training log (`log.csv`): its columns, its one writer and its one reader.

One row per epoch, written by `train` (rank 0) and read by `report.charts` and `report.summary`:

  epoch          1-based epoch the row closes
  step           optimiser steps so far
  train_loss     mean heatmap loss of the epoch's batches
  val_loss       heatmap loss on the validation store (empty without validation)
  val_score      the dataset's validation metric, named in val_metric (empty without validation)
  val_metric     PCKh@0.5 (MPII), PCK@0.2 (LSP, FLIC, COCO: by torso size), PCK@0.2 box (a custom
                 set without shoulders and hips: by the annotated joints' box)
  lr             learning rate after the epoch's schedule step (the next epoch's)
  images_per_s   training throughput over all ranks (with `training.compile`, the first step of a
                 session, which compiles, left out; empty for an epoch of that step alone)
  elapsed_s      training seconds so far, resumed sessions included

Logs written before `val_score` had its name call it `val_pckh` (and have no `val_metric`);
the reader accepts them. The TensorBoard events mirror the numeric columns (`TensorBoard`: a
refused write of them stops them, with one warning, and the run goes on).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_pipeline.errors import UserError
from pose_pipeline.util.atomic import atomic_output
from pose_pipeline.util.output_errors import OUTPUT_ERRNOS, error_number

log = logging.getLogger(__name__)

COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_score", "val_metric", "lr", "images_per_s", "elapsed_s")
TEXT_COLUMNS = ("val_metric",)
LEGACY_NAMES = {"val_pckh": "val_score"}  # old name -> current name
TENSORBOARD_TAGS = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "val_score": "val/score",
    "lr": "lr",
    "images_per_s": "images_per_s",
}


def upgrade_row(row: dict) -> dict:
    """A row under the current column names (rows of older logs and checkpoints renamed)."""
    row = {LEGACY_NAMES.get(k, k): v for k, v in row.items()}
    return {c: row.get(c, "") for c in COLUMNS}


# ------------------------------------------------------------------------------ write


def write_log(path, rows: list[dict]) -> None:
    """Write every row (atomically: a reader never sees half a log); empty cells for
    values not measured (validation columns without validation)."""
    with atomic_output(Path(path)) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in upgrade_row(row).items()})


class TensorBoard:
    """The run's TensorBoard writer, which a refused write (a full disk, a quota, a file-size
    limit, a read-only folder) turns off for the rest of the run with one warning naming the
    events folder, instead of ending the run with a traceback. The events only mirror log.csv;
    log.csv and the checkpoints are the run's record, and their own next write on a disk still
    full ends the run with the one-line error naming them (`output_errors`)."""

    def __init__(self, writer, folder: Path):
        self.writer, self.folder = writer, Path(folder)

    def _refused(self, exc: BaseException) -> None:
        """Stop writing events after `exc`, or raise it when it is no refused write (a bug)."""
        if error_number(exc) not in OUTPUT_ERRNOS:
            raise exc
        cause = os.strerror(error_number(exc))
        log.warning("%s: %s: no more TensorBoard events in this run (log.csv goes on)", self.folder, cause)
        writer, self.writer = self.writer, None
        with contextlib.suppress(OSError):  # let its thread go; it may fail on the same disk again
            writer.close()

    def write(self, row: dict) -> None:
        """Mirror one row's numeric columns (step = epoch)."""
        if self.writer is None:
            return
        try:
            for key, tag in TENSORBOARD_TAGS.items():
                if row.get(key, "") != "":
                    self.writer.add_scalar(tag, row[key], row["epoch"])
            self.writer.flush()
        except OSError as exc:  # raised here from the writer's thread, which wrote the file
            self._refused(exc)

    def close(self) -> None:
        if self.writer is None:
            return
        try:
            self.writer.close()
        except OSError as exc:
            self._refused(exc)
        self.writer = None


def _quiet_refused_event_writes() -> None:
    """TensorBoard writes its events in a thread, which dies of a refused write with a
    traceback on stderr (`threading.excepthook`) before `TensorBoard` hears of it: that one is
    the warning's, so it is not printed; every other thread error is, as ever."""
    previous = threading.excepthook
    if getattr(previous, "quiets_event_writes", False):
        return

    def hook(args) -> None:
        # by its class's name: the class is tensorboard's private `_AsyncWriterThread`
        if type(args.thread).__name__ == "_AsyncWriterThread" and error_number(args.exc_value) in OUTPUT_ERRNOS:
            return
        previous(args)

    hook.quiets_event_writes = True
    threading.excepthook = hook


def open_tensorboard(path: Path) -> TensorBoard | None:
    """The run's `TensorBoard` at `path`, or None (saying so once) when tensorboard is not
    installed or the events file cannot be made (a full disk: warned as a failed write)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed: no event files (pip install -e '.[tensorboard]' in the clone)")
        return None
    _quiet_refused_event_writes()
    try:
        return TensorBoard(SummaryWriter(str(path)), path)
    except OSError as exc:
        if error_number(exc) not in OUTPUT_ERRNOS:
            raise
        log.warning("%s: %s: no TensorBoard events in this run (log.csv goes on)", path, os.strerror(error_number(exc)))
        return None


def write_tensorboard(tensorboard: TensorBoard | None, row: dict) -> None:
    """Mirror one row's numeric columns into TensorBoard (step = epoch), if it is on."""
    if tensorboard is not None:
        tensorboard.write(row)


# ------------------------------------------------------------------------------- read


@dataclass
class TrainingLog:
    """A read log: one dict per row, numbers as floats (NaN where empty), val_metric as text."""

    path: Path
    rows: list[dict]

    @property
    def metric(self) -> str | None:
        """The validation metric's name (None without validation, or in a log older than it)."""
        names = [r["val_metric"] for r in self.rows if r.get("val_metric")]
        return names[-1] if names else None

    def epochs_completed(self) -> int:
        return int(max(r["epoch"] for r in self.rows))

    def elapsed_s(self) -> float:
        """Cumulative training seconds at the last row (NaN if not recorded)."""
        return self.rows[-1].get("elapsed_s", math.nan)

    def per_epoch(self) -> dict[str, np.ndarray]:
        """Per-epoch series: epoch, train_loss (mean of the epoch's rows), val_loss and
        val_score (last value given in the epoch; NaN where none)."""
        epochs: dict[int, dict[str, list[float]]] = {}
        for row in self.rows:
            series = epochs.setdefault(int(row["epoch"]), {"train_loss": [], "val_loss": [], "val_score": []})
            for column, values in series.items():
                if math.isfinite(row.get(column, math.nan)):
                    values.append(row[column])
        order = sorted(epochs)
        result = {
            "epoch": np.array(order, dtype=np.float64),
            "train_loss": np.array(
                [np.mean(epochs[e]["train_loss"]) if epochs[e]["train_loss"] else np.nan for e in order]
            ),
        }
        for column in ("val_loss", "val_score"):
            result[column] = np.array([epochs[e][column][-1] if epochs[e][column] else np.nan for e in order])
        return result


def read_log(path, require=("epoch",)) -> TrainingLog:
    """Read a training log (current or older column names), refusing one that lacks the
    `require`d columns or has a cell that should be a number and is not."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [{LEGACY_NAMES.get(k, k): v for k, v in row.items()} for row in csv.DictReader(f)]
    except FileNotFoundError:
        raise UserError(f"{path}: no such training log") from None
    if not rows:
        raise UserError(f"{path}: training log has no rows")
    missing = [c for c in require if c not in rows[0]]
    if missing:
        raise UserError(f"{path}: training log lacks the columns {missing}")
    return TrainingLog(path, [_parse(row, path, line) for line, row in enumerate(rows, start=2)])


def _parse(row: dict, path: Path, line: int) -> dict:
    parsed = {}
    for column in COLUMNS:
        text = (row.get(column) or "").strip()
        if column in TEXT_COLUMNS:
            parsed[column] = text
            continue
        try:
            parsed[column] = float(text) if text else math.nan
        except ValueError:
            raise UserError(f"{path}, line {line}: {column} must be a number, not {text!r}") from None
    if not math.isfinite(parsed["epoch"]):
        raise UserError(f"{path}, line {line}: epoch must be a number")
    return parsed
