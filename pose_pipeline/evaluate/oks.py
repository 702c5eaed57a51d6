"""COCO keypoint AP / AR (OKS), computed by pycocotools' COCOeval (iouType "keypoints"), the
reference implementation, not by code of ours; pycocotools is the optional extra `coco` and
is imported only when `oks_evaluation` runs. COCO's 17 joints are scored with COCOeval's own
sigmas; a file declaring its own keypoints with the sigmas given (`oks_sigmas`, one per joint,
set as COCOeval's `kpt_oks_sigmas`).
"""

from __future__ import annotations

import numpy as np

from pose_pipeline.core.joints import COCO, JointSet
from pose_pipeline.core.keypoints import check_keypoints

OKS_SIGMAS_KEY = "oks_sigmas"  # the dataset's config key (score --oks-sigmas)

# COCOeval.stats of iouType "keypoints", in order.
OKS_ROWS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
OKS_COLUMN = "value"


def oks_evaluation(preds, image_ids, annotation_file, person_scores=None, sigmas=None, annotation_ids=None) -> dict:
    """COCO keypoint AP / AR (OKS, ground-truth boxes) by pycocotools' COCOeval.

    preds (N,J,2) in the annotation file's own pixels; J = 17 (COCO) with COCOeval's sigmas,
    or any J with `sigmas` (J,) given; image_ids (N,) the COCO image of each person;
    person_scores (N,) the detection confidence used to rank (default 1.0 each);
    annotation_ids (N,) the ground-truth annotation of each, whose category the prediction
    takes (default: category 1, COCO's person). Evaluated on the images of `image_ids` only,
    against every person of those images in `annotation_file` (crowds and people without
    keypoints are ignored by COCOeval itself). Rates in percent; None where COCOeval gives
    -1 (no ground truth in that area range). Raises ImportError without pycocotools,
    ValueError on bad input.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO as CocoApi  # not joints.COCO, the joint set

    sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64).reshape(-1)
    preds = check_keypoints(preds, "predictions", num_joints=COCO.num_joints if sigmas is None else len(sigmas))
    image_ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    if image_ids.shape != (len(preds),):
        raise ValueError(f"{len(image_ids)} image ids for {len(preds)} predicted people")
    scores = np.ones(len(preds)) if person_scores is None else np.asarray(person_scores, dtype=np.float64)
    if scores.shape != (len(preds),) or not np.isfinite(scores).all():
        raise ValueError(f"person scores: expected {len(preds)} finite values, got shape {scores.shape}")
    if len(preds) == 0:
        raise ValueError("no predicted people")
    printed = io.StringIO()  # COCO and COCOeval print progress; keep stdout for the table
    with contextlib.redirect_stdout(printed):
        ground_truth = CocoApi(str(annotation_file))
        unknown = sorted(set(image_ids.tolist()) - set(ground_truth.getImgIds()))
        if unknown:
            raise ValueError(f"image ids {unknown[:5]} are not in {annotation_file}")
        categories = (
            [1] * len(preds)
            if annotation_ids is None
            else [ground_truth.anns[int(a)]["category_id"] for a in annotation_ids]
        )
        results = [
            {
                "image_id": int(i),
                "category_id": c,
                "score": float(s),
                "keypoints": np.column_stack([p, np.full(len(p), 2.0)]).ravel().tolist(),
            }
            for p, i, s, c in zip(preds, image_ids, scores, categories)
        ]
        return _run_cocoeval(ground_truth, results, sigmas, sorted(set(image_ids.tolist())), printed)


def results_evaluation(results: list, annotation_file, sigmas=None) -> dict:
    """COCO keypoint AP / AR of a COCO keypoint-results list (what `loadRes` takes: image_id,
    category_id, keypoints [x, y, v] * J, score) by COCOeval with its default parameters, so
    on every image of `annotation_file` (an image without results counts its people as
    missed), exactly as COCOeval run directly on the same file. `sigmas` (J,): for a joint set
    of its own (None: COCOeval's, COCO's 17). Raises ValueError on results the annotation
    file cannot take."""
    import contextlib
    import io

    from pycocotools.coco import COCO as CocoApi

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ground_truth = CocoApi(str(annotation_file))
        unknown = sorted({r["image_id"] for r in results} - set(ground_truth.getImgIds()))
        if unknown:
            raise ValueError(f"image ids {unknown[:5]} are not in {annotation_file}")
        sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64).reshape(-1)
        return _run_cocoeval(ground_truth, results, sigmas, None, printed)


def _run_cocoeval(ground_truth, results: list, sigmas, image_ids, printed) -> dict:
    """COCOeval of `results` (on `image_ids`, None: all the ground truth's), its stats as the
    score table; COCOeval's printing goes to `printed` (the caller redirects stdout)."""
    from pycocotools.cocoeval import COCOeval

    evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="keypoints")
    if sigmas is not None:
        evaluator.params.kpt_oks_sigmas = sigmas
    if image_ids is not None:
        evaluator.params.imgIds = image_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    stats = [None if v < 0 else 100.0 * float(v) for v in evaluator.stats]
    return {
        "metric": "OKS",
        "rows": list(OKS_ROWS),
        "thresholds": [float(t) for t in evaluator.params.iouThrs],
        "table": {row: {OKS_COLUMN: v} for row, v in zip(OKS_ROWS, stats)},
        # AP at each OKS threshold (area all, 20 detections): precision over recall levels
        "curves": {"AP": [_ap_at(evaluator.eval["precision"][t]) for t in range(len(evaluator.params.iouThrs))]},
        "per_joint": {},
        "summary_text": printed.getvalue().split("Accumulating evaluation results")[-1].strip(),
    }


def _ap_at(precision) -> float | None:
    p = np.asarray(precision)[:, 0, 0, -1]  # recall levels, category 0, area "all", max dets
    p = p[p > -1]
    return None if p.size == 0 else 100.0 * float(p.mean())


def check_sigmas(sigmas, joints: JointSet):
    """(J,) float64 positive OKS sigmas of `joints`, or None for COCO's 17 without sigmas
    (COCOeval's own); ValueError naming the key when a set of its own has none, their number
    is not the joint count or a value is not positive."""
    if sigmas is None:
        if joints != COCO:
            raise ValueError(
                f"OKS AP for a joint set of its own needs one sigma per joint (COCOeval's are for "
                f"COCO's 17 keypoints): set `{OKS_SIGMAS_KEY}` in the dataset's config "
                "(score --oks-sigmas)"
            )
        return None
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if len(sigmas) != joints.num_joints:
        raise ValueError(
            f"`{OKS_SIGMAS_KEY}` has {len(sigmas)} values for {joints.num_joints} joints "
            "(one sigma per joint, in the file's keypoint order)"
        )
    if not (np.isfinite(sigmas) & (sigmas > 0)).all():
        raise ValueError(f"`{OKS_SIGMAS_KEY}` holds values that are not positive numbers: {sigmas.tolist()}")
    return sigmas
