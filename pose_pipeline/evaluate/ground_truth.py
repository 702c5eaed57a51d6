"""Ground-truth files for scoring: which format a file is and its keypoints, visibility, PCKh
unit and joint set.

* a converted store (keypoints, visible, head_size, joint set);
* the reference `detections_our_format.mat` (`pos_gt_src` (16,2,N), `jnt_missing`
  (16,N), `headboxes_src` (2,2,N); MPII joint order);
* an LSP `joints.mat` (either layout) or a FLIC `examples.mat` (or the same struct renamed),
  the rows of a split as `convert` takes them (pose_pipeline.data.formats.lsp / .flic), so that
  published predictions can be scored without the images;
* a COCO keypoint JSON (OKS AP: `score` hands it to pycocotools).

Coordinates are in the annotation file's own pixel convention, as predictions are
(`pose_pipeline.inference.prediction_files`). `visible` is 1 where a joint is labelled, 0
where it is missing (a placeholder), as each format's reader reads its flags; `occluded`
marks labelled joints that are hidden (`load_ground_truth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import FLIC, LSP, MPII, JointSet, head_size_from_boxes
from pose_pipeline.data.formats.matlab import load_mat, mat_variable_classes, mat_variable_names
from pose_pipeline.data.store import is_store, open_store
from pose_pipeline.errors import UserError

# the variables that make a .mat the reference ground truth
REFERENCE_GT_VARIABLES = ("pos_gt_src", "jnt_missing", "headboxes_src")


def _reference_ground_truth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, JointSet]:
    variables = load_mat(path, "the reference ground truth (detections_our_format.mat)")
    missing = [k for k in REFERENCE_GT_VARIABLES if k not in variables]
    if missing:
        raise UserError(
            f"{path}: not a reference ground-truth file (detections_our_format.mat): variables {missing} missing"
        )
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


GROUND_TRUTH_FILES = (
    "a converted .zarr store, the reference detections_our_format.mat (pos_gt_src, "
    "jnt_missing, headboxes_src), an LSP joints.mat (`joints`), a FLIC examples.mat (a "
    "struct with coords) or a COCO keypoint .json"
)


def ground_truth_format(path) -> str:
    """The format of a ground-truth file: a store's own, else "mpii" (detections_our_format.mat),
    "lsp" (joints.mat), "flic" (a struct, as examples.mat) or "coco" (.json)."""
    path = Path(path)
    if is_store(path):
        attrs = open_store(path).attrs
        return attrs.get("format") or attrs.get("joint_set")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "coco"
    if suffix == ".mat":
        classes = mat_variable_classes(path, GROUND_TRUTH_FILES)
        if set(REFERENCE_GT_VARIABLES) <= set(classes):
            return "mpii"
        if "joints" in classes:
            return "lsp"
        if "struct" in classes.values():
            return "flic"
        raise UserError(
            f"{path}: no ground truth (variables {sorted(classes) or 'none'}); expected {GROUND_TRUTH_FILES}"
        )
    if suffix == ".zarr":
        raise UserError(f"{path}: no such store" if not path.exists() else f"{path}: not a converted store")
    raise UserError(f"{path}: unknown ground-truth file; expected {GROUND_TRUTH_FILES}")


@dataclass
class GroundTruth:
    keypoints: np.ndarray  # (N,J,2) float64
    visible: np.ndarray  # (N,J) 1 = labelled, 0 = missing
    head_size: np.ndarray  # (N,) PCKh unit, NaN where none
    joints: JointSet
    occluded: np.ndarray | None = None  # (N,J) 1 = labelled but hidden; None where not recorded
    notes: list[str] = field(default_factory=list)  # what a reader of the scores should know


def _annotation_ground_truth(path: Path, fmt: str, split: str) -> GroundTruth:
    """An LSP joints.mat or FLIC examples.mat read for scoring: the rows `convert` takes for
    `split`, keypoints as in the file (FLIC: NaN where not annotated)."""
    from pose_pipeline.data.formats import flic, lsp

    if fmt == "lsp":
        people = lsp.read_joints(path)
        rows = lsp.split_rows(len(people), split, path)
        return GroundTruth(
            people.keypoints[rows], people.visible[rows], np.full(len(rows), np.nan), LSP, people.occluded[rows]
        )
    people = flic.read_examples(path)
    rows = flic.split_rows(people, split, path)
    return GroundTruth(people.keypoints[rows], people.visible[rows], np.full(len(rows), np.nan), FLIC)


def _store_ground_truth(path: Path) -> GroundTruth:
    from pose_pipeline.data.formats.lsp import occluded_stored_missing

    store = open_store(path)
    notes = []
    if occluded_stored_missing(store.attrs, store.has_occluded):
        notes.append(
            f"{path} is an original-LSP store converted before occluded joints were kept labelled: "
            "they are stored as missing and not scored; convert it again to score them as eval_pck.m does"
        )
    return GroundTruth(
        np.asarray(store.keypoints, dtype=np.float64),
        np.asarray(store.visible),
        np.asarray(store.head_size, dtype=np.float64),
        store.joint_set,
        np.asarray(store.occluded) if store.has_occluded else None,
        notes,
    )


def load_ground_truth(path, split: str | None = None) -> GroundTruth:
    """The ground truth of a converted store, the reference `detections_our_format.mat`, an LSP
    `joints.mat` or a FLIC `examples.mat`. `split` selects an annotation file's people as
    `convert --split` does (default val: LSP's last 1,000 of 2,000 images, FLIC's istest); the
    others are one split."""
    path = Path(path)
    fmt = ground_truth_format(path)
    if fmt in ("lsp", "flic") and not is_store(path):
        return _annotation_ground_truth(path, fmt, split or "val")
    if split is not None:
        raise UserError(
            f"--split {split}: selects the people of an annotation file (LSP joints.mat, FLIC "
            f"examples.mat); {path} is one split already"
        )
    if is_store(path):
        return _store_ground_truth(path)
    if fmt == "mpii":
        return GroundTruth(*_reference_ground_truth(path))
    raise UserError(f"{path}: a COCO file is scored with OKS AP (--metric oks), which reads it itself")


def read_ground_truth(path, split: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, JointSet]:
    """(gt (N,J,2), visible (N,J) 1 = labelled, head_size (N,), joint set): `load_ground_truth`'s."""
    truth = load_ground_truth(path, split)
    return truth.keypoints, truth.visible, truth.head_size, truth.joints


def holds_reference_ground_truth(path) -> bool:
    """Whether a .mat holds the reference ground truth (pos_gt_src ...) beside predictions,
    so that its predictions can be scored against it (detections_our_format.mat)."""
    path = Path(path)
    if path.suffix.lower() != ".mat":
        return False
    names = mat_variable_names(path, "predictions or the reference ground truth")
    return set(REFERENCE_GT_VARIABLES) <= names


def ground_truth_image_names(path) -> list[str] | None:
    """The image of each ground-truth sample where the file records it (a store), else None."""
    if not is_store(path):
        return None
    return [str(name) for name in open_store(path).image_name]
