"""Rescoring and OKS non-maximum suppression of the people a top-down model finds in detector
boxes, as the standard COCO protocol (SimpleBaseline, HRNet, MMPose's TopDownCocoDataset)
does before COCOeval: pure numpy, so `infer` (below `evaluate` in the layers) can use it.

* `rescore`: box score x the mean of the joint confidences above `keypoint_threshold`
  (their `in_vis_thre`, 0.2), 0 where no joint is above it.
* `oks_nms`: greedy, highest score first; a person whose OKS to one kept is above
  `threshold` (their `oks_thre`, 0.9) is dropped. OKS as their `oks_iou`: every joint counts,
  the area is the mean of the two people's areas, variances (2 sigma)^2.

One deliberate difference: people of equal score keep their input order (a stable sort),
where `argsort()[::-1]` of the reference keeps the later one first; the outcome is then
the same on every platform.
"""

from __future__ import annotations

import numpy as np

from pose_pipeline.core.keypoints import check_keypoints

# COCOeval's keypoint sigmas for COCO's 17 joints, in COCO's order.
COCO_OKS_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)
# The published defaults (HRNet's TEST.IN_VIS_THRE / OKS_THRE, MMPose's vis_thr / oks_thr).
KEYPOINT_SCORE_THRESHOLD = 0.2
OKS_NMS_THRESHOLD = 0.9


def rescore(box_scores, joint_scores, keypoint_threshold: float = KEYPOINT_SCORE_THRESHOLD) -> np.ndarray:
    """(N,) box score x mean of each person's joint scores above `keypoint_threshold` (0 when
    none is): a confident box with a confused pose ranks below one the model is sure of."""
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    joint_scores = np.asarray(joint_scores, dtype=np.float64)
    if joint_scores.ndim != 2 or len(joint_scores) != len(box_scores):
        raise ValueError(f"joint scores: expected shape ({len(box_scores)}, J), got {joint_scores.shape}")
    above = joint_scores > keypoint_threshold
    count = above.sum(axis=1)
    total = np.where(above, joint_scores, 0.0).sum(axis=1)
    return box_scores * np.where(count > 0, total / np.maximum(count, 1), 0.0)


def oks_to(keypoints, one: int, others, areas, sigmas) -> np.ndarray:
    """OKS of person `one` to each person of `others` (indices), as the reference `oks_iou`."""
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    squared = ((keypoints[others] - keypoints[one]) ** 2).sum(axis=-1)  # (M,J)
    # np.spacing(1) as the reference: two zero-area people still give a finite OKS (1 if equal)
    scale = (areas[one] + areas[others])[:, None] / 2.0 + np.spacing(1)
    return np.exp(-squared / variances / scale / 2.0).mean(axis=1)


def oks_nms(keypoints, scores, areas, threshold: float = OKS_NMS_THRESHOLD, sigmas=COCO_OKS_SIGMAS) -> np.ndarray:
    """Indices of the people kept, highest score first: keypoints (N,J,2), scores (N,),
    areas (N,) (each person's box area), sigmas (J,). A person goes when its OKS to a kept,
    higher-scored one exceeds `threshold`; threshold 1 keeps everyone (OKS is at most 1)."""
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    keypoints = check_keypoints(keypoints, "keypoints", num_joints=len(sigmas))
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    if scores.shape != (len(keypoints),) or areas.shape != (len(keypoints),):
        raise ValueError(f"{len(keypoints)} people, {len(scores)} scores and {len(areas)} areas")
    if not (np.isfinite(scores).all() and np.isfinite(areas).all() and (areas >= 0).all()):
        raise ValueError("scores and areas must be finite, areas not negative")
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(best)
        order = order[oks_to(keypoints, best, order, areas, sigmas) <= threshold]
    return np.asarray(keep, dtype=np.int64)
