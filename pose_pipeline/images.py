"""Reading original images: what convert crops from and what plots draw on.

Its own module so that plots (a late stage) need not import convert (an early one) to
read an image.
"""

from __future__ import annotations

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
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None, f"undecodable image {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), ""
