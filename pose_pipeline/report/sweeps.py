"""`pose-pipeline sweep table|plot`: a sweep's points side by side, and its score over the grid.

The table (results/sweeps/{sweep}.csv) has one row per point, in the grid's order:

  experiment     the point's experiment (pose_pipeline.config.sweeps names it)
  <setting> ...  one column per grid setting (its dotted path): the point's value, as YAML
                 writes it (numbers, true/false, null, words; lists and mappings as JSON)
  metric         the score's name: the first row of the score table (PCKh@0.5 Mean, PCK@0.2
                 Mean, COCO's AP)
  score          that number, from the experiment's score file (results/pckh/{experiment}.json):
                 the experiment's model.pt (its last epoch's weights) scored on the whole
                 validation split with the dataset's metric and flip test, as its score CSV and
                 summary.csv report it. Not the log's best val_score: that is the quick
                 validation during training (no flip test, PCK@0.2 for COCO), and the best of
                 several looks at the same split
  epochs         epochs completed (the training log)
  train_loss     the last epoch's mean training loss
  images_per_s   the median of the epochs' training throughput (the first epoch's warm-up, a
                 torch.compile say, does not count for more than one epoch)
  train_time_s   training seconds at the end, resumed sessions included (the log's elapsed_s)

The plot (results/sweeps/{sweep}.png) reads the table back: the score against the setting's
values for one setting (a line; a log axis for positive values spanning a decade or more), a
heatmap for two, and for more one heatmap of the first two per combination of the others
(small multiples on one colour scale). Numeric values are in ascending order, others as the
grid lists them.

Input of `table`: a JSON list of points, each {name, settings: {path: value}, log, scores}
(`workflow_lookups.sweep_table_entries`).
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
from pathlib import Path

import numpy as np

from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.score_files import read_score_json
from pose_pipeline.report.summary import metric_columns
from pose_pipeline.train.log import read_log
from pose_pipeline.util.atomic import write_text_atomic

RESULT_COLUMNS = ("metric", "score", "epochs", "train_loss", "images_per_s", "train_time_s")
ENTRY_KEYS = ("name", "settings", "log", "scores")


# ------------------------------------------------------------------------------ table


def setting_cell(value) -> str:
    """A grid value in a table cell: a word as it is, anything else as JSON (YAML reads both)."""
    return value if isinstance(value, str) else json.dumps(value)


def _number_cell(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def point_results(entry: dict) -> dict:
    """The result columns of one point, from its training log and its score JSON."""
    log = read_log(entry["log"], ("epoch", "train_loss", "images_per_s", "elapsed_s"))
    metric, score = next(iter(metric_columns(read_score_json(entry["scores"], ("table",))).items()))
    throughput = [row["images_per_s"] for row in log.rows if math.isfinite(row["images_per_s"])]
    return {
        "metric": metric,
        "score": score,
        "epochs": log.epochs_completed(),
        "train_loss": float(log.per_epoch()["train_loss"][-1]),
        "images_per_s": float(np.median(throughput)) if throughput else None,
        "train_time_s": log.elapsed_s(),
    }


def write_sweep_table(entries: list[dict], out_csv) -> list[dict]:
    """Write the sweep's table (see the module docstring); returns its rows (values unformatted)."""
    if not entries:
        raise UserError("a sweep without points: nothing to tabulate")
    paths = list(entries[0].get("settings") or {})
    rows = []
    for k, entry in enumerate(entries):
        missing = [key for key in ENTRY_KEYS if key not in entry]
        if missing or list(entry["settings"]) != paths:
            problem = f"missing {missing}" if missing else f"settings {list(entry['settings'])}, not {paths}"
            raise UserError(f"sweep point {k} ({entry.get('name', '?')}): {problem}")
        rows.append({"experiment": entry["name"], **entry["settings"], **point_results(entry)})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["experiment", *paths, *RESULT_COLUMNS])
    for row in rows:
        cells = [row["experiment"], *(setting_cell(row[p]) for p in paths), row["metric"]]
        writer.writerow(cells + [_number_cell(row[c]) for c in RESULT_COLUMNS[1:]])
    write_text_atomic(out_csv, buffer.getvalue())
    return rows


def read_sweep_table(path) -> tuple[list[str], list[dict]]:
    """(the grid's paths, one dict per row: experiment, `settings` {path: cell text}, metric,
    score as a float (NaN where empty)) of a table `write_sweep_table` wrote."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames or [], list(reader)
    except FileNotFoundError:
        raise UserError(f"{path}: no such sweep table") from None
    paths = header[1 : len(header) - len(RESULT_COLUMNS)]
    if header[:1] != ["experiment"] or tuple(header[-len(RESULT_COLUMNS) :]) != RESULT_COLUMNS or not paths:
        raise UserError(f"{path}: not a sweep table (pose-pipeline sweep table): columns {header}")
    if not rows:
        raise UserError(f"{path}: the sweep table has no rows")
    table = []
    for line, row in enumerate(rows, start=2):
        try:
            score = float(row["score"]) if row["score"] else math.nan
        except ValueError:
            raise UserError(f"{path}, line {line}: score must be a number, not {row['score']!r}") from None
        table.append({**row, "settings": {p: row[p] for p in paths}, "score": score})
    return paths, table


# ------------------------------------------------------------------------------- plot


def _as_number(cell: str) -> float | None:
    """A cell's number (None for words, booleans, lists)."""
    try:
        value = json.loads(cell)
    except json.JSONDecodeError:
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def ordered_values(cells: list[str]) -> list[str]:
    """A setting's distinct values: ascending where all are numbers, else in the grid's order."""
    distinct = list(dict.fromkeys(cells))
    numbers = [_as_number(c) for c in distinct]
    return distinct if None in numbers else [c for _, c in sorted(zip(numbers, distinct))]


def _line(ax, path: str, values: list[str], scores: dict, metric: str) -> None:
    y = np.array([scores.get((v,), math.nan) for v in values])
    numbers = [_as_number(v) for v in values]
    if None in numbers:
        ax.plot(range(len(values)), y, marker="o")
        ax.set_xticks(range(len(values)), values)
    else:
        ax.plot(numbers, y, marker="o")
        if min(numbers) > 0 and max(numbers) >= 10 * min(numbers):
            ax.set_xscale("log")
    ax.set_xlabel(path)
    ax.set_ylabel(metric)


def _heatmap(ax, fig, paths: list[str], values: list[list[str]], scores: dict, rest: tuple, limits) -> None:
    """Rows: the first setting's values, columns: the second's; each cell written in."""
    grid = np.array([[scores.get((a, b, *rest), math.nan) for b in values[1]] for a in values[0]])
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=limits[0], vmax=limits[1], aspect="auto")
    for (i, j), score in np.ndenumerate(grid):
        bright = math.isfinite(score) and score - limits[0] > 0.6 * (limits[1] - limits[0])  # viridis' yellow end
        text = f"{score:.4g}" if math.isfinite(score) else "-"
        ax.text(j, i, text, ha="center", va="center", color="black" if bright else "white")
    ax.set_xticks(range(len(values[1])), values[1])
    ax.set_yticks(range(len(values[0])), values[0])
    ax.set_xlabel(paths[1])
    ax.set_ylabel(paths[0])
    fig.colorbar(image, ax=ax)


def plot_sweep(table_csv, out_png, dpi: int = 100) -> list[dict]:
    """The score over the sweep's grid (see the module docstring); returns the panels drawn
    (`describe_panel`), one per line or heatmap."""
    from pose_pipeline.report.figure_files import describe_panel, figure

    paths, rows = read_sweep_table(table_csv)
    metrics = {row["metric"] for row in rows} - {""}
    metric = metrics.pop() if len(metrics) == 1 else "score"
    scores = {tuple(row["settings"][p] for p in paths): row["score"] for row in rows}
    values = [ordered_values([row["settings"][p] for row in rows]) for p in paths]
    sweep = Path(table_csv).stem
    if len(paths) == 1:
        with figure(out_png, dpi, figsize=(6, 4)) as (fig, ax):
            _line(ax, paths[0], values[0], scores, metric)
            ax.set_title(f"{sweep}: {metric}")
            return [describe_panel(ax)]
    finite = [s for s in scores.values() if math.isfinite(s)]
    limits = (min(finite), max(finite)) if finite else (0.0, 1.0)
    panels = list(itertools.product(*values[2:]))  # one () for a 2-D grid
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    size = (ncols * (1.2 * len(values[1]) + 3), nrows * (0.6 * len(values[0]) + 2.5))
    with figure(out_png, dpi, nrows=nrows, ncols=ncols, figsize=size, squeeze=False) as (fig, axes):
        for ax, rest in zip(axes.flat, panels):
            _heatmap(ax, fig, paths, values, scores, rest, limits)
            others = ", ".join(f"{p}={v}" for p, v in zip(paths[2:], rest))
            ax.set_title(others or f"{sweep}: {metric}")
        for ax in axes.flat[len(panels) :]:
            ax.set_axis_off()
        if len(panels) > 1:
            fig.suptitle(f"{sweep}: {metric}")
        return [describe_panel(ax) for ax in axes.flat[: len(panels)]]


# ------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=p.formatter_class)

    q = add("table", "one row per point of a sweep: its settings, score, final loss, speed and time")
    q.add_argument("--points", required=True, help="JSON list of {name, settings: {path: value}, log, scores}")
    q.add_argument("--out", required=True, help="sweep table CSV to write")
    q = add("plot", "a sweep's score over its grid: a line, a heatmap, or heatmaps side by side")
    q.add_argument("--table", required=True, help="sweep table CSV (`pose-pipeline sweep table`)")
    q.add_argument("--out", required=True, help="PNG to write")
    q.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (dots per inch)")


def run(args: argparse.Namespace) -> int:
    if args.kind == "table":
        try:
            entries = json.loads(args.points)
        except json.JSONDecodeError as exc:
            raise UserError(f"--points: not JSON: {exc}") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UserError("--points: expected a JSON list of points")
        rows = write_sweep_table(entries, args.out)
        print(f"{args.out}: {len(rows)} points")
    else:
        plot_sweep(args.table, args.out, dpi=args.dpi)
        print(args.out)
    return 0
