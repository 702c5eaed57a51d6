"""What `infer` reads: the images (one file, a folder searched recursively, or the frames of a
video) and the person boxes in them (a COCO detection-results JSON or a CSV).

The box rule, written once: a box [x, y, w, h] is COCO's, pixel edges on the integers (a
whole W x H image is [0, 0, W, H]). It becomes a person centre and scale by the COCO
converter's own rule (`formats.coco.person_boxes`): centre (x + w/2 - 0.5, y + h/2 - 0.5) in
array coordinates (pixel centres on the integers), scale = max(w, h) x 1.25 / 200, so the
square crop is the box's longer side padded by 1.25; the canvas is then cut around it as
every converter cuts one (`geometry.person_canvas_affine`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_pipeline.data.images import ArrayImage, ImageSource, SourceImage
from pose_pipeline.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
PERSON_CATEGORY = 1  # COCO's category id of people; detections of other categories are left out


@dataclass
class Frame:
    """One image of the input, read but decoded only as its canvases (`ImageSource.canvas`) and
    drawing need."""

    position: int  # its place in the input: image number or video frame number (0-based)
    name: str  # what the outputs call it: the path relative to the input, or "clip.mp4#12"
    source: ImageSource | None  # the file (`SourceImage`) or video frame (`ArrayImage`); None once cut
    image: np.ndarray | None = None  # the full RGB image, kept for drawing


class ImageInput:
    """--images PATH: an image file, a folder (recursively, `IMAGE_EXTENSIONS`), or a video
    (`VIDEO_EXTENSIONS`, frames read with OpenCV)."""

    def __init__(self, path):
        import cv2

        self.path = Path(path)
        if not self.path.exists():
            raise UserError(f"--images {self.path}: no such file or folder")
        self.is_video = self.path.is_file() and self.path.suffix.lower() in VIDEO_EXTENSIONS
        self.names: list[str] = []
        self.fps, self.frame_count = 0.0, 0
        if self.is_video:
            capture = cv2.VideoCapture(str(self.path))
            if not capture.isOpened():
                raise UserError(f"--images {self.path}: not a video OpenCV can read")
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
            self.frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
            capture.release()
            if self.frame_count == 0:
                raise UserError(f"--images {self.path}: the video holds no frames")
        elif self.path.is_dir():
            self.root = self.path
            self.names = folder_images(self.path, broken_links=True)
            if not self.names:
                raise UserError(
                    f"--images {self.path}: no images in this folder or below (looked for "
                    f"{', '.join(IMAGE_EXTENSIONS)})"
                )
        else:
            self.root, self.names = self.path.parent, [self.path.name]

    def __len__(self) -> int:
        return self.frame_count if self.is_video else len(self.names)

    def name_of(self, position: int) -> str:
        return f"{self.path.name}#{position}" if self.is_video else self.names[position]

    def frames(self) -> Iterator[Frame]:
        """The images in input order, read one at a time."""
        if not self.is_video:
            for position, name in enumerate(self.names):
                yield Frame(position, name, SourceImage(self.root / name))
            return
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        try:
            position = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield Frame(position, self.name_of(position), ArrayImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                position += 1
        finally:
            capture.release()


def folder_images(folder: Path, broken_links: bool = False) -> list[str]:
    """The images `infer` reads from a folder: the files below it, at any depth, named with an
    `IMAGE_EXTENSIONS` suffix and neither hidden nor in a hidden folder, as sorted POSIX paths
    relative to it. The workflow's infer rule takes the same list as its input (a new image in a
    subfolder leaves the folder's own time alone, so the folder alone would not rerun it).

    `broken_links`: also a link so named that leads nowhere (dangling, or a loop), as infer
    lists it: its read fails, so it is reported in skipped.csv rather than left out unsaid (a
    workflow input must exist, so the rule's list leaves it out)."""
    found = (
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and (p.is_file() or (broken_links and p.is_symlink() and not p.exists()))
    )
    return sorted(p.as_posix() for p in found if not any(s.startswith(".") for s in p.parts))


@dataclass
class Box:
    bbox: tuple[float, float, float, float]  # x, y, w, h (COCO: pixel edges on the integers)
    score: float  # the detector's confidence (1 where none is given)
    image_id: int | None  # the detection file's image id, kept in the output
    where: str  # "FILE record 3" / "FILE line 5", for messages


def box_problem(bbox, image_shape) -> str:
    """Why a box cannot be cropped from an image of this shape ('' when it can)."""
    x, y, w, h = bbox
    height, width = image_shape[:2]
    if not all(math.isfinite(v) for v in bbox) or w <= 0 or h <= 0:
        return f"box {list(bbox)} is empty or not finite"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"box {list(bbox)} lies outside the {width}x{height} image"
    return ""


def box_value_problem(box: Box) -> str:
    """Why a box's numbers make no person box in any image ('' when they can): a box or score
    that is not finite (keypoints.json, strict JSON, cannot hold it), or a coordinate beyond
    convert's MAX_COORDINATE, the bound of annotated coordinates."""
    from pose_pipeline.data.convert import MAX_COORDINATE

    if not all(math.isfinite(v) for v in box.bbox):
        return f"box {list(box.bbox)} is not finite"
    if max(abs(v) for v in box.bbox) > MAX_COORDINATE:
        return f"box {list(box.bbox)} reaches beyond {MAX_COORDINATE:.0e} pixels"
    if not math.isfinite(box.score):
        return f"score {box.score} is not a finite number"
    return ""


def read_boxes(path, images: ImageInput) -> tuple[dict[int, list[Box]], list[tuple[str, str, str]]]:
    """Boxes by input position, and those that name no image of the input or hold numbers no
    box can (`box_value_problem`) as skipped rows (image, box, reason). A COCO detection-results
    JSON (`.json`: [{image_id or file_name, bbox, score, category_id}]) or a CSV
    `image,x,y,w,h[,score]` (header optional); an image is named by its path relative to
    --images, its file name, its COCO id (the number its file is named by) or, in a video, its
    frame number."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--boxes {path}: no such file")
    entries = _read_json_boxes(path) if path.suffix.lower() == ".json" else _read_csv_boxes(path)
    find = _image_finder(images)
    by_position: dict[int, list[Box]] = {}
    skipped = []
    for image, box in entries:
        position, problem = find(image), box_value_problem(box)
        if problem:
            skipped.append((str(image), json.dumps(list(box.bbox)), f"{box.where}: {problem}"))
        elif position is None:
            what = "frame" if images.is_video else "image"
            reason = f"{box.where}: no {what} {image!r} in {images.path}"
            skipped.append((str(image), json.dumps(list(box.bbox)), reason))
        else:
            by_position.setdefault(position, []).append(box)
    return by_position, skipped


def _image_finder(images: ImageInput):
    """image reference (a name or an id) -> input position, or None."""
    if images.is_video:
        return lambda ref: int(ref) if str(ref).isdigit() and int(ref) < len(images) else None
    positions = {name: i for i, name in enumerate(images.names)}
    by_base: dict[str, list[int]] = {}
    by_id: dict[int, list[int]] = {}
    for i, name in enumerate(images.names):
        base = Path(name)
        by_base.setdefault(base.name, []).append(i)
        if base.stem.isdigit():
            by_id.setdefault(int(base.stem), []).append(i)

    def find(ref):
        if isinstance(ref, int):
            hits = by_id.get(ref, [])
        elif ref in positions:
            return positions[ref]
        else:
            hits = by_base.get(Path(ref).name, []) or (by_id.get(int(ref), []) if ref.isdigit() else [])
        return hits[0] if len(hits) == 1 else None

    return find


def _number(value, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{where}: {what} {value!r} is not a number")
    return float(value)


def _read_json_boxes(path: Path) -> list[tuple[object, Box]]:
    expected = "a COCO detection-results list [{image_id or file_name, bbox: [x, y, w, h], score, category_id}]"
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"--boxes {path}: not a JSON file ({exc}); expected {expected}") from None
    if not isinstance(records, list):
        raise UserError(f"--boxes {path}: the top level is a {type(records).__name__}; expected {expected}")
    entries, other = [], 0
    for i, record in enumerate(records):
        where = f"{path} record {i}"
        if not isinstance(record, dict) or not isinstance(record.get("bbox"), list) or len(record["bbox"]) != 4:
            raise UserError(f"{where}: no bbox [x, y, w, h]; expected {expected}")
        if record.get("category_id", PERSON_CATEGORY) != PERSON_CATEGORY:
            other += 1
            continue
        image = record.get("file_name", record.get("image_id"))
        if not isinstance(image, (str, int)) or isinstance(image, bool):
            raise UserError(f"{where}: no image_id (a number) or file_name; expected {expected}")
        bbox = tuple(_number(v, where, "bbox value") for v in record["bbox"])
        image_id = record.get("image_id") if isinstance(record.get("image_id"), int) else None
        entries.append((image, Box(bbox, _number(record.get("score", 1.0), where, "score"), image_id, where)))
    if other:
        log.info(
            "%s: %d detections of other categories than people (category_id %d) left out", path, other, PERSON_CATEGORY
        )
    return entries


def _read_csv_boxes(path: Path) -> list[tuple[object, Box]]:
    expected = "CSV rows image,x,y,w,h[,score]"
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    except UnicodeDecodeError as exc:
        raise UserError(f"--boxes {path}: not a text file ({exc.reason}); expected {expected}") from None
    entries = []
    for line, row in enumerate(rows, start=1):
        row = [cell.strip() for cell in row]
        if not any(row) or (line == 1 and row[:1] == ["image"]):
            continue  # blank lines and the header
        where = f"{path} line {line}"
        if len(row) not in (5, 6):
            raise UserError(f"{where}: {len(row)} columns; expected {expected}")
        try:
            numbers = [float(cell) for cell in row[1:]]
        except ValueError:
            raise UserError(f"{where}: {','.join(row[1:])!r} are not all numbers; expected {expected}") from None
        score = numbers[4] if len(numbers) == 5 else 1.0
        entries.append((row[0], Box(tuple(numbers[:4]), score, None, where)))
    return entries
