"""Leeds Sports Pose (LSP) and LSP-extended `joints.mat` annotations.

Layouts, told apart by the shape of the MATLAB variable `joints`:
- original LSP (2,000 images): `(3, 14, N)` = ([x, y, occluded], joint, image);
  the third row is 1 where the joint is *occluded*;
- LSP-extended (10,000 images): `(14, 3, N)` = (joint, [x, y, visible], image);
  the third row is 1 where the joint is *visible*.
(A `(3, 14, 14)`-like ambiguity cannot arise: 3 != 14.)

What a joint's flag means differs between the two, and the reader follows each
(`visible` = labelled, `occluded` = labelled but hidden; `readers` has the three states):
- original LSP: every joint is labelled. An occluded joint (flag 1) carries the annotator's
  guess of its position inside the image; the reference `eval_pck.m` scores it and
  PyTorch-Pose trains on it, so here it is labelled (`visible` 1) and `occluded` 1;
- LSP-extended: a joint with flag 0 is not labelled at all: its coordinates are a
  placeholder, one coordinate 0 and the other 0 or negative, e.g. (0, -26) or (-53, 0),
  never a position in the person. It is missing (`visible` 0): no loss, never a torso joint, and
  scoring leaves it out (`pck_torso`). No LSP-extended joint is `occluded`.

Conventions kept (documented choices, see `read_joints` / `people`):
- joint order is LSP 14 (`joints.LSP`), coordinates stay as in the file;
- pixel origin 1.0: LSP was annotated in MATLAB, whose pixel (1, 1) is the top-left pixel's
  centre, like MPII. The files do not document it; the sample is consistent with it (of 3,649
  visible joints, 2 lie below 1 and 1 outside the image, i.e. clicks on the border);
- the images are not tight crops, so the person box is derived from the labelled joints:
  centre = centre of their bounding box, scale = max(box width, height) x `SCALE_MARGIN` / 200
  (`joints.PERSON_BOX`).
  `SCALE_MARGIN` = 1.4 makes LSP's scale match MPII's hourglass convention: on the 1,992
  fully annotated people of the MPII validation split, hourglass `scale x 200` is a median
  1.43 x the side of the joints' bounding box;
- head_size is NaN (LSP scores by torso size, `pck_torso.pck_torso_evaluation`);
- image names: `im%04d.jpg` (original LSP) or `im%05d.jpg` (LSP-extended), 1-based. The width
  is chosen by which names exist in the image folder; when neither (or both equally) exist,
  by the layout: 5 digits for the LSP-extended layout or N > 9,999, else 4;
- splits: N = 2,000 (original LSP): first 1,000 `train`, last 1,000 `val` (LSP's test half);
  N = 10,000 (LSP-extended): all `train`, `val` is an error; any other N (e.g. a sample):
  only `all` (train and val are errors naming the rule). `--val-last N` (datasets.*.val_last)
  splits a file of any size: its last N images `val`, the others `train`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import LSP, PERSON_BOX
from pose_pipeline.data.formats.matlab import load_mat, variables_found
from pose_pipeline.errors import UserError

NUM_JOINTS = LSP.num_joints
PIXEL_ORIGIN = 1.0
SCALE_MARGIN = 1.4
ORIGINAL_SIZE = 2000  # LSP: 1,000 train + 1,000 test
EXTENDED_SIZE = 10000  # LSP-extended: all training

# How each layout's unflagged joints are read (recorded in the store's converter attributes)
INVISIBLE_JOINTS = {
    "lsp": "occluded: labelled, a guessed position (scored; trained unless train_occluded is false)",
    "lsp-extended": "missing: placeholder coordinates (neither trained nor scored)",
}

EXPECTED = (
    "a MATLAB v5 file with variable `joints` of shape (3, 14, N) (original LSP: x, y, occluded) "
    "or (14, 3, N) (LSP-extended: x, y, visible), N >= 1"
)


@dataclass
class LSPJoints:
    keypoints: np.ndarray  # (N,14,2) float64, file coordinates (1-based)
    visible: np.ndarray  # (N,14) uint8, 1 = labelled (see the module docstring)
    occluded: np.ndarray  # (N,14) uint8, 1 = labelled but hidden (original layout only)
    layout: str  # "lsp" (3,14,N) or "lsp-extended" (14,3,N)
    flag_problems: list[str]  # '' where the visibility flags are 0/1

    def __len__(self) -> int:
        return len(self.keypoints)


def read_joints(path) -> LSPJoints:
    """`joints.mat` in either layout -> keypoints (N,14,2), visible (labelled) and occluded
    (N,14), each layout's flags read as the module docstring says."""
    path = Path(path)
    mat = load_mat(path, EXPECTED, squeeze_me=False)
    if "joints" not in mat:
        raise UserError(f"{path}: no variable `joints` (found {variables_found(mat)}); expected {EXPECTED}")
    joints = mat["joints"]
    if not isinstance(joints, np.ndarray) or joints.dtype.kind not in "biuf":
        raise UserError(f"{path}: `joints` is not a numeric array; expected {EXPECTED}")
    joints = joints.astype(np.float64)
    if joints.ndim == 2 and joints.shape in ((3, NUM_JOINTS), (NUM_JOINTS, 3)):
        joints = joints[:, :, None]  # MATLAB drops a trailing singleton: one image
    if joints.ndim == 3 and joints.shape[:2] == (3, NUM_JOINTS):
        layout = "lsp"
        keypoints = joints[:2].transpose(2, 1, 0)
        flags = 1.0 - joints[2].T
    elif joints.ndim == 3 and joints.shape[:2] == (NUM_JOINTS, 3):
        layout = "lsp-extended"
        keypoints = joints[:, :2].transpose(2, 0, 1)
        flags = joints[:, 2].T
    else:
        raise UserError(f"{path}: `joints` has shape {joints.shape}; expected {EXPECTED}")
    if joints.shape[2] == 0:
        raise UserError(f"{path}: `joints` has shape {joints.shape}, no images; expected {EXPECTED}")
    good_flags = np.isin(flags, (0.0, 1.0))
    problems = [
        "" if ok.all() else f"visibility flags {sorted(set(f[~ok].tolist()))} are not 0/1"
        for ok, f in zip(good_flags, flags)
    ]
    if layout == "lsp":  # occluded joints are labelled: a guessed position
        visible, occluded = good_flags.astype(np.uint8), (good_flags & (flags == 0)).astype(np.uint8)
    else:  # an invisible joint is a placeholder: missing
        visible, occluded = np.where(good_flags, flags, 0).astype(np.uint8), np.zeros(flags.shape, np.uint8)
    return LSPJoints(np.ascontiguousarray(keypoints), visible, occluded, layout, problems)


def image_name_width(joints: LSPJoints, images: Path | None) -> int:
    """4 (`im0001.jpg`) or 5 (`im00001.jpg`) digits: whichever names exist in `images`,
    else by layout (LSP-extended or N > 9,999 -> 5)."""
    n = len(joints)
    if images is not None and Path(images).is_dir():
        present = {name for name in (p.name for p in Path(images).iterdir()) if name.startswith("im")}
        counts = {w: sum(f"im{i:0{w}d}.jpg" in present for i in range(1, n + 1)) for w in (4, 5)}
        if counts[4] != counts[5]:
            return max(counts, key=counts.get)
    return 5 if joints.layout == "lsp-extended" or n > 9999 else 4


def split_rows(n: int, split: str, path: Path, val_last: int | None = None) -> np.ndarray:
    """Rows of `split` for a file of n images (see the module docstring for the rule); with
    `val_last`, the last val_last images are `val` and the others `train`, whatever n is."""
    if split == "all":
        return np.arange(n)
    if val_last is not None:
        if not 0 < val_last < n:
            raise UserError(f"{path}: --val-last {val_last} leaves no training images of its {n} (use 1 to {n - 1})")
        return np.arange(n - val_last) if split == "train" else np.arange(n - val_last, n)
    if n == ORIGINAL_SIZE:
        half = ORIGINAL_SIZE // 2
        return np.arange(half) if split == "train" else np.arange(half, n)
    if n == EXTENDED_SIZE:
        if split == "train":
            return np.arange(n)
        raise UserError(
            f"{path}: LSP-extended ({n} images) is all training data; it has no val split "
            "(use the original LSP's last 1,000 images, or --split all)"
        )
    raise UserError(
        f"{path}: {n} images is neither original LSP (2,000: first 1,000 train, last 1,000 "
        f"val) nor LSP-extended (10,000: all train), so it has no {split} split; use --split all"
    )


def row_problems(joints: LSPJoints) -> list[str]:
    """Per image: '' or why it cannot be a sample (bad flags, NaN/inf on a labelled joint,
    fewer than two distinct labelled joints to span a person box)."""
    problems = []
    for i in range(len(joints)):
        vis = joints.visible[i] > 0
        bad = vis & ~np.isfinite(joints.keypoints[i]).all(axis=1)
        if joints.flag_problems[i]:
            problems.append(joints.flag_problems[i])
        elif bad.any():
            names = ", ".join(LSP.joints[j] for j in np.flatnonzero(bad))
            problems.append(f"NaN or infinite coordinates on labelled joint(s) {names}")
        elif not vis.any():
            problems.append("no labelled joints")
        elif np.ptp(joints.keypoints[i][vis], axis=0).max() == 0:
            problems.append("the labelled joints span no box (one point)")
        else:
            problems.append("")
    return problems


def person_boxes(
    keypoints: np.ndarray, visible: np.ndarray, margin: float = SCALE_MARGIN
) -> tuple[np.ndarray, np.ndarray]:
    """Centre (N,2) and scale (N,) from the labelled joints' bounding box (NaN where none)."""
    vis = (visible > 0)[..., None]
    with np.errstate(invalid="ignore"):
        lo = np.where(vis, keypoints, np.inf).min(axis=1)
        hi = np.where(vis, keypoints, -np.inf).max(axis=1)
        center = (lo + hi) / 2
        scale = (hi - lo).max(axis=1) * margin / PERSON_BOX
    none = ~vis[..., 0].any(axis=1)
    center[none] = np.nan
    scale[none] = np.nan
    return center, scale


def occluded_stored_missing(attrs: dict, has_occluded: bool) -> bool:
    """Whether a store (its attributes, and whether it has the `occluded` array) is original-layout
    LSP converted before occluded joints were kept labelled: those stores hold them as missing
    (`visible` 0), so they get no loss and are not scored, until converted again."""
    converter = attrs.get("converter") if isinstance(attrs.get("converter"), dict) else {}
    params = converter.get("lsp") if isinstance(converter.get("lsp"), dict) else {}
    return params.get("layout") == "lsp" and not has_occluded
