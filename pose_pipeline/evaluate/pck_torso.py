"""LSP and FLIC PCK by torso size, as `eval_pck.m` of bearpaw/eval_pose scores them (the PCK of
Sapp & Taskar used by the LSP and FLIC papers); pure numpy. The normalising unit and the shared
input checks are `metrics`' (`torso_size`, `torso_distances`) and `core.keypoints`'.

* torso size = ||left shoulder - right hip|| of the ground truth;
* every point of every image counts (no visibility mask; a NaN point or torso is a miss), where
  every point and torso joint is labelled (original LSP: its occluded joints carry guessed
  positions and count; FLIC's release). Where some are missing (LSP-extended's invisible joints,
  placeholder coordinates; a NaN FLIC slot), counting them would score placeholders and take
  torsos from them, so the rows count the labelled points of persons whose torso joints are
  labelled, and the evaluation's `notes` say so (`labelled_counted`);
* correct where distance / torso size <= threshold (inclusive);
* columns average left and right rates; LSP's Head is the mean of neck and head top, FLIC's
  of nose and neck (the shoulders' midpoint); FLIC scores ten points (`FLIC_PCK_POINTS`);
* Mean is pooled over all points (every image has all, so it equals the points' mean);
* AUC@0.2 = the area under a curve over thresholds 0:0.01:0.2 with the x axis scaled to
  [0, 1] (trapezoid rule), in percent; eval_pck.m reports it for Mean.

The visible-only variant (visible joints, labelled and not occluded, of samples whose torso
joints are visible, the project's earlier LSP number) is kept as the extra LSP rows
"... (visible only)".
"""

from __future__ import annotations

import numpy as np

from pose_pipeline.core.joints import (
    FLIC,
    FLIC_PCK_GROUPS,
    FLIC_PCK_POINTS,
    LSP,
    LSP_PCK_GROUPS,
    PCK_TORSO_PAIR,
    JointSet,
    torso_pair,
)
from pose_pipeline.core.keypoints import check_keypoints
from pose_pipeline.evaluate.metrics import json_number, pooled_rates, torso_distances, torso_size

# LSP PCK curve: 0 to 0.2 torso sizes (the usual LSP plot range); rows PCK@0.2, PCK@0.1, AUC@0.2.
PCK_TORSO_THRESHOLDS = np.round(np.arange(21) * 0.01, 2)
VISIBLE_ONLY = " (visible only)"  # suffix of the LSP rows that count visible joints alone
PROTOCOL_EVAL_PCK = "eval_pck.m (bearpaw/eval_pose): every point counted, Mean pooled"
PROTOCOL_LABELLED = (
    "eval_pck.m's PCK over the labelled points of persons with a labelled torso (the ground truth has "
    "missing joints, placeholders eval_pck.m would count), Mean pooled"
)


def pck_points(points: np.ndarray, joints: JointSet, point_defs) -> np.ndarray:
    """(N,P,2) an evaluation's points, each the mean of its source joints (FLIC's neck)."""
    return np.stack([points[:, [joints.index(n) for n in sources]].mean(axis=1) for _, sources in point_defs], axis=1)


def scaled_auc(curve, thresholds) -> np.ndarray:
    """Area under a curve (T, ...) over `thresholds` scaled to [0, 1]: the trapezoid rule, which
    is what eval_pck.m's quadgk of the linear interpolation computes."""
    x = np.asarray(thresholds, dtype=np.float64)
    x = (x - x.min()) / (x.max() - x.min())
    curve = np.asarray(curve, dtype=np.float64)
    widths = np.diff(x).reshape((-1,) + (1,) * (curve.ndim - 1))
    return (widths * (curve[1:] + curve[:-1]) / 2).sum(axis=0)


def _pck_rates(dist, counted, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """((T,P) per-point rates, (T,) pooled rate) in percent; a NaN distance counts as missed."""
    hits = (dist[None] <= thresholds[:, None, None]) & counted[None]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_point = 100.0 * hits.sum(axis=1) / counted.sum(axis=0)
    return per_point, pooled_rates(dist, counted, thresholds, inclusive=True)


def _pck_rows(dist, counted, thresholds, names, groups, label: str = "") -> dict:
    """{row: (table columns, pooled, per-point rates)} for PCK@0.2, PCK@0.1 and AUC@0.2
    (`label` appended to each row name), and the column and point curves."""
    per_point, pooled = _pck_rates(dist, counted, thresholds)
    columns = {g: per_point[:, [names.index(n) for n in members]].mean(axis=1) for g, members in groups}
    columns["Mean"] = pooled  # eval_pck.m's Mean: pooled over every counted point
    at = {t: int(np.flatnonzero(np.isclose(thresholds, t))[0]) for t in (0.2, 0.1)}
    rows = {
        f"PCK@{t:g}{label}": ({c: v[k] for c, v in columns.items()}, pooled[k], per_point[k]) for t, k in at.items()
    }
    auc = {c: float(scaled_auc(v, thresholds)) for c, v in columns.items()}
    rows[f"AUC@0.2{label}"] = (auc, auc["Mean"], scaled_auc(per_point, thresholds))
    return {"rows": rows, "curves": columns, "point_curves": per_point}


def _scored_points(joints: JointSet) -> tuple[tuple, tuple]:
    """(points, table groups): FLIC's ten points (`FLIC_PCK_POINTS`), else every joint."""
    if joints is FLIC:
        return FLIC_PCK_POINTS, FLIC_PCK_GROUPS
    groups = tuple((g, m) for g, m in LSP_PCK_GROUPS if set(m) <= set(joints.joints))
    return tuple((n, (n,)) for n in joints.joints), groups


def _torso_point_distances(preds, gt, visible, joints: JointSet, point_defs) -> np.ndarray:
    """(N,P) distances / torso size of the scored points (NaN where the ground truth is missing)."""
    preds = check_keypoints(preds, "predictions", num_joints=joints.num_joints)
    gt = check_keypoints(gt, "ground truth", num_joints=joints.num_joints, allow_nan=True)
    if visible.shape != preds.shape[:2]:
        raise ValueError(f"visible: expected shape {preds.shape[:2]}, got {visible.shape}")
    if joints is FLIC:
        gt = np.where(visible[..., None] == 1, gt, np.nan)  # a store keeps unannotated joints at (0, 0)
    offsets = pck_points(preds, joints, point_defs) - pck_points(gt, joints, point_defs)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.hypot(offsets[..., 0], offsets[..., 1]) / torso_size(gt, joints)[:, None]


def labelled_counted(visible, joints: JointSet, point_defs) -> tuple[np.ndarray, list[str]]:
    """(N,P) the points scored when the ground truth has missing joints: points whose joints are
    all labelled (visible == 1), of persons whose torso joints are labelled, since a missing
    joint's position is a placeholder; and the notes saying so (none when every point and torso
    is labelled: then eval_pck.m's every-point count is the same thing and applies)."""
    visible = np.asarray(visible) == 1
    labelled = np.stack([visible[:, [joints.index(n) for n in src]].all(axis=1) for _, src in point_defs], axis=1)
    torso = visible[:, list(torso_pair(joints))].all(axis=1)
    if labelled.all() and torso.all():
        return np.ones(labelled.shape, bool), []
    n, points = labelled.shape
    note = (
        f"{int((~labelled).sum())} of {n * points} scored points are missing (not labelled; placeholder "
        f"or NaN coordinates), in {int((~labelled).any(axis=1).sum())} of {n} persons, {int((~torso).sum())} "
        f"of them with a torso joint ({' or '.join(PCK_TORSO_PAIR)}) missing. eval_pck.m would count every "
        "point and measure a torso from a placeholder; these PCK rows count the labelled points of the "
        f"{int(torso.sum())} persons whose torso is labelled"
    )
    return labelled & torso[:, None], [note]


def pck_torso_evaluation(
    preds, gt, visible, joints: JointSet = LSP, thresholds=PCK_TORSO_THRESHOLDS, occluded=None
) -> dict:
    """PCK by torso size as `eval_pck.m` (bearpaw/eval_pose) scores LSP and FLIC, JSON-ready.

    distance / ||gt left shoulder - gt right hip|| <= threshold; every point of every sample
    counts (a NaN ground truth or torso is a miss); each column the mean of its points' rates
    (left / right averaged; LSP Head = neck and head top, FLIC Head = nose and neck); Mean
    pooled over all points; AUC@0.2 = trapezoid area under a curve over 0:0.01:0.2 with the
    x axis scaled to [0, 1]. FLIC is scored on its ten points (`FLIC_PCK_POINTS`, the neck
    the shoulders' midpoint). `visible` (N,J): 1 = labelled, 0 = missing. Where a scored point
    or torso joint is missing, eval_pck.m's count would score placeholders: the rows then count
    labelled points of persons with a labelled torso (`labelled_counted`) and `notes` says so.
    LSP adds the rows "... (visible only)": labelled joints not `occluded` (N,J; default none)
    of samples whose torso joints are such.
    """
    visible = np.asarray(visible)
    point_defs, groups = _scored_points(joints)
    dist = _torso_point_distances(preds, gt, visible, joints, point_defs)
    names = [name for name, _ in point_defs]
    counted, notes = labelled_counted(visible, joints, point_defs)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    result = _pck_rows(dist, counted, thresholds, names, groups)
    rows = dict(result["rows"])
    if joints is LSP:
        hidden = np.zeros(visible.shape, bool) if occluded is None else np.asarray(occluded) == 1
        seen = ((visible == 1) & ~hidden).astype(np.uint8)
        seen_rows = _pck_rows(*torso_distances(preds, gt, seen, joints), thresholds, names, groups, VISIBLE_ONLY)
        rows.update(seen_rows["rows"])
    columns = [g for g, _ in groups] + ["Mean"]
    counts = counted.sum(axis=0)
    return {
        "metric": "PCK",
        "protocol": (PROTOCOL_LABELLED if notes else PROTOCOL_EVAL_PCK),
        "notes": notes,
        "rows": list(rows),
        "columns": columns,
        "thresholds": [float(t) for t in thresholds],
        "table": {row: {c: json_number(cols[c]) for c in columns} for row, (cols, _, _) in rows.items()},
        "mean_weighted": {row: json_number(pooled) for row, (_, pooled, _) in rows.items()},
        "per_joint": {
            name: {**{row: json_number(rates[p]) for row, (_, _, rates) in rows.items()}, "count": int(counts[p])}
            for p, name in enumerate(names)
        },
        "curves": {c: [json_number(v) for v in result["curves"][c]] for c in columns},
        "joint_curves": {name: [json_number(v) for v in result["point_curves"][:, p]] for p, name in enumerate(names)},
    }
