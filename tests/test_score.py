"""The score stage: prediction files in and out, ground truth readers, the PCKh table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.io

from pose_pipeline import cli
from pose_pipeline.errors import UserError
from pose_pipeline.joints import MPII
from pose_pipeline.metrics import TABLE_COLUMNS, TABLE_ROWS, WEIGHTED_MEAN_COLUMN
from pose_pipeline.score import (
    read_ground_truth,
    read_predictions,
    score,
    write_predictions_csv,
    write_predictions_mat,
)

J = MPII.num_joints


def reference_file(shared_data):
    path = shared_data / "mpii_sample" / "detections_our_format.mat"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def synthetic_gt(tmp_path, n=4, head_box=((0.0, 0.0), (30.0, 40.0)), missing=None):
    """A reference-layout ground-truth file: head size 0.6 x 50 = 30 px for every sample."""
    rng = np.random.default_rng(1)
    gt = rng.uniform(50, 400, (n, J, 2))
    boxes = np.repeat(np.asarray(head_box, dtype=np.float64)[:, :, None], n, axis=2)
    jnt_missing = np.zeros((J, n), np.uint8) if missing is None else np.asarray(missing, np.uint8).T
    path = tmp_path / "gt.mat"
    scipy.io.savemat(path, {"pos_gt_src": np.transpose(gt, (1, 2, 0)), "jnt_missing": jnt_missing,
                            "headboxes_src": boxes})
    return path, gt


def read_table(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], {r[0]: dict(zip(rows[0][1:], r[1:])) for r in rows[1:]}


# ------------------------------------------------------------------------ real data


def test_ground_truth_as_predictions_scores_100(shared_data, tmp_path):
    ref = reference_file(shared_data)
    gt, visible, head_size, joints = read_ground_truth(ref)
    assert gt.shape == (2958, 16, 2) and visible.shape == (2958, 16) and head_size.shape == (2958,)
    assert joints is MPII
    preds = tmp_path / "gt_preds.mat"
    write_predictions_mat(preds, gt)
    result = score(preds, ref, tmp_path / "s.csv", tmp_path / "s.json")
    for row in ("PCKh@0.5", "PCKh@0.1"):
        assert all(result["table"][row][c] == 100.0 for c in TABLE_COLUMNS)
        assert result["mean_weighted"][row] == 100.0
    header, table = read_table(tmp_path / "s.csv")
    assert header == ["metric", *TABLE_COLUMNS, WEIGHTED_MEAN_COLUMN]
    assert list(table) == list(TABLE_ROWS)
    for row in ("PCKh@0.5", "PCKh@0.1"):
        assert set(table[row].values()) == {"100.00"}
    # the curve is 0 at threshold 0 (strict <) and 100 from 0.01 on: AUC = 50/51
    assert float(table["AUC@0.5"]["Mean"]) == pytest.approx(100 * 50 / 51, abs=0.005)
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["num_samples"] == 2958
    assert data["predictions"] == str(preds) and data["ground_truth"] == str(ref)
    assert set(data) >= {"thresholds", "table", "mean_weighted", "per_joint", "curves", "joint_curves"}


def test_published_predictions_reference_numbers(shared_data, tmp_path, capsys):
    """The published Tompson et al. (CVPR 2015) predictions stored in the reference file.

    Their paper reports PCKh@0.5 mean 82.0 on the MPII test set; on this validation split
    the reference evaluation (eval_PCKh.py, cross-checked independently) gives
    Head 95.60, Shoulder 92.71, Elbow 83.36, Wrist 76.74, Hip 81.93, Knee 73.36,
    Ankle 65.45, Mean 81.46 (weighted 82.34).
    """
    ref = reference_file(shared_data)
    preds = read_predictions(ref)  # variable pos_pred_src, (J,2,N) layout
    assert preds.shape == (2958, 16, 2)
    assert cli.main(["score", "--preds", str(ref), "--gt", str(ref), "--out", str(tmp_path / "s.csv"),
                     "--per-joint", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "PCKh@0.5" in out and "Mean(weighted)" in out
    _, table = read_table(tmp_path / "s.csv")
    mean = float(table["PCKh@0.5"]["Mean"])
    assert 78 < mean < 86
    expected = {"Head": "95.60", "Shoulder": "92.71", "Elbow": "83.36", "Wrist": "76.74",
                "Hip": "81.93", "Knee": "73.36", "Ankle": "65.45", "Mean": "81.46",
                WEIGHTED_MEAN_COLUMN: "82.34"}
    assert table["PCKh@0.5"] == expected


# ------------------------------------------------------------- constructed displacements


def test_half_inside_half_outside_gives_50(tmp_path):
    gt_path, gt = synthetic_gt(tmp_path, n=4)
    head = 30.0
    preds = gt.copy()
    preds[:2, :, 0] += 0.49 * head  # inside the 0.5 radius
    preds[2:, :, 1] -= 0.51 * head  # outside
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", gt_path, tmp_path / "s.csv", tmp_path / "s.json")
    assert all(result["table"]["PCKh@0.5"][c] == pytest.approx(50.0) for c in TABLE_COLUMNS)
    assert all(result["table"]["PCKh@0.1"][c] == 0.0 for c in TABLE_COLUMNS)
    assert result["mean_weighted"]["PCKh@0.5"] == pytest.approx(50.0)
    # curve: 0 below 0.49, 50 at 0.50 (at 0.49 itself float rounding of the shift decides)
    curve = result["curves"]["Mean"]
    assert curve[:49] == [0.0] * 49 and curve[50] == pytest.approx(50.0)
    _, table = read_table(tmp_path / "s.csv")
    assert table["PCKh@0.5"]["Mean"] == "50.00" and table["PCKh@0.1"]["Mean"] == "0.00"


def test_group_columns_and_missing_joints(tmp_path):
    n = 4
    missing = np.zeros((n, J), np.uint8)
    missing[0, MPII.index("l_wrist")] = 1  # annotated nowhere else wrong: not counted
    gt_path, gt = synthetic_gt(tmp_path, n=n, missing=missing)
    preds = gt.copy()
    preds[0, MPII.index("l_wrist")] += 1000.0  # missing joint: does not count
    preds[1, MPII.index("head_top")] += 100.0  # Head: 3 of 4 -> 75
    preds[:3, MPII.index("l_knee")] += 100.0  # l_knee 25, r_knee 100 -> Knee 62.5
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", gt_path, tmp_path / "s.csv")
    row = result["table"]["PCKh@0.5"]
    assert row["Head"] == pytest.approx(75.0)
    assert row["Knee"] == pytest.approx(62.5)
    assert row["Wrist"] == pytest.approx(100.0)
    assert result["per_joint"]["l_wrist"]["count"] == 3
    # Mean: 14 joints, head_top 75 and l_knee 25, the rest 100
    assert row["Mean"] == pytest.approx((12 * 100 + 75 + 25) / 14)
    # weighted: 55 counted joints (14 x 4 - 1), 1 + 3 wrong
    assert result["mean_weighted"]["PCKh@0.5"] == pytest.approx(100 * (55 - 4) / 55)


# ------------------------------------------------------------------------ file formats


def test_mat_and_csv_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    preds = rng.uniform(-5, 500, (7, J, 2))
    write_predictions_mat(tmp_path / "p.mat", preds)
    names = [f"img{i:03d}.jpg" for i in range(7)]
    write_predictions_csv(tmp_path / "p.csv", preds, names, MPII.joints)
    from_mat = read_predictions(tmp_path / "p.mat", num_joints=J)
    from_csv = read_predictions(tmp_path / "p.csv", num_joints=J)
    np.testing.assert_array_equal(from_mat, preds)
    np.testing.assert_array_equal(from_csv, preds)
    assert from_mat.dtype == np.float64
    raw = scipy.io.loadmat(tmp_path / "p.mat")
    assert raw["preds"].shape == (7, J, 2) and raw["preds"].dtype == np.float64
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "image", "joint", "x", "y"]
    assert rows[1][:3] == ["0", "img000.jpg", "r_ankle"] and len(rows) == 1 + 7 * J
    # with scores (what predict writes) and a JointSet for the names
    write_predictions_csv(tmp_path / "q.csv", preds, names, MPII, scores=np.ones((7, J)))
    np.testing.assert_array_equal(read_predictions(tmp_path / "q.csv"), preds)
    # rows in any order
    lines = (tmp_path / "p.csv").read_text().splitlines()
    (tmp_path / "r.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    np.testing.assert_array_equal(read_predictions(tmp_path / "r.csv"), preds)
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_reference_layout_under_pos_pred_src(tmp_path):
    preds = np.arange(3 * J * 2, dtype=np.float64).reshape(3, J, 2)
    scipy.io.savemat(tmp_path / "ref.mat", {"pos_pred_src": np.transpose(preds, (1, 2, 0))})
    np.testing.assert_array_equal(read_predictions(tmp_path / "ref.mat"), preds)


@pytest.mark.parametrize("variables, message", [
    ({"preds": np.zeros((5, J))}, "shape"),
    ({"preds": np.zeros((5, J, 3))}, "shape"),
    ({"preds": np.zeros((J, 2, 5))}, "pos_pred_src"),
    ({"preds": np.zeros((5, 14, 2))}, "14 joints"),
    ({"preds": np.full((5, J, 2), np.nan)}, "NaN"),
    ({"preds": np.full((5, J, 2), np.inf)}, "non-finite"),
    ({"predictions": np.zeros((5, J, 2))}, "no prediction variable"),
    ({"pos_pred_src": np.zeros((5, J, 2))}, "pos_pred_src"),
])
def test_bad_mat_refused(tmp_path, variables, message):
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(UserError) as err:
        read_predictions(path, num_joints=J)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("a,b,c\n0,x,r_ankle,1,2\n", "header"),
    ("index,image,joint,x,y\n0,x,r_ankle,nan,2\n", "NaN"),
    ("index,image,joint,x,y\n0,x,r_ankle,one,2\n", "numbers"),
    ("index,image,joint,x,y\n0,x,a,1,2\n0,x,b,1,2\n1,x,a,1,2\n", "missing"),
    ("index,image,joint,x,y\n0,x,a,1,2\n0,x,a,1,2\n", "twice"),
    ("index,image,joint,x,y\n", "no prediction rows"),
])
def test_bad_csv_refused(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        read_predictions(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_csv_joint_names_must_match_the_joint_set(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("index,image,joint,x,y\n" + "".join(f"0,x,{n},1,2\n" for n in ("nose",) + MPII.joints[1:]))
    with pytest.raises(UserError, match="do not match the mpii joints"):
        read_predictions(path, joints=MPII)


def test_unknown_files_refused(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_predictions(tmp_path / "absent.mat")
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(UserError, match=r"\.mat or \.csv"):
        read_predictions(tmp_path / "p.txt")
    with pytest.raises(UserError, match="unknown ground-truth"):
        read_ground_truth(tmp_path / "p.txt")
    scipy.io.savemat(tmp_path / "notgt.mat", {"preds": np.zeros((2, J, 2))})
    with pytest.raises(UserError, match="pos_gt_src"):
        read_ground_truth(tmp_path / "notgt.mat")


def test_sample_count_mismatch_refused(tmp_path):
    gt_path, gt = synthetic_gt(tmp_path, n=4)
    write_predictions_mat(tmp_path / "p.mat", gt[:3])
    with pytest.raises(UserError) as err:
        score(tmp_path / "p.mat", gt_path, tmp_path / "s.csv")
    assert "3" in str(err.value) and "4" in str(err.value)
    assert not (tmp_path / "s.csv").exists()
    # through the CLI: one line on stderr, exit status 1
    assert cli.main(["score", "--preds", str(tmp_path / "p.mat"), "--gt", str(gt_path),
                     "--out", str(tmp_path / "s.csv")]) == 1


def test_store_ground_truth(tmp_path):
    from pose_pipeline.store import StoreWriter

    n, size = 3, 16
    rng = np.random.default_rng(2)
    kp = rng.uniform(10, 100, (n, J, 2)).astype(np.float32)
    visible = np.ones((n, J), np.uint8)
    visible[0, 0] = 0
    writer = StoreWriter(tmp_path / "val.zarr", n, MPII, size, shard_size=2,
                         attrs={"pixel_origin": 1.0, "context": 1.5})
    writer.write_block(np.zeros((n, size, size, 3), np.uint8))
    writer.set_metadata(keypoints=kp, visible=visible, affine=np.tile(np.eye(2, 3), (n, 1, 1)),
                        center=np.zeros((n, 2)), scale=np.ones(n), head_size=np.full(n, 20.0),
                        image_name=np.array(["a.jpg", "b.jpg", "c.jpg"], dtype=str),
                        source_index=np.zeros((n, 2), np.int64))
    writer.commit()
    gt, vis, head, joints = read_ground_truth(tmp_path / "val.zarr")
    np.testing.assert_array_equal(gt, kp.astype(np.float64))
    np.testing.assert_array_equal(vis, visible)
    np.testing.assert_array_equal(head, 20.0)
    assert joints is MPII
    preds = gt.copy()
    preds[:, MPII.index("head_top"), 0] += 9.0  # 0.45 head sizes: correct at 0.5, not 0.1
    write_predictions_csv(tmp_path / "p.csv", preds, ["a.jpg", "b.jpg", "c.jpg"], MPII.joints)
    result = score(tmp_path / "p.csv", tmp_path / "val.zarr", tmp_path / "s.csv")
    assert result["table"]["PCKh@0.5"]["Head"] == 100.0
    assert result["table"]["PCKh@0.1"]["Head"] == 0.0
    assert result["per_joint"]["r_ankle"]["count"] == 2
