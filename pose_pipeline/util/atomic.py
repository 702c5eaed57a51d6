"""Atomic outputs: write beside the target, then rename (or swap) it into place.

A killed or failing stage then never leaves a half-written output that Snakemake (or a
reader) would take for a finished one, and never loses the output it was replacing.

Folders (stores, demo data) are built as `.NAME.partial-PID` beside the target and swapped
in with one `renameat2(RENAME_EXCHANGE)`: at every instant the path holds either the old
complete folder or the new one. A stage only ever replaces a folder it recognises as its own
output by a mark it wrote there itself (`check_replaceable`): a marker file naming the stage
(`write_marker`, `is_output_of`), or a store's own metadata; file names a user's folder may
also hold prove nothing. Leftovers of killed runs are removed by the next run
(`remove_stale_partials`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pose_pipeline.errors import UserError
from pose_pipeline.util.output_errors import writing


def temporary_beside(path: Path, suffix: str | None = None) -> Path:
    """A fresh name in `path`'s folder for writing it; it keeps the target's suffix (or
    `suffix`), because some writers pick the format from it (matplotlib's savefig). The writer
    creates the file itself, so it gets the usual umask permissions (mkstemp's are 0600)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix or path.suffix}")


@contextlib.contextmanager
def atomic_output(path, suffix: str | None = None):
    """Yield a temporary path in the target's folder (`temporary_beside`); on success rename it
    to `path`. On an exception the temporary is removed and the target is left as it was; a
    write the system refuses (a full disk, a file-size limit) is one line naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path, suffix)
    try:
        with writing({tmp: path}):
            yield tmp
            fsync_path(tmp)
            os.replace(tmp, path)
            fsync_path(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_files_atomic(contents: dict) -> None:
    """Replace the files {path: bytes} together: all are written in full and flushed to
    temporaries beside them first, then renamed into place one after another; on any failure
    before the renames none is replaced and the temporaries are removed.

    Between two renames only folder entries change, no data is written, so nothing but a crash
    of the process or machine in that instant can part them: it would leave the files renamed
    before it new and the others as they were. Snakemake marks a job's outputs incomplete until
    the job ends, so it reruns a job that died there."""
    staged: dict[Path, Path] = {}  # final path: temporary
    try:
        for path, data in contents.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = staged[path] = temporary_beside(path)
            with writing({tmp: path}):
                tmp.write_bytes(data)
                fsync_path(tmp)
        for path, tmp in staged.items():
            with writing({tmp: path}):
                os.replace(tmp, path)
        for folder in {path.parent for path in staged}:
            fsync_path(folder)
    except BaseException:
        for tmp in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise


def fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk: a rename is only as durable as
    what it names (a power cut may otherwise leave an empty file under the new name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


def write_text_atomic(path, text: str) -> None:
    write_files_atomic({path: text.encode("utf-8")})


# ------------------------------------------------------------------------------ folders

_PARTIAL = re.compile(r"\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)$")


def partial_path(path: Path, kind: str = "partial") -> Path:
    """Where a folder for `path` is built (kind 'partial') or parked (kind 'old')."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Remove `.NAME.partial-PID` / `.NAME.old-PID` folders beside `path` whose process is gone.

    A parked `.old-PID` folder is the previous output of a run killed between the two renames
    of the fallback swap: when nothing is at `path`, it is put back instead of removed.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        match = _PARTIAL.match(entry.name)
        if not match or match["name"] != path.name or int(match["pid"]) == os.getpid():
            continue
        if _process_alive(int(match["pid"])):
            continue
        if ".old-" in entry.name and not os.path.lexists(path):
            os.replace(entry, path)
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def marker_name(stage: str) -> str:
    """The file that marks a folder as written by `pose-pipeline STAGE`."""
    return f"pose-pipeline-{stage}.json"


def write_marker(folder: Path, stage: str, fields: dict | None = None) -> None:
    """Mark `folder` as `stage`'s output: the stage, the package version and `fields`."""
    from pose_pipeline import __version__

    record = {"stage": stage, "package_version": __version__, **(fields or {})}
    (Path(folder) / marker_name(stage)).write_text(json.dumps(record) + "\n", encoding="utf-8")


def is_output_of(folder: Path, stage: str) -> bool:
    """True for a folder `stage` wrote (its marker is there). Once a stage's outputs are deleted
    by name (Snakemake does before a rerun), the marker left behind still says whose it is."""
    return (Path(folder) / marker_name(stage)).is_file()


def check_replaceable(
    path: Path, stage: str, is_ours: Callable[[Path], bool] | None = None, missing: str | None = None
) -> None:
    """Refuse to write a folder at `path` unless nothing valuable is there: nothing at all, an
    empty folder, or a folder `stage` wrote. That is recognised by `is_ours`, by default the
    stage's marker file; `missing` names what a folder it refuses lacks, for the message."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        raise UserError(
            f"{path}: exists and is not a folder; the output must be a new or empty folder, or an "
            f"earlier output of pose-pipeline {stage} (choose another --out)"
        )
    is_ours = is_ours or (lambda folder: is_output_of(folder, stage))
    if next(path.iterdir(), None) is None or is_ours(path):
        return
    missing = missing or f"no marker file {marker_name(stage)}"
    raise UserError(
        f"{path}: not written by pose-pipeline {stage} ({missing}); "
        "refusing to replace it, its contents would be lost. Choose a new or empty folder for --out "
        "(or remove this one yourself)"
    )


def check_no_overlap(out: Path, inputs: dict[str, Path | None]) -> None:
    """Refuse an output folder that is, or holds, one of the inputs (it would be replaced)."""
    out = Path(out).resolve()
    for what, path in inputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved == out or out in resolved.parents:
            raise UserError(
                f"--out {out} holds the {what} {path}: writing the output there would delete it; "
                "choose an output folder outside the inputs"
            )


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_folder(new: Path, path: Path) -> None:
    """Put the complete folder `new` at `path`; the folder there before is removed after.

    With an atomic exchange a kill at any instant leaves the old or the new folder at `path`.
    Where the file system has none, the old folder is parked as `.NAME.old-PID` for the
    instant between two renames, and `remove_stale_partials` puts it back if the run dies.
    """
    new, path = Path(new), Path(path)
    fsync_tree(new)
    if not os.path.lexists(path):
        os.replace(new, path)
    elif _exchange(new, path):
        shutil.rmtree(new)  # now the old folder
    else:
        parked = partial_path(path, "old")
        os.replace(path, parked)
        os.replace(new, path)
        shutil.rmtree(parked)
    fsync_path(path.parent)


@contextlib.contextmanager
def atomic_folder(path, stage: str, marker_fields: dict | None = None) -> Iterator[Path]:
    """Yield a fresh temporary folder to fill; on success it gets `stage`'s marker (with
    `marker_fields`) and replaces `path` (see `check_replaceable` for what may be replaced);
    on an exception it is removed, and a write the system refuses is one line naming the
    file's place under `path`."""
    path = Path(path)
    check_replaceable(path, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = partial_path(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with writing({tmp: path}):
            yield tmp
            write_marker(tmp, stage, marker_fields)  # inside before the swap: never a complete folder without it
            check_replaceable(path, stage)  # again: it may have changed meanwhile
            replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------- locks


@contextlib.contextmanager
def exclusive_lock(folder: Path, what: str, lock_file: Path | None = None) -> Iterator[None]:
    """Hold a lock on writing `folder` for the duration, by default the file `folder/.lock`;
    a folder that is replaced whole (a store) is locked by a `lock_file` beside it. flock: the
    kernel releases it when the process dies, so a killed run never leaves a stale lock; a
    second holder is refused naming the first. The file is removed on release."""
    folder = Path(folder)
    lock_path = Path(lock_file) if lock_file is not None else folder / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = _locked_file(lock_path, folder, what)
    try:
        with writing(lock_path):
            os.ftruncate(fd, 0)
            os.write(fd, _lock_holder(what).encode())
        yield
    finally:
        # removed while still held: a process that opened it meanwhile finds it gone (`_locked_file`)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _locked_file(lock_path: Path, folder: Path, what: str) -> int:
    """An open descriptor of `lock_path`, locked; UserError naming the holder if it is held."""
    import fcntl

    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{folder}: {holder} is writing here ({what}); wait for it to finish or choose another output folder"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # locked a file its holder removed on release: take the one there now


def _lock_holder(what: str) -> str:
    import socket
    import time

    return f"{what} pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
