"""A write the system refuses, for want of room (a full disk, a quota, a file-size limit) or of
rights (a read-only or forbidden output): one line naming the file and the cause, never a
traceback. The one place that turns such an error into that line.

The errors come as an OSError from Python, whose file name is the temporary being written (or
none at all: `write()` on an open file names none), or as a RuntimeError from zarrs, which
writes a store's crops in Rust and reports the system's error only in its text, `... (os error
28)`. `writing` names the output the caller is producing instead: the final path, not the
temporary beside it that a reader never sees.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

from pose_pipeline.errors import UserError

# Only a write runs out of room: such an error is always the output's.
ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Reads are refused these too: the output's only when they name it (or name no file).
RIGHTS_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
OUTPUT_ERRNOS = ROOM_ERRNOS | RIGHTS_ERRNOS

_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


class OutputError(UserError):
    """A write the system refused; the message names the output file and the cause."""

    def __init__(self, path, number: int):
        self.path, self.number = Path(path), number
        super().__init__(f"{path}: {os.strerror(number)} (nothing replaced)")


def error_number(exc: BaseException) -> int | None:
    """The system error number of an OSError, or of a zarrs RuntimeError (`(os error N)`)."""
    if isinstance(exc, OSError):
        return exc.errno
    if isinstance(exc, RuntimeError):
        match = _RUST_OS_ERROR.search(str(exc))
        return int(match[1]) if match else None
    return None


def _final_name(filename, targets: dict[Path, Path]) -> Path | None:
    """The output path a file name given by the system stands for: the final path of a
    temporary (or of a file inside a temporary folder); None for a file of no target."""
    name = Path(os.fsdecode(filename))
    for tmp, final in targets.items():
        for written, shown in ((tmp, final), (final, final)):
            if name == written:
                return shown
            if written in name.parents:
                return shown / name.relative_to(written)
    return None


def failed_write(exc: BaseException, targets: dict[Path, Path]) -> OutputError | None:
    """The one-line error for `exc`, raised while writing `targets` ({temporary: final path};
    the first is named when the system names no file), or None when `exc` is no refused write
    of these (it then goes on as it was)."""
    number = error_number(exc)
    if number not in OUTPUT_ERRNOS:
        return None
    filename = getattr(exc, "filename", None)
    shown = _final_name(filename, targets) if filename else next(iter(targets.values()))
    if shown is None:
        if number not in ROOM_ERRNOS:
            return None
        shown = os.fsdecode(filename)
    return OutputError(shown, number)


@contextlib.contextmanager
def writing(targets: dict[Path, Path] | Path) -> Iterator[None]:
    """Turn a refused write inside into `OutputError` naming the output. `targets`: the final
    path, or {temporary (file or folder): final path}."""
    if not isinstance(targets, dict):
        targets = {Path(targets): Path(targets)}
    targets = {Path(tmp): Path(final) for tmp, final in targets.items()}
    try:
        yield
    except OutputError as exc:  # from a `writing` inside, of a file in the temporary folder here
        shown = _final_name(exc.path, targets)
        if shown is None or shown == exc.path:
            raise
        raise OutputError(shown, exc.number) from exc.__cause__
    except (OSError, RuntimeError) as exc:
        error = failed_write(exc, targets)
        if error is None:
            raise
        raise error from exc


@contextlib.contextmanager
def naming(path) -> Iterator[None]:
    """Give an OSError raised inside without a file name (`write()` on an open file names none)
    the name `path`, for an enclosing `writing` to show: for a stage writing several files
    into one output folder."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise


def unnamed_failure(exc: BaseException) -> str | None:
    """The line for a refused write that reached the command line outside `writing` (the file
    the system names, if any, and the cause); None for any other error."""
    number = error_number(exc)
    if number not in OUTPUT_ERRNOS:
        return None
    filename = getattr(exc, "filename", None)
    cause = os.strerror(number)
    return f"{os.fsdecode(filename)}: {cause}" if filename else cause
