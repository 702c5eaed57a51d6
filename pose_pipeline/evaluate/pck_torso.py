"""LSP and FLIC PCK by torso size, as `eval_pck.m` of bearpaw/eval_pose scores them (the PCK of
Sapp & Taskar used by the LSP and FLIC papers); pure numpy. The normalising unit and the shared
input checks are `metrics`' (`torso_size`, `torso_distances`) and `core.keypoints`'.

* torso size = ||left shoulder - right hip|| of the ground truth;
* every point of every image counts (no visibility mask; a NaN point or torso is a miss);
* correct where distance / torso size <= threshold (inclusive);
* columns average left and right rates; LSP's Head is the mean of neck and head top, FLIC's
  of nose and neck (the shoulders' midpoint); FLIC scores ten points (`FLIC_PCK_POINTS`);
* Mean is pooled over all points (every image has all, so it equals the points' mean);
* AUC@0.2 = the area under a curve over thresholds 0:0.01:0.2 with the x axis scaled to
  [0, 1] (trapezoid rule), in percent; eval_pck.m reports it for Mean.

The visible-only variant (visible joints of samples whose torso joints are visible, the
project's earlier LSP number) is kept as the extra LSP rows "... (visible only)".
"""

from __future__ import annotations

import numpy as np

from pose_pipeline.core.joints import FLIC, FLIC_PCK_GROUPS, FLIC_PCK_POINTS, LSP, LSP_PCK_GROUPS, JointSet
from pose_pipeline.core.keypoints import check_keypoints
from pose_pipeline.evaluate.metrics import json_number, torso_distances, torso_size

# LSP PCK curve: 0 to 0.2 torso sizes (the usual LSP plot range); rows PCK@0.2, PCK@0.1, AUC@0.2.
PCK_TORSO_THRESHOLDS = np.round(np.arange(21) * 0.01, 2)
VISIBLE_ONLY = " (visible only)"  # suffix of the LSP rows that count visible joints alone


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
        pooled = 100.0 * hits.sum(axis=(1, 2)) / counted.sum()
    return per_point, pooled


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


def _torso_point_distances(preds, gt, visible, joints: JointSet) -> tuple[np.ndarray, list[str], tuple]:
    """(N,P) distances / torso size of the scored points (NaN where the ground truth is
    missing), the points' names and the table groups: FLIC's ten points, else every joint."""
    preds = check_keypoints(preds, "predictions", num_joints=joints.num_joints)
    gt = check_keypoints(gt, "ground truth", num_joints=joints.num_joints, allow_nan=True)
    visible = np.asarray(visible)
    if visible.shape != preds.shape[:2]:
        raise ValueError(f"visible: expected shape {preds.shape[:2]}, got {visible.shape}")
    if joints is FLIC:
        point_defs, groups = FLIC_PCK_POINTS, FLIC_PCK_GROUPS
        gt = np.where(visible[..., None] == 1, gt, np.nan)  # a store keeps unannotated joints at (0, 0)
    else:
        point_defs = tuple((n, (n,)) for n in joints.joints)
        groups = tuple((g, m) for g, m in LSP_PCK_GROUPS if set(m) <= set(joints.joints))
    offsets = pck_points(preds, joints, point_defs) - pck_points(gt, joints, point_defs)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.hypot(offsets[..., 0], offsets[..., 1]) / torso_size(gt, joints)[:, None]
    return dist, [name for name, _ in point_defs], groups


def pck_torso_evaluation(preds, gt, visible, joints: JointSet = LSP, thresholds=PCK_TORSO_THRESHOLDS) -> dict:
    """PCK by torso size as `eval_pck.m` (bearpaw/eval_pose) scores LSP and FLIC, JSON-ready.

    distance / ||gt left shoulder - gt right hip|| <= threshold; every point of every sample
    counts (a NaN ground truth or torso is a miss); each column the mean of its points' rates
    (left / right averaged; LSP Head = neck and head top, FLIC Head = nose and neck); Mean
    pooled over all points; AUC@0.2 = trapezoid area under a curve over 0:0.01:0.2 with the
    x axis scaled to [0, 1]. FLIC is scored on its ten points (`FLIC_PCK_POINTS`, the neck
    the shoulders' midpoint; unannotated joints, visible == 0, are NaN). LSP adds the rows
    "... (visible only)": only visible joints of samples with both torso joints visible.
    """
    dist, names, groups = _torso_point_distances(preds, gt, visible, joints)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    result = _pck_rows(dist, np.ones(dist.shape, bool), thresholds, names, groups)
    rows = dict(result["rows"])
    if joints is LSP:
        rows.update(
            _pck_rows(*torso_distances(preds, gt, visible, joints), thresholds, names, groups, VISIBLE_ONLY)["rows"]
        )
    columns = [g for g, _ in groups] + ["Mean"]
    return {
        "metric": "PCK",
        "protocol": "eval_pck.m (bearpaw/eval_pose): every point counted, Mean pooled",
        "rows": list(rows),
        "columns": columns,
        "thresholds": [float(t) for t in thresholds],
        "table": {row: {c: json_number(cols[c]) for c in columns} for row, (cols, _, _) in rows.items()},
        "mean_weighted": {row: json_number(pooled) for row, (_, pooled, _) in rows.items()},
        "per_joint": {
            name: {**{row: json_number(rates[p]) for row, (_, _, rates) in rows.items()}, "count": int(dist.shape[0])}
            for p, name in enumerate(names)
        },
        "curves": {c: [json_number(v) for v in result["curves"][c]] for c in columns},
        "joint_curves": {name: [json_number(v) for v in result["point_curves"][:, p]] for p, name in enumerate(names)},
    }
