"""`score` of a COCO keypoint-results JSON: infer's keypoints.json ({"header": ..., "results":
[...]}) or any plain COCO keypoint-results list (image_id, category_id, keypoints [x, y, v] * J,
score), against a COCO annotation file, by COCOeval as it stands (`oks.results_evaluation`): the
people, their scores and the images are the file's own, so the AP is the one COCOeval gives
run directly on it (the number SimpleBaseline, HRNet and MMPose report with detector boxes).
"""

from __future__ import annotations

import math
from pathlib import Path

from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.score_files import read_json

REQUIRED = ("image_id", "keypoints", "score")


def is_keypoint_results(path) -> bool:
    """A prediction file of this kind: by its suffix (the other kinds are .mat and .csv)."""
    return Path(path).suffix.lower() == ".json"


def read_keypoint_results(path) -> list[dict]:
    """The results list of a COCO keypoint-results file (infer's header dropped), each entry
    checked; UserError naming the file and the first bad entry."""
    path = Path(path)
    data = read_json(path, "prediction file", "a COCO keypoint-results JSON")
    results = data.get("results") if isinstance(data, dict) else data
    if not isinstance(results, list):
        raise UserError(f"{path}: expected a COCO keypoint-results list, or infer's {{header, results}}")
    if not results:
        raise UserError(f"{path}: no results (no person to score)")
    for number, entry in enumerate(results):
        problem = _entry_problem(entry)
        if problem:
            raise UserError(f"{path}: result {number}: {problem}")
    # COCOeval matches by category; a results list without one is of people (COCO's category 1)
    return [{"category_id": 1, **entry} for entry in results]


def _entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return "not an object"
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    keypoints = entry["keypoints"]
    if not isinstance(keypoints, list) or not keypoints or len(keypoints) % 3:
        return "keypoints must be a list of x, y, v triples"
    numbers = [*keypoints, entry["score"]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        return "keypoints and score must be finite numbers"
    if not isinstance(entry["image_id"], int) or isinstance(entry["image_id"], bool):
        return f"image_id {entry['image_id']!r} is not a whole number"
    return None


def evaluate_keypoint_results(preds_path, annotation_file, sigmas=None) -> dict:
    """The OKS evaluation of a keypoint-results file against `annotation_file` (`sigmas`:
    one per joint for a joint set of its own, None for COCO's 17)."""
    from pose_pipeline.evaluate.oks import results_evaluation

    results = read_keypoint_results(preds_path)
    joints = {len(entry["keypoints"]) // 3 for entry in results}
    if len(joints) != 1:
        raise UserError(f"{preds_path}: results with different joint counts {sorted(joints)}")
    (num_joints,) = joints
    expected = 17 if sigmas is None else len(sigmas)
    if num_joints != expected:
        raise UserError(
            f"{preds_path}: {num_joints} joints per person, but "
            + ("COCOeval's sigmas are for COCO's 17: give --oks-sigmas" if sigmas is None else f"{expected} sigmas")
        )
    try:
        evaluation = results_evaluation(results, annotation_file, sigmas)
    except (ValueError, KeyError, AssertionError) as exc:  # loadRes asserts on foreign images
        raise UserError(f"scoring {preds_path} against {annotation_file}: {exc}") from None
    return {
        **evaluation,
        "num_samples": len(results),
        "annotations": str(annotation_file),
        "oks_sigmas": None if sigmas is None else [float(s) for s in sigmas],
    }
