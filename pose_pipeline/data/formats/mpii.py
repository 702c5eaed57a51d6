"""MPII Human Pose annotations: readers into one columnar record type.

Sources read into `MPIIPeople` (split files naming people: `formats.mpii_split`):
- the MPII release `.mat` (a `RELEASE` struct), or any MATLAB file with a top-level
  `annolist` in the release layout (e.g. the validation `detections.mat`);
- the stacked-hourglass HDF5 annotations (`train.h5` / `valid.h5`).

Conventions kept throughout:
- coordinates stay in the file's pixel convention (MPII: 1-based MATLAB pixels; not shifted);
- centre/scale follow the stacked-hourglass convention: from the release,
  `center = objpos + (0, 15 * scale_raw)` and `scale = 1.25 * scale_raw`
  (the hourglass HDF5 already stores them so);
- `head_size` is the PCKh unit, `joints.head_size_from_boxes`: 0.6 x the head-box diagonal (the
  reference `SC_BIAS`);
- what a joint's flags mean: a joint is labelled (`annotated`, the store's `visible`) where the
  release lists an annopoint for it (the .h5: where `part` is not (0, 0)); one it does not
  list is missing (the .h5 keeps it at (0, 0), a placeholder): no loss, and PCKh leaves it out
  (`jnt_missing`), as `eval_PCKh.m` does. `is_visible` is the release's separate occlusion
  flag: a labelled joint with `is_visible` 0 is occluded (the store's `occluded`), its
  position the annotator's; PCKh and PyTorch-Pose count and train it like any labelled joint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import MPII, head_size_from_boxes
from pose_pipeline.data.formats.matlab import check_file, is_struct, items, load_mat, number, text, variables_found
from pose_pipeline.data.images import unsafe_image_name
from pose_pipeline.errors import UserError

NUM_JOINTS = MPII.num_joints
# Stacked-hourglass crop convention applied to the release's objpos/scale.
HOURGLASS_CENTER_SHIFT = 15.0
HOURGLASS_SCALE_FACTOR = 1.25

RELEASE_LAYOUT = (
    "a MATLAB file with a RELEASE struct (or a top-level annolist) in the MPII release layout: "
    "annolist(i).annorect(j).{x1,y1,x2,y2,scale,objpos,annopoints.point(k).{x,y,id,is_visible}}"
)
HOURGLASS_DATASETS = ("imgname", "center", "scale", "part", "visible", "normalize", "index", "person")


@dataclass
class MPIIPeople:
    """N annotated people, one row each, columnar."""

    image_names: list[str]
    image_index: np.ndarray  # (N,) int64, 0-based into annolist
    person_index: np.ndarray  # (N,) int64, 0-based into annolist(i).annorect
    center: np.ndarray  # (N,2) float64, hourglass convention
    scale: np.ndarray  # (N,) float64, hourglass convention (1.25 x person height / 200)
    keypoints: np.ndarray  # (N,16,2) float64, 0 where not annotated
    annotated: np.ndarray  # (N,16) bool
    is_visible: np.ndarray  # (N,16) uint8, the release's occlusion flag
    head_box: np.ndarray  # (N,4) float64 x1,y1,x2,y2 (NaN where unknown)
    head_size: np.ndarray  # (N,) float64, 0.6 x head-box diagonal
    is_train: np.ndarray  # (N,) bool
    problems: list[str] = field(default_factory=list)  # '' where the record is fine

    def __post_init__(self) -> None:
        n = len(self.image_names)
        if not self.problems:
            self.problems = [""] * n
        for f in fields(self):
            value = getattr(self, f.name)
            if len(value) != n:
                raise ValueError(f"MPIIPeople.{f.name} has {len(value)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.image_names)

    def take(self, rows) -> MPIIPeople:
        """The people at `rows` (integer indices or a boolean mask), in that order."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kwargs[f.name] = [value[i] for i in rows] if isinstance(value, list) else value[rows]
        return MPIIPeople(**kwargs)


def _load_mat(path: Path, expected: str) -> dict:
    """Structs as attribute objects, 1x1 arrays as scalars (see `matlab.items`)."""
    return load_mat(path, expected, squeeze_me=True, struct_as_record=False)


# --------------------------------------------------------------------------- release reader


def read_release(path, *, default_is_train: bool = False) -> MPIIPeople:
    """People with `annopoints` in an MPII release `.mat` (or a file with top-level annolist).

    `is_train` comes from `img_train`; files without it (e.g. detections.mat) get
    `default_is_train`. Rects without annopoints (test people, unannotated rects) are not
    annotated people and are skipped. image_names are '' where the file has no `image` field.
    """
    path = Path(path)
    mat = _load_mat(path, RELEASE_LAYOUT)
    release = mat.get("RELEASE")
    if release is not None:
        if not is_struct(release) or not hasattr(release, "annolist"):
            raise UserError(f"{path}: RELEASE has no annolist field; expected {RELEASE_LAYOUT}")
        annolist = items(release.annolist)
        img_train_raw = getattr(release, "img_train", None)
    elif "annolist" in mat:
        annolist = items(mat["annolist"])
        img_train_raw = mat.get("img_train")
    else:
        raise UserError(f"{path}: found variables {variables_found(mat)}; expected {RELEASE_LAYOUT}")
    if not annolist:
        raise UserError(f"{path}: annolist is empty; expected {RELEASE_LAYOUT}")
    if not all(is_struct(a) for a in annolist):
        raise UserError(f"{path}: annolist is not a struct array; expected {RELEASE_LAYOUT}")

    img_train = None
    if img_train_raw is not None:
        img_train = np.atleast_1d(np.asarray(img_train_raw, dtype=np.float64)).ravel()
        if img_train.size != len(annolist):
            raise UserError(f"{path}: img_train has {img_train.size} entries but annolist has {len(annolist)}")
    has_image_field = hasattr(annolist[0], "image")

    rows = _ReleaseRows()
    for i, entry in enumerate(annolist):
        name = text(getattr(getattr(entry, "image", None), "name", None))
        train = bool(img_train[i]) if img_train is not None else default_is_train
        for j, rect in enumerate(items(getattr(entry, "annorect", None))):
            if not is_struct(rect):
                continue
            annopoints = getattr(rect, "annopoints", None)
            if not is_struct(annopoints):
                continue  # no annopoints: not an annotated person
            rows.add(i, j, name, train, rect, annopoints, name_required=has_image_field)
    if not rows.image_index:
        raise UserError(f"{path}: no annotated people (no annorect has annopoints); expected {RELEASE_LAYOUT}")
    return rows.build()


class _ReleaseRows:
    """Accumulates per-person Python values, then builds the columnar record once."""

    def __init__(self) -> None:
        self.image_names: list[str] = []
        self.image_index: list[int] = []
        self.person_index: list[int] = []
        self.is_train: list[bool] = []
        self.objpos: list[tuple[float, float]] = []
        self.scale_raw: list[float] = []
        self.head_box: list[tuple[float, float, float, float]] = []
        self.keypoints: list[np.ndarray] = []
        self.annotated: list[np.ndarray] = []
        self.is_visible: list[np.ndarray] = []
        self.parse_problems: list[list[str]] = []

    def add(self, i, j, name, train, rect, annopoints, *, name_required: bool) -> None:
        problems: list[str] = []
        if name_required and not name:
            problems.append("no image name")
        nan = math.nan

        def num(obj, attr):
            value = number(getattr(obj, attr, None))
            return nan if value is None else value

        objpos = getattr(rect, "objpos", None)
        self.objpos.append((num(objpos, "x"), num(objpos, "y")) if is_struct(objpos) else (nan, nan))
        self.scale_raw.append(num(rect, "scale"))
        self.head_box.append((num(rect, "x1"), num(rect, "y1"), num(rect, "x2"), num(rect, "y2")))

        keypoints = np.zeros((NUM_JOINTS, 2))
        annotated = np.zeros(NUM_JOINTS, bool)
        visible = np.zeros(NUM_JOINTS, np.uint8)
        for k, point in enumerate(items(getattr(annopoints, "point", None))):
            if not is_struct(point):
                problems.append(f"point({k + 1}) is not a struct")
                continue
            joint = number(getattr(point, "id", None))
            if joint is None or not float(joint).is_integer() or not 0 <= joint < NUM_JOINTS:
                problems.append(f"point({k + 1}) has joint id {joint} outside 0..{NUM_JOINTS - 1}")
                continue
            joint = int(joint)
            x, y = number(getattr(point, "x", None)), number(getattr(point, "y", None))
            if x is None or y is None:
                problems.append(f"joint {joint} has no x/y")
                continue
            if annotated[joint]:
                problems.append(f"joint {joint} annotated twice")
            keypoints[joint] = (x, y)
            annotated[joint] = True
            flag = number(getattr(point, "is_visible", None))
            # Empty flag (the release leaves it empty for head top / upper neck): visible,
            # as the stacked-hourglass annotations record it.
            visible[joint] = 1 if flag is None or not np.isfinite(flag) else int(flag != 0)

        self.image_names.append(name)
        self.image_index.append(i)
        self.person_index.append(j)
        self.is_train.append(train)
        self.keypoints.append(keypoints)
        self.annotated.append(annotated)
        self.is_visible.append(visible)
        self.parse_problems.append(problems)

    def build(self) -> MPIIPeople:
        center, scale = hourglass_box(
            np.array(self.objpos, dtype=np.float64), np.array(self.scale_raw, dtype=np.float64)
        )
        head_box = np.array(self.head_box, dtype=np.float64)
        people = MPIIPeople(
            image_names=self.image_names,
            image_index=np.array(self.image_index, dtype=np.int64),
            person_index=np.array(self.person_index, dtype=np.int64),
            center=center,
            scale=scale,
            keypoints=np.stack(self.keypoints),
            annotated=np.stack(self.annotated),
            is_visible=np.stack(self.is_visible),
            head_box=head_box,
            head_size=head_size_from_boxes(head_box),
            is_train=np.array(self.is_train, dtype=bool),
        )
        people.problems = find_problems(people, self.parse_problems, head_box_known=True)
        return people


def hourglass_box(objpos: np.ndarray, scale_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The release's (N,2) objpos and (N,) scale -> (center, scale) in the hourglass convention."""
    center = np.array(objpos, dtype=np.float64)
    center[:, 1] += HOURGLASS_CENTER_SHIFT * scale_raw
    return center, HOURGLASS_SCALE_FACTOR * np.asarray(scale_raw, dtype=np.float64)


def find_problems(people: MPIIPeople, extra: list[list[str]] | None = None, *, head_box_known: bool) -> list[str]:
    """One short reason per record ('' when fine): the checks every MPII source shares."""
    n = len(people)
    reasons = [list(e) for e in extra] if extra is not None else [[] for _ in range(n)]
    annotated = people.annotated
    checks = [
        (~annotated.any(axis=1), "no annotated joints"),
        ((~np.isfinite(people.keypoints).all(axis=2) & annotated).any(axis=1), "non-finite joint coordinates"),
        (~np.isfinite(people.center).all(axis=1), "centre missing or not finite"),
        (~np.isfinite(people.scale), "scale missing or not finite"),
        (np.isfinite(people.scale) & (people.scale <= 0), "zero or negative scale"),
    ]
    if head_box_known:
        box = people.head_box
        finite_box = np.isfinite(box).all(axis=1)
        checks += [
            (~finite_box, "head box missing or not finite"),
            (finite_box & ((box[:, 2] == box[:, 0]) | (box[:, 3] == box[:, 1])), "zero-size head box"),
        ]
    else:
        size = people.head_size
        checks += [
            (~np.isfinite(size), "head size missing or not finite"),
            (np.isfinite(size) & (size <= 0), "zero-size head box"),
        ]
    for mask, reason in checks:
        for row in np.flatnonzero(mask):
            reasons[row].append(reason)
    for row, name in enumerate(people.image_names):
        if unsafe_image_name(name):
            reasons[row].append(f"unsafe image name {name!r} (absolute or with '..')")
    return ["; ".join(r) for r in reasons]


# --------------------------------------------------------------------------- hourglass HDF5


def read_hourglass_h5(path, *, is_train: bool) -> MPIIPeople:
    """The stacked-hourglass annotation HDF5 (train.h5 / valid.h5).

    It stores no head box (head_box is NaN) but the PCKh unit directly (`normalize`);
    `annotated` is part != (0, 0) (MPII pixels are 1-based, so (0,0) is never a joint).
    """
    import h5py

    path = Path(path)
    expected = f"an HDF5 file with datasets {', '.join(HOURGLASS_DATASETS)}"
    check_file(path, expected)
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 file ({exc}); expected {expected}") from None
    with h5:
        missing = [k for k in HOURGLASS_DATASETS if k not in h5]
        if missing:
            raise UserError(f"{path}: missing datasets {missing} (found {sorted(h5)}); expected {expected}")
        data = {k: h5[k][()] for k in HOURGLASS_DATASETS}
    n = len(data["imgname"])
    shapes = {
        "imgname": (n,),
        "center": (n, 2),
        "scale": (n,),
        "part": (n, NUM_JOINTS, 2),
        "visible": (n, NUM_JOINTS),
        "normalize": (n,),
        "index": (n,),
        "person": (n,),
    }
    for key, shape in shapes.items():
        if data[key].shape != shape:
            raise UserError(f"{path}: dataset {key} has shape {data[key].shape}, expected {shape}")
    if n == 0:
        raise UserError(f"{path}: no people; expected {expected}")
    part = data["part"].astype(np.float64)
    annotated = (part != 0).any(axis=2)
    people = MPIIPeople(
        image_names=[text(name) for name in data["imgname"]],
        image_index=data["index"].astype(np.int64),
        person_index=data["person"].astype(np.int64),
        center=data["center"].astype(np.float64),
        scale=data["scale"].astype(np.float64),
        keypoints=part,
        annotated=annotated,
        is_visible=(data["visible"] != 0).astype(np.uint8),
        head_box=np.full((n, 4), np.nan),
        head_size=data["normalize"].astype(np.float64),
        is_train=np.full(n, bool(is_train)),
    )
    people.problems = find_problems(people, head_box_known=False)
    return people
