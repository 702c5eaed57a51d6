"""Reading original images: what convert and infer crop from and what plots draw on.

One cut for both (`ImageSource.canvas`): a person's canvas is warped from the image decoded at
the reduced size the crop allows (`jpeg_reduction`), so that infer's canvas of a person equals
the store's crop byte for byte. Its own module so that plots (a late stage) need not import
convert (an early one) to read an image.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import threading
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from pose_pipeline.core import geometry


def unsafe_image_name(name: str) -> bool:
    """Whether an annotation's image name would leave the image folder: absolute, with a drive
    or with '..', read as a POSIX and as a Windows path (annotation files made on Windows name
    images so). The one rule, which the MPII readers and convert both apply."""
    if not name:
        return False
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return True
    return False


def load_image(path: Path) -> tuple[np.ndarray | None, str]:
    """(RGB image, "") or (None, reason) for a missing, truncated or undecodable file."""
    data, problem = read_image_file(path)
    return (None, problem) if data is None else decode_image(data, path)


def read_image_file(path: Path) -> tuple[bytes | None, str]:
    """(the file's bytes, "") or (None, reason) for a missing, unreadable or empty file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"missing image {path}"
    except OSError as exc:
        return None, f"unreadable image {path}: {exc.strerror}"
    if not data:
        return None, f"empty image file {path}"
    return data, ""


# imdecode flags for RGB output (libjpeg converts to RGB itself: bit-identical to BGR + cvtColor,
# without the full-frame pass) at 1/reduce of the size (JPEG DCT scaling)
_REDUCED = {2: "IMREAD_REDUCED_COLOR_2", 4: "IMREAD_REDUCED_COLOR_4", 8: "IMREAD_REDUCED_COLOR_8"}


def decode_flags(reduce: int = 1) -> int:
    import cv2

    if reduce == 1:
        return cv2.IMREAD_COLOR_RGB
    return (getattr(cv2, _REDUCED[reduce]) & ~cv2.IMREAD_COLOR) | cv2.IMREAD_COLOR_RGB


def decode_image(data: bytes, path: Path, reduce: int = 1) -> tuple[np.ndarray | None, str]:
    """(RGB image, "") or (None, reason) for a truncated, corrupt or undecodable file. `reduce`
    2, 4 or 8 decodes a JPEG at that fraction of its size (pixel i covers full-size pixels
    [reduce*i, reduce*(i+1)): `geometry.resize_affine(1, reduce)` maps it to full size)."""
    import cv2

    # libjpeg decodes a truncated file with a warning and grey rows; the end marker tells.
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        return None, f"truncated JPEG {path}"
    with libjpeg_warnings() as warnings:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), decode_flags(reduce))
    if image is None:
        return None, f"undecodable image {path}"
    damage = [line for line in warnings() if line.startswith(LIBJPEG_DAMAGE)]
    if damage:
        # libjpeg still decodes a JPEG damaged in the middle, into garbage pixels, and says so
        # only on stderr: such an image is bad, not a sample.
        return None, f"corrupt JPEG {path}: {'; '.join(damage)}"
    return image, ""


LIBJPEG_DAMAGE = ("Corrupt JPEG data", "Premature end of JPEG file")
# fd 2 is the process's: one capture at a time (what other threads write meanwhile is caught
# too, and written on afterwards, not lost)
_CAPTURE = threading.Lock()


@contextlib.contextmanager
def libjpeg_warnings():
    """Catch what native code writes to stderr (file descriptor 2) meanwhile, where libjpeg
    writes its warnings past sys.stderr; yields a function returning the lines. Lines that are
    not libjpeg damage reports are written on to stderr."""
    with _CAPTURE:
        captured = _capture_file()
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        lines: list[str] = []
        try:
            yield lambda: lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            lines += [line.strip() for line in _drain(captured).decode(errors="replace").splitlines() if line.strip()]
            for line in lines:
                if not line.startswith(LIBJPEG_DAMAGE):
                    print(line, file=sys.stderr)


_capture: tuple[int, object] | None = None  # (pid, its temporary file)


def _capture_file():
    """One temporary file per process, emptied after each capture: a new one per image cost more
    than the rest of the capture. A forked worker makes its own: the parent's offset is shared."""
    global _capture
    if _capture is None or _capture[0] != os.getpid():
        _capture = (os.getpid(), tempfile.TemporaryFile())
    return _capture[1]


def _drain(captured) -> bytes:
    """What was written to `captured` since it was last drained; it is left empty."""
    size = os.fstat(captured.fileno()).st_size
    if not size:
        return b""
    data = os.pread(captured.fileno(), size, 0)
    os.ftruncate(captured.fileno(), 0)
    os.lseek(captured.fileno(), 0, os.SEEK_SET)  # fd 2 wrote through this offset: else a hole
    return data


def jpeg_shape(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, read without decoding; None for anything
    else, and for a JPEG with an Exif segment (OpenCV turns it by its orientation tag)."""
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 9 < len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == 0xE1 and data[at + 4 : at + 8] == b"Exif":
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = int.from_bytes(data[at + 5 : at + 7], "big"), int.from_bytes(data[at + 7 : at + 9], "big")
            return (height, width) if height and width else None  # height 0: set later (DNL)
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        at += 2 + length
    return None


def jpeg_reduction(affine: np.ndarray) -> int:
    """The largest decode reduction (1, 2, 4 or 8) at which one crop pixel still spans at least
    one decoded pixel in every direction: the crop never magnifies what was reduced."""
    (a, b, _), (c, d, _) = np.asarray(affine, dtype=np.float64).tolist()
    # the largest singular value of [[a, b], [c, d]] (crop pixels per image pixel, at most), in
    # closed form: exact for a scaled rotation, and 1 µs per crop where an SVD took 14
    stretch = (math.hypot(a + d, c - b) + math.hypot(a - d, c + b)) / 2
    reduce = 1
    while reduce < 8 and 2 * reduce * stretch <= 1:
        reduce *= 2
    return reduce


class ImageSource:
    """An image decoded at the sizes asked for (`decoded`), and the canvases cut from it."""

    reducible = False  # whether `decoded` can give 1/2, 1/4 and 1/8 of the size

    def decoded(self, reduce: int = 1) -> tuple[np.ndarray | None, str, int]:
        raise NotImplementedError

    def canvas(
        self, affine: np.ndarray, canvas_size: int, reduced_decode: bool, out: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, str]:
        """(the canvas warped by `affine`, "") or (None, why the image cannot be decoded); into
        `out` if given. With `reduced_decode` from the image decoded at the smallest reduced
        size that still has the crop's resolution (`jpeg_reduction`), the affine composed with
        that scaling: the same image area, area-averaged instead of aliased."""
        reduce = jpeg_reduction(affine) if reduced_decode and self.reducible else 1
        image, problem, reduce = self.decoded(reduce)
        if image is None:
            return None, problem
        to_canvas = affine if reduce == 1 else geometry.compose(affine, geometry.resize_affine(1, reduce))
        return geometry.warp_image(image, to_canvas, canvas_size, out=out), ""


class SourceImage(ImageSource):
    """An original image file read once and decoded at the sizes asked for (MPII images often
    hold several people, whose crops may want different JPEG reductions); a JPEG reduced by its
    DCT scaling."""

    def __init__(self, path: Path):
        self.path = path
        self.data, self.problem = read_image_file(path)
        self.jpeg_shape = jpeg_shape(self.data) if self.data is not None else None
        self._decoded: dict[int, tuple[np.ndarray | None, str, int]] = {}
        self.reducible = self.jpeg_shape is not None

    def decoded(self, reduce: int = 1) -> tuple[np.ndarray | None, str, int]:
        """(RGB image, "", the reduction it has) or (None, reason, reduce); `reduce` > 1 only
        for a JPEG whose frame header was read (`jpeg_shape`)."""
        if self.data is None:
            return None, self.problem, reduce
        if reduce > 1 and self.jpeg_shape is None:
            raise ValueError(f"{self.path}: a reduced decode needs a JPEG frame header")
        if reduce not in self._decoded:
            image, problem = decode_image(self.data, self.path, reduce)
            expected = tuple(-(-np.array(self.jpeg_shape or (0, 0)) // reduce))
            if image is not None and reduce > 1 and image.shape[:2] != expected:
                self._decoded[reduce] = self.decoded(1)  # not scaled as libjpeg does: use the full size
            else:
                self._decoded[reduce] = image, problem, reduce
        return self._decoded[reduce]

    def shape(self) -> tuple[int, ...] | None:
        """The full-size (height, width): the decoded image's, else the frame header's."""
        if self.jpeg_shape is not None and 1 not in self._decoded:
            return self.jpeg_shape
        image = self.decoded(1)[0]
        return None if image is None else image.shape[:2]


class ArrayImage(ImageSource):
    """An image already in memory (a video frame, RGB), reduced by area averaging by exactly the
    factor asked: padded to a multiple of it by edge replication, so that reduced pixel i covers
    pixels [reduce*i, reduce*(i+1)) as a JPEG's DCT scaling does (`geometry.resize_affine(1,
    reduce)` maps it exactly; a non-integer ratio at the edge would shift the grid)."""

    reducible = True

    def __init__(self, image: np.ndarray):
        self.image = image
        self._decoded: dict[int, np.ndarray] = {1: image}

    def decoded(self, reduce: int = 1) -> tuple[np.ndarray, str, int]:
        """(the image area-averaged by `reduce`, "", reduce)."""
        import cv2

        if reduce not in self._decoded:
            height, width = self.image.shape[:2]
            bottom, right = -height % reduce, -width % reduce
            padded = cv2.copyMakeBorder(self.image, 0, bottom, 0, right, cv2.BORDER_REPLICATE)
            size = ((width + right) // reduce, (height + bottom) // reduce)
            self._decoded[reduce] = cv2.resize(padded, size, interpolation=cv2.INTER_AREA)
        return self._decoded[reduce], "", reduce

    def shape(self) -> tuple[int, ...]:
        return self.image.shape[:2]
