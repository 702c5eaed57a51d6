"""FLIC (Frames Labeled In Cinema, Sapp & Taskar 2013) annotations: the release's `examples.mat`.

The file is a MATLAB v5 struct array, one element per example, with the fields
`poselet_hit_idx, moviename, coords, filepath, imgdims, currframe, torsobox, istrain, istest`
(the release adds `isbad` and `isunchecked`). The release names the variable `examples`; a
file holding the same struct under another name (e.g. `flic_anno`) is read too, provided it
holds exactly one struct array with `coords`.

Conventions kept (documented choices):
- `coords` (2, 29): row 0 x, row 1 y, NaN where a slot is not annotated. The release
  annotates 11 slots (1-based): 1 L shoulder, 2 L elbow, 3 L wrist, 4 R shoulder, 5 R elbow,
  6 R wrist, 7 L hip, 10 R hip, 13 L eye, 14 R eye, 17 nose; they are `joints.FLIC` in this
  order (`SLOTS`), the other 18 are ignored. Left and right are the person's, as annotated;
- pixel origin 1.0: FLIC was annotated in MATLAB, like LSP and MPII;
- what a joint's flags mean: FLIC has no flag. A slot with finite coordinates is labelled
  (`visible` 1); a NaN slot is missing (`visible` 0; `read_examples` keeps the NaN, a store
  (0, 0)): no loss, never a torso joint. `eval_pck.m` would count a NaN point as missed;
  `pck_torso` does so only where every scored point is labelled (the real release's 11 slots
  always are), and otherwise scores the labelled points and says so. No joint is `occluded`;
- splits: `train` = `istrain`, `val` = `istest` (the 1,016 test examples), `all` = every
  example; examples with `isbad` = 1 are dropped when the field exists;
- person box: FLIC has none (the frames show one upper body). It is the bounding box of the
  torso box corners (`torsobox` [x1 y1 x2 y2], the release's detector box) and the annotated
  joints: centre = the box centre, scale = its longer side x `SCALE_MARGIN` (1.4) / 200
  (`joints.PERSON_BOX`), the rule used for LSP. The torso box keeps a sane box where joints
  are missing;
- head_size is NaN (FLIC scores by torso size, `pck_torso.pck_torso_evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_pipeline.data.formats.matlab import is_struct, items, load_mat, number, text, variables_found
from pose_pipeline.errors import UserError

PIXEL_ORIGIN = 1.0
SCALE_MARGIN = 1.4  # as lsp.SCALE_MARGIN: the person box rule of LSP
SLOTS = (0, 1, 2, 3, 4, 5, 6, 9, 12, 13, 16)  # 0-based `coords` columns of joints.FLIC
NUM_SLOTS = 29
VARIABLE = "examples"
REQUIRED_FIELDS = ("coords", "filepath", "torsobox", "istrain", "istest")
EXPECTED = (
    "the FLIC release's examples.mat: a struct array (variable `examples`, or one struct "
    "variable of another name) with fields coords (2 x 29), filepath, torsobox, istrain, istest"
)


@dataclass
class FLICExamples:
    variable: str  # the MATLAB variable read
    keypoints: np.ndarray  # (N,11,2) float64, file coordinates (1-based), NaN where not annotated
    torsobox: np.ndarray  # (N,4) x1, y1, x2, y2
    image_names: list[str]
    istrain: np.ndarray  # (N,) bool
    istest: np.ndarray  # (N,) bool
    isbad: np.ndarray | None  # (N,) bool, None when the file has no `isbad`

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def visible(self) -> np.ndarray:
        return np.isfinite(self.keypoints).all(axis=2).astype(np.uint8)


def _struct_variable(path: Path, mat: dict) -> tuple[str, list]:
    """(name, elements) of the FLIC struct: `examples`, else the one struct array in the file."""
    structs = {
        name: items(value)
        for name, value in mat.items()
        if not name.startswith("__") and items(value) and is_struct(items(value)[0])
    }
    if VARIABLE in structs:
        return VARIABLE, structs[VARIABLE]
    if len(structs) == 1:
        return next(iter(structs.items()))
    with_coords = {n: v for n, v in structs.items() if "coords" in v[0]._fieldnames}
    if len(with_coords) == 1:
        return next(iter(with_coords.items()))
    found = ", ".join(f"{n} (struct)" if n in structs else n for n in variables_found(mat))
    raise UserError(f"{path}: no single FLIC struct variable (found {found or 'none'}); expected {EXPECTED}")


def _coords(path: Path, variable: str, index: int, value) -> np.ndarray:
    coords = np.asarray(value, dtype=np.float64) if np.asarray(value).dtype.kind in "biuf" else None
    if coords is None or coords.shape != (2, NUM_SLOTS):
        shape = "not numeric" if coords is None else f"shape {coords.shape}"
        raise UserError(
            f"{path}: {variable}({index + 1}).coords is {shape}; expected (2, {NUM_SLOTS}): "
            f"x and y of the 29 FLIC slots"
        )
    return coords[:, SLOTS].T


def _flag(path: Path, variable: str, index: int, element, field: str) -> bool:
    value = number(getattr(element, field))
    if value not in (0.0, 1.0):
        raise UserError(f"{path}: {variable}({index + 1}).{field} is {getattr(element, field)!r}; expected 0 or 1")
    return value == 1.0


def read_examples(path) -> FLICExamples:
    """Every example of a FLIC annotation file (`examples.mat` or the same struct renamed)."""
    path = Path(path)
    mat = load_mat(path, EXPECTED, squeeze_me=True, struct_as_record=False)
    variable, elements = _struct_variable(path, mat)
    fields = elements[0]._fieldnames
    missing = [f for f in REQUIRED_FIELDS if f not in fields]
    if missing:
        raise UserError(
            f"{path}: variable `{variable}` has no field {', '.join(f'`{f}`' for f in missing)} "
            f"(fields: {', '.join(fields)}); expected {EXPECTED}"
        )
    keypoints = np.stack([_coords(path, variable, i, e.coords) for i, e in enumerate(elements)])
    torsobox = np.full((len(elements), 4), np.nan)
    for i, e in enumerate(elements):
        box = np.asarray(e.torsobox, dtype=np.float64).ravel()
        if box.shape == (4,):
            torsobox[i] = box  # a malformed box stays NaN: the joints alone then span the person
    flags = {
        f: np.array([_flag(path, variable, i, e, f) for i, e in enumerate(elements)], dtype=bool)
        for f in ("istrain", "istest") + (("isbad",) if "isbad" in fields else ())
    }
    return FLICExamples(
        variable,
        keypoints,
        torsobox,
        [text(e.filepath) for e in elements],
        flags["istrain"],
        flags["istest"],
        flags.get("isbad"),
    )


def split_rows(examples: FLICExamples, split: str, path) -> np.ndarray:
    """Rows of `split` (train = istrain, val = istest, all), without the `isbad` examples."""
    good = np.ones(len(examples), bool) if examples.isbad is None else ~examples.isbad
    wanted = {"train": examples.istrain, "val": examples.istest, "all": np.ones(len(examples), bool)}[split]
    rows = np.flatnonzero(wanted & good)
    if len(rows) == 0:
        flag = {"train": "istrain", "val": "istest"}.get(split, "any")
        raise UserError(f"{path}: no {flag} examples (of {len(examples)}) for split {split!r}")
    return rows


def person_boxes(examples: FLICExamples) -> tuple[np.ndarray, np.ndarray]:
    """Centre (N,2) and scale (N,): the bounding box of the torso box and the annotated joints
    (see the module docstring)."""
    from pose_pipeline.data.formats.lsp import person_boxes as box_of_points

    corners = examples.torsobox.reshape(-1, 2, 2)
    points = np.concatenate([np.nan_to_num(examples.keypoints), corners], axis=1)
    known = np.concatenate([examples.visible, np.isfinite(corners).all(axis=2)], axis=1)
    return box_of_points(points, known.astype(np.uint8), SCALE_MARGIN)
