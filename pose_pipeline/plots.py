"""`pose-pipeline plot ...`: training curves, PCKh curves, skeleton overlays, joint bars.

Headless (matplotlib's Agg backend). Each function writes one PNG atomically, so a failed
plot never leaves a half-written image behind.

Inputs are the files other stages write: the training log CSV (`training_log.py`,
validation columns possibly empty), the
score stage's JSON (`pose_pipeline.score.score`), prediction files and converted stores.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from pose_pipeline import geometry  # noqa: E402
from pose_pipeline.atomic import atomic_output  # noqa: E402
from pose_pipeline.errors import UserError  # noqa: E402
from pose_pipeline.metrics import TABLE_COLUMNS  # noqa: E402
from pose_pipeline.score import read_score_json  # noqa: E402
from pose_pipeline.training_log import read_log  # noqa: E402

SIDE_COLOURS = {"left": "tab:blue", "right": "tab:red", "centre": "gold"}
PLOTTED_KEYS = ("thresholds", "curves", "per_joint")  # what the score plots read of a score JSON


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _figure(out_png, dpi: int, **subplots):
    """A figure with subplots, saved atomically as PNG on success and always closed."""
    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_output(out_png, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.1)
    finally:
        plt.close(fig)


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


def plot_training_curves(log_csvs: dict, out_png, dpi: int = 100) -> None:
    """Loss per epoch (train solid, val dashed) and the validation metric per epoch (titled
    with the metric the logs name, e.g. PCK@0.2 for LSP), one colour per experiment
    (`log_csvs`: name -> training log CSV)."""
    read = {name: read_log(path, ("epoch", "train_loss", "val_loss", "val_score"))
            for name, path in log_csvs.items()}
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
                loss_ax.plot(log["epoch"][finite], log["val_loss"][finite], color=colour, linestyle="--",
                             marker=".", label=f"{name} val")
            finite = np.isfinite(log["val_score"])
            if finite.any():
                pckh_ax.plot(log["epoch"][finite], log["val_score"][finite], color=colour, marker=".",
                             label=name)
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


# the x axis of a curve, by the evaluation's metric
CURVE_UNITS = {"PCKh": "head sizes", "PCK": "torso sizes"}


def _metric(data: dict) -> str:
    return data.get("metric", "PCKh")  # score JSONs before LSP/COCO scoring were PCKh


def plot_pckh_curves(per_joint_jsons: dict, out_png, reference: dict | None = None, dpi: int = 100) -> None:
    """PCKh (or LSP's PCK) against the normalised threshold, a panel per table column
    (Head ... Ankle, Mean), one line per experiment; `reference` curves dashed.

    The metric is the first run's; runs of another metric (different units, or OKS AP
    which has no such curve) are left out and named in a note on the figure."""
    runs = [(name, read_score_json(path, PLOTTED_KEYS), "-") for name, path in per_joint_jsons.items()]
    runs += [(name, read_score_json(path, PLOTTED_KEYS), "--") for name, path in (reference or {}).items()]
    if not runs:
        raise UserError("no score files to plot")
    metric = next((_metric(d) for _, d, _ in runs if _metric(d) in CURVE_UNITS), None)
    left_out = [name for name, d, _ in runs if _metric(d) != metric or not d["curves"]]
    runs = [r for r in runs if r[0] not in left_out]
    x_max = max((max(d["thresholds"]) for _, d, _ in runs), default=0.5)
    ncols = 4
    nrows = math.ceil(len(TABLE_COLUMNS) / ncols)
    with _figure(out_png, dpi, nrows=nrows, ncols=ncols, figsize=(4 * ncols, 3.3 * nrows),
                 sharex=True, sharey=True, squeeze=False) as (fig, axes):
        for ax, column in zip(axes.flat, TABLE_COLUMNS):
            for k, (name, data, style) in enumerate(runs):
                if column not in data["curves"]:
                    continue
                ax.plot(np.asarray(data["thresholds"], dtype=np.float64), _series(data["curves"][column]),
                        linestyle=style, color=f"C{k % 10}", label=name)
            ax.set(title=column, xlim=(0, x_max), ylim=(0, 100))
            ax.grid(alpha=0.3)
        for ax in axes.flat[len(TABLE_COLUMNS):]:
            ax.axis("off")
        if left_out:
            axes.flat[-1].text(0, 0.5, "not drawn (another metric, no\nthreshold curve):\n" + "\n".join(left_out),
                               fontsize=8, va="center", transform=axes.flat[-1].transAxes)
        for ax in axes[-1]:
            ax.set_xlabel(f"normalised distance ({CURVE_UNITS.get(metric, 'head sizes')})")
        for ax in axes[:, 0]:
            ax.set_ylabel(f"{metric or 'PCKh'} (%)")
        if runs:
            axes.flat[0].legend(fontsize="small", loc="lower right")
        else:
            axes.flat[0].text(0.5, 0.5, "no threshold curves\n(OKS AP: see the score table)", ha="center",
                              va="center", transform=axes.flat[0].transAxes)


def predictions_in_crop(preds, affine, pixel_origin: float) -> np.ndarray:
    """Map (N,J,2) points in the annotated convention into the stored crops: subtract the
    store's pixel origin (annotated -> array coordinates), then apply each sample's
    (N,2,3) original-array -> crop affine."""
    return geometry.apply(affine, geometry.annotated_to_array(preds, pixel_origin))


def mean_normalised_errors(preds, gt, visible, unit) -> np.ndarray:
    """(N,) mean over visible joints of ||pred - gt|| / unit (per sample); NaN where
    undefined."""
    from pose_pipeline.metrics import normalized_distances

    dist = normalized_distances(preds, gt, unit)
    counted = (np.asarray(visible) == 1) & np.isfinite(dist)
    with np.errstate(invalid="ignore"):
        return np.where(counted.any(axis=1), np.where(counted, dist, 0).sum(axis=1) / counted.sum(axis=1),
                        np.nan)


def example_units(gt, visible, head_size, joints) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample normalising size for ranking examples, and its name per sample: the
    head size (PCKh's unit) where known, else the torso size (LSP's PCK unit: left shoulder
    to right hip, both annotated), else NaN ("")."""
    from pose_pipeline.metrics import torso_size

    head = np.asarray(head_size, dtype=np.float64)
    unit = np.where(np.isfinite(head) & (head > 0), head, np.nan)
    names = np.where(np.isfinite(unit), "head sizes", "").astype(object)
    if {"l_shoulder", "r_hip"} <= set(joints.joints):
        visible = np.asarray(visible) == 1
        known = visible[:, joints.index("l_shoulder")] & visible[:, joints.index("r_hip")]
        torso = np.where(known, torso_size(gt, joints), np.nan)
        use = ~np.isfinite(unit) & np.isfinite(torso) & (torso > 0)
        unit = np.where(use, torso, unit)
        names[use] = "torso sizes"
    return unit, names


def pick_samples(errors, count: int) -> np.ndarray:
    """Indices from best to worst by error, evenly spread over the sorted order (so best,
    median and worst are included); samples without an error come last."""
    errors = np.asarray(errors, dtype=np.float64)
    order = np.argsort(np.where(np.isfinite(errors), errors, np.inf), kind="stable")
    if count >= len(order):
        return order
    finite = int(np.isfinite(errors).sum())
    pool = order[:finite] if finite >= count else order
    return pool[np.unique(np.round(np.linspace(0, len(pool) - 1, count)).astype(int))]


def scored_samples(preds_path, store_path):
    """(store, preds, gt, visible mask, unit names, per-sample mean normalised error) of a prediction file
    against the store it predicts: what picking examples to draw needs."""
    from pose_pipeline.score import read_predictions
    from pose_pipeline.store import open_store

    store = open_store(store_path)
    joints = store.joint_set
    preds = read_predictions(preds_path, joints=joints)
    if len(preds) != len(store):
        raise UserError(f"{preds_path}: {len(preds)} predicted samples, but the store {store_path} "
                        f"has {len(store)}")
    gt = np.asarray(store.keypoints, dtype=np.float64)
    visible = np.asarray(store.visible) == 1
    unit, unit_names = example_units(gt, visible, store.head_size, joints)
    errors = mean_normalised_errors(preds, gt, visible, unit)
    return store, preds, gt, visible, unit_names, errors


def _draw_skeleton(ax, points, joints, visible_mask=None, **kwargs):
    for a, b in joints.edges:
        if visible_mask is not None and not (visible_mask[a] and visible_mask[b]):
            continue
        sides = {joints.side(a), joints.side(b)}
        side = sides.pop() if len(sides) == 1 else ("left" if "left" in sides else
                                                     "right" if "right" in sides else "centre")
        ax.plot(points[[a, b], 0], points[[a, b], 1], color=SIDE_COLOURS[side], **kwargs)


def plot_skeletons(preds_path, store_path, out_png, count: int = 16, dpi: int = 100) -> None:
    """A grid of crops from `store_path` with the predicted skeletons (left limbs blue,
    right red, centre yellow) and the ground truth as small white dots; `count` samples
    spread from best to worst by mean normalised error (given in each title)."""
    if count < 1:
        raise UserError(f"--count must be at least 1, got {count}")
    store, preds, gt, visible, unit_names, errors = scored_samples(preds_path, store_path)
    joints = store.joint_set
    chosen = pick_samples(errors, count)
    pred_crop = predictions_in_crop(preds[chosen], store.affine[chosen], store.pixel_origin)
    gt_crop = predictions_in_crop(np.nan_to_num(gt[chosen]), store.affine[chosen], store.pixel_origin)
    ncols = min(4, len(chosen))
    nrows = math.ceil(len(chosen) / ncols)
    size = store.canvas_size
    names = store.image_name
    with _figure(out_png, dpi, nrows=nrows, ncols=ncols, figsize=(3 * ncols, 3.2 * nrows),
                 squeeze=False) as (fig, axes):
        for ax in axes.flat:
            ax.axis("off")
        for ax, i, pred, truth in zip(axes.flat, chosen, pred_crop, gt_crop):
            ax.imshow(store.images(int(i), int(i) + 1)[0])
            _draw_skeleton(ax, pred, joints, linewidth=2)
            vis = visible[i]
            ax.scatter(truth[vis, 0], truth[vis, 1], s=6, c="white", edgecolors="black", linewidths=0.3,
                       zorder=3)
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
            err = "n/a" if not np.isfinite(errors[i]) else f"{errors[i]:.2f} {unit_names[i]}"
            ax.set_title(f"#{i} {Path(str(names[i])).name}\nerror {err}", fontsize=8)


EXAMPLE_LABELS = ("best", "median", "worst")


def pick_examples(errors) -> dict[str, int]:
    """{"best", "median", "worst"} -> sample index by per-example error (lowest, the
    lower median, highest), over the samples with an error (all samples if none has)."""
    errors = np.asarray(errors, dtype=np.float64)
    if errors.size == 0:
        raise UserError("no samples to pick examples from")
    finite = np.flatnonzero(np.isfinite(errors))
    pool = finite[np.argsort(errors[finite], kind="stable")] if finite.size else np.arange(errors.size)
    return dict(zip(EXAMPLE_LABELS, (int(pool[0]), int(pool[(len(pool) - 1) // 2]), int(pool[-1]))))


def plot_examples(preds_path, store_path, out_png, images_dir=None, dpi: int = 100) -> dict:
    """Best, median and worst example by mean normalised error (head size, else torso
    size), the predicted skeleton (left blue, right red) and the ground truth (white dots)
    drawn on the ORIGINAL image, framed on the stored crop's region. The store gives the
    image name (relative to `images_dir`) and the affine back to the original; where the
    original image cannot be read the stored crop is drawn instead and the panel title
    says so. Returns {label: {index, image, background ("original" | "crop"), error}}.
    """
    from pose_pipeline.convert import load_image

    store, preds, gt, visible, unit_names, errors = scored_samples(preds_path, store_path)
    joints = store.joint_set
    chosen = pick_examples(errors)
    size, origin = store.canvas_size, store.pixel_origin
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    info = {}
    with _figure(out_png, dpi, nrows=1, ncols=3, figsize=(13, 5), squeeze=False) as (fig, axes):
        for ax, (label, i) in zip(axes[0], chosen.items()):
            name = str(store.image_name[i])
            image, problem = (None, "no image folder given") if images_dir is None else \
                load_image(Path(images_dir) / name)
            vis = visible[i]
            if image is not None:
                # annotated -> array coordinates: imshow puts pixel centres on integers
                pred = geometry.annotated_to_array(preds[i], origin)
                truth = geometry.annotated_to_array(np.nan_to_num(gt[i]), origin)
                ax.imshow(image)
                region = geometry.apply(geometry.invert(store.affine[i]), corners)
                h, w = image.shape[:2]
                ax.set_xlim(max(region[:, 0].min(), -0.5), min(region[:, 0].max(), w - 0.5))
                ax.set_ylim(min(region[:, 1].max(), h - 0.5), max(region[:, 1].min(), -0.5))
                where = "original image"
            else:
                pred = predictions_in_crop(preds[i][None], store.affine[i][None], origin)[0]
                truth = predictions_in_crop(np.nan_to_num(gt[i])[None], store.affine[i][None], origin)[0]
                ax.imshow(store.images(i, i + 1)[0])
                ax.set_xlim(-0.5, size - 0.5)
                ax.set_ylim(size - 0.5, -0.5)
                where = f"stored crop: original not available ({problem})"
            _draw_skeleton(ax, pred, joints, linewidth=2)
            ax.scatter(truth[vis, 0], truth[vis, 1], s=10, c="white", edgecolors="black", linewidths=0.4,
                       zorder=3)
            ax.axis("off")
            err = "n/a" if not np.isfinite(errors[i]) else f"{errors[i]:.3f} {unit_names[i]}"
            ax.set_title(f"{label}: #{i} {Path(name).name}, mean error {err}\n{where}", fontsize=8, wrap=True)
            info[label] = {"index": i, "image": name, "background": "original" if image is not None else "crop",
                           "error": None if not np.isfinite(errors[i]) else float(errors[i])}
    return info


def plot_joint_bars(per_joint_json, out_png, dpi: int = 100) -> None:
    """The headline rate (PCKh@0.5, LSP's PCK@0.2) per joint as a bar chart (joints with
    no annotation left empty); OKS AP has no per-joint rate, which the figure says."""
    data = read_score_json(per_joint_json, PLOTTED_KEYS)
    row = data.get("rows", ["PCKh@0.5"])[0]
    names = list(data["per_joint"])
    rates = _series(data["per_joint"][n].get(row) for n in names)
    with _figure(out_png, dpi, figsize=(max(6, 0.55 * len(names) + 1), 4)) as (fig, ax):
        if not names:
            ax.text(0.5, 0.5, f"{_metric(data)}: no per-joint rate (see the score table)", ha="center",
                    va="center", transform=ax.transAxes)
            ax.axis("off")
            return
        x = np.arange(len(names))
        bars = ax.bar(x, np.nan_to_num(rates), color=["C0" if np.isfinite(r) else "0.8" for r in rates])
        for bar, rate in zip(bars, rates):
            label = "n/a" if not np.isfinite(rate) else f"{rate:.1f}"
            ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(x, names, rotation=60, ha="right")
        ax.set(ylim=(0, 105), ylabel=f"{row} (%)", title=f"{row} per joint: {Path(per_joint_json).name}")
        ax.grid(axis="y", alpha=0.3)


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
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--out", required=True, help="PNG to write")
        q.add_argument("--dpi", type=int, default=100)
        return q

    q = add("curves", "training loss and validation PCKh per epoch")
    q.add_argument("--log", type=_named_path, action="append", required=True, metavar="NAME=PATH",
                   help="training log CSV of one experiment (repeat for several)")
    q = add("pckh", "PCKh against threshold, a panel per joint group")
    q.add_argument("--scores", type=_named_path, action="append", required=True, metavar="NAME=PATH",
                   help="score JSON (`score --per-joint`) of one experiment (repeat for several)")
    q.add_argument("--reference", type=_named_path, action="append", metavar="NAME=PATH",
                   help="reference score JSON, drawn dashed (repeatable)")
    q = add("skeletons", "predicted skeletons drawn on crops, best to worst")
    q.add_argument("--preds", required=True, help="prediction file (.mat or .csv)")
    q.add_argument("--store", required=True, help="the converted store the predictions are for")
    q.add_argument("--count", type=int, default=16, help="number of crops")
    q = add("examples", "best, median and worst example drawn on the original images")
    q.add_argument("--preds", required=True, help="prediction file (.mat or .csv)")
    q.add_argument("--store", required=True, help="the converted store the predictions are for")
    q.add_argument("--images", help="folder of the original images (the store names them relative to it); "
                                    "without it, or where an image is missing, the stored crop is drawn")
    q = add("joints", "PCKh@0.5 per joint as bars")
    q.add_argument("--scores", required=True, help="score JSON (`score --per-joint`)")


def run(args: argparse.Namespace) -> int:
    if args.kind == "curves":
        plot_training_curves(_named(args.log, "--log"), args.out, dpi=args.dpi)
    elif args.kind == "pckh":
        plot_pckh_curves(_named(args.scores, "--scores"), args.out,
                         reference=_named(args.reference, "--reference") or None, dpi=args.dpi)
    elif args.kind == "skeletons":
        plot_skeletons(args.preds, args.store, args.out, count=args.count, dpi=args.dpi)
    elif args.kind == "examples":
        for label, example in plot_examples(args.preds, args.store, args.out, args.images, dpi=args.dpi).items():
            print(f"{label}: sample {example['index']} ({example['image']}) on the {example['background']}, "
                  f"error {example['error']}")
    elif args.kind == "joints":
        plot_joint_bars(args.scores, args.out, dpi=args.dpi)
    else:  # argparse enforces the choice
        raise UserError(f"unknown plot kind {args.kind!r}")
    print(args.out)
    return 0
