"""`pose-pipeline score`: a prediction file against ground truth, by the dataset's metric
(`pose_pipeline.metrics`, the one place for the metrics):

* MPII: PCKh as the reference MPII evaluation computes it (rows PCKh@0.5, PCKh@0.1, AUC@0.5);
* LSP: PCK@0.2 normalised by torso size, the LSP convention (rows PCK@0.2, PCK@0.1, AUC@0.2);
* COCO: OKS AP with ground-truth boxes by pycocotools' COCOeval (rows AP, AP50, AP75, APm,
  APl, AR, ...; one `value` column), from the predictions, the store's image ids and the
  COCO annotation JSON.

The metric follows the ground truth's format (`--metric` overrides). The CSV is metric
rows x joint-group columns (Head ... Ankle, Mean, Mean(weighted)) for PCKh and PCK.

Prediction files
----------------
* MATLAB v5 `.mat` with variable `preds` of shape (N, J, 2) float64 (the reference
  prediction format), or a variable `pos_pred_src` of shape (J, 2, N) (the layout of
  `detections_our_format.mat`, whose published predictions can so be scored as they are);
* `.csv` with header `index,image,joint,x,y` (optionally `,score`), one row per
  sample-joint.

Coordinates are in the annotation file's own pixel convention: for MPII and LSP that is
MATLAB's 1-based pixels (the first pixel's centre is at 1.0), exactly what the ground
truth uses, so no conversion happens anywhere in scoring; for COCO it is 0-based pixel
indices (the first pixel's centre at 0.0), again the file's own. The store's attribute
`pixel_origin` names the convention: annotated = array index + pixel_origin (predict
converts with `geometry.array_to_annotated`, plots back with `annotated_to_array`).

Ground truth
------------
* a converted `.zarr` store (keypoints, visible, head_size, joint set), or
* the reference `detections_our_format.mat` (`pos_gt_src` (16,2,N), `jnt_missing`
  (16,N), `headboxes_src` (2,2,N); MPII joint order).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from pose_pipeline.atomic import atomic_output, write_text_atomic
from pose_pipeline.errors import UserError
from pose_pipeline.joints import JOINT_SETS, MPII, JointSet
from pose_pipeline.metrics import (
    OKS_COLUMN,
    TABLE_COLUMNS,
    WEIGHTED_MEAN_COLUMN,
    check_keypoints,
    head_size_from_boxes,
    pck_torso_evaluation,
    pckh_evaluation,
)

CSV_COLUMNS = ("index", "image", "joint", "x", "y")


# --------------------------------------------------------------------------- writing


def _check_preds(preds) -> np.ndarray:
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[-1] != 2:
        raise ValueError(f"predictions: expected shape (N, J, 2), got {preds.shape}")
    if not np.isfinite(preds).all():
        raise ValueError(f"predictions: {int((~np.isfinite(preds)).sum())} non-finite values")
    return preds


def write_predictions_mat(path, preds) -> None:
    """Write `preds` (N,J,2) float64 as the MATLAB v5 variable `preds`, atomically.

    Coordinates are in the annotation file's own pixel convention (for MPII / LSP the
    1-based MATLAB pixels: annotated = array coordinate + 1), which is what the reference
    evaluation compares against `pos_gt_src`.
    """
    import scipy.io

    preds = _check_preds(preds)
    with atomic_output(path) as tmp:
        # A file object: given a name, savemat would append ".mat" to the temporary name.
        with open(tmp, "wb") as f:
            scipy.io.savemat(f, {"preds": preds}, format="5", oned_as="row")


def _joint_names(joint_names, num_joints: int) -> list[str]:
    names = list(joint_names.joints) if isinstance(joint_names, JointSet) else [str(n) for n in joint_names]
    if len(names) != num_joints:
        raise ValueError(f"{len(names)} joint names for {num_joints} joints")
    return names


def write_predictions_csv(path, preds, image_names, joint_names, scores=None) -> None:
    """Write predictions as CSV rows `index,image,joint,x,y` (one per sample-joint),
    atomically; with `scores` (N,J) a `score` column is appended.

    `joint_names` is a sequence of J names or a `JointSet`; coordinates as in
    `write_predictions_mat` (the annotation file's pixel convention).
    """
    preds = _check_preds(preds)
    n, j, _ = preds.shape
    image_names = [str(s) for s in image_names]
    if len(image_names) != n:
        raise ValueError(f"{len(image_names)} image names for {n} samples")
    names = _joint_names(joint_names, j)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n, j):
            raise ValueError(f"scores: expected shape {(n, j)}, got {scores.shape}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (("score",) if scores is not None else ()))
    for i in range(n):
        for k in range(j):
            row = [i, image_names[i], names[k], repr(float(preds[i, k, 0])), repr(float(preds[i, k, 1]))]
            if scores is not None:
                row.append(repr(float(scores[i, k])))
            writer.writerow(row)
    write_text_atomic(path, buffer.getvalue())


# --------------------------------------------------------------------------- reading


def _load_mat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:  # scipy raises assorted errors on a bad file
        raise UserError(f"{path}: not a readable MATLAB (v5) file: {exc}") from None


def _finite_points(path: Path, what: str, points: np.ndarray, num_joints: int | None) -> np.ndarray:
    try:
        return check_keypoints(points, what, num_joints=num_joints)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


def _read_predictions_mat(path: Path, num_joints: int | None) -> np.ndarray:
    variables = _load_mat(path)
    if "preds" in variables:
        preds = np.asarray(variables["preds"])
        if (preds.ndim == 3 and preds.shape[1] == 2 and preds.shape[2] != 2
                and (num_joints is None or preds.shape[0] == num_joints)):
            raise UserError(f"{path}: variable preds has shape {preds.shape}, expected (N, J, 2); "
                            f"it looks like the reference (J, 2, N) layout, which is read only "
                            f"under the name pos_pred_src")
        return _finite_points(path, "variable preds", preds, num_joints)
    if "pos_pred_src" in variables:
        raw = np.asarray(variables["pos_pred_src"])
        if raw.ndim != 3 or raw.shape[1] != 2:
            raise UserError(f"{path}: variable pos_pred_src has shape {raw.shape}, expected (J, 2, N)")
        return _finite_points(path, "variable pos_pred_src", np.transpose(raw, (2, 0, 1)), num_joints)
    found = sorted(k for k in variables if not k.startswith("__"))
    raise UserError(f"{path}: no prediction variable: expected `preds` (N, J, 2) or "
                    f"`pos_pred_src` (J, 2, N); found {found or 'none'}")


def _read_predictions_csv(path: Path, num_joints: int | None, joints: JointSet | None) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header[: len(CSV_COLUMNS)]) != CSV_COLUMNS:
        raise UserError(f"{path}: expected a CSV header starting {','.join(CSV_COLUMNS)}, got "
                        f"{','.join(header) if header else 'an empty file'}")
    joint_column: dict[str, int] = {}  # name -> column, first appearance
    values: dict[tuple[int, int], tuple[float, float]] = {}
    max_index = -1
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < len(CSV_COLUMNS):
            raise UserError(f"{path}, line {line}: {len(row)} fields, expected at least {len(CSV_COLUMNS)}")
        try:
            index = int(row[0])
            x, y = float(row[3]), float(row[4])
        except ValueError:
            raise UserError(f"{path}, line {line}: index, x and y must be numbers, got "
                            f"{row[0]!r}, {row[3]!r}, {row[4]!r}") from None
        if index < 0:
            raise UserError(f"{path}, line {line}: negative sample index {index}")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise UserError(f"{path}, line {line}: non-finite (NaN/inf) coordinate ({row[3]}, {row[4]})")
        k = joint_column.setdefault(row[2], len(joint_column))
        if (index, k) in values:
            raise UserError(f"{path}, line {line}: sample {index}, joint {row[2]!r} given twice")
        values[(index, k)] = (x, y)
        max_index = max(max_index, index)
    n, j = max_index + 1, len(joint_column)
    if n == 0:
        raise UserError(f"{path}: no prediction rows")
    if num_joints is not None and j != num_joints:
        raise UserError(f"{path}: {j} distinct joints, expected {num_joints}")
    # Joint order: the joint set's (given, or the known set with exactly these names);
    # otherwise the order of first appearance.
    if joints is None:
        joints = next((s for s in JOINT_SETS.values() if set(s.joints) == set(joint_column)), None)
    if joints is not None:
        unknown = sorted(set(joint_column) - set(joints.joints))
        if unknown or j != joints.num_joints:
            raise UserError(f"{path}: joint names {unknown or sorted(joint_column)} do not match the "
                            f"{joints.name} joints {list(joints.joints)}")
        column_to_joint = {k: joints.index(name) for name, k in joint_column.items()}
        values = {(i, column_to_joint[k]): xy for (i, k), xy in values.items()}
        joint_column = {name: joints.index(name) for name in joints.joints}
    if len(values) != n * j:
        names = list(joint_column)
        missing = next((i, names[k]) for i in range(n) for k in range(j) if (i, k) not in values)
        raise UserError(f"{path}: {n * j - len(values)} sample-joint rows missing for samples "
                        f"0..{n - 1} x {j} joints, first sample {missing[0]}, joint {missing[1]!r}")
    preds = np.empty((n, j, 2))
    for (i, k), xy in values.items():
        preds[i, k] = xy
    return preds


def read_predictions(path, num_joints: int | None = None, joints: JointSet | None = None) -> np.ndarray:
    """(N,J,2) float64 predictions from a `.mat` (`preds` (N,J,2) or `pos_pred_src`
    (J,2,N)) or a `.csv` (`index,image,joint,x,y`); UserError naming the file otherwise.

    CSV rows may come in any order; joints are put in the order of `joints` (by name),
    else of the known joint set with exactly the file's joint names, else of first
    appearance. `joints` also fixes `num_joints` when that is not given.
    """
    if joints is not None and num_joints is None:
        num_joints = joints.num_joints
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".mat":
        return _read_predictions_mat(path, num_joints)
    if suffix == ".csv":
        return _read_predictions_csv(path, num_joints, joints)
    raise UserError(f"{path}: unknown prediction file type {path.suffix!r}; expected .mat or .csv")


def read_ground_truth(path) -> tuple[np.ndarray, np.ndarray, np.ndarray, JointSet]:
    """(gt (N,J,2), visible (N,J) 1 = counted, head_size (N,), joint set) from a `.zarr`
    store or the reference `detections_our_format.mat`."""
    path = Path(path)
    if path.suffix.lower() == ".zarr" or (path.is_dir() and (path / "zarr.json").exists()):
        from pose_pipeline.store import open_store

        if not path.exists():
            raise UserError(f"{path}: no such store")
        store = open_store(path)
        return (np.asarray(store.keypoints, dtype=np.float64), np.asarray(store.visible),
                np.asarray(store.head_size, dtype=np.float64), store.joint_set)
    if path.suffix.lower() == ".mat":
        variables = _load_mat(path)
        needed = ("pos_gt_src", "jnt_missing", "headboxes_src")
        missing = [k for k in needed if k not in variables]
        if missing:
            raise UserError(f"{path}: not a reference ground-truth file (detections_our_format.mat): "
                            f"variables {missing} missing")
        pos = np.asarray(variables["pos_gt_src"])
        missing_mask = np.asarray(variables["jnt_missing"])
        boxes = np.asarray(variables["headboxes_src"])
        if pos.ndim != 3 or pos.shape[:2] != (MPII.num_joints, 2):
            raise UserError(f"{path}: pos_gt_src has shape {pos.shape}, expected ({MPII.num_joints}, 2, N)")
        n = pos.shape[2]
        if missing_mask.shape != (MPII.num_joints, n):
            raise UserError(f"{path}: jnt_missing has shape {missing_mask.shape}, expected {(MPII.num_joints, n)}")
        if boxes.shape != (2, 2, n):
            raise UserError(f"{path}: headboxes_src has shape {boxes.shape}, expected {(2, 2, n)}")
        gt = np.transpose(pos, (2, 0, 1)).astype(np.float64)
        visible = (1 - missing_mask.T.astype(np.int64)).astype(np.uint8)
        return gt, visible, head_size_from_boxes(boxes), MPII
    raise UserError(f"{path}: unknown ground-truth file; expected a converted .zarr store or the "
                    f"reference detections_our_format.mat")


# --------------------------------------------------------------------------- scoring


def _cell(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def table_rows(evaluation: dict) -> list[list[str]]:
    """Header and rows of the score CSV (2 decimals, empty where NaN): metric rows x
    joint-group columns (+ Mean(weighted)) for PCKh and PCK, metric rows x one `value`
    column for OKS."""
    rows_ = evaluation["rows"]
    if evaluation["metric"] == "OKS":
        return [["metric", OKS_COLUMN]] + [[row, _cell(evaluation["table"][row][OKS_COLUMN])] for row in rows_]
    rows = [["metric", *TABLE_COLUMNS, WEIGHTED_MEAN_COLUMN]]
    for row in rows_:
        cols = evaluation["table"][row]
        rows.append([row, *(_cell(cols[c]) for c in TABLE_COLUMNS), _cell(evaluation["mean_weighted"][row])])
    return rows


def format_table(evaluation: dict) -> str:
    """The table as aligned text, for the terminal."""
    rows = table_rows(evaluation)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


# --metric choices: the metric's name in the evaluation, and the format it suits
METRICS = {"pckh": "PCKh", "pck": "PCK", "oks": "OKS"}
METRIC_OF_FORMAT = {"mpii": "pckh", "lsp": "pck", "coco": "oks"}


def default_metric(gt_path) -> str:
    """The metric of a ground truth: PCKh for MPII (and the reference .mat), PCK@0.2 by
    torso size for LSP, OKS AP for COCO; from the store's `format` attribute, else its
    joint set."""
    path = Path(gt_path)
    if path.suffix.lower() != ".zarr" and not (path.is_dir() and (path / "zarr.json").exists()):
        return "pckh"
    from pose_pipeline.store import open_store

    if not path.exists():
        raise UserError(f"{path}: no such store")
    attrs = open_store(path).attrs
    fmt = attrs.get("format") or attrs.get("joint_set")
    return METRIC_OF_FORMAT.get(fmt, "pckh")


def holds_reference_ground_truth(path) -> bool:
    """Whether a .mat holds the reference ground truth (pos_gt_src ...) beside predictions,
    so that its predictions can be scored against it (detections_our_format.mat)."""
    import scipy.io

    path = Path(path)
    if path.suffix.lower() != ".mat":
        return False
    try:
        names = {name for name, _, _ in scipy.io.whosmat(str(path))}
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:
        raise UserError(f"{path}: not a readable MATLAB (v5) file: {exc}") from None
    return {"pos_gt_src", "jnt_missing", "headboxes_src"} <= names


def read_person_scores(path, num_samples: int) -> np.ndarray | None:
    """(N,) per-person confidence, the mean of the per-joint `score` column of a prediction
    CSV (what predict writes: heatmap peak heights); None for a .mat or a CSV without it."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return None
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if "score" not in header:
            return None
        column = header.index("score")
        total, count = np.zeros(num_samples), np.zeros(num_samples)
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                value = float(row[column])
            except (ValueError, IndexError):
                raise UserError(f"{path}, line {line}: score must be a number") from None
            if not math.isfinite(value):
                raise UserError(f"{path}, line {line}: non-finite score {row[column]!r}")
            total[int(row[0])] += value
            count[int(row[0])] += 1
    return total / np.maximum(count, 1)


def _evaluate_oks(preds_path, gt_path, annotations) -> dict:
    from pose_pipeline.joints import COCO
    from pose_pipeline.metrics import oks_evaluation
    from pose_pipeline.store import open_store, sha256_of

    gt_path = Path(gt_path)
    if annotations is None:
        raise UserError(f"OKS AP needs the COCO annotation file of {gt_path}: give --annotations")
    annotations = Path(annotations)
    if not annotations.is_file():
        raise UserError(f"{annotations}: no such annotation file")
    if gt_path.suffix.lower() != ".zarr" and not (gt_path / "zarr.json").exists():
        raise UserError(f"{gt_path}: OKS AP needs a converted COCO store (its image ids)")
    store = open_store(gt_path)
    if store.joint_set is not COCO:
        raise UserError(f"{gt_path}: OKS AP needs the COCO joint set, the store has {store.joint_set.name}")
    # The store records the sha256 of the file it was converted from: scoring against
    # another file would match people by the wrong ids.
    recorded = {src.get("file"): src.get("sha256") for src in store.attrs.get("sources", [])}
    digest = sha256_of(annotations)
    if recorded and digest not in recorded.values():
        raise UserError(f"{annotations}: not the annotation file {gt_path} was converted from "
                        f"(sha256 differs from the store's sources {sorted(recorded)})")
    preds = read_predictions(preds_path, joints=COCO)
    if len(preds) != len(store):
        raise UserError(f"{preds_path}: {len(preds)} predicted samples, but the ground truth "
                        f"{gt_path} has {len(store)}")
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise UserError("OKS AP is computed by pycocotools, which is not installed: "
                        "pip install 'pose-pipeline[coco]' (or pycocotools)") from None
    try:
        evaluation = oks_evaluation(preds, store.source_index[:, 0], annotations,
                                    read_person_scores(preds_path, len(preds)))
    except (ValueError, KeyError) as exc:
        raise UserError(f"scoring {preds_path} against {annotations}: {exc}") from None
    return {**evaluation, "num_samples": len(preds), "annotations": str(annotations)}


def evaluate(preds_path, gt_path, metric: str | None = None, annotations=None) -> dict:
    """The evaluation dict of a prediction file against ground truth (see `score`)."""
    metric = metric or default_metric(gt_path)
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if metric == "oks":
        return _evaluate_oks(preds_path, gt_path, annotations)
    gt, visible, head_size, joints = read_ground_truth(gt_path)
    preds = read_predictions(preds_path, joints=joints)
    if preds.shape[0] != gt.shape[0]:
        raise UserError(f"{preds_path}: {preds.shape[0]} predicted samples, but the ground truth "
                        f"{gt_path} has {gt.shape[0]}")
    try:
        if metric == "pck":
            evaluation = pck_torso_evaluation(preds, gt, visible, joints)
        else:
            evaluation = pckh_evaluation(preds, gt, visible, head_size, joints)
    except ValueError as exc:
        raise UserError(f"scoring {preds_path} against {gt_path} with {METRICS[metric]}: {exc}") from None
    return {**evaluation, "num_samples": int(preds.shape[0])}


def read_score_json(path, required=("table",)) -> dict:
    """A score JSON (`score --per-joint`), UserError naming the file unless it holds the
    `required` keys."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such score file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a score JSON: {exc}") from None
    # an OKS score has no per-joint rates (an empty dict) but always a table
    missing = [k for k in required if not isinstance(data, dict) or data.get(k) is None
               or (k == "table" and not data[k])]
    if missing:
        raise UserError(f"{path}: not a score JSON (`pose-pipeline score --per-joint`): "
                        f"missing {', '.join(missing)}")
    return data


def score(preds_path, gt_path, out_csv, per_joint_json=None, metric: str | None = None,
          annotations=None) -> dict:
    """Score a prediction file; write the table CSV (and the full evaluation JSON).

    `metric`: "pckh" (MPII), "pck" (LSP: PCK@0.2 by torso size) or "oks" (COCO AP through
    pycocotools, needs `annotations`, the COCO JSON the store was converted from); by
    default the ground truth's own (`default_metric`).
    Returns the evaluation dict (`pose_pipeline.metrics.curve_evaluation` or
    `oks_evaluation`) with `num_samples`, `predictions` and `ground_truth` added (what
    the JSON holds).
    """
    evaluation = evaluate(preds_path, gt_path, metric, annotations)
    evaluation.update(predictions=str(preds_path), ground_truth=str(gt_path))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table_rows(evaluation))
    write_text_atomic(out_csv, buffer.getvalue())
    if per_joint_json is not None:
        write_text_atomic(per_joint_json, json.dumps(evaluation, indent=1, allow_nan=False) + "\n")
    return evaluation


# ------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preds", required=True, help="predictions: .mat (`preds` N x J x 2) or .csv")
    p.add_argument("--gt", required=True, help="ground truth: converted .zarr store or detections_our_format.mat")
    p.add_argument("--out", required=True, help="PCKh table CSV")
    p.add_argument("--per-joint", help="full evaluation JSON (per joint rates, curves)")
    p.add_argument("--metric", choices=sorted(METRICS),
                   help="pckh (MPII), pck (LSP: PCK@0.2 by torso size) or oks (COCO AP, pycocotools); "
                        "default: by the ground truth's format")
    p.add_argument("--annotations", help="oks: the COCO keypoint JSON the store was converted from")


def run(args: argparse.Namespace) -> int:
    evaluation = score(args.preds, args.gt, args.out, args.per_joint, args.metric, args.annotations)
    print(f"{args.preds}: {evaluation['num_samples']} samples against {args.gt}")
    print(format_table(evaluation))
    return 0
