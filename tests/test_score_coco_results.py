"""`score` of COCO keypoint-results JSON (infer's keypoints.json and plain results lists) on the
real COCO sample: the AP is COCOeval's own, run directly on the same file."""

import csv
import json

import numpy as np
import pytest
from helpers import cocoeval_ap

from pose_pipeline import cli
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.score import evaluate


@pytest.fixture
def annotations(shared_data):
    pytest.importorskip("pycocotools", reason="OKS AP needs pycocotools (pip install -e '.[coco]')")
    return shared_data / "coco_sample" / "person_keypoints_sample.json"


def jittered_results(annotations, seed=0, spread=4.0) -> list[dict]:
    """Each annotated person's keypoints moved a little, plus a false positive per image and a
    duplicate of every other person: an AP strictly between 0 and 100."""
    rng = np.random.default_rng(seed)
    data = json.loads(annotations.read_text())
    results = []
    for number, ann in enumerate(a for a in data["annotations"] if a["num_keypoints"] > 0):
        points = np.array(ann["keypoints"], dtype=float).reshape(17, 3)
        points[:, :2] += rng.normal(0, spread, (17, 2))
        entry = {"image_id": ann["image_id"], "category_id": 1, "score": float(rng.uniform(0.3, 1))}
        results.append({**entry, "keypoints": np.column_stack([points[:, :2], rng.uniform(0, 1, 17)]).ravel().tolist()})
        if number % 2:
            results.append({**results[-1], "score": entry["score"] / 2})
    for image in data["images"]:
        points = np.column_stack([rng.uniform(0, 50, (17, 2)), np.full(17, 0.5)])
        results.append({"image_id": image["id"], "category_id": 1, "score": 0.9, "keypoints": points.ravel().tolist()})
    return results


def _score(preds, gt, out, *extra):
    return cli.main(["score", "--preds", str(preds), "--gt", str(gt), "--out", str(out), *map(str, extra)])


def test_coco_results_list_ap_equals_cocoeval(annotations, tmp_path):
    results = jittered_results(annotations)
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert _score(tmp_path / "results.json", annotations, tmp_path / "s.csv", "--per-joint", tmp_path / "s.json") == 0
    expected = cocoeval_ap(annotations, tmp_path / "results.json")
    assert 0 < expected < 100
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["table"]["AP"]["value"] == pytest.approx(expected, abs=1e-9)
    assert data["num_samples"] == len(results)
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "value"] and rows[1] == ["AP", f"{expected:.2f}"]


def test_coco_infer_keypoints_json_ap_equals_cocoeval(annotations, tmp_path):
    """infer's {header, results} layout, its extra keys (file_name, bbox, box_score) included."""
    results = [
        {**r, "file_name": f"{r['image_id']:012d}.jpg", "bbox": [0, 0, 10, 10], "box_score": 1.0}
        for r in jittered_results(annotations, seed=1)
    ]
    path = tmp_path / "keypoints.json"
    header = {"format": "COCO keypoint results (pose-pipeline infer)"}
    path.write_text(json.dumps({"header": header, "results": results}))
    evaluation = evaluate(path, annotations)
    assert evaluation["table"]["AP"]["value"] == pytest.approx(cocoeval_ap(annotations, results), abs=1e-9)
    # --annotations naming the same file as --gt is the same scoring
    again = evaluate(path, annotations, annotations=annotations)
    assert again["table"] == evaluation["table"]


def test_coco_ground_truth_as_results_ap_100(annotations, tmp_path):
    data = json.loads(annotations.read_text())
    results = [
        {"image_id": a["image_id"], "category_id": 1, "score": 1.0, "keypoints": a["keypoints"]}
        for a in data["annotations"]
        if a["num_keypoints"] > 0
    ]
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert evaluate(tmp_path / "r.json", annotations)["table"]["AP"]["value"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[]", "no results"),
        ('{"header": {}}', "expected a COCO keypoint-results list"),
        ('[{"image_id": 785, "score": 1}]', "missing keypoints"),
        ('[{"image_id": 785, "score": 1, "keypoints": [1, 2]}]', "triples"),
        ('[{"image_id": 785, "score": NaN, "keypoints": [1, 2, 1]}]', "finite"),
        ('[{"image_id": 1, "score": 1, "keypoints": ' + json.dumps([1, 2, 1] * 17) + "}]", "not in"),
        ('[{"image_id": 785, "score": 1, "keypoints": [1, 2, 1]}]', "COCO's 17"),
        ("not json", "not a COCO keypoint-results JSON"),
    ],
)
def test_coco_bad_results_file_is_one_line(annotations, tmp_path, content, message):
    (tmp_path / "r.json").write_text(content)
    with pytest.raises(UserError, match=message):
        evaluate(tmp_path / "r.json", annotations)


def test_coco_results_refuse_other_metrics(annotations, tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(jittered_results(annotations)))
    with pytest.raises(UserError, match="OKS AP only"):
        evaluate(tmp_path / "r.json", annotations, metric="pckh")
