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


class PersonSelection:
    """The people of each image rescored and, for COCO's 17 joints, OKS-NMSed, image by image as
    infer finishes them (so the drawings show only the people kept); `record()` says what was
    done over the run, for keypoints.json's header."""

    def __init__(self, joints: JointSet, keypoint_threshold: float, oks_threshold: float):
        self.joints, self.keypoint_threshold, self.oks_threshold = joints, keypoint_threshold, oks_threshold
        self.removed = 0

    def image(self, people: list) -> list:
        """One image's people (infer_outputs.Person), each with its new `score`: those kept, in
        their order."""
        if not people:
            return people
        scores = rescore([p.box_score for p in people], np.stack([p.scores for p in people]), self.keypoint_threshold)
        for person, score in zip(people, scores):
            person.score = float(score)
        if self.joints != COCO:
            return people
        keypoints = np.stack([p.keypoints for p in people])
        areas = [p.bbox[2] * p.bbox[3] for p in people]
        kept = sorted(oks_nms(keypoints, scores, areas, self.oks_threshold, COCO_OKS_SIGMAS))
        self.removed += len(people) - len(kept)
        return [people[k] for k in kept]

    def record(self, total: int) -> dict:
        """What keypoints.json's header records (`total`: the people before suppression)."""
        record = {"rescoring": f"box score x mean joint score above {self.keypoint_threshold}"}
        if self.joints != COCO:
            log.warning("no OKS-NMS: OKS sigmas are known for COCO's 17 joints only, not %s", self.joints.name)
            return {**record, "oks_nms": f"none (no OKS sigmas for the joint set {self.joints.name})"}
        if self.removed:
            log.info("OKS-NMS (threshold %g) removed %d of %d people", self.oks_threshold, self.removed, total)
        return {**record, "oks_nms": {"threshold": self.oks_threshold, "removed": self.removed}}
