"""What `infer` writes into its output folder (built beside it and swapped in whole,
`atomic.atomic_folder`):

  keypoints.json  {"header": {...}, "results": [...]}: `results` is the COCO keypoint-results
                  list (image_id, file_name, category_id 1, bbox, keypoints [x, y, confidence] * J,
                  score), loadable by pycocotools' `loadRes`; `header` names the joints, the
                  skeleton (0-based joint pairs) and flip pairs (`JointSet.to_dict`) and how
                  the run was made
  keypoints.csv   one row per person and joint: index,image,joint,x,y,score
                  (`predictions.write_predictions_csv`; index = the person's place in `results`)
  skipped.csv     image,box,reason of every image or box left out
  drawings/       with --draw: each image with its skeletons (left/right colours of
                  `joints.SIDE_COLOURS`, drawn by `inspect.draw_skeleton`); for a video one
                  annotated video
  pose-pipeline-infer.json  marks the folder as infer's output (`atomic.write_marker`): the
                  only kind of non-empty folder `infer --out` replaces; it stays when Snakemake
                  deletes the declared outputs before a rerun

Coordinates are original-image array coordinates, which is COCO's keypoint convention: pixel
centres on the integers, (0, 0) the top-left pixel's centre.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import JointSet
from pose_pipeline.errors import UserError
from pose_pipeline.util.output_errors import naming

RESULTS_FILE, TABLE_FILE, SKIPPED_FILE, DRAWINGS = "keypoints.json", "keypoints.csv", "skipped.csv", "drawings"


@dataclass
class Person:
    """One person's result."""

    position: int  # the image's place in the input (image or frame number)
    image: str  # the image's name in the outputs
    image_id: int  # the detection file's id, else the position
    bbox: tuple[float, float, float, float]  # the box cropped (x, y, w, h)
    box_score: float  # the detector's confidence (1 without one)
    keypoints: np.ndarray  # (J,2) original-image array coordinates
    scores: np.ndarray  # (J,) heatmap peak heights
    score: float | None = None  # with detector boxes: rescored (`infer_nms`); else the mean joint score

    def record(self) -> dict:
        """The COCO keypoint-results entry; score = mean joint confidence (as predict's CSV
        ranks people for OKS AP), or with detector boxes the protocol's rescoring."""
        triples = np.concatenate([self.keypoints, self.scores[:, None]], axis=1)
        return {
            "image_id": self.image_id,
            "file_name": self.image,
            "category_id": 1,
            "bbox": [float(v) for v in self.bbox],
            "box_score": float(self.box_score),
            "keypoints": [round(float(v), 3) for v in triples.ravel()],
            "score": float(self.scores.mean() if self.score is None else self.score),
        }


def write_results(
    folder: Path, people: list[Person], skipped: list[tuple[str, str, str]], joints: JointSet, header: dict
) -> None:
    from pose_pipeline.inference.prediction_files import write_predictions_csv

    results = {
        "header": {
            "format": "COCO keypoint results (pose-pipeline infer)",
            **joints.to_dict(),
            "coordinates": "original image pixels, pixel centres on the integers (COCO)",
            **header,
        },
        "results": [p.record() for p in people],
    }
    with naming(folder / RESULTS_FILE):
        (folder / RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    keypoints = np.array([p.keypoints for p in people]).reshape(len(people), joints.num_joints, 2)
    scores = np.array([p.scores for p in people]).reshape(len(people), joints.num_joints)
    write_predictions_csv(folder / TABLE_FILE, keypoints, [p.image for p in people], joints, scores)
    with naming(folder / SKIPPED_FILE), open(folder / SKIPPED_FILE, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "box", "reason"])
        out.writerows(skipped)


def draw_people(image: np.ndarray, people: list[Person], joints: JointSet) -> np.ndarray:
    """A copy of the RGB image with each person's skeleton."""
    from pose_pipeline.data.inspect import draw_skeleton

    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(max(image.shape[:2]) / 300))
    for person in people:
        draw_skeleton(canvas, person.keypoints, np.ones(joints.num_joints, bool), joints, 1, thickness)
    return canvas


class Drawings:
    """--draw: the annotated images under drawings/ (same relative paths), or, for a video,
    drawings/<video stem>.mp4 with every frame in order."""

    def __init__(self, folder: Path, joints: JointSet, video_name: str | None = None, fps: float = 25.0):
        self.folder, self.joints = folder / DRAWINGS, joints
        self.folder.mkdir()
        self.video_name, self.fps = video_name, fps
        self.writer = None

    def add(self, name: str, image: np.ndarray, people: list[Person]) -> None:
        import cv2

        bgr = cv2.cvtColor(draw_people(image, people, self.joints), cv2.COLOR_RGB2BGR)
        if self.video_name is None:
            path = self.folder / name
            if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                path = path.with_name(path.name + ".png")
            path.parent.mkdir(parents=True, exist_ok=True)
            # encoded here and written by Python: cv2.imwrite only says False, not why (a full disk?)
            ok, encoded = cv2.imencode(path.suffix, bgr)
            if not ok:
                raise UserError(f"the drawing of {name}: OpenCV cannot encode it as {path.suffix}")
            with naming(path):
                path.write_bytes(encoded.tobytes())
            return
        if self.writer is None:
            self.video, self.frames = self.folder / (Path(self.video_name).stem + ".mp4"), 0
            self.writer = cv2.VideoWriter(
                str(self.video), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (bgr.shape[1], bgr.shape[0])
            )
            if not self.writer.isOpened():
                _video_refused(self.video, "OpenCV cannot open it for writing an mp4v video")
        self.writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        """Finish the video, and check it: OpenCV's writer says nothing when a write fails (a full
        disk), so a video that does not hold every frame is an error here, not a short file."""
        import sys

        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        if sys.exc_info()[0] is None:  # in a `finally` after another error: that one is the news
            _check_video(self.video, self.frames)


def _check_video(path: Path, frames: int) -> None:
    """UserError (`_video_refused`) unless the video at `path` reads back with `frames` frames."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        found = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    if found != frames:
        _video_refused(path, f"OpenCV wrote {found} of its {frames} frames")


def _video_refused(path: Path, what: str) -> None:
    """Raise the error of a video OpenCV failed to write. OpenCV does not say why, so a write
    of our own to the file asks the system: a full disk, a file-size limit or a read-only place
    then raise as every refused write does (`naming`: the enclosing `writing` makes it one line
    naming the output); anything else is `what`. The file is a failed output either way."""
    probe = b"\0" * (1 << 20)  # more than a frame: past any room or size limit the video stopped at
    with naming(path), open(path, "ab") as f:
        f.write(probe)
        f.flush()
        os.fsync(f.fileno())
    # the path is the temporary folder's, which no one sees: named as it is under --out
    raise UserError(f"{DRAWINGS}/{path.name}, the annotated video: {what} (the cause not reported; nothing replaced)")
