"""COCO keypoint annotations (`person_keypoints_*.json`): one sample per person annotation.

Conventions kept (documented choices):
- joint order is COCO 17 (`joints.COCO`); keypoints stay as in the file;
- pixel origin 0.0: COCO keypoints are integer pixel indices in [0, W-1] (pixel (0, 0) is the
  top-left pixel's centre), while `bbox` [x, y, w, h] is continuous with pixel edges on the
  integers (a whole-image box is [0, 0, W, H]). The bbox centre in the keypoints' convention
  is therefore (x + w/2 - 0.5, y + h/2 - 0.5);
- the crop is square: side = max(w, h) x `BBOX_PADDING` (1.25, the usual top-down COCO
  padding), scale = side / 200 (the store's person box, `joints.PERSON_BOX`), so a wide box is not squashed;
- `visible` = v > 0 (v = 1 labelled but hidden, 2 visible: both have a position);
- skipped, not errors (they are the dataset's normal content, counted in the log):
  `iscrowd` annotations, people with fewer than `min_keypoints` labelled keypoints (default 1),
  annotations of categories without keypoints (when `categories` is given);
- image name = `images[].file_name` of the annotation's `image_id`;
  source_index = (image id, annotation id);
- head_size is NaN (COCO has no head box; score COCO with OKS-style or torso metrics);
- the file is the split: COCO ships one file per split (`person_keypoints_val2017.json`), so
  `--split` is recorded but selects nothing.
Malformed input (bad JSON, missing keys, a keypoint list not 17 x 3 numbers, an unknown
image id) is a UserError naming the file and the annotation id.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose_pipeline.errors import UserError
from pose_pipeline.joints import COCO, PERSON_BOX

log = logging.getLogger(__name__)

NUM_JOINTS = COCO.num_joints
PIXEL_ORIGIN = 0.0
BBOX_PADDING = 1.25
DEFAULT_MIN_KEYPOINTS = 1
# COCO's category keypoint names -> ours (joints.COCO), in COCO's order.
COCO_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
EXPECTED = ("a COCO keypoint JSON file: {images: [{id, file_name}], annotations: [{id, image_id, "
            "bbox: [x, y, w, h], keypoints: [x, y, v] * 17, iscrowd}]}")


@dataclass
class COCOPeople:
    image_names: list[str]
    image_id: np.ndarray  # (N,) int64
    annotation_id: np.ndarray  # (N,) int64
    keypoints: np.ndarray  # (N,17,2) float64, as in the file
    visible: np.ndarray  # (N,17) uint8, v > 0
    bbox: np.ndarray  # (N,4) float64, [x, y, w, h]
    problems: list[str]
    skipped: dict = field(default_factory=dict)  # reason -> count

    def __len__(self) -> int:
        return len(self.image_names)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected {EXPECTED}")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                        f"expected {EXPECTED}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected {EXPECTED}") from None
    except OSError as exc:
        raise UserError(f"{path}: unreadable ({exc.strerror}); expected {EXPECTED}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level is a {type(data).__name__}, not an object; expected {EXPECTED}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            what = "missing" if key not in data else f"a {type(data[key]).__name__}, not a list"
            raise UserError(f"{path}: `{key}` is {what}; expected {EXPECTED}")
    return data


def _image_names(path: Path, images: list) -> dict:
    names = {}
    for k, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise UserError(f"{path}: images[{k}] lacks `id` or a string `file_name`; expected {EXPECTED}")
        if image["id"] in names:
            raise UserError(f"{path}: images[{k}]: image id {image['id']!r} appears twice")
        names[image["id"]] = image["file_name"]
    return names


def _keypoint_categories(path: Path, data: dict) -> set | None:
    """Ids of categories with keypoints (None: the file has no `categories`, take all).

    A category whose keypoint names are not COCO's 17 is an error: the joint order would
    be wrong."""
    categories = data.get("categories")
    if categories is None:
        return None
    ids = set()
    for k, cat in enumerate(categories if isinstance(categories, list) else []):
        if not isinstance(cat, dict) or not cat.get("keypoints"):
            continue
        if tuple(cat["keypoints"]) != COCO_NAMES:
            raise UserError(f"{path}: categories[{k}] (id {cat.get('id')!r}) has keypoints "
                            f"{cat['keypoints']}; expected COCO's 17 in order {list(COCO_NAMES)}")
        ids.add(cat.get("id"))
    if not ids:
        raise UserError(f"{path}: no category has keypoints (an instances_*.json rather than a "
                        f"person_keypoints_*.json?); expected {EXPECTED}")
    return ids


def read_annotations(path, min_keypoints: int = DEFAULT_MIN_KEYPOINTS) -> COCOPeople:
    """Person annotations of a COCO keypoint file, crowds and sparse people left out."""
    path = Path(path)
    if min_keypoints < 1:
        raise UserError(f"--min-keypoints {min_keypoints}: must be at least 1 "
                        "(a person without labelled keypoints can be neither trained nor scored)")
    data = _load_json(path)
    names = _image_names(path, data["images"])
    keypoint_categories = _keypoint_categories(path, data)
    skipped = {"crowd": 0, "few_keypoints": 0, "other_category": 0}
    rows: dict[str, list] = {k: [] for k in ("name", "image", "ann", "kp", "vis", "bbox", "problem")}
    for k, ann in enumerate(data["annotations"]):
        where = _check_keys(path, k, ann)
        if keypoint_categories is not None and ann.get("category_id") not in keypoint_categories:
            skipped["other_category"] += 1
        elif ann.get("iscrowd", 0):
            skipped["crowd"] += 1
        else:
            kp, bbox = _keypoints_and_box(where, ann, names)
            if int((kp[:, 2] > 0).sum()) < min_keypoints:
                skipped["few_keypoints"] += 1
            else:
                _add_row(rows, names[ann["image_id"]], ann, kp, bbox)
    people = _people(path, rows, skipped)
    log.info("%s: %d person annotations -> %d people; skipped %d crowd, %d with fewer than %d labelled "
             "keypoints, %d of categories without keypoints", path, len(data["annotations"]), len(people),
             skipped["crowd"], skipped["few_keypoints"], min_keypoints, skipped["other_category"])
    return people


def _check_keys(path: Path, k: int, ann) -> str:
    """How messages name annotations[k], once it is known to be an object with the keys."""
    if not isinstance(ann, dict):
        raise UserError(f"{path}: annotations[{k}] is a {type(ann).__name__}, not an object; expected {EXPECTED}")
    where = f"{path}: annotation id {ann.get('id')!r} (annotations[{k}])"
    missing = [key for key in ("id", "image_id", "bbox", "keypoints") if key not in ann]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}; expected {EXPECTED}")
    return where


def _keypoints_and_box(where: str, ann: dict, names: dict) -> tuple[np.ndarray, list]:
    """(17,3) [x, y, v] and the bbox of a person annotation, UserError where malformed."""
    values = ann["keypoints"]
    if not isinstance(values, list) or len(values) != 3 * NUM_JOINTS:
        length = len(values) if isinstance(values, list) else type(values).__name__
        raise UserError(f"{where}: `keypoints` has {length} numbers; expected 51 ([x, y, v] x 17)")
    if not all(_is_number(v) for v in values):
        raise UserError(f"{where}: `keypoints` holds non-numbers; expected 51 numbers ([x, y, v] x 17)")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise UserError(f"{where}: `bbox` is {bbox!r}; expected 4 numbers [x, y, w, h]")
    if ann["image_id"] not in names:
        raise UserError(f"{where}: image_id {ann['image_id']!r} is not in `images`")
    kp = np.asarray(values, dtype=np.float64).reshape(NUM_JOINTS, 3)
    flags = kp[:, 2]
    if not np.isin(flags, (0, 1, 2)).all():
        raise UserError(f"{where}: keypoint visibility flags {sorted(set(flags.tolist()) - {0, 1, 2})} "
                        "are not 0, 1 or 2")
    return kp, bbox


def _add_row(rows: dict, image_name: str, ann: dict, kp: np.ndarray, bbox: list) -> None:
    w, h = float(bbox[2]), float(bbox[3])
    area = math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0
    rows["name"].append(image_name)
    rows["image"].append(ann["image_id"])
    rows["ann"].append(ann["id"])
    rows["kp"].append(kp[:, :2])
    rows["vis"].append((kp[:, 2] > 0).astype(np.uint8))
    rows["bbox"].append(np.asarray(bbox, dtype=np.float64))
    rows["problem"].append("" if area else f"bbox {bbox} has no area")


def _people(path: Path, rows: dict, skipped: dict) -> COCOPeople:
    n = len(rows["name"])
    try:
        image_id = np.asarray(rows["image"], dtype=np.int64).reshape(n)
        annotation_id = np.asarray(rows["ann"], dtype=np.int64).reshape(n)
    except (TypeError, ValueError):
        raise UserError(f"{path}: image and annotation ids must be integers (COCO's are)") from None
    return COCOPeople(
        image_names=rows["name"], image_id=image_id, annotation_id=annotation_id,
        keypoints=np.asarray(rows["kp"], dtype=np.float64).reshape(n, NUM_JOINTS, 2),
        visible=np.asarray(rows["vis"], dtype=np.uint8).reshape(n, NUM_JOINTS),
        bbox=np.asarray(rows["bbox"], dtype=np.float64).reshape(n, 4),
        problems=rows["problem"], skipped=skipped,
    )


def person_boxes(bbox: np.ndarray, padding: float = BBOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre (N,2) in the keypoints' pixel-index convention and scale (N,) of the square crop."""
    bbox = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    center = bbox[:, :2] + bbox[:, 2:] / 2 - 0.5
    scale = np.maximum(bbox[:, 2], bbox[:, 3]) * padding / PERSON_BOX
    return center, scale
