"""PCKh as the reference MPII evaluation computes it, the normalised-distance core every PCK
shares, and training's validation score; pure numpy.

The one place for the metric (with `pck_torso` for LSP / FLIC PCK). Every function takes
arrays in one pixel convention (any, as long as predictions and ground truth share it) and
returns rates in percent.

PCKh, following `eval_PCKh.m` (Tompson / Newell / bearpaw-pytorch-pose; its Python port
`eval_PCKh.py` computes the same):

* head size = 0.6 x the head-box diagonal (`SC_BIAS` of `util_get_head_size.m`; computed by
  `core.joints.head_size_from_boxes`);
* normalised distance = ||pred - gt|| / head size;
* a joint is *counted* where it is annotated (`jnt_missing == 0`, our `visible == 1`);
* it is *correct* where counted and the normalised distance is strictly below the
  threshold (`scaled_uv_err < threshold`);
* per-joint rate = 100 x correct / counted (NaN where nothing is counted, as 0/0 there);
* each group column (Shoulder, Elbow, ...) is the mean of its left and right joint
  *rates*, `(PCKh(lsho) + PCKh(rsho)) / 2`, not a pooled count; Head is head top alone;
* Mean is the unweighted mean of the 14 joint rates other than pelvis and thorax,
  `mean(PCKh([1:6, 9:16]))` (so upper neck counts in Mean but has no column);
* the curve is taken at thresholds `0:0.01:0.5` (51 values, 0.5 included);
  AUC@0.5 = the mean of a column's curve over those thresholds.

The count-weighted alternative (correct / counted pooled over the same 14 joints, the
"total" of Pishchulin's `evaluatePCKh.m`) is `weighted_mean_rate`; the score stage
reports it separately as "Mean(weighted)", never in the Mean column.

LSP and FLIC PCK by torso size, as `eval_pck.m` scores them, is `pose_pipeline.evaluate.pck_torso`'s,
built on `torso_size` and `torso_distances` here. `validation_score`, the one number training
tracks per epoch, is here with its units (head size, torso size, the keypoints' box).

COCO OKS AP is not computed here but by pycocotools' COCOeval: `pose_pipeline.evaluate.oks`.
"""

from __future__ import annotations

import warnings

import numpy as np

from pose_pipeline.core.joints import (
    LSP,
    MPII,
    MPII_PCKH_GROUPS,
    MPII_PCKH_MEAN_EXCLUDES,
    PCK_TORSO_PAIR,
    JointSet,
    torso_pair,
)
from pose_pipeline.core.keypoints import check_keypoints

# Rounded so that 0.1 and 0.5 equal the literals: curve points then match point rates.
PCKH_THRESHOLDS = np.round(np.arange(51) * 0.01, 2)
TABLE_COLUMNS = tuple(name for name, _ in MPII_PCKH_GROUPS) + ("Mean",)
WEIGHTED_MEAN_COLUMN = "Mean(weighted)"


# ------------------------------------------------------------------- input checking


# ---------------------------------------------------------------------------- PCK core


def normalized_distances(preds, gt, unit) -> np.ndarray:
    """(N,J) distances ||pred - gt|| / unit[n]; NaN where gt is NaN or the unit is not a
    positive finite number (such entries may only sit at joints that are not counted)."""
    preds = check_keypoints(preds, "predictions")
    gt = check_keypoints(gt, "ground truth", num_joints=preds.shape[1], allow_nan=True)
    unit = np.asarray(unit, dtype=np.float64)
    if gt.shape[0] != preds.shape[0] or unit.shape != (preds.shape[0],):
        raise ValueError(
            f"sample counts differ: predictions {preds.shape[0]}, ground truth "
            f"{gt.shape[0]}, normalising sizes {unit.shape}"
        )
    valid_unit = np.isfinite(unit) & (unit > 0)
    safe_unit = np.where(valid_unit, unit, 1.0)
    dist = np.hypot(*np.moveaxis(preds - gt, -1, 0)) / safe_unit[:, None]
    return np.where(valid_unit[:, None], dist, np.nan)


def _check_counted(dist: np.ndarray, counted) -> np.ndarray:
    dist = np.asarray(dist, dtype=np.float64)
    counted = np.asarray(counted)
    if counted.shape != dist.shape:
        raise ValueError(f"counted mask shape {counted.shape} != distances shape {dist.shape}")
    counted = counted.astype(bool)
    bad = counted & ~np.isfinite(dist)
    if bad.any():
        n, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.sum())} counted joints have no finite distance (NaN ground "
            f"truth or a missing/zero head size), first at sample {n}, joint {j}"
        )
    return counted


def pckh_curve(dist, counted, thresholds=PCKH_THRESHOLDS, inclusive: bool = False) -> np.ndarray:
    """(T,J) percent of counted joints with distance < threshold (<= when `inclusive`)."""
    counted = _check_counted(dist, counted)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    dist = np.where(counted, dist, np.inf)  # uncounted joints never correct
    below = dist[None] <= thresholds[:, None, None] if inclusive else dist[None] < thresholds[:, None, None]
    correct = below.sum(axis=1)
    count = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, 100.0 * correct / count, np.nan)


def pck_per_joint(dist, counted, threshold: float, inclusive: bool = False) -> np.ndarray:
    """(J,) percent of counted joints with distance < threshold (<= when `inclusive`)."""
    return pckh_curve(dist, counted, [threshold], inclusive)[0]


def group_rates(
    rates, joints: JointSet = MPII, groups=MPII_PCKH_GROUPS, mean_excludes=MPII_PCKH_MEAN_EXCLUDES
) -> dict[str, np.ndarray]:
    """Table columns from per-joint rates (..., J): each group the mean of its joints'
    rates, Mean the unweighted mean over the joints not in `mean_excludes`."""
    rates = np.asarray(rates, dtype=np.float64)
    if rates.shape[-1] != joints.num_joints:
        raise ValueError(f"rates have {rates.shape[-1]} joints, joint set {joints.name} has {joints.num_joints}")
    missing = sorted({n for _, names in groups for n in names} - set(joints.joints))
    if missing:
        raise ValueError(f"joint set {joints.name} lacks the PCKh group joints {missing}")
    columns = {name: rates[..., [joints.index(n) for n in names]].mean(axis=-1) for name, names in groups}
    kept = [j for j, n in enumerate(joints.joints) if n not in mean_excludes]
    columns["Mean"] = rates[..., kept].mean(axis=-1)
    return columns


def weighted_mean_rate(
    dist,
    counted,
    threshold: float,
    joints: JointSet = MPII,
    mean_excludes=MPII_PCKH_MEAN_EXCLUDES,
    inclusive: bool = False,
) -> float:
    """Percent correct pooled over all counted joints except `mean_excludes` (each
    annotated joint weighs the same, so frequent joints dominate)."""
    counted = _check_counted(dist, counted)
    kept = [j for j, n in enumerate(joints.joints) if n not in mean_excludes]
    return float(pooled_rates(np.asarray(dist)[:, kept], counted[:, kept], threshold, inclusive)[0])


def pooled_rates(dist, counted, thresholds, inclusive: bool = False) -> np.ndarray:
    """(T,) percent correct pooled over every counted entry of `dist` (N,J) or (N,P), for each
    threshold (distance < threshold, <= when `inclusive`); a NaN distance counts as missed and
    a rate with nothing counted is NaN. The one pooled rate: the weighted Mean, eval_pck.m's
    Mean and the validation score."""
    dist = np.asarray(dist, dtype=np.float64)
    counted = np.asarray(counted, dtype=bool)
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    limits = thresholds.reshape((-1,) + (1,) * dist.ndim)
    below = dist[None] <= limits if inclusive else dist[None] < limits
    hits = (below & counted[None]).sum(axis=tuple(range(1, dist.ndim + 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * hits / counted.sum()


def json_number(x):
    """A float for JSON: None for NaN."""
    x = float(x)
    return None if np.isnan(x) else x


def curve_evaluation(
    dist, counted, thresholds, joints: JointSet, metric: str, points=(0.5, 0.1), inclusive: bool = False
) -> dict:
    """The score stage's report of a normalised-distance metric, JSON-ready (NaN -> None).

    `metric` names the rows: "{metric}@{points[0]}", "{metric}@{points[1]}" and
    "AUC@{points[0]}" (the mean of the curve over `thresholds`, which must run up to
    points[0]). Keys: metric, rows, thresholds, table (row -> column -> rate),
    mean_weighted (row -> pooled rate), per_joint (joint -> row rates and count), curves
    (column -> rate per threshold), joint_curves (joint -> rate per threshold).
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    for needed in points:
        if not np.any(thresholds == needed):
            raise ValueError(f"thresholds must include {needed}")
    high, low = points
    rows = (f"{metric}@{high:g}", f"{metric}@{low:g}", f"AUC@{high:g}")
    curve = pckh_curve(dist, counted, thresholds, inclusive)  # (T, J)
    at = {t: curve[np.flatnonzero(thresholds == t)[0]] for t in points}
    auc = curve.mean(axis=0)
    column_curves = group_rates(curve, joints)
    table = {
        rows[0]: group_rates(at[high], joints),
        rows[1]: group_rates(at[low], joints),
        rows[2]: {k: v.mean() for k, v in column_curves.items()},
    }
    counted = np.asarray(counted, dtype=bool)
    counts = counted.sum(axis=0)
    weighted = {t: weighted_mean_rate(dist, counted, t, joints, inclusive=inclusive) for t in points}
    return {
        "metric": metric,
        "rows": list(rows),
        "thresholds": [float(t) for t in thresholds],
        "table": {row: {col: json_number(cols[col]) for col in TABLE_COLUMNS} for row, cols in table.items()},
        "mean_weighted": {
            rows[0]: json_number(weighted[high]),
            rows[1]: json_number(weighted[low]),
            rows[2]: json_number(
                np.mean([weighted_mean_rate(dist, counted, t, joints, inclusive=inclusive) for t in thresholds])
            ),
        },
        "per_joint": {
            name: {
                rows[0]: json_number(at[high][j]),
                rows[1]: json_number(at[low][j]),
                rows[2]: json_number(auc[j]),
                "count": int(counts[j]),
            }
            for j, name in enumerate(joints.joints)
        },
        "curves": {col: [json_number(v) for v in column_curves[col]] for col in TABLE_COLUMNS},
        "joint_curves": {name: [json_number(v) for v in curve[:, j]] for j, name in enumerate(joints.joints)},
    }


# --------------------------------------------------------------------------- PCKh


def _pckh_inputs(preds, gt, visible, head_size, joints: JointSet):
    preds = check_keypoints(preds, "predictions", num_joints=joints.num_joints)
    visible = np.asarray(visible)
    if visible.shape != preds.shape[:2]:
        raise ValueError(f"visible: expected shape {preds.shape[:2]}, got {visible.shape}")
    dist = normalized_distances(preds, gt, head_size)
    return dist, visible == 1


def pckh_evaluation(preds, gt, visible, head_size, joints: JointSet = MPII, thresholds=PCKH_THRESHOLDS) -> dict:
    """Everything the score stage reports for PCKh, as plain JSON-ready Python values
    (`curve_evaluation` with rows PCKh@0.5, PCKh@0.1, AUC@0.5; strict `<` as the reference).
    """
    dist, counted = _pckh_inputs(preds, gt, visible, head_size, joints)
    return curve_evaluation(dist, counted, thresholds, joints, "PCKh", (0.5, 0.1))


def mpii_pckh_table(preds, gt, visible, head_size, joints: JointSet = MPII) -> dict[str, dict[str, float]]:
    """{"PCKh@0.5" | "PCKh@0.1" | "AUC@0.5": {Head, Shoulder, ..., Ankle, Mean: percent}}.

    preds, gt (N,J,2) in the same pixel convention; visible (N,J), 1 = annotated;
    head_size (N,) the PCKh unit (see `joints.head_size_from_boxes`). NaN where a column has no
    counted joint.
    """
    table = pckh_evaluation(preds, gt, visible, head_size, joints)["table"]
    return {row: {col: float("nan") if v is None else v for col, v in cols.items()} for row, cols in table.items()}


# ------------------------------------------------- torso size (LSP / FLIC PCK, `pck_torso`)


def torso_size(gt, joints: JointSet = LSP) -> np.ndarray:
    """(N,) torso size: ||left shoulder - right hip|| of the ground truth (NaN where unknown).

    As `eval_pck.m` of bearpaw/eval_pose (after Sapp & Taskar): `norm(gt(:,10) - gt(:,3))` for
    LSP, `norm(gt(:,7) - gt(:,6))` for its 10-point FLIC order, the same two joints.
    """
    gt = check_keypoints(gt, "ground truth", num_joints=joints.num_joints, allow_nan=True)
    a, b = _torso_joints(joints)
    return np.hypot(*np.moveaxis(gt[:, a] - gt[:, b], -1, 0))


def _torso_joints(joints: JointSet) -> tuple[int, int]:
    pair = torso_pair(joints)
    if pair is None:
        raise ValueError(f"joint set {joints.name} has no {' and '.join(PCK_TORSO_PAIR)} (the torso size of PCK)")
    return pair


def torso_distances(preds, gt, visible, joints: JointSet = LSP) -> tuple[np.ndarray, np.ndarray]:
    """(N,J) distances / torso size and the (N,J) mask of the joints counted: a joint counts where
    visible == 1 and both torso joints of its sample are (`pck_torso` passes labelled joints for
    validation, and labelled joints that are not occluded for its "visible only" rows)."""
    preds = check_keypoints(preds, "predictions", num_joints=joints.num_joints)
    visible = np.asarray(visible)
    if visible.shape != preds.shape[:2]:
        raise ValueError(f"visible: expected shape {preds.shape[:2]}, got {visible.shape}")
    unit, torso_known = _torso_unit(gt, visible, joints)
    return normalized_distances(preds, gt, unit), (visible == 1) & torso_known[:, None]


def _torso_unit(gt, visible, joints: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """(N,) torso size where both torso joints are annotated (else NaN), and that (N,) mask."""
    known = (np.asarray(visible)[:, list(_torso_joints(joints))] == 1).all(axis=1)
    return np.where(known, torso_size(gt, joints), np.nan), known


def validation_score(preds, gt, visible, head_size, joints: JointSet) -> tuple[str, float]:
    """(label, value) of the one number training tracks per epoch to pick the best checkpoint:
    PCKh@0.5 Mean where the samples have head sizes (MPII), else PCK@0.2 by torso size pooled
    over the annotated joints (LSP, FLIC, COCO: no head box), else, for a custom set without
    a left shoulder and right hip (a hand, an animal), PCK@0.2 by the larger side of the
    annotated joints' bounding box ("PCK@0.2 box")."""
    if np.isfinite(np.asarray(head_size, dtype=np.float64)).any():
        return "PCKh@0.5", mpii_pckh_table(preds, gt, visible, head_size, joints)["PCKh@0.5"]["Mean"]
    unit, known, kind = body_unit(gt, visible, joints)
    counted = (np.asarray(visible) == 1) & known[:, None]
    if not counted.any():
        return VALIDATION_LABELS[kind], 0.0  # nothing to score: 0, as the epoch's number must exist
    rate = pooled_rates(normalized_distances(preds, gt, unit), counted, 0.2, inclusive=True)[0]
    return VALIDATION_LABELS[kind], float(rate)


VALIDATION_LABELS = {"torso": "PCK@0.2", "box": "PCK@0.2 box"}


def body_unit(gt, visible, joints: JointSet) -> tuple[np.ndarray, np.ndarray, str]:
    """The normalising unit of a set without head sizes, chosen here alone (the validation score
    and the drawn examples' ranking use it): (N,) unit, (N,) the samples it is known for, and
    its kind. "torso": the torso size (LSP's PCK unit) where both torso joints are annotated;
    "box", for a set without a left shoulder and right hip (a hand, an animal): the larger side
    of the annotated joints' box (`keypoint_box_size`), where it has one."""
    if torso_pair(joints) is not None:
        return (*_torso_unit(gt, visible, joints), "torso")
    side = keypoint_box_size(gt, visible)
    return side, np.isfinite(side), "box"


def keypoint_box_size(gt, visible) -> np.ndarray:
    """(N,) larger side of the bounding box of each sample's annotated joints (visible == 1);
    NaN where it has none (fewer than two distinct annotated joints)."""
    gt = check_keypoints(gt, "ground truth", allow_nan=True)
    points = np.where((np.asarray(visible) == 1)[..., None], gt, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a sample without annotated joints: NaN
        side = (np.nanmax(points, axis=1) - np.nanmin(points, axis=1)).max(axis=1)
    return np.where(np.isfinite(side) & (side > 0), side, np.nan)
