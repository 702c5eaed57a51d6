"""Atomic file output: write beside the target, then rename over it.

A killed or failing stage then never leaves a half-written output that Snakemake (or a
reader) would take for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path, suffix: str | None = None):
    """Yield a temporary path in the target's folder; on success rename it to `path`.

    The temporary name keeps the target's suffix (or `suffix`), because some writers pick
    the format from it (matplotlib's savefig). On an exception the temporary is removed
    and the target is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name the writer creates itself, so the file gets the usual umask permissions
    # (mkstemp's are 0600).
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
                         f"{suffix or path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
