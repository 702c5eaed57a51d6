"""infer with detector boxes: the people rescored and OKS-NMSed image by image, as the standard
top-down COCO protocol does before COCOeval (`core.person_nms`; SimpleBaseline, HRNet, MMPose's
TopDownCocoDataset): score = box score x mean joint confidence above the keypoint threshold, then
of people whose OKS exceeds the NMS threshold the higher-scored one stays.

The OKS needs a sigma per joint: COCO's 17 have COCOeval's; another joint set is rescored but
not suppressed (said in the log and in keypoints.json's header). A person's area is its box's
w x h (the references use their padded crop's area, 1.25^2 x a box stretched to the model's
aspect ratio, so their NMS suppresses somewhat more readily at the same threshold).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core.joints import COCO, JointSet
from pose_pipeline.core.person_nms import COCO_OKS_SIGMAS, oks_nms, rescore

log = logging.getLogger(__name__)

IMAGESET = schema_defaults("imageset")  # keypoint_score_threshold, oks_nms_threshold: the published ones


def add_person_score_options(p: argparse.ArgumentParser) -> None:
    """infer's --keypoint-score-threshold and --oks-nms-threshold (an imageset's keys)."""
    p.add_argument(
        "--keypoint-score-threshold",
        type=float,
        default=IMAGESET["keypoint_score_threshold"],
        help="with --boxes: a person's score = box score x the mean of its joint scores above this "
        "(0 when none is), as the COCO top-down protocol rescores (in_vis_thre)",
    )
    p.add_argument(
        "--oks-nms-threshold",
        type=float,
        default=IMAGESET["oks_nms_threshold"],
        help="with --boxes: of two people of one image whose OKS is above this, the lower-scored goes "
        "(OKS-NMS, oks_thre; 1 keeps everyone); COCO's 17 joints only",
    )


def rescore_and_suppress(people: list, joints: JointSet, keypoint_threshold: float, oks_threshold: float):
    """(the people kept, in input order, each with its new `score`; what the header records).
    `people`: infer_outputs.Person."""
    if not people:
        return people, {}
    scores = rescore([p.box_score for p in people], np.stack([p.scores for p in people]), keypoint_threshold)
    for person, score in zip(people, scores):
        person.score = float(score)
    record = {"rescoring": f"box score x mean joint score above {keypoint_threshold}"}
    if joints != COCO:
        log.warning("no OKS-NMS: OKS sigmas are known for COCO's 17 joints only, not %s", joints.name)
        return people, {**record, "oks_nms": f"none (no OKS sigmas for the joint set {joints.name})"}
    by_image: dict[int, list[int]] = {}
    for number, person in enumerate(people):
        by_image.setdefault(person.position, []).append(number)
    kept = []
    for numbers in by_image.values():
        keypoints = np.stack([people[n].keypoints for n in numbers])
        areas = [people[n].bbox[2] * people[n].bbox[3] for n in numbers]
        kept.extend(numbers[k] for k in oks_nms(keypoints, scores[numbers], areas, oks_threshold, COCO_OKS_SIGMAS))
    removed = len(people) - len(kept)
    if removed:
        log.info("OKS-NMS (threshold %g) removed %d of %d people", oks_threshold, removed, len(people))
    record = {**record, "oks_nms": {"threshold": oks_threshold, "removed": removed}}
    return [people[n] for n in sorted(kept)], record
