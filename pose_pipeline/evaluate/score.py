"""`pose-pipeline score`: a prediction file against ground truth, by the dataset's metric
(`pose_pipeline.evaluate.metrics`, the one place for the metrics; LSP / FLIC PCK in `pck_torso`):

* MPII: PCKh as the reference MPII evaluation computes it (rows PCKh@0.5, PCKh@0.1, AUC@0.5);
* LSP and FLIC: PCK@0.2 normalised by torso size exactly as `eval_pck.m` of bearpaw/eval_pose
  (rows PCK@0.2, PCK@0.1, AUC@0.2; LSP adds the visible-only rows);
* COCO: OKS AP with ground-truth boxes by pycocotools' COCOeval (rows AP, AP50, AP75, APm,
  APl, AR, ...; one `value` column), from the predictions, the store's image ids and the
  COCO annotation JSON (--annotations, else the one the store records); a COCO-format file
  with its own keypoints with the sigmas given (`--oks-sigmas`, the dataset's `oks_sigmas`).

The metric follows the ground truth's format (`--metric` overrides). The ground truth is a
converted store or an annotation file (`ground_truth.read_ground_truth`: MPII's
detections_our_format.mat, LSP joints.mat, FLIC examples.mat, COCO JSON; `--split` picks an
LSP / FLIC file's people). The CSV is metric rows x joint-group columns (Head ... Ankle or
FLIC's Head ... Hip, Mean, Mean(weighted)) for PCKh and PCK.

Prediction files are read by `pose_pipeline.inference.prediction_files`, ground truth by
`pose_pipeline.evaluate.ground_truth`, and the score files written by `pose_pipeline.evaluate.score_files`
(their formats are described there); this module dispatches to the metric and runs the CLI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pose_pipeline.core.joints import JointSet
from pose_pipeline.data.store import is_store, open_store, sha256_of
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.coco_results import evaluate_keypoint_results, is_keypoint_results
from pose_pipeline.evaluate.ground_truth import ground_truth_format, ground_truth_image_names, load_ground_truth
from pose_pipeline.evaluate.metrics import pckh_evaluation
from pose_pipeline.evaluate.pck_torso import pck_torso_evaluation
from pose_pipeline.evaluate.score_files import table_rows, write_score_files
from pose_pipeline.inference.prediction_files import (
    check_image_names,
    check_store_fingerprint,
    read_person_scores,
    read_predictions,
)

# --------------------------------------------------------------------------- scoring


# --metric choices: the metric's name in the evaluation, and the format it suits
METRICS = {"pckh": "PCKh", "pck": "PCK", "oks": "OKS"}
METRIC_OF_FORMAT = {"mpii": "pckh", "lsp": "pck", "flic": "pck", "coco": "oks"}


def default_metric(gt_path) -> str:
    """The metric of a ground truth: PCKh for MPII (and the reference .mat), PCK@0.2 by
    torso size for LSP and FLIC, OKS AP for COCO (`ground_truth.ground_truth_format`)."""
    return METRIC_OF_FORMAT.get(ground_truth_format(gt_path), "pckh")


def _coco_people(gt_path: Path, annotations) -> tuple[Path, np.ndarray, JointSet]:
    """(annotation file, (N,2) COCO image and annotation id of each ground-truth person, joint
    set) of a COCO-format store or JSON; the JSON's people are those `convert coco` keeps, in
    its order."""
    if gt_path.suffix.lower() == ".json":
        from pose_pipeline.data.formats import coco

        if annotations is not None and Path(annotations).resolve() != gt_path.resolve():
            raise UserError(f"--annotations {annotations}: with a COCO JSON as --gt, the file is {gt_path} itself")
        people = coco.read_annotations(gt_path, coco.DEFAULT_MIN_KEYPOINTS)
        return gt_path, np.stack([people.image_id, people.annotation_id], axis=1), people.joints
    if annotations is not None and not Path(annotations).is_file():
        raise UserError(f"{annotations}: no such annotation file")
    if not is_store(gt_path):
        raise UserError(f"{gt_path}: OKS AP needs a converted COCO store (its image ids) or a COCO JSON")
    store = open_store(gt_path)
    if store.attrs.get("format") != "coco":
        raise UserError(
            f"{gt_path}: OKS AP needs a store converted from a COCO-format file, this one is "
            f"{store.attrs.get('format') or store.joint_set.name}"
        )
    if annotations is None:
        return _recorded_annotations(gt_path, store), np.asarray(store.source_index), store.joint_set
    # The store records the sha256 of the file it was converted from: scoring against
    # another file would match people by the wrong ids.
    annotations = Path(annotations)
    recorded = {src.get("file"): src.get("sha256") for src in store.attrs.get("sources", [])}
    if recorded and sha256_of(annotations) not in recorded.values():
        raise UserError(
            f"{annotations}: not the annotation file {gt_path} was converted from "
            f"(sha256 differs from the store's sources {sorted(recorded)})"
        )
    return annotations, np.asarray(store.source_index), store.joint_set


def _recorded_annotations(gt_path: Path, store) -> Path:
    """The annotation file a COCO store was converted from (its first source), where the store
    recorded it: still there and unchanged (the same sha256), else one line saying to give
    --annotations."""
    source = (store.attrs.get("sources") or [{}])[0]
    path, sha256 = source.get("path"), source.get("sha256")
    if not path:
        raise UserError(
            f"OKS AP needs the COCO annotation file of {gt_path}, which does not record where its "
            f"{source.get('file') or 'annotation file'} lay (converted before stores did): give --annotations"
        )
    if not Path(path).is_file():
        raise UserError(f"{gt_path} was converted from {path}, which is gone: give --annotations (that file, moved)")
    if sha256_of(path) != sha256:
        raise UserError(
            f"{path} has changed since {gt_path} was converted from it (sha256 differs): give --annotations "
            "(the file as it was then)"
        )
    return Path(path)


def _evaluate_oks(preds_path, gt_path, annotations, oks_sigmas=None) -> dict:
    from pose_pipeline.evaluate.oks import check_sigmas, oks_evaluation  # imports pycocotools only when called

    gt_path = Path(gt_path)
    annotations, ids, joints = _coco_people(gt_path, annotations)
    try:
        sigmas = check_sigmas(oks_sigmas, joints)
    except ValueError as exc:
        raise UserError(f"{gt_path} (joint set {joints.name}, {joints.num_joints} joints): {exc}") from None
    preds = read_predictions(preds_path, joints=joints)
    if len(preds) != len(ids):
        raise UserError(f"{preds_path}: {len(preds)} predicted samples, but the ground truth {gt_path} has {len(ids)}")
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise UserError(
            "OKS AP is computed by pycocotools, which is not installed: "
            "pip install -e '.[coco]' in the clone (or pip install pycocotools)"
        ) from None
    try:
        evaluation = oks_evaluation(
            preds, ids[:, 0], annotations, read_person_scores(preds_path, len(preds)), sigmas, annotation_ids=ids[:, 1]
        )
    except (ValueError, KeyError) as exc:
        raise UserError(f"scoring {preds_path} against {annotations}: {exc}") from None
    return {
        **evaluation,
        "num_samples": len(preds),
        "annotations": str(annotations),
        "oks_sigmas": None if sigmas is None else sigmas.tolist(),
    }


def _evaluate_keypoint_results(preds_path, gt_path, metric, annotations, split, oks_sigmas) -> dict:
    """OKS AP of a COCO keypoint-results JSON (infer's keypoints.json) against the annotation
    file: --annotations, else --gt when it is that JSON, else the one a COCO store records."""
    from pose_pipeline.evaluate.oks import check_sigmas

    if metric != "oks" or split is not None:
        raise UserError(f"{preds_path}: COCO keypoint results are scored with OKS AP only (no --split, --metric oks)")
    gt_path = Path(gt_path)
    if gt_path.suffix.lower() == ".json" and annotations is None:
        annotation_file, joints = gt_path, None  # any keypoint JSON: its people need not pass convert's filter
    else:
        annotation_file, _, joints = _coco_people(gt_path, annotations)
    if oks_sigmas is not None and joints is not None:
        try:
            check_sigmas(oks_sigmas, joints)
        except ValueError as exc:
            raise UserError(f"{gt_path}: {exc}") from None
    return evaluate_keypoint_results(preds_path, annotation_file, oks_sigmas)


def evaluate(
    preds_path, gt_path, metric: str | None = None, annotations=None, split: str | None = None, oks_sigmas=None
) -> dict:
    """The evaluation dict of a prediction file against ground truth (see `score`)."""
    metric = metric or default_metric(gt_path)
    if metric not in METRICS:
        raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if is_keypoint_results(preds_path):
        return _evaluate_keypoint_results(preds_path, gt_path, metric, annotations, split, oks_sigmas)
    check_store_fingerprint(preds_path, gt_path)
    if metric == "oks":
        if split is not None:
            raise UserError(f"--split {split}: OKS AP scores every person of {gt_path}")
        return _evaluate_oks(preds_path, gt_path, annotations, oks_sigmas)
    if oks_sigmas is not None:
        raise UserError(
            f"--oks-sigmas: for OKS AP (COCO-format ground truth); {gt_path} is scored with {METRICS[metric]}"
        )
    truth = load_ground_truth(gt_path, split)
    preds = read_predictions(preds_path, joints=truth.joints)
    if preds.shape[0] != truth.keypoints.shape[0]:
        raise UserError(
            f"{preds_path}: {preds.shape[0]} predicted samples, but the ground truth {gt_path} has "
            f"{truth.keypoints.shape[0]}"
        )
    check_image_names(preds_path, gt_path, ground_truth_image_names(gt_path))
    try:
        if metric == "pck":
            gt, visible, occluded = truth.keypoints, truth.visible, truth.occluded
            evaluation = pck_torso_evaluation(preds, gt, visible, truth.joints, occluded=occluded)
        else:
            evaluation = pckh_evaluation(preds, truth.keypoints, truth.visible, truth.head_size, truth.joints)
    except ValueError as exc:
        raise UserError(f"scoring {preds_path} against {gt_path} with {METRICS[metric]}: {exc}") from None
    # what a reader of the table must know (placeholders left out, a store to convert again)
    return {**evaluation, "notes": truth.notes + evaluation.get("notes", []), "num_samples": len(preds)}


def score(
    preds_path,
    gt_path,
    out_csv,
    per_joint_json=None,
    metric: str | None = None,
    annotations=None,
    split: str | None = None,
    oks_sigmas=None,
) -> dict:
    """Score a prediction file; write the table CSV (and the full evaluation JSON).

    `metric`: "pckh" (MPII), "pck" (LSP, FLIC: PCK@0.2 by torso size) or "oks" (COCO AP through
    pycocotools, with `annotations`, the COCO JSON the store was converted from: by default the
    file the store records, where it still is unchanged; none when the ground truth is that
    JSON); by default the ground truth's own (`default_metric`).
    `split`: the people of an LSP / FLIC annotation file (`read_ground_truth`).
    `oks_sigmas`: OKS sigmas, one per joint (needed for a COCO-format set of its own).
    Returns the evaluation dict (`pose_pipeline.evaluate.metrics.curve_evaluation` or
    `oks_evaluation`) with `num_samples`, `predictions` and `ground_truth` added (what
    the JSON holds).
    """
    evaluation = evaluate(preds_path, gt_path, metric, annotations, split, oks_sigmas)
    evaluation.update(predictions=str(preds_path), ground_truth=str(gt_path))
    write_score_files(evaluation, out_csv, per_joint_json)
    return evaluation


# ------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preds",
        required=True,
        help="predictions: .mat (`preds` N x J x 2), .csv, or a COCO keypoint-results .json (infer's "
        "keypoints.json or a plain results list; OKS AP by COCOeval on every image of the annotations)",
    )
    p.add_argument(
        "--gt",
        required=True,
        help="ground truth: a converted .zarr store, MPII detections_our_format.mat, LSP joints.mat, "
        "FLIC examples.mat (or the same struct renamed) or a COCO keypoint .json",
    )
    p.add_argument(
        "--split",
        choices=["train", "val", "all"],
        help="LSP / FLIC annotation files: the people scored, as for convert (LSP 2,000 images: val = "
        "1,001-2,000; FLIC: val = istest); default val",
    )
    p.add_argument("--out", required=True, help="PCKh table CSV")
    p.add_argument("--per-joint", help="full evaluation JSON (per joint rates, curves)")
    p.add_argument(
        "--metric",
        choices=sorted(METRICS),
        help="pckh (MPII), pck (LSP, FLIC: PCK@0.2 by torso size, as eval_pck.m) or oks (COCO AP, "
        "pycocotools); "
        "default: by the ground truth's format",
    )
    p.add_argument(
        "--annotations",
        help="oks: the COCO keypoint JSON the store was converted from (default: the file the store "
        "records, where it still is, unchanged)",
    )
    p.add_argument(
        "--oks-sigmas",
        type=_sigma_list,
        metavar="S1,S2,...",
        help="oks: per-joint OKS sigmas in the joint order, comma-separated (the dataset's oks_sigmas); "
        "required for a COCO-format file with its own keypoints; default: COCOeval's for COCO's 17",
    )


def _sigma_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers") from None


def format_table(evaluation: dict) -> str:
    """The table as aligned text, for the terminal."""
    rows = table_rows(evaluation)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    )


def run(args: argparse.Namespace) -> int:
    evaluation = score(
        args.preds, args.gt, args.out, args.per_joint, args.metric, args.annotations, args.split, args.oks_sigmas
    )
    print(f"{args.preds}: {evaluation['num_samples']} samples against {args.gt}")
    print(format_table(evaluation))
    for note in evaluation.get("notes", []):
        print(f"note: {note}")
    return 0
