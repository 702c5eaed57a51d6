"""`pose-pipeline plot skeletons | examples`: predicted skeletons drawn over the stored
crops (best to worst) and over the original images (best, median, worst example).

Left limbs blue, right red, centre yellow (`joints.SIDE_COLOURS`), the ground truth as
white dots. Each function returns what it drew (`figures.describe_panel`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pose_pipeline.core import geometry
from pose_pipeline.core.joints import SIDE_COLOURS
from pose_pipeline.data.images import load_image
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import body_unit, normalized_distances
from pose_pipeline.inference.prediction_files import read_predictions
from pose_pipeline.report.figure_files import describe_panel, drawn, figure


def _side_colour(side: str) -> tuple[float, float, float]:
    return tuple(c / 255 for c in SIDE_COLOURS[side])  # the shared palette is RGB 0-255


def predictions_in_crop(preds, affine, pixel_origin: float) -> np.ndarray:
    """Map (N,J,2) points in the annotated convention into the stored crops: subtract the
    store's pixel origin (annotated -> array coordinates), then apply each sample's
    (N,2,3) original-array -> crop affine."""
    return geometry.apply(affine, geometry.annotated_to_array(preds, pixel_origin))


def mean_normalised_errors(preds, gt, visible, unit) -> np.ndarray:
    """(N,) mean over visible joints of ||pred - gt|| / unit (per sample); NaN where
    undefined."""
    dist = normalized_distances(preds, gt, unit)
    counted = (np.asarray(visible) == 1) & np.isfinite(dist)
    with np.errstate(invalid="ignore"):
        return np.where(counted.any(axis=1), np.where(counted, dist, 0).sum(axis=1) / counted.sum(axis=1), np.nan)


def example_units(gt, visible, head_size, joints) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample normalising size for ranking examples, and its name per sample: the
    head size (PCKh's unit) where known, else the torso size (LSP's PCK unit: left shoulder
    to right hip, both annotated), else, for a set without those joints, the larger side of
    the annotated joints' box (as `metrics.body_unit` chooses), else NaN ("")."""
    head = np.asarray(head_size, dtype=np.float64)
    unit = np.where(np.isfinite(head) & (head > 0), head, np.nan)
    names = np.where(np.isfinite(unit), "head sizes", "").astype(object)
    body, _, kind = body_unit(gt, visible, joints)  # torso, or for a set without one its box
    use = ~np.isfinite(unit) & np.isfinite(body) & (body > 0)
    names[use] = f"{kind} sizes"
    return np.where(use, body, unit), names


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
    store = open_store(store_path)
    joints = store.joint_set
    preds = read_predictions(preds_path, joints=joints)
    if len(preds) != len(store):
        raise UserError(f"{preds_path}: {len(preds)} predicted samples, but the store {store_path} has {len(store)}")
    gt = np.asarray(store.keypoints, dtype=np.float64)
    visible = np.asarray(store.visible) == 1
    unit, unit_names = example_units(gt, visible, store.head_size, joints)
    errors = mean_normalised_errors(preds, gt, visible, unit)
    return store, preds, gt, visible, unit_names, errors


def _draw_skeleton(ax, points, joints, visible_mask=None, **kwargs):
    for a, b in joints.edges:
        if visible_mask is not None and not (visible_mask[a] and visible_mask[b]):
            continue
        ax.plot(points[[a, b], 0], points[[a, b], 1], color=_side_colour(joints.edge_side(a, b)), **kwargs)


def plot_skeletons(preds_path, store_path, out_png, count: int = 16, dpi: int = 100) -> list[dict]:
    """A grid of crops from `store_path` with the predicted skeletons (left limbs blue,
    right red, centre yellow) and the ground truth as small white dots; `count` samples
    spread from best to worst by mean normalised error (given in each title). Returns the
    panels drawn (`describe_panel`), one per crop in that order."""
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
    with figure(out_png, dpi, nrows=nrows, ncols=ncols, figsize=(3 * ncols, 3.2 * nrows), squeeze=False) as (fig, axes):
        for ax in axes.flat:
            ax.axis("off")
        for ax, i, pred, truth in zip(axes.flat, chosen, pred_crop, gt_crop):
            ax.imshow(store.images(int(i), int(i) + 1)[0])
            _draw_skeleton(ax, pred, joints, linewidth=2)
            vis = visible[i]
            ax.scatter(truth[vis, 0], truth[vis, 1], s=6, c="white", edgecolors="black", linewidths=0.3, zorder=3)
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
            err = "n/a" if not np.isfinite(errors[i]) else f"{errors[i]:.2f} {unit_names[i]}"
            ax.set_title(f"#{i} {Path(str(names[i])).name}\nerror {err}", fontsize=8)
        return drawn(fig)


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
    says so. Returns {label: {index, image, background ("original" | "crop"), error,
    panel (`describe_panel`: the skeleton as lines, the ground truth as points)}}.
    """
    store, preds, gt, visible, unit_names, errors = scored_samples(preds_path, store_path)
    joints = store.joint_set
    chosen = pick_examples(errors)
    size, origin = store.canvas_size, store.pixel_origin
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    info = {}
    with figure(out_png, dpi, nrows=1, ncols=3, figsize=(13, 5), squeeze=False) as (fig, axes):
        for ax, (label, i) in zip(axes[0], chosen.items()):
            name = str(store.image_name[i])
            image, problem = (
                (None, "no image folder given") if images_dir is None else load_image(Path(images_dir) / name)
            )
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
            ax.scatter(truth[vis, 0], truth[vis, 1], s=10, c="white", edgecolors="black", linewidths=0.4, zorder=3)
            ax.axis("off")
            err = "n/a" if not np.isfinite(errors[i]) else f"{errors[i]:.3f} {unit_names[i]}"
            ax.set_title(f"{label}: #{i} {Path(name).name}, mean error {err}\n{where}", fontsize=8, wrap=True)
            info[label] = {
                "index": i,
                "image": name,
                "background": "original" if image is not None else "crop",
                "error": None if not np.isfinite(errors[i]) else float(errors[i]),
                "panel": describe_panel(ax),
            }
    return info
