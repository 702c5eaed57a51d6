"""MPII split files: the people of a split named by `RELEASE_img_index` /
`RELEASE_person_index` (1-based), as MPII's `detections.mat` names Tompson et al.'s validation
people; reading one (`read_split`) and taking its people, or the training people outside it,
from `MPIIPeople` (`split_train_val`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pose_pipeline.data.formats.matlab import load_mat, variables_found
from pose_pipeline.data.formats.mpii import MPIIPeople
from pose_pipeline.errors import UserError

SPLIT_LAYOUT = "a MATLAB file with RELEASE_img_index and RELEASE_person_index (1-based, same length)"


def read_split(path) -> tuple[np.ndarray, np.ndarray]:
    """(img_index, person_index), 0-based int64, from RELEASE_img_index / RELEASE_person_index."""
    path = Path(path)
    mat = load_mat(path, SPLIT_LAYOUT, squeeze_me=True, struct_as_record=False)
    missing = [k for k in ("RELEASE_img_index", "RELEASE_person_index") if k not in mat]
    if missing:
        raise UserError(f"{path}: missing {missing} (found {variables_found(mat)}); expected {SPLIT_LAYOUT}")
    arrays = []
    for key in ("RELEASE_img_index", "RELEASE_person_index"):
        try:
            values = np.atleast_1d(np.asarray(mat[key], dtype=np.float64)).ravel()
        except (TypeError, ValueError):
            raise UserError(f"{path}: {key} is not numeric; expected {SPLIT_LAYOUT}") from None
        bad = np.flatnonzero(~np.isfinite(values) | (values < 1) | (values != np.round(values)))
        if bad.size:
            raise UserError(f"{path}: {key}({bad[0] + 1}) = {values[bad[0]]} is not a 1-based index")
        arrays.append(values.astype(np.int64) - 1)
    img_index, person_index = arrays
    if img_index.size != person_index.size:
        raise UserError(
            f"{path}: RELEASE_img_index has {img_index.size} entries, RELEASE_person_index "
            f"{person_index.size}; expected {SPLIT_LAYOUT}"
        )
    if img_index.size == 0:
        raise UserError(f"{path}: the split is empty; expected {SPLIT_LAYOUT}")
    return img_index, person_index


def person_keys(image_index: np.ndarray, person_index: np.ndarray) -> np.ndarray:
    """One int64 key per (image index, person index) pair."""
    return np.asarray(image_index, np.int64) * (1 << 32) + np.asarray(person_index, np.int64)


def locate_people(people: MPIIPeople, img_index, person_index, *, split_file) -> np.ndarray:
    """Rows of `people` holding the (img_index, person_index) pairs (0-based), in pair order.

    Raises UserError naming `split_file` and the first pair (1-based, as in the file) absent.
    """
    keys = person_keys(people.image_index, people.person_index)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    wanted = person_keys(img_index, person_index)
    pos = np.clip(np.searchsorted(sorted_keys, wanted), 0, max(len(keys) - 1, 0))
    found = sorted_keys[pos] == wanted if len(keys) else np.zeros(len(wanted), bool)
    if not found.all():
        k = int(np.flatnonzero(~found)[0])
        raise UserError(
            f"{split_file}: split person {k + 1} (RELEASE_img_index={int(img_index[k]) + 1}, "
            f"RELEASE_person_index={int(person_index[k]) + 1}) is not an annotated person of the "
            f"release ({(~found).sum()} of {len(wanted)} absent)"
        )
    return order[pos]


def select_people(people: MPIIPeople, img_index, person_index, *, split_file) -> MPIIPeople:
    """The split's people, in split order."""
    return people.take(locate_people(people, img_index, person_index, split_file=split_file))


def training_people(people: MPIIPeople, img_index, person_index, *, split_file) -> MPIIPeople:
    """The complement of a split: people of training images (img_train) not in the split."""
    in_split = np.zeros(len(people), bool)
    in_split[locate_people(people, img_index, person_index, split_file=split_file)] = True
    return people.take(people.is_train & ~in_split)


def split_train_val(people: MPIIPeople, split_file) -> tuple[MPIIPeople, MPIIPeople]:
    """(training people, validation people) for a split file such as detections.mat."""
    img_index, person_index = read_split(split_file)
    val = select_people(people, img_index, person_index, split_file=split_file)
    train = training_people(people, img_index, person_index, split_file=split_file)
    return train, val
