"""`pose-pipeline plot ...`: training curves, PCKh curves and joint bars here; skeletons on
crops and examples on the original images in `pose_pipeline.report.skeleton_drawings`.

Each function writes one PNG atomically (`pose_pipeline.report.figure_files`), so a failed plot never
leaves a half-written image behind, and returns what it drew (`figures.describe_panel` of
each panel: titles, lines, bars, points, texts), so that callers and tests can check the
content and not only that a PNG opens.

Inputs are the files other stages write: the training log CSV (`pose_pipeline.train.log`,
validation columns possibly empty), the score stage's JSON
(`pose_pipeline.evaluate.score_files.read_score_json`), prediction files and converted stores.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import TABLE_COLUMNS
from pose_pipeline.evaluate.score_files import read_score_json
from pose_pipeline.report.figure_files import describe_panel, drawn
from pose_pipeline.report.figure_files import figure as _figure
from pose_pipeline.report.skeleton_drawings import plot_examples, plot_skeletons
from pose_pipeline.train.log import read_log

PLOTTED_KEYS = ("thresholds", "curves", "per_joint")  # what the score plots read of a score JSON


# --------------------------------------------------------------------------- helpers


def _series(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _plot_line(ax, x, y, **kwargs):
    """A line with markers where it has a single finite point (a lone point draws nothing
    as a line)."""
    finite = np.isfinite(y)
    if finite.sum() == 1:
        kwargs.setdefault("marker", "o")
    return ax.plot(x, y, **kwargs)


# --------------------------------------------------------------------------- plots


def plot_training_curves(log_csvs: dict, out_png, dpi: int = 100) -> list[dict]:
    """Loss per epoch (train solid, val dashed) and the validation metric per epoch (titled
    with the metric the logs name, e.g. PCK@0.2 for LSP), one colour per experiment
    (`log_csvs`: name -> training log CSV). Returns the two panels drawn (`describe_panel`)."""
    read = {name: read_log(path, ("epoch", "train_loss", "val_loss", "val_score")) for name, path in log_csvs.items()}
    logs = {name: log.per_epoch() for name, log in read.items()}
    metrics = {log.metric for log in read.values()} - {None}
    metric = metrics.pop() if len(metrics) == 1 else "score"  # older logs do not name theirs
    if not logs:
        raise UserError("no training logs to plot")
    with _figure(out_png, dpi, nrows=1, ncols=2, figsize=(11, 4)) as (fig, (loss_ax, pckh_ax)):
        for k, (name, log) in enumerate(logs.items()):
            colour = f"C{k % 10}"
            _plot_line(loss_ax, log["epoch"], log["train_loss"], color=colour, label=f"{name} train")
            # validation may run every few epochs: connect the epochs that have it
            finite = np.isfinite(log["val_loss"])
            if finite.any():
                loss_ax.plot(
                    log["epoch"][finite],
                    log["val_loss"][finite],
                    color=colour,
                    linestyle="--",
                    marker=".",
                    label=f"{name} val",
                )
            finite = np.isfinite(log["val_score"])
            if finite.any():
                pckh_ax.plot(log["epoch"][finite], log["val_score"][finite], color=colour, marker=".", label=name)
        loss_ax.set(title="Loss", xlabel="epoch", ylabel="loss")
        if any(np.all(log["train_loss"][np.isfinite(log["train_loss"])] > 0) for log in logs.values()):
            with contextlib.suppress(ValueError):
                loss_ax.set_yscale("log")
        pckh_ax.set(title=f"Validation {metric}", xlabel="epoch", ylabel=f"{metric} (%)")
        if not pckh_ax.lines:
            pckh_ax.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=pckh_ax.transAxes)
        for ax in (loss_ax, pckh_ax):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.lines:
                ax.legend(fontsize="small")
        return drawn(fig)


# the x axis of a curve, by the evaluation's metric
CURVE_UNITS = {"PCKh": "head sizes", "PCK": "torso sizes"}


def _metric(data: dict) -> str:
    return data.get("metric", "PCKh")  # score JSONs before LSP/COCO scoring were PCKh


def plot_pckh_curves(per_joint_jsons: dict, out_png, reference: dict | None = None, dpi: int = 100) -> list[dict]:
    """PCKh (or LSP's PCK) against the normalised threshold, a panel per table column
    (Head ... Ankle, Mean), one line per experiment; `reference` curves dashed.

    The metric is the first run's; runs of another metric (different units, or OKS AP
    which has no such curve) are left out and named in a note on the figure. Returns the
    panels drawn (`describe_panel`), one per column in table order."""
    runs = [(name, read_score_json(path, PLOTTED_KEYS), "-") for name, path in per_joint_jsons.items()]
    runs += [(name, read_score_json(path, PLOTTED_KEYS), "--") for name, path in (reference or {}).items()]
    if not runs:
        raise UserError("no score files to plot")
    metric = next((_metric(d) for _, d, _ in runs if _metric(d) in CURVE_UNITS), None)
    left_out = [name for name, d, _ in runs if _metric(d) != metric or not d["curves"]]
    runs = [r for r in runs if r[0] not in left_out]
    x_max = max((max(d["thresholds"]) for _, d, _ in runs), default=0.5)
    columns = runs[0][1].get("columns", TABLE_COLUMNS) if runs else TABLE_COLUMNS  # FLIC: no Knee, Ankle
    ncols = 4
    nrows = math.ceil(len(columns) / ncols)
    with _figure(
        out_png,
        dpi,
        nrows=nrows,
        ncols=ncols,
        figsize=(4 * ncols, 3.3 * nrows),
        sharex=True,
        sharey=True,
        squeeze=False,
    ) as (fig, axes):
        _draw_curves(axes, columns, runs, x_max)
        _label_curves(axes, runs, left_out, metric)
        return [describe_panel(ax) for ax in axes.flat[: len(columns)]]


def _draw_curves(axes, columns: list, runs: list, x_max: float) -> None:
    """A panel per column, a line per run (name, score data, line style); panels beyond the
    columns blank."""
    for ax, column in zip(axes.flat, columns):
        for k, (name, data, style) in enumerate(runs):
            if column not in data["curves"]:
                continue
            ax.plot(
                np.asarray(data["thresholds"], dtype=np.float64),
                _series(data["curves"][column]),
                linestyle=style,
                color=f"C{k % 10}",
                label=name,
            )
        ax.set(title=column, xlim=(0, x_max), ylim=(0, 100))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(columns) :]:
        ax.axis("off")


def _label_curves(axes, runs: list, left_out: list, metric: str | None) -> None:
    """Axis labels, the legend, and a note naming the runs left out (or saying that none has
    a curve)."""
    if left_out:
        axes.flat[-1].text(
            0,
            0.5,
            "not drawn (another metric, no\nthreshold curve):\n" + "\n".join(left_out),
            fontsize=8,
            va="center",
            transform=axes.flat[-1].transAxes,
        )
    for ax in axes[-1]:
        ax.set_xlabel(f"normalised distance ({CURVE_UNITS.get(metric, 'head sizes')})")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric or 'PCKh'} (%)")
    if runs:
        axes.flat[0].legend(fontsize="small", loc="lower right")
    else:
        axes.flat[0].text(
            0.5,
            0.5,
            "no threshold curves\n(OKS AP: see the score table)",
            ha="center",
            va="center",
            transform=axes.flat[0].transAxes,
        )


def plot_joint_bars(per_joint_json, out_png, dpi: int = 100, name: str | None = None) -> dict:
    """The headline rate (PCKh@0.5, LSP's PCK@0.2) per joint as a bar chart (joints with
    no annotation left empty); OKS AP has no per-joint rate, which the figure says.
    `name` (default: the file's name) goes into the title. Returns the panel drawn
    (`describe_panel`)."""
    data = read_score_json(per_joint_json, PLOTTED_KEYS)
    row = data.get("rows", ["PCKh@0.5"])[0]
    names = list(data["per_joint"])
    rates = _series(data["per_joint"][n].get(row) for n in names)
    with _figure(out_png, dpi, figsize=(max(6, 0.55 * len(names) + 1), 4)) as (fig, ax):
        if not names:
            ax.text(
                0.5,
                0.5,
                f"{_metric(data)}: no per-joint rate (see the score table)",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.axis("off")
            return describe_panel(ax)
        x = np.arange(len(names))
        bars = ax.bar(x, np.nan_to_num(rates), color=["C0" if np.isfinite(r) else "0.8" for r in rates])
        for bar, rate in zip(bars, rates):
            label = "n/a" if not np.isfinite(rate) else f"{rate:.1f}"
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        ax.set_xticks(x, names, rotation=60, ha="right")
        ax.set(ylim=(0, 105), ylabel=f"{row} (%)", title=f"{row} per joint: {name or Path(per_joint_json).name}")
        ax.grid(axis="y", alpha=0.3)
        return describe_panel(ax)


# ------------------------------------------------------------------------------- CLI


def _named_path(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def _named(pairs, option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, path in pairs or []:
        if name in result:
            raise UserError(f"{option}: name {name!r} given twice")
        result[name] = path
    return result


def configure_parser(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text, formatter_class=p.formatter_class)
        q.add_argument("--out", required=True, help="PNG to write")
        q.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (dots per inch)")
        return q

    q = add("curves", "training loss and validation PCKh per epoch")
    q.add_argument(
        "--log",
        type=_named_path,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="training log CSV of one experiment (repeat for several)",
    )
    q = add("pckh", "PCKh against threshold, a panel per joint group")
    q.add_argument(
        "--scores",
        type=_named_path,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="score JSON (`score --per-joint`) of one experiment (repeat for several)",
    )
    q.add_argument(
        "--reference",
        type=_named_path,
        action="append",
        metavar="NAME=PATH",
        help="reference score JSON, drawn dashed (repeatable)",
    )
    q = add("skeletons", "predicted skeletons drawn on crops, best to worst")
    q.add_argument("--preds", required=True, help="prediction file (.mat or .csv)")
    q.add_argument("--store", required=True, help="the converted store the predictions are for")
    q.add_argument("--count", type=int, default=16, help="number of crops")
    q = add("examples", "best, median and worst example drawn on the original images")
    q.add_argument("--preds", required=True, help="prediction file (.mat or .csv)")
    q.add_argument("--store", required=True, help="the converted store the predictions are for")
    q.add_argument(
        "--images",
        help="folder of the original images (the store names them relative to it); "
        "without it, or where an image is missing, the stored crop is drawn",
    )
    q = add("joints", "PCKh@0.5 per joint as bars")
    q.add_argument(
        "--scores",
        type=_named_path,
        required=True,
        metavar="NAME=PATH",
        help="score JSON (`score --per-joint`) of one experiment, NAME in the title",
    )


def run(args: argparse.Namespace) -> int:
    if args.kind == "curves":
        plot_training_curves(_named(args.log, "--log"), args.out, dpi=args.dpi)
    elif args.kind == "pckh":
        plot_pckh_curves(
            _named(args.scores, "--scores"),
            args.out,
            reference=_named(args.reference, "--reference") or None,
            dpi=args.dpi,
        )
    elif args.kind == "skeletons":
        plot_skeletons(args.preds, args.store, args.out, count=args.count, dpi=args.dpi)
    elif args.kind == "examples":
        for label, example in plot_examples(args.preds, args.store, args.out, args.images, dpi=args.dpi).items():
            print(
                f"{label}: sample {example['index']} ({example['image']}) on the {example['background']}, "
                f"error {example['error']}"
            )
    elif args.kind == "joints":
        name, path = args.scores
        plot_joint_bars(path, args.out, dpi=args.dpi, name=name)
    else:  # argparse enforces the choice
        raise UserError(f"unknown plot kind {args.kind!r}")
    print(args.out)
    return 0
