"""COCO keypoint annotations (`person_keypoints_*.json`): one sample per person annotation.

Conventions kept (documented choices):
- joint order is COCO 17 (`joints.COCO`) when the category's `keypoints` are COCO's 17 names
  (or the file has no `categories`); otherwise the file declares its own set (a hand, an
  animal, a reduced body): joints = the category's `keypoints` in order, edges = its
  `skeleton` (1-based, as COCO writes it), flip pairs by the names' `left_`/`right_` or
  `l_`/`r_` prefixes or given by name (the dataset's `flip_pairs`), set named after the
  category (`custom_joint_set`; stores and checkpoints record it). Keypoints stay as in the file;
- pixel origin 0.0: COCO keypoints are integer pixel indices in [0, W-1] (pixel (0, 0) is the
  top-left pixel's centre), while `bbox` [x, y, w, h] is continuous with pixel edges on the
  integers (a whole-image box is [0, 0, W, H]). The bbox centre in the keypoints' convention
  is therefore (x + w/2 - 0.5, y + h/2 - 0.5);
- the crop is square: side = max(w, h) x `BBOX_PADDING` (1.25, the usual top-down COCO
  padding), scale = side / 200 (the store's person box, `joints.PERSON_BOX`), so a wide box is not squashed;
- flags: v = 2 labelled and visible, v = 1 labelled but hidden (a position placed by the
  annotator), v = 0 not labelled (its x, y are 0, a placeholder). So `visible` (labelled) =
  v > 0 and `occluded` = v == 1; a v = 0 joint is missing: no loss, and OKS leaves it out;
- skipped, not errors (they are the dataset's normal content, counted in the log):
  `iscrowd` annotations, people with fewer than `min_keypoints` labelled keypoints (default 1),
  annotations of categories without keypoints (when `categories` is given);
- image name = `images[].file_name` of the annotation's `image_id`;
  source_index = (image id, annotation id);
- head_size is NaN (COCO has no head box; score COCO with OKS-style or torso metrics);
- the file is the split: COCO ships one file per split (`person_keypoints_val2017.json`), so
  `--split` is recorded but selects nothing.
Malformed input (bad JSON, missing keys, a keypoint list not J x 3 numbers for the J keypoints
of the category, an unknown image id, skeleton indices out of range, flip pairs naming no
keypoint) is a UserError naming the file and the annotation id or category.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import COCO, PERSON_BOX, JointSet, mirror_pairs
from pose_pipeline.errors import UserError

log = logging.getLogger(__name__)

PIXEL_ORIGIN = 0.0
BBOX_PADDING = 1.25
DEFAULT_MIN_KEYPOINTS = 1
# COCO's category keypoint names -> ours (joints.COCO), in COCO's order.
COCO_NAMES = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
EXPECTED = (
    "a COCO keypoint JSON file: {images: [{id, file_name}], annotations: [{id, image_id, "
    "bbox: [x, y, w, h], keypoints: [x, y, v] * J, iscrowd}], categories: [{id, keypoints, skeleton}]}"
)


@dataclass
class COCOPeople:
    joints: JointSet  # COCO's 17, or the file's own keypoints and skeleton
    image_names: list[str]
    image_id: np.ndarray  # (N,) int64
    annotation_id: np.ndarray  # (N,) int64
    keypoints: np.ndarray  # (N,J,2) float64, as in the file
    visible: np.ndarray  # (N,J) uint8, v > 0: labelled
    occluded: np.ndarray  # (N,J) uint8, v == 1: labelled but hidden
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
        raise UserError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected {EXPECTED}"
        ) from None
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


def _keypoint_categories(path: Path, data: dict, flip_pairs=None) -> tuple[set | None, JointSet]:
    """Ids of the categories with keypoints (None: the file has no `categories`, take all) and
    their joint set: COCO's 17 (`joints.COCO`), or the file's own (`custom_joint_set`).
    Categories with keypoints must all declare the same list (one joint order per store)."""
    categories = data.get("categories")
    if categories is None:
        if flip_pairs:
            raise UserError(
                f"{path}: flip pairs are given, but the file has no `categories` declaring keypoints "
                "(without them its keypoints are COCO's 17, whose pairs are known)"
            )
        return None, COCO
    ids, declared = set(), None
    for k, cat in enumerate(categories if isinstance(categories, list) else []):
        if not isinstance(cat, dict) or not cat.get("keypoints"):
            continue
        names = cat["keypoints"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise UserError(f"{path}: categories[{k}] (id {cat.get('id')!r}): `keypoints` must be a list of names")
        if declared is None:
            declared = (k, cat)
        elif names != declared[1]["keypoints"]:
            raise UserError(
                f"{path}: categories[{k}] (id {cat.get('id')!r}) declares keypoints {names}, "
                f"categories[{declared[0]}] {declared[1]['keypoints']}: categories with keypoints must "
                "share one list (one joint order per store)"
            )
        ids.add(cat.get("id"))
    if declared is None:
        raise UserError(
            f"{path}: no category has keypoints (an instances_*.json rather than a "
            f"person_keypoints_*.json?); expected {EXPECTED}"
        )
    k, cat = declared
    if tuple(cat["keypoints"]) == COCO_NAMES:
        if flip_pairs:
            raise UserError(
                f"{path}: flip pairs are given, but categories[{k}] declares COCO's 17 keypoints, whose "
                "pairs are known (flip_pairs is for files with their own keypoints)"
            )
        return ids, COCO
    return ids, custom_joint_set(f"{path}: categories[{k}] (id {cat.get('id')!r})", cat, flip_pairs)


def custom_joint_set(where: str, category: dict, flip_pairs=None) -> JointSet:
    """The joint set of a category declaring its own `keypoints` (names, in file order) and
    `skeleton` (edges as 1-based index pairs, as COCO writes them). Flip pairs: `flip_pairs`
    ([[left name, right name], ...], from the dataset's config) when given, else derived from
    the names (`left_x` / `right_x`, `l_x` / `r_x`: `joints.mirror_pairs`). Named after the
    category (`name`, else "custom")."""
    names = tuple(category["keypoints"])
    if len(set(names)) != len(names):
        raise UserError(f"{where}: keypoint names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    skeleton = category.get("skeleton") or []
    if not isinstance(skeleton, list):
        raise UserError(f"{where}: `skeleton` is a {type(skeleton).__name__}; expected a list of [a, b] index pairs")
    edges = []
    for i, edge in enumerate(skeleton):
        valid = (
            isinstance(edge, list)
            and len(edge) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in edge)
        )
        if not valid or not all(1 <= v <= len(names) for v in edge):
            raise UserError(
                f"{where}: skeleton[{i}] = {edge!r}; expected two keypoint indices from 1 to "
                f"{len(names)} (COCO skeleton indices are 1-based)"
            )
        edges.append((edge[0] - 1, edge[1] - 1))
    pairs = mirror_pairs(names) if flip_pairs is None else _named_pairs(where, names, flip_pairs)
    name = category.get("name") if isinstance(category.get("name"), str) and category.get("name") else "custom"
    return JointSet(name=name, joints=names, flip_pairs=pairs, edges=tuple(edges))


def _named_pairs(where: str, names: tuple, flip_pairs) -> tuple[tuple[int, int], ...]:
    """Flip pairs given by name (the dataset's `flip_pairs`) as index pairs; each name a
    keypoint of the file, no joint in two pairs."""
    pairs, used = [], set()
    for pair in flip_pairs:
        a, b = pair
        unknown = [n for n in (a, b) if n not in names]
        if unknown:
            raise UserError(
                f"{where}: flip_pairs [{a}, {b}]: {', '.join(map(repr, unknown))} "
                f"{'is not a keypoint' if len(unknown) == 1 else 'are not keypoints'} of the file "
                f"(its keypoints: {list(names)})"
            )
        if a == b or {a, b} & used:
            raise UserError(f"{where}: flip_pairs [{a}, {b}]: a joint is paired with itself or in two pairs")
        used |= {a, b}
        pairs.append((names.index(a), names.index(b)))
    return tuple(pairs)


def read_annotations(path, min_keypoints: int = DEFAULT_MIN_KEYPOINTS, flip_pairs=None) -> COCOPeople:
    """Person annotations of a COCO keypoint file, crowds and sparse people left out; the
    joint set is COCO's or the file's own (`flip_pairs` by name, for the latter)."""
    path = Path(path)
    if min_keypoints < 1:
        raise UserError(
            f"--min-keypoints {min_keypoints}: must be at least 1 "
            "(a person without labelled keypoints can be neither trained nor scored)"
        )
    data = _load_json(path)
    names = _image_names(path, data["images"])
    keypoint_categories, joints = _keypoint_categories(path, data, flip_pairs)
    skipped = {"crowd": 0, "few_keypoints": 0, "other_category": 0}
    rows: dict[str, list] = {k: [] for k in ("name", "image", "ann", "kp", "vis", "occ", "bbox", "problem")}
    for k, ann in enumerate(data["annotations"]):
        where = _check_keys(path, k, ann)
        if keypoint_categories is not None and ann.get("category_id") not in keypoint_categories:
            skipped["other_category"] += 1
        elif ann.get("iscrowd", 0):
            skipped["crowd"] += 1
        else:
            kp, bbox = _keypoints_and_box(where, ann, names, joints)
            if int((kp[:, 2] > 0).sum()) < min_keypoints:
                skipped["few_keypoints"] += 1
            else:
                _add_row(rows, names[ann["image_id"]], ann, kp, bbox)
    people = _people(path, rows, skipped, joints)
    log.info(
        "%s: %d person annotations -> %d people; skipped %d crowd, %d with fewer than %d labelled "
        "keypoints, %d of categories without keypoints",
        path,
        len(data["annotations"]),
        len(people),
        skipped["crowd"],
        skipped["few_keypoints"],
        min_keypoints,
        skipped["other_category"],
    )
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


def _keypoints_and_box(where: str, ann: dict, names: dict, joints: JointSet) -> tuple[np.ndarray, list]:
    """(J,3) [x, y, v] and the bbox of a person annotation, UserError where malformed."""
    values, count = ann["keypoints"], joints.num_joints
    expected = f"expected {3 * count} ([x, y, v] x {count}, the {count} keypoints of its category)"
    if not isinstance(values, list) or len(values) != 3 * count:
        length = len(values) if isinstance(values, list) else type(values).__name__
        raise UserError(f"{where}: `keypoints` has {length} numbers; {expected}")
    if not all(_is_number(v) for v in values):
        raise UserError(f"{where}: `keypoints` holds non-numbers; {expected}")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise UserError(f"{where}: `bbox` is {bbox!r}; expected 4 numbers [x, y, w, h]")
    if ann["image_id"] not in names:
        raise UserError(f"{where}: image_id {ann['image_id']!r} is not in `images`")
    kp = np.asarray(values, dtype=np.float64).reshape(count, 3)
    flags = kp[:, 2]
    if not np.isin(flags, (0, 1, 2)).all():
        raise UserError(
            f"{where}: keypoint visibility flags {sorted(set(flags.tolist()) - {0, 1, 2})} are not 0, 1 or 2"
        )
    return kp, bbox


def _add_row(rows: dict, image_name: str, ann: dict, kp: np.ndarray, bbox: list) -> None:
    w, h = float(bbox[2]), float(bbox[3])
    area = math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0
    rows["name"].append(image_name)
    rows["image"].append(ann["image_id"])
    rows["ann"].append(ann["id"])
    rows["kp"].append(kp[:, :2])
    rows["vis"].append((kp[:, 2] > 0).astype(np.uint8))
    rows["occ"].append((kp[:, 2] == 1).astype(np.uint8))
    rows["bbox"].append(np.asarray(bbox, dtype=np.float64))
    rows["problem"].append("" if area else f"bbox {bbox} has no area")


def _people(path: Path, rows: dict, skipped: dict, joints: JointSet) -> COCOPeople:
    n = len(rows["name"])
    try:
        image_id = np.asarray(rows["image"], dtype=np.int64).reshape(n)
        annotation_id = np.asarray(rows["ann"], dtype=np.int64).reshape(n)
    except (TypeError, ValueError):
        raise UserError(f"{path}: image and annotation ids must be integers (COCO's are)") from None
    return COCOPeople(
        joints=joints,
        image_names=rows["name"],
        image_id=image_id,
        annotation_id=annotation_id,
        keypoints=np.asarray(rows["kp"], dtype=np.float64).reshape(n, joints.num_joints, 2),
        visible=np.asarray(rows["vis"], dtype=np.uint8).reshape(n, joints.num_joints),
        occluded=np.asarray(rows["occ"], dtype=np.uint8).reshape(n, joints.num_joints),
        bbox=np.asarray(rows["bbox"], dtype=np.float64).reshape(n, 4),
        problems=rows["problem"],
        skipped=skipped,
    )


def person_boxes(bbox: np.ndarray, padding: float = BBOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre (N,2) in the keypoints' pixel-index convention and scale (N,) of the square crop."""
    bbox = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    center = bbox[:, :2] + bbox[:, 2:] / 2 - 0.5
    scale = np.maximum(bbox[:, 2], bbox[:, 3]) * padding / PERSON_BOX
    return center, scale
