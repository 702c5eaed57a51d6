"""Reading original images: what convert crops from and what plots draw on.

Its own module so that plots (a late stage) need not import convert (an early one) to
read an image.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np


def load_image(path: Path) -> tuple[np.ndarray | None, str]:
    """(RGB image, "") or (None, reason) for a missing, truncated or undecodable file."""
    import cv2

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"missing image {path}"
    except OSError as exc:
        return None, f"unreadable image {path}: {exc.strerror}"
    if not data:
        return None, f"empty image file {path}"
    # libjpeg decodes a truncated file with a warning and grey rows; the end marker tells.
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        return None, f"truncated JPEG {path}"
    with libjpeg_warnings() as warnings:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None, f"undecodable image {path}"
    damage = [line for line in warnings() if line.startswith(LIBJPEG_DAMAGE)]
    if damage:
        # libjpeg still decodes a JPEG damaged in the middle, into garbage pixels, and says so
        # only on stderr: such an image is bad, not a sample.
        return None, f"corrupt JPEG {path}: {'; '.join(damage)}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), ""


LIBJPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")
# fd 2 is the process's: one capture at a time (what other threads write meanwhile is caught
# too, and written on afterwards, not lost)
_CAPTURE = threading.Lock()


@contextlib.contextmanager
def libjpeg_warnings():
    """Catch what native code writes to stderr (file descriptor 2) meanwhile, where libjpeg
    writes its warnings past sys.stderr; yields a function returning the lines. Lines that are
    not libjpeg damage reports are written on to stderr."""
    with _CAPTURE, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        lines: list[str] = []
        try:
            yield lambda: lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines += [line.strip() for line in captured.read().decode(errors="replace").splitlines() if line.strip()]
            for line in lines:
                if not line.startswith(LIBJPEG_DAMAGE):
                    print(line, file=sys.stderr)
