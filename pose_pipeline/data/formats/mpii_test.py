"""The MPII release's test set: its single persons (what `convert mpii --split test` crops) and
the benchmark's submission file, `pred_keypoints_mpii.mat`, built from predictions on them.

The MPII evaluation toolkit (`evaluatePCKh.m` of evalMPII) loads the variable `pred` from
pred_keypoints_mpii.mat and expects the test annolist, `RELEASE.annolist(RELEASE.img_train
== 0)`: the same images in the same order, every field kept. It flattens `pred` over the rects
that have a non-empty `objpos` and keeps those named in `RELEASE.single_person` of their
image, so the single persons scored are exactly the people read here (test image, rect with
objpos, named in single_person). Each such rect gets `annopoints.point(k).{x, y, id}`: `id`
the 0-based MPII joint id (0 r ankle ... 15 l wrist, this project's MPII joint order), `x`,
`y` in the release's own pixels (MATLAB's 1-based convention, which MPII stores and
predictions already use: no conversion).

The release is read here without squeezing (`struct_as_record=True`, MATLAB shapes kept) so
that the annolist written back is the release's own, field for field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import MPII
from pose_pipeline.data.formats.matlab import load_mat, number, text, variables_found
from pose_pipeline.data.formats.mpii import MPIIPeople, hourglass_box
from pose_pipeline.errors import UserError

RELEASE_TEST_LAYOUT = (
    "the MPII release .mat: a RELEASE struct with annolist, img_train (0 = test image) and "
    "single_person (the rects of each image scored as single persons)"
)
SUBMISSION_VARIABLE = "pred"


@dataclass
class TestRelease:
    """The release's test images and their single persons, as stored (MATLAB shapes kept)."""

    path: Path
    annolist: np.ndarray  # (1, N) struct array: the whole release's annolist
    test_images: np.ndarray  # (M,) int64, 0-based annolist indices of the test images, in order
    people: np.ndarray  # (P, 2) int64: 0-based (annolist index, rect index) of the single persons


def _field(value, name: str):
    """A field of a 1x1 struct (record array or record), None where absent or empty."""
    if isinstance(value, np.ndarray) and value.dtype.names is not None and value.size == 1:
        value = value.ravel()[0]
    if not isinstance(value, np.void) or value.dtype.names is None or name not in value.dtype.names:
        return None
    found = value[name]
    return None if isinstance(found, np.ndarray) and found.size == 0 else found


def _rects(entry) -> np.ndarray | None:
    rects = _field(entry, "annorect")
    return rects.ravel() if isinstance(rects, np.ndarray) and rects.dtype.names is not None else None


def load_test_release(path) -> TestRelease:
    """The test images (img_train == 0) of a release and their single persons with an objpos."""
    path = Path(path)
    mat = load_mat(path, RELEASE_TEST_LAYOUT)
    release = mat.get("RELEASE")
    fields = ("annolist", "img_train", "single_person")
    missing = [f for f in fields if _field(release, f) is None] if release is not None else list(fields)
    if missing:
        found = variables_found(mat) if release is None else list(release.dtype.names or ())
        raise UserError(f"{path}: no RELEASE {', '.join(missing)} (found {found}); expected {RELEASE_TEST_LAYOUT}")
    annolist = _field(release, "annolist")
    img_train = np.asarray(_field(release, "img_train"), dtype=np.float64).ravel()
    single_person = _field(release, "single_person").ravel()
    if not (img_train.size == single_person.size == annolist.size):
        raise UserError(
            f"{path}: annolist has {annolist.size} images, img_train {img_train.size}, single_person "
            f"{single_person.size}; expected one each"
        )
    test_images = np.flatnonzero(img_train == 0)
    if test_images.size == 0:
        raise UserError(f"{path}: no test images (img_train is never 0); expected {RELEASE_TEST_LAYOUT}")
    people = []
    for i in test_images:
        rects = _rects(annolist.ravel()[i])
        for r in _single_person_rects(single_person[i], path, i):
            if rects is None or r >= rects.size:
                raise UserError(
                    f"{path}: single_person{{{i + 1}}} names rect {r + 1}, but annolist({i + 1}) has "
                    f"{0 if rects is None else rects.size} rects"
                )
            if _field(rects[r], "objpos") is not None:  # the toolkit scores only rects with objpos
                people.append((i, r))
    return TestRelease(path, annolist, test_images, np.array(people, dtype=np.int64).reshape(-1, 2))


def _single_person_rects(value, path: Path, image: int) -> list[int]:
    """single_person{i}: 1-based rect indices (empty where no person of the image is scored)."""
    indices = np.asarray(value if value is not None else [], dtype=np.float64).ravel()
    bad = indices[~np.isfinite(indices) | (indices < 1) | (indices != np.round(indices))]
    if bad.size:
        raise UserError(f"{path}: single_person{{{image + 1}}} holds {bad[0]}, not a 1-based rect index")
    return sorted(int(r) - 1 for r in indices)


def read_test_people(path) -> MPIIPeople:
    """The single persons of the test images as people without joints (keypoints 0, nothing
    annotated, no head box): centre and scale from objpos and scale, hourglass convention."""
    release = load_test_release(path)
    if len(release.people) == 0:
        raise UserError(f"{path}: no single person with an objpos on the {release.test_images.size} test images")
    entries = release.annolist.ravel()
    names, objpos, scale_raw, problems = [], [], [], []
    for i, r in release.people:
        rect = _rects(entries[i])[r]
        position = _field(rect, "objpos")
        xy = [number(_field(position, axis)) for axis in ("x", "y")]
        scale = number(_field(rect, "scale"))
        names.append(text(_field(_field(entries[i], "image"), "name")))
        objpos.append([np.nan if v is None else v for v in xy])
        scale_raw.append(np.nan if scale is None else scale)
        problems.append(
            "; ".join(
                p
                for p, bad in (
                    ("no image name", not names[-1]),
                    ("objpos without x/y", None in xy),
                    ("no scale", scale is None),
                )
                if bad
            )
        )
    n = len(names)
    center, scale = hourglass_box(np.array(objpos, dtype=np.float64), np.array(scale_raw, dtype=np.float64))
    return MPIIPeople(
        image_names=names,
        image_index=release.people[:, 0].copy(),
        person_index=release.people[:, 1].copy(),
        center=center,
        scale=scale,
        keypoints=np.zeros((n, MPII.num_joints, 2)),
        annotated=np.zeros((n, MPII.num_joints), bool),
        is_visible=np.zeros((n, MPII.num_joints), np.uint8),
        head_box=np.full((n, 4), np.nan),
        head_size=np.full(n, np.nan),
        is_train=np.zeros(n, bool),
        problems=problems,
    )


# --------------------------------------------------------------------------- the submission


def submission_annolist(
    release: TestRelease,
    source_index: np.ndarray,
    preds: np.ndarray,
    image_names: list[str] | None = None,
    what: str = "predictions",
) -> np.ndarray:
    """`pred`: the test annolist with each single person's predicted joints as annopoints.

    `source_index` (N,2) names each prediction's person as (annolist index, rect index),
    0-based, as a store converted with `--split test` records it; `preds` (N,16,2) in MPII
    joint order and the release's pixels. Every single person must be predicted exactly
    once, else UserError naming `what` (an incomplete submission would score its gaps as
    misses).
    """
    source_index = np.asarray(source_index, dtype=np.int64).reshape(-1, 2)
    preds = np.asarray(preds, dtype=np.float64)
    row_of = _prediction_rows(release, source_index, preds, what)
    entries = release.annolist.ravel()
    pred = release.annolist[..., release.test_images].copy()  # (1, M), the release's own fields
    flat = pred.reshape(-1)
    by_image: dict[int, dict[int, int]] = {}  # annolist index -> {rect index: prediction row}
    for (i, r), k in row_of.items():
        by_image.setdefault(i, {})[r] = k
    for m, i in enumerate(release.test_images):
        people = by_image.get(int(i))
        if not people:
            continue
        name = text(_field(_field(entries[i], "image"), "name"))
        if image_names is not None:
            for k in people.values():
                if image_names[k] != name:
                    raise UserError(
                        f"{what}: sample {k} is image {image_names[k]!r}, but its person "
                        f"annolist({i + 1}) is image {name!r} in {release.path}"
                    )
        flat[m]["annorect"] = _rects_with_points(entries[i]["annorect"], {r: preds[k] for r, k in people.items()})
    return pred


def _prediction_rows(release: TestRelease, source_index: np.ndarray, preds: np.ndarray, what: str) -> dict:
    """{(annolist index, rect index): prediction row}, once every test single person of
    `release` is checked to be predicted exactly once (else UserError naming `what`)."""
    if preds.shape != (len(source_index), MPII.num_joints, 2):
        raise UserError(
            f"{what}: {preds.shape} predictions for {len(source_index)} people; expected "
            f"({len(source_index)}, {MPII.num_joints}, 2)"
        )
    row_of = {(int(i), int(r)): k for k, (i, r) in enumerate(source_index)}
    if len(row_of) != len(source_index):
        raise UserError(f"{what}: a person is predicted twice ({len(source_index) - len(row_of)} duplicates)")
    wanted = {(int(i), int(r)) for i, r in release.people}
    extra = sorted(set(row_of) - wanted)
    if extra:
        i, r = extra[0]
        raise UserError(
            f"{what}: person annolist({i + 1}).annorect({r + 1}) is not a single person of a test "
            f"image of {release.path} ({len(extra)} such)"
        )
    absent = sorted(wanted - set(row_of))
    if absent:
        i, r = absent[0]
        raise UserError(
            f"{what}: {len(absent)} of the {len(wanted)} test single persons of {release.path} have no "
            f"prediction, first annolist({i + 1}).annorect({r + 1}); convert the test split with "
            f"--on-bad-sample error to see why one was left out"
        )
    return row_of


def _rects_with_points(rects: np.ndarray, points: dict[int, np.ndarray]) -> np.ndarray:
    """A copy of an image's rect array with `annopoints` (added where the release has no such
    field, empty for the rects not predicted) holding `points` {rect index: (16,2)}."""
    names = list(rects.dtype.names) + ([] if "annopoints" in rects.dtype.names else ["annopoints"])
    out = np.empty(rects.shape, dtype=[(name, object) for name in names])
    flat_in, flat_out = rects.reshape(-1), out.reshape(-1)
    for r in range(flat_in.size):
        for name in names:
            flat_out[r][name] = flat_in[r][name] if name in rects.dtype.names else np.zeros((0, 0))
    for r, joints in points.items():
        point = np.empty((1, MPII.num_joints), dtype=[("x", object), ("y", object), ("id", object)])
        for k in range(MPII.num_joints):
            point[0, k] = (float(joints[k, 0]), float(joints[k, 1]), float(k))
        annopoints = np.empty((1, 1), dtype=[("point", object)])
        annopoints[0, 0] = (point,)
        flat_out[r]["annopoints"] = annopoints
    return out


def write_submission(path, pred: np.ndarray) -> None:
    """`pred` as the MATLAB v5 variable the toolkit loads from pred_keypoints_mpii.mat, atomically."""
    import scipy.io

    from pose_pipeline.util.atomic import atomic_output

    with atomic_output(path) as tmp, open(tmp, "wb") as f:  # a file object: savemat would append .mat to a name
        scipy.io.savemat(f, {SUBMISSION_VARIABLE: pred}, format="5", long_field_names=True, do_compression=True)
