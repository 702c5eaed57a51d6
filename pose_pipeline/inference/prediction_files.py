"""Prediction files: reading and writing (the twin of `store.py`). Predict, roundtrip and infer
write predictions here, score, submission and the plots read them back; no stage needs another
stage's module for a file format.

Prediction files
----------------
* MATLAB v5 `.mat` with variable `preds` of shape (N, J, 2) float64 (the reference
  prediction format), or a variable `pos_pred_src` of shape (J, 2, N) (the layout of
  `detections_our_format.mat`, whose published predictions can so be scored as they are);
  `predict` adds the text variable `store_fingerprint`, the store it predicted
  (`PoseStore.fingerprint`), so that `score` refuses the file against another store;
* `.csv` with header `index,image,joint,x,y` (optionally `,score`), one row per
  sample-joint; `predict` writes the store's fingerprint before the header, as the comment
  line `# store_fingerprint: <sha256>`, so that `score` refuses this file against another
  store too (COCO is scored from it). A comment line rather than a column: one line, not a
  copy of 64 characters in each of tens of thousands of rows, and the header and rows stay
  those every reader knows; readers skip leading `#` lines (pandas: `comment="#"`). A CSV
  without the line (older, or not `predict`'s) is read as before, and checked by its image
  names only.

Coordinates are in the annotation file's own pixel convention: for MPII and LSP that is
MATLAB's 1-based pixels (the first pixel's centre is at 1.0), exactly what the ground
truth uses, so no conversion happens anywhere in scoring; for COCO it is 0-based pixel
indices (the first pixel's centre at 0.0), again the file's own. The store's attribute
`pixel_origin` names the convention: annotated = array index + pixel_origin (predict
converts with `geometry.array_to_annotated`, plots back with `annotated_to_array`).

Ground truth (stores and annotation files) is read by `pose_pipeline.evaluate.ground_truth`; the score
table CSV and evaluation JSON are written by `pose_pipeline.evaluate.score_files`.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import JOINT_SETS, JointSet
from pose_pipeline.core.keypoints import check_keypoints
from pose_pipeline.data.formats.matlab import load_mat
from pose_pipeline.data.store import is_store, open_store
from pose_pipeline.errors import UserError
from pose_pipeline.util.atomic import write_files_atomic, write_text_atomic

CSV_COLUMNS = ("index", "image", "joint", "x", "y")
FINGERPRINT_VARIABLE = "store_fingerprint"  # of a .mat: the store the predictions were made from
CSV_COMMENT = "#"  # a CSV's leading comment lines: `# store_fingerprint: <sha256>`


# ------------------------------------------------------------------- writing predictions


def _check_preds(preds) -> np.ndarray:
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[-1] != 2:
        raise ValueError(f"predictions: expected shape (N, J, 2), got {preds.shape}")
    if not np.isfinite(preds).all():
        raise ValueError(f"predictions: {int((~np.isfinite(preds)).sum())} non-finite values")
    return preds


def predictions_mat_bytes(preds, store_fingerprint: str | None = None) -> bytes:
    """`preds` (N,J,2) float64 as the MATLAB v5 variable `preds`, with the fingerprint of the store
    they were made from (`PoseStore.fingerprint`) as the text variable `store_fingerprint`.

    Coordinates are in the annotation file's own pixel convention (for MPII / LSP the
    1-based MATLAB pixels: annotated = array coordinate + 1), which is what the reference
    evaluation compares against `pos_gt_src`; it reads `preds` by name, so the extra variable
    is no obstacle.
    """
    import scipy.io

    variables = {"preds": _check_preds(preds)}
    if store_fingerprint is not None:
        variables[FINGERPRINT_VARIABLE] = store_fingerprint
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, format="5", oned_as="row")
    return buffer.getvalue()


def write_predictions_mat(path, preds, store_fingerprint: str | None = None) -> None:
    """`predictions_mat_bytes` written to `path`, atomically."""
    write_files_atomic({path: predictions_mat_bytes(preds, store_fingerprint)})


def _joint_names(joint_names, num_joints: int) -> list[str]:
    names = list(joint_names.joints) if isinstance(joint_names, JointSet) else [str(n) for n in joint_names]
    if len(names) != num_joints:
        raise ValueError(f"{len(names)} joint names for {num_joints} joints")
    return names


def predictions_csv_text(preds, image_names, joint_names, scores=None, store_fingerprint: str | None = None) -> str:
    """Predictions as CSV rows `index,image,joint,x,y` (one per sample-joint); with `scores`
    (N,J) a `score` column is appended; with `store_fingerprint` the comment line
    `# store_fingerprint: ...` comes before the header.

    `joint_names` is a sequence of J names or a `JointSet`; coordinates as in
    `predictions_mat_bytes` (the annotation file's pixel convention).
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
    if store_fingerprint is not None:
        buffer.write(f"{CSV_COMMENT} {FINGERPRINT_VARIABLE}: {store_fingerprint}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS + (("score",) if scores is not None else ()))
    for i in range(n):
        for k in range(j):
            row = [i, image_names[i], names[k], repr(float(preds[i, k, 0])), repr(float(preds[i, k, 1]))]
            if scores is not None:
                row.append(repr(float(scores[i, k])))
            writer.writerow(row)
    return buffer.getvalue()


def write_predictions_csv(path, preds, image_names, joint_names, scores=None, store_fingerprint=None) -> None:
    """`predictions_csv_text` written to `path`, atomically."""
    write_text_atomic(path, predictions_csv_text(preds, image_names, joint_names, scores, store_fingerprint))


def write_predictions(mat_path, csv_path, preds, store, scores) -> None:
    """A store's predictions as both files, replaced together or not at all
    (`atomic.write_files_atomic`): never a new .mat beside an old .csv."""
    names, joints, fingerprint = list(store.image_name), list(store.joint_set.joints), store.fingerprint()
    write_files_atomic(
        {
            mat_path: predictions_mat_bytes(preds, fingerprint),
            csv_path: predictions_csv_text(preds, names, joints, scores, fingerprint).encode("utf-8"),
        }
    )


# ------------------------------------------------------------------- reading predictions


def _finite_points(path: Path, what: str, points: np.ndarray, num_joints: int | None) -> np.ndarray:
    try:
        return check_keypoints(points, what, num_joints=num_joints)
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None


def _read_predictions_mat(path: Path, num_joints: int | None) -> np.ndarray:
    variables = load_mat(path, "predictions (`preds` (N, J, 2) or `pos_pred_src` (J, 2, N))")
    if "preds" in variables:
        preds = np.asarray(variables["preds"])
        if (
            preds.ndim == 3
            and preds.shape[1] == 2
            and preds.shape[2] != 2
            and (num_joints is None or preds.shape[0] == num_joints)
        ):
            raise UserError(
                f"{path}: variable preds has shape {preds.shape}, expected (N, J, 2); "
                f"it looks like the reference (J, 2, N) layout, which is read only "
                f"under the name pos_pred_src"
            )
        return _finite_points(path, "variable preds", preds, num_joints)
    if "pos_pred_src" in variables:
        raw = np.asarray(variables["pos_pred_src"])
        if raw.ndim != 3 or raw.shape[1] != 2:
            raise UserError(f"{path}: variable pos_pred_src has shape {raw.shape}, expected (J, 2, N)")
        return _finite_points(path, "variable pos_pred_src", np.transpose(raw, (2, 0, 1)), num_joints)
    found = sorted(k for k in variables if not k.startswith("__"))
    raise UserError(
        f"{path}: no prediction variable: expected `preds` (N, J, 2) or "
        f"`pos_pred_src` (J, 2, N); found {found or 'none'}"
    )


def _read_csv_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None


def _split_comments(text: str) -> tuple[list[str], str]:
    """The leading comment lines of a prediction CSV (without their `#`) and the rest."""
    comments, start = [], 0
    while text.startswith(CSV_COMMENT, start):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        comments.append(text[start + len(CSV_COMMENT) : end].strip())
        start = end
    return comments, text[start:]


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and the (line number, fields) of the non-empty rows of a prediction CSV,
    leading comment lines skipped; the one reader of the format, under the points, the image
    names and the scores."""
    comments, text = _split_comments(_read_csv_text(path))
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(header[: len(CSV_COLUMNS)]) != CSV_COLUMNS:
        raise UserError(
            f"{path}: expected a CSV header starting {','.join(CSV_COLUMNS)}, got "
            f"{','.join(header) if header else 'an empty file'}"
        )
    return header, ((line, row) for line, row in enumerate(reader, start=2 + len(comments)) if row)


def _csv_points(path: Path) -> tuple[dict[str, int], dict[tuple[int, int], tuple[float, float]], int]:
    """(joint name -> column in order of first appearance, (sample, column) -> (x, y),
    sample count) of a prediction CSV; UserError naming the line of a bad row."""
    joint_column: dict[str, int] = {}
    values: dict[tuple[int, int], tuple[float, float]] = {}
    max_index = -1
    for line, row in _csv_rows(path)[1]:
        if len(row) < len(CSV_COLUMNS):
            raise UserError(f"{path}, line {line}: {len(row)} fields, expected at least {len(CSV_COLUMNS)}")
        try:
            index = int(row[0])
            x, y = float(row[3]), float(row[4])
        except ValueError:
            raise UserError(
                f"{path}, line {line}: index, x and y must be numbers, got {row[0]!r}, {row[3]!r}, {row[4]!r}"
            ) from None
        if index < 0:
            raise UserError(f"{path}, line {line}: negative sample index {index}")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise UserError(f"{path}, line {line}: non-finite (NaN/inf) coordinate ({row[3]}, {row[4]})")
        k = joint_column.setdefault(row[2], len(joint_column))
        if (index, k) in values:
            raise UserError(f"{path}, line {line}: sample {index}, joint {row[2]!r} given twice")
        values[(index, k)] = (x, y)
        max_index = max(max_index, index)
    return joint_column, values, max_index + 1


def _read_predictions_csv(path: Path, num_joints: int | None, joints: JointSet | None) -> np.ndarray:
    joint_column, values, n = _csv_points(path)
    j = len(joint_column)
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
            raise UserError(
                f"{path}: joint names {unknown or sorted(joint_column)} do not match the "
                f"{joints.name} joints {list(joints.joints)}"
            )
        column_to_joint = {k: joints.index(name) for name, k in joint_column.items()}
        values = {(i, column_to_joint[k]): xy for (i, k), xy in values.items()}
        joint_column = {name: joints.index(name) for name in joints.joints}
    if len(values) != n * j:
        names = list(joint_column)
        missing = next((i, names[k]) for i in range(n) for k in range(j) if (i, k) not in values)
        raise UserError(
            f"{path}: {n * j - len(values)} sample-joint rows missing for samples "
            f"0..{n - 1} x {j} joints, first sample {missing[0]}, joint {missing[1]!r}"
        )
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


def read_prediction_image_names(path) -> dict[int, str] | None:
    """Sample index -> image name, as a prediction CSV records them; None for a `.mat` (it holds
    no names) or a CSV whose image column is empty."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return None
    names = {int(row[0]): row[1] for _, row in _csv_rows(path)[1] if len(row) >= len(CSV_COLUMNS) and row[1]}
    return names or None


def check_image_names(preds_path, gt_path, gt_names) -> None:
    """UserError at the first sample whose image differs between predictions and ground truth:
    predictions of another split, or in another order, would otherwise score as garbage."""
    names = read_prediction_image_names(preds_path)
    if names is None or gt_names is None:
        return
    for index in sorted(names):
        if index < len(gt_names) and names[index] != gt_names[index]:
            raise UserError(
                f"{preds_path}: sample {index} is image {names[index]!r}, but in the ground truth "
                f"{gt_path} it is {gt_names[index]!r}: predictions of another split or order?"
            )


def _csv_fingerprint(path: Path) -> str | None:
    """The `# store_fingerprint: ...` line of a prediction CSV; only the leading comment lines
    are read, not the rows."""
    try:
        with open(path, encoding="utf-8") as f:
            head = "".join(itertools.takewhile(lambda line: line.startswith(CSV_COMMENT), f))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    for comment in _split_comments(head)[0]:
        key, _, value = comment.partition(":")
        if key.strip() == FINGERPRINT_VARIABLE and value.strip():
            return value.strip()
    return None


def recorded_store_fingerprint(path) -> str | None:
    """The fingerprint of the store a prediction file was made from, as `predict` records it
    (a .mat's variable, a .csv's comment line); None for a file without it (older, or not
    `predict`'s)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return _csv_fingerprint(path)
    if path.suffix.lower() != ".mat":
        return None
    value = load_mat(path, "predictions", variable_names=[FINGERPRINT_VARIABLE]).get(FINGERPRINT_VARIABLE)
    if value is None:
        return None
    text = np.asarray(value).ravel()
    return str(text[0]) if text.size == 1 else None


def check_store_fingerprint(preds_path, gt_path) -> None:
    """UserError when the predictions record a store other than the ground-truth store: of
    other people, or other annotations of them, they would score as garbage, with the same
    count and joints as much as without. (A CSV without the line is bound to its store by its
    image names only, `check_image_names`.)"""
    recorded = recorded_store_fingerprint(preds_path)
    if recorded is None or not is_store(gt_path):
        return
    actual = open_store(gt_path).fingerprint()
    if recorded != actual:
        raise UserError(
            f"{preds_path}: predicted from another store than {gt_path} (store fingerprint "
            f"{recorded[:12]}..., this store's {actual[:12]}...: other people or other annotations); "
            f"predict {gt_path} itself"
        )


def read_person_scores(path, num_samples: int) -> np.ndarray | None:
    """(N,) per-person confidence, the mean of the per-joint `score` column of a prediction
    CSV (what predict writes: heatmap peak heights); None for a .mat or a CSV without it."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return None
    header, rows = _csv_rows(path)
    if "score" not in header:
        return None
    column = header.index("score")
    total, count = np.zeros(num_samples), np.zeros(num_samples)
    for line, row in rows:
        try:
            value = float(row[column])
        except (ValueError, IndexError):
            raise UserError(f"{path}, line {line}: score must be a number") from None
        if not math.isfinite(value):
            raise UserError(f"{path}, line {line}: non-finite score {row[column]!r}")
        total[int(row[0])] += value
        count[int(row[0])] += 1
    return total / np.maximum(count, 1)
