"""COCO as people report it (issue 28, item 2): infer on the real COCO sample with a detections
file made here (jittered ground-truth boxes, exact duplicates, false positives), rescored and
OKS-NMSed; its keypoints.json scored by `score` as COCOeval scores it directly; and the
workflow's oks.csv target."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from helpers import TINY, cocoeval_ap, random_checkpoint, snakemake, write_config

from pose_pipeline import cli
from pose_pipeline.evaluate.score import evaluate


def coco_checkpoint(path):
    """A small random hourglass of COCO's 17 joints (its keypoints are noise, but the same
    canvas gives the same keypoints: an exact duplicate box gives an OKS of 1)."""
    from pose_pipeline.core.joints import COCO

    return random_checkpoint(path, None, COCO)


def make_detections(annotations, path, seed=0) -> dict:
    """A COCO detection-results file: each annotated person's box jittered (score 0.9), an
    exact copy of it (0.5) and one false positive per image in its bottom-right corner (0.3)."""
    rng = np.random.default_rng(seed)
    data = json.loads(annotations.read_text())
    sizes = {image["id"]: (image["width"], image["height"]) for image in data["images"]}
    detections = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        x, y, w, h = ann["bbox"]
        jittered = [x + rng.normal(0, 0.05 * w), y + rng.normal(0, 0.05 * h), w * rng.uniform(0.95, 1.05), h]
        box = {"image_id": ann["image_id"], "category_id": 1, "bbox": [float(v) for v in jittered]}
        detections += [{**box, "score": 0.9}, {**box, "score": 0.5}]
    for image_id, (width, height) in sizes.items():
        corner = [width - 30.0, height - 30.0, 25.0, 25.0]
        detections.append({"image_id": image_id, "category_id": 1, "bbox": corner, "score": 0.3})
    path.write_text(json.dumps(detections))
    return {"people": sum(d["score"] == 0.9 for d in detections), "false": len(sizes), "all": len(detections)}


@pytest.fixture
def coco_sample(shared_data, tmp_path):
    pytest.importorskip("pycocotools", reason="OKS AP needs pycocotools (pip install -e '.[coco]')")
    annotations = shared_data / "coco_sample" / "person_keypoints_sample.json"
    counts = make_detections(annotations, tmp_path / "detections.json")
    return annotations, shared_data / "coco_sample" / "images", coco_checkpoint(tmp_path / "coco.pt"), counts


def _infer(checkpoint, images, out, *extra) -> dict:
    args = ["infer", "--checkpoint", checkpoint, "--images", images, "--out", out, "--no-progress", *extra]
    assert cli.main([str(a) for a in args]) == 0
    return json.loads((out / "keypoints.json").read_text())


def test_oks_nms_removes_the_duplicates_and_ap_is_cocoevals(coco_sample, tmp_path):
    annotations, images, checkpoint, counts = coco_sample
    boxes = ["--boxes", tmp_path / "detections.json", "--canvas-size", "64"]
    found = _infer(checkpoint, images, tmp_path / "out", *boxes)
    results = found["results"]
    # every exact duplicate (box score 0.5) goes; the people and the false positives stay
    assert [r["box_score"] for r in results].count(0.5) == 0
    assert [r["box_score"] for r in results].count(0.9) == counts["people"]
    assert [r["box_score"] for r in results].count(0.3) == counts["false"]
    assert found["header"]["person_scores"]["oks_nms"] == {"threshold": 0.9, "removed": counts["people"]}
    for r in results:  # the protocol's rescoring
        joint_scores = np.array(r["keypoints"][2::3])
        confident = joint_scores[joint_scores > 0.2]
        expected = r["box_score"] * (confident.mean() if confident.size else 0.0)
        assert r["score"] == pytest.approx(expected, abs=1e-3)  # keypoints.json rounds joint scores
    # threshold 1 keeps everyone: the NMS, not something else, removed them
    everyone = _infer(checkpoint, images, tmp_path / "all", *boxes, "--oks-nms-threshold", "1")
    assert len(everyone["results"]) == counts["all"]
    # score on infer's own file: COCOeval's AP on the same results
    out = tmp_path / "oks.csv"
    cmd = ["score", "--preds", tmp_path / "out" / "keypoints.json", "--gt", annotations, "--out", out]
    assert cli.main([str(a) for a in cmd]) == 0
    assert out.read_text().splitlines()[1] == f"AP,{cocoeval_ap(annotations, results):.2f}"
    assert evaluate(tmp_path / "out" / "keypoints.json", annotations)["table"]["AP"]["value"] == pytest.approx(
        cocoeval_ap(annotations, results), abs=1e-9
    )


def test_the_drawings_show_the_people_nms_kept(coco_sample, tmp_path, monkeypatch):
    """--draw with detector boxes: each image is drawn with the people kept, not the duplicates."""
    from pose_pipeline.inference.infer_outputs import Drawings

    annotations, images, checkpoint, counts = coco_sample
    drawn = []
    real_add = Drawings.add

    def add(self, name, image, people):
        drawn.append((name, len(people)))
        return real_add(self, name, image, people)

    monkeypatch.setattr(Drawings, "add", add)
    boxes = ["--boxes", tmp_path / "detections.json", "--canvas-size", "64", "--draw"]
    found = _infer(checkpoint, images, tmp_path / "out", *boxes)
    assert sum(n for _, n in drawn) == len(found["results"]) == counts["all"] - counts["people"]
    per_image = {}
    for r in found["results"]:
        per_image[r["file_name"]] = per_image.get(r["file_name"], 0) + 1
    assert dict(drawn) == per_image


def test_nms_options_are_bounded(coco_sample, tmp_path, capsys):
    annotations, images, checkpoint, _ = coco_sample
    args = ["infer", "--checkpoint", checkpoint, "--images", images, "--out", tmp_path / "o"]
    assert cli.main([str(a) for a in [*args, "--oks-nms-threshold", "1.5"]]) == 1
    assert "--oks-nms-threshold" in capsys.readouterr().err


@pytest.mark.slow
def test_workflow_oks_target_dry_run(shared_data, tmp_path):
    sample = shared_data / "coco_sample"
    make_detections(sample / "person_keypoints_sample.json", tmp_path / "detections.json")
    config = copy.deepcopy(TINY)
    config["imagesets"] = {
        "coco.val": {
            "images": str(sample / "images"),
            "boxes": str(tmp_path / "detections.json"),
            "annotations": str(sample / "person_keypoints_sample.json"),
            "oks_nms_threshold": 0.8,
        },
        "no_truth": {"images": str(sample / "images")},
    }
    write_config(tmp_path, config)
    output = snakemake(tmp_path, "--dry-run", "--printshellcmds", "results/infer/tiny/coco.val/oks.csv")
    assert "score_infer" in output and "rule infer:" in output
    assert "--keypoint-score-threshold 0.2 --oks-nms-threshold 0.8" in output
    assert "--metric oks --preds results/infer/tiny/coco.val/keypoints.json" in output
    with pytest.raises(AssertionError, match="imagesets.no_truth: .*set `annotations`"):
        snakemake(tmp_path, "--dry-run", "results/infer/tiny/no_truth/oks.csv")
