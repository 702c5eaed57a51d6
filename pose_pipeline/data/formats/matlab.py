"""Reading MATLAB files: one loader, one set of messages for every `.mat` the pipeline reads.

Every error is a UserError naming the file and what was expected there (`expected`), so a
wrong file (absent, empty, not MATLAB, MATLAB v7.3) is told apart from a wrong layout.
`items`, `number`, `text` and `is_struct` read the values of a file loaded with
`squeeze_me=True, struct_as_record=False` (structs as attribute objects), as the MPII release is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pose_pipeline.errors import UserError


def load_mat(path, expected: str, **options) -> dict:
    """The variables of a MATLAB v5 file (scipy.io.loadmat with `options`, e.g. squeeze_me)."""
    import scipy.io

    path = Path(path)
    check_file(path, expected)
    try:
        return scipy.io.loadmat(path, **options)
    except NotImplementedError:  # scipy's answer to MATLAB v7.3, which is HDF5
        raise UserError(f"{path}: MATLAB v7.3 (HDF5) file; save it with -v7 or earlier; expected {expected}") from None
    except Exception as exc:  # noqa: BLE001 - scipy raises several types for non-MAT input
        raise UserError(f"{path}: not a readable MATLAB v5 file ({exc}); expected {expected}") from None


def mat_variable_classes(path, expected: str) -> dict[str, str]:
    """{name: MATLAB class} of a MATLAB v5 file's variables ('double', 'struct', ...), unread."""
    import scipy.io

    path = Path(path)
    check_file(path, expected)
    try:
        return {name: cls for name, _, cls in scipy.io.whosmat(str(path))}
    except Exception as exc:  # noqa: BLE001 - as in load_mat
        raise UserError(f"{path}: not a readable MATLAB v5 file ({exc}); expected {expected}") from None


def mat_variable_names(path, expected: str) -> set[str]:
    """The names of a MATLAB v5 file's variables, without reading their values."""
    return set(mat_variable_classes(path, expected))


def variables_found(mat: dict) -> list[str]:
    """The variable names of a loaded file, for messages (loadmat adds __header__ and co.)."""
    return sorted(key for key in mat if not key.startswith("__"))


def check_file(path: Path, expected: str) -> None:
    """An absent or empty input file, told as such (before a parser's vaguer message)."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; expected {expected}")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file; expected {expected}")


# --------------------------------------------------------------------------- values


def items(value) -> list:
    """A MATLAB struct array or cell as a list.

    loadmat(squeeze_me=True) turns a 1x1 struct into the struct itself, a 1xN one into an
    object array and an empty one into an empty numeric array.
    """
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return []
        return list(value.ravel())
    return [value]


def number(value) -> float | None:
    """A MATLAB scalar as float; None when empty.

    Handles python/numpy numbers (uint8/uint16 included), 1x1 arrays, strings such as '1'
    (the release stores some is_visible flags as chars). Malformed values give NaN so the
    record is flagged rather than silently dropped.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("latin-1")
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return None
        try:
            return float(stripped)
        except ValueError:
            return math.nan
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size == 1:
            return number(value.ravel()[0])
        return math.nan
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return float(value)
    return math.nan


def text(value) -> str:
    """A MATLAB char array (or 1x1 cell of one) as str; '' for anything else."""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.size == 1:
        return text(value.ravel()[0])
    return ""


def is_struct(value) -> bool:
    """Whether `value` is a MATLAB struct (loadmat's mat_struct)."""
    return hasattr(value, "_fieldnames")
