"""The score stage: prediction files in and out, ground truth readers, the PCKh table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import scipy.io

from pose_pipeline import cli
from pose_pipeline.core.joints import MPII
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.ground_truth import read_ground_truth
from pose_pipeline.evaluate.metrics import TABLE_COLUMNS, WEIGHTED_MEAN_COLUMN, torso_size
from pose_pipeline.evaluate.score import score
from pose_pipeline.inference.prediction_files import (
    read_predictions,
    recorded_store_fingerprint,
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
    scipy.io.savemat(
        path, {"pos_gt_src": np.transpose(gt, (1, 2, 0)), "jnt_missing": jnt_missing, "headboxes_src": boxes}
    )
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
    assert list(table) == ["PCKh@0.5", "PCKh@0.1", "AUC@0.5"]
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
    assert (
        cli.main(
            [
                "score",
                "--preds",
                str(ref),
                "--gt",
                str(ref),
                "--out",
                str(tmp_path / "s.csv"),
                "--per-joint",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    print(out)
    assert "PCKh@0.5" in out and "Mean(weighted)" in out
    _, table = read_table(tmp_path / "s.csv")
    mean = float(table["PCKh@0.5"]["Mean"])
    assert 78 < mean < 86
    expected = {
        "Head": "95.60",
        "Shoulder": "92.71",
        "Elbow": "83.36",
        "Wrist": "76.74",
        "Hip": "81.93",
        "Knee": "73.36",
        "Ankle": "65.45",
        "Mean": "81.46",
        WEIGHTED_MEAN_COLUMN: "82.34",
    }
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
    # the store fingerprint as a leading comment line, which the readers skip (line numbers counted)
    write_predictions_csv(tmp_path / "f.csv", preds, names, MPII, store_fingerprint="ab" * 32)
    assert (tmp_path / "f.csv").read_text().splitlines()[:2] == ["# store_fingerprint: " + "ab" * 32, ",".join(rows[0])]
    assert recorded_store_fingerprint(tmp_path / "f.csv") == "ab" * 32
    assert recorded_store_fingerprint(tmp_path / "p.csv") is None
    np.testing.assert_array_equal(read_predictions(tmp_path / "f.csv"), preds)
    text = (tmp_path / "f.csv").read_text()
    (tmp_path / "g.csv").write_text(text.replace("img003.jpg,r_knee,", "img003.jpg,r_knee,x"))
    with pytest.raises(UserError, match=rf"g.csv, line {3 + 3 * J + 1}: index, x and y must be numbers"):
        read_predictions(tmp_path / "g.csv")
    # rows in any order
    lines = (tmp_path / "p.csv").read_text().splitlines()
    (tmp_path / "r.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    np.testing.assert_array_equal(read_predictions(tmp_path / "r.csv"), preds)
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_reference_layout_under_pos_pred_src(tmp_path):
    preds = np.arange(3 * J * 2, dtype=np.float64).reshape(3, J, 2)
    scipy.io.savemat(tmp_path / "ref.mat", {"pos_pred_src": np.transpose(preds, (1, 2, 0))})
    np.testing.assert_array_equal(read_predictions(tmp_path / "ref.mat"), preds)


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"preds": np.zeros((5, J))}, "shape"),
        ({"preds": np.zeros((5, J, 3))}, "shape"),
        ({"preds": np.zeros((J, 2, 5))}, "pos_pred_src"),
        ({"preds": np.zeros((5, 14, 2))}, "got 14"),
        ({"preds": np.full((5, J, 2), np.nan)}, "NaN"),
        ({"preds": np.full((5, J, 2), np.inf)}, "non-finite"),
        ({"predictions": np.zeros((5, J, 2))}, "no prediction variable"),
        ({"pos_pred_src": np.zeros((5, J, 2))}, "pos_pred_src"),
    ],
)
def test_bad_mat_refused(tmp_path, variables, message):
    path = tmp_path / "bad.mat"
    scipy.io.savemat(path, variables)
    with pytest.raises(UserError) as err:
        read_predictions(path, num_joints=J)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b,c\n0,x,r_ankle,1,2\n", "header"),
        ("index,image,joint,x,y\n0,x,r_ankle,nan,2\n", "NaN"),
        ("index,image,joint,x,y\n0,x,r_ankle,one,2\n", "numbers"),
        ("index,image,joint,x,y\n0,x,a,1,2\n0,x,b,1,2\n1,x,a,1,2\n", "missing"),
        ("index,image,joint,x,y\n0,x,a,1,2\n0,x,a,1,2\n", "twice"),
        ("index,image,joint,x,y\n", "no prediction rows"),
    ],
)
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
    assert (
        cli.main(["score", "--preds", str(tmp_path / "p.mat"), "--gt", str(gt_path), "--out", str(tmp_path / "s.csv")])
        == 1
    )


def test_store_ground_truth(tmp_path):
    from pose_pipeline.data.store_writer import StoreWriter

    n, size = 3, 16
    rng = np.random.default_rng(2)
    kp = rng.uniform(10, 100, (n, J, 2)).astype(np.float32)
    visible = np.ones((n, J), np.uint8)
    visible[0, 0] = 0
    writer = StoreWriter(
        tmp_path / "val.zarr", n, MPII, size, shard_size=2, attrs={"pixel_origin": 1.0, "context": 1.5}
    )
    writer.write_block(np.zeros((n, size, size, 3), np.uint8))
    writer.set_metadata(
        keypoints=kp,
        visible=visible,
        affine=np.tile(np.eye(2, 3), (n, 1, 1)),
        center=np.zeros((n, 2)),
        scale=np.ones(n),
        head_size=np.full(n, 20.0),
        image_name=np.array(["a.jpg", "b.jpg", "c.jpg"], dtype=str),
        source_index=np.zeros((n, 2), np.int64),
    )
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
    # the same predictions, in another image order: refused, naming the first sample that differs
    write_predictions_csv(tmp_path / "q.csv", preds, ["a.jpg", "c.jpg", "b.jpg"], MPII.joints)
    with pytest.raises(UserError, match=r"q.csv: sample 1 is image 'c.jpg', but in the ground truth .*'b.jpg'"):
        score(tmp_path / "q.csv", tmp_path / "val.zarr", tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()


# --------------------------------------------------------------- pixel conventions


@pytest.mark.parametrize("origin", [1.0, 0.0])
def test_pixel_convention_both_ways(tmp_path, origin):
    """Prediction files hold the annotation file's own pixels: annotated = array index +
    pixel_origin (MPII / LSP 1-based MATLAB pixels, COCO 0-based). Ground truth taken into
    the crop (annotated -> array) and back (array -> annotated, as predict does) is
    unchanged; skipping the conversion back is an error of one pixel per axis, which a
    10 px head size makes visible at PCKh@0.1 (1 px)."""
    from pose_pipeline.core import geometry
    from pose_pipeline.data.store import open_store
    from pose_pipeline.data.store_writer import StoreWriter

    n, size = 3, 32
    rng = np.random.default_rng(5)
    kp = rng.uniform(20, 100, (n, J, 2)).astype(np.float32)
    affine = geometry.crop_affine(np.full((n, 2), 60.0), np.full(n, 120.0), size)
    writer = StoreWriter(tmp_path / "val.zarr", n, MPII, size, attrs={"pixel_origin": origin, "context": 1.5})
    writer.write_block(np.zeros((n, size, size, 3), np.uint8))
    writer.set_metadata(
        keypoints=kp,
        visible=np.ones((n, J), np.uint8),
        affine=affine,
        center=np.zeros((n, 2)),
        scale=np.ones(n),
        head_size=np.full(n, 10.0),
        image_name=np.array(["a", "b", "c"], dtype=str),
        source_index=np.zeros((n, 2), np.int64),
    )
    writer.commit()
    store = open_store(tmp_path / "val.zarr")
    # annotated -> array: exactly the origin subtracted, then the crop affine
    array = geometry.annotated_to_array(store.keypoints, origin)
    np.testing.assert_array_equal(array, kp.astype(np.float64) - origin)
    np.testing.assert_allclose(store.keypoints_in_canvas(), geometry.apply(affine, array))
    # and back, as predict maps decoded points: crop -> array -> annotated
    back = geometry.apply(geometry.invert(affine), store.keypoints_in_canvas())
    annotated = geometry.array_to_annotated(back, origin)
    np.testing.assert_allclose(annotated, kp, atol=1e-4)
    write_predictions_mat(tmp_path / "right.mat", annotated)
    assert (
        score(tmp_path / "right.mat", tmp_path / "val.zarr", tmp_path / "s.csv")["table"]["PCKh@0.1"]["Mean"] == 100.0
    )
    # array coordinates written as if annotated: off by `origin` on both axes
    write_predictions_mat(tmp_path / "array.mat", back)
    result = score(tmp_path / "array.mat", tmp_path / "val.zarr", tmp_path / "s.csv")
    assert result["table"]["PCKh@0.1"]["Mean"] == (0.0 if origin == 1.0 else 100.0)
    assert result["table"]["PCKh@0.5"]["Mean"] == 100.0


@pytest.mark.parametrize(
    "preds, message",
    [
        (np.zeros((4, J)), "shape"),
        (np.zeros((4, J, 3)), "shape"),
        (np.zeros((4, 14, 2)), "got 14"),
        (np.where(np.arange(4 * J * 2).reshape(4, J, 2) == 7, np.nan, 1.0), "NaN"),
    ],
)
def test_score_cli_refuses_wrong_shape_and_nan(tmp_path, capsys, preds, message):
    gt_path, _ = synthetic_gt(tmp_path, n=4)
    scipy.io.savemat(tmp_path / "p.mat", {"preds": preds})
    assert (
        cli.main(
            [
                "score",
                "--preds",
                str(tmp_path / "p.mat"),
                "--gt",
                str(gt_path),
                "--out",
                str(tmp_path / "s.csv"),
                "--per-joint",
                str(tmp_path / "s.json"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert str(tmp_path / "p.mat") in err and message in err
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.json").exists()


# ------------------------------------------------------------------------ LSP: PCK@0.2


def lsp_store(path, gt, visible, occluded=None, converter=None):
    from pose_pipeline.core.joints import LSP
    from pose_pipeline.data.store_writer import StoreWriter

    n = len(gt)
    attrs = {"pixel_origin": 1.0, "context": 1.5, "format": "lsp", "converter": converter or {}}
    writer = StoreWriter(path, n, LSP, 16, attrs=attrs)
    writer.write_block(np.zeros((n, 16, 16, 3), np.uint8))
    writer.set_metadata(
        keypoints=gt.astype(np.float32),
        visible=visible,
        **({} if occluded is None else {"occluded": occluded}),
        affine=np.tile(np.eye(2, 3), (n, 1, 1)),
        center=np.zeros((n, 2)),
        scale=np.ones(n),
        head_size=np.full(n, np.nan),
        image_name=np.array([f"im{i + 1:04d}.jpg" for i in range(n)], dtype=str),
        source_index=np.zeros((n, 2), np.int64),
    )
    writer.commit()
    return path


def test_lsp_pck_by_torso_computed_by_hand(tmp_path):
    """eval_pck.m's protocol. Torso = ||l_shoulder - r_hip|| = ||(30, 40)|| = 50 px, so PCK@0.2
    allows 10 px (inclusive) and PCK@0.1 5 px. Sample 0: r_wrist 10 px off (right at 0.2, wrong
    at 0.1), l_wrist 10.5 px off (wrong). Sample 1: head_top 4 px off (right at both), neck 6 px
    off (right at 0.2 only). Sample 2: l_shoulder occluded (labelled, a guessed position, as
    original LSP's) and every joint 1,000 px off: the reference counts all 14 of its joints (all
    wrong). 42 points in all, every one labelled."""
    from pose_pipeline.core.joints import LSP

    n = 3
    gt = np.tile(np.arange(LSP.num_joints, dtype=np.float64)[None, :, None] * 7 + 200, (n, 1, 2))
    gt[:, LSP.index("l_shoulder")] = (100.0, 100.0)
    gt[:, LSP.index("r_hip")] = (130.0, 140.0)
    visible = np.ones((n, LSP.num_joints), np.uint8)
    occluded = np.zeros((n, LSP.num_joints), np.uint8)
    occluded[2, LSP.index("l_shoulder")] = 1
    preds = gt.copy()
    preds[0, LSP.index("r_wrist"), 0] += 10.0
    preds[0, LSP.index("l_wrist"), 1] -= 10.5
    preds[1, LSP.index("head_top"), 0] += 4.0
    preds[1, LSP.index("neck"), 1] += 6.0
    preds[2] += 1000.0
    store = lsp_store(tmp_path / "lsp.zarr", gt, visible, occluded)
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", store, tmp_path / "s.csv", tmp_path / "s.json")  # metric from format
    visible_rows = ["PCK@0.2 (visible only)", "PCK@0.1 (visible only)", "AUC@0.2 (visible only)"]
    assert result["metric"] == "PCK" and result["rows"] == ["PCK@0.2", "PCK@0.1", "AUC@0.2", *visible_rows]
    assert result["protocol"].startswith("eval_pck.m (bearpaw/eval_pose)") and result["notes"] == []
    at2, at1, auc = (result["table"][row] for row in ("PCK@0.2", "PCK@0.1", "AUC@0.2"))
    assert at2["Wrist"] == pytest.approx((200 / 3 + 100 / 3) / 2)  # r 2 of 3, l 1 of 3
    assert at2["Head"] == pytest.approx(200 / 3) and at2["Shoulder"] == pytest.approx(200 / 3)
    assert at1["Head"] == pytest.approx((200 / 3 + 100 / 3) / 2)  # neck 6 px off counts in Head
    assert at1["Wrist"] == pytest.approx(100 / 3)
    assert at2["Mean"] == pytest.approx(100 * 27 / 42)  # pooled: 15 of 42 wrong
    assert at1["Mean"] == pytest.approx(100 * 25 / 42)  # 17 of 42 wrong
    # AUC, x scaled to [0, 1] in 20 steps: 24 exact points all the way, head_top from step 8,
    # neck from step 12, r_wrist from step 20, each with a half step on its ramp
    assert auc["Mean"] == pytest.approx(100 * (24 + 12.5 / 20 + 8.5 / 20 + 0.5 / 20) / 42)
    assert result["per_joint"]["neck"]["PCK@0.1"] == pytest.approx(100 / 3)
    assert result["per_joint"]["neck"]["count"] == 3
    # the visible-only rows: sample 2 (a torso joint occluded) left out, 28 points
    assert result["table"]["PCK@0.2 (visible only)"]["Mean"] == pytest.approx(100 * 27 / 28)
    assert result["table"]["PCK@0.1 (visible only)"]["Mean"] == pytest.approx(100 * 25 / 28)
    assert result["table"]["PCK@0.1 (visible only)"]["Head"] == pytest.approx(75.0)
    # the CSV: metric rows x joint-group columns, as the PCKh table
    header, table = read_table(tmp_path / "s.csv")
    assert header == ["metric", *TABLE_COLUMNS, WEIGHTED_MEAN_COLUMN]
    assert list(table) == ["PCK@0.2", "PCK@0.1", "AUC@0.2", *visible_rows]
    assert table["PCK@0.2"]["Wrist"] == "50.00"
    assert table["PCK@0.2"][WEIGHTED_MEAN_COLUMN] == f"{100 * 27 / 42:.2f}"
    # --metric overrides: PCKh needs head sizes, which LSP has not
    with pytest.raises(UserError, match="head size"):
        score(tmp_path / "p.mat", store, tmp_path / "h.csv", metric="pckh")


def test_lsp_neck_counts_in_head(tmp_path):
    """The issue's probe: every neck 1,000 px off no longer leaves Head at 100."""
    from pose_pipeline.core.joints import LSP

    gt = np.random.default_rng(0).uniform(100, 300, (4, LSP.num_joints, 2))
    preds = gt.copy()
    preds[:, LSP.index("neck")] += 1000.0
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(
        tmp_path / "p.mat", lsp_store(tmp_path / "lsp.zarr", gt, np.ones((4, 14), np.uint8)), tmp_path / "s.csv"
    )
    assert result["table"]["PCK@0.2"]["Head"] == 50.0
    assert result["table"]["PCK@0.2"]["Mean"] == pytest.approx(100 * 13 / 14)


def test_lsp_placeholder_shoulder_scored_by_hand(tmp_path):
    """A ground truth with missing joints at LSP-extended-style placeholders. Torso 50 px as above.
    Sample 0, all labelled: l_wrist 10.5 px off (wrong), the rest exact. Sample 1: l_shoulder
    missing at (0, -26), every prediction 30 px off: 0.6 torso sizes, yet within 0.2 of the
    210.8 px "torso" eval_pck.m would take from the placeholder; its torso is a placeholder, so
    none of it counts. Sample 2: head_top missing at (-53, 0) (not counted), r_knee 12 px off
    (wrong). Counted: 14 + 13 = 27 labelled points, 25 right."""
    from pose_pipeline.core.joints import LSP

    n = 3
    gt = np.tile(np.arange(LSP.num_joints, dtype=np.float64)[None, :, None] * 7 + 200, (n, 1, 2))
    gt[:, LSP.index("l_shoulder")] = (100.0, 100.0)
    gt[:, LSP.index("r_hip")] = (130.0, 140.0)
    preds = gt.copy()
    preds[0, LSP.index("l_wrist"), 1] -= 10.5
    preds[1] += (30.0, 0.0)
    preds[2, LSP.index("r_knee"), 0] += 12.0
    visible = np.ones((n, LSP.num_joints), np.uint8)
    visible[1, LSP.index("l_shoulder")] = visible[2, LSP.index("head_top")] = 0
    gt[1, LSP.index("l_shoulder")] = (0.0, -26.0)
    gt[2, LSP.index("head_top")] = (-53.0, 0.0)
    assert torso_size(gt)[1] == pytest.approx(np.hypot(130, 166))  # what eval_pck.m would divide by
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", lsp_store(tmp_path / "lsp.zarr", gt, visible), tmp_path / "s.csv")
    at2 = result["table"]["PCK@0.2"]
    assert at2["Mean"] == pytest.approx(100 * 25 / 27) and result["mean_weighted"]["PCK@0.2"] == at2["Mean"]
    assert at2["Wrist"] == pytest.approx((100 + 50) / 2) and at2["Knee"] == pytest.approx((50 + 100) / 2)
    assert at2["Head"] == 100.0 and at2["Shoulder"] == 100.0
    assert result["per_joint"]["head_top"]["count"] == 1 and result["per_joint"]["l_shoulder"]["count"] == 2
    assert result["protocol"].startswith("eval_pck.m's PCK over the labelled points")
    (note,) = result["notes"]
    assert "2 of 42 scored points are missing" in note and "in 2 of 3 persons, 1 of them with a torso joint" in note
    assert "the 2 persons whose torso is labelled" in note
    # no occluded joints: the visible-only rows count the same points
    assert result["table"]["PCK@0.2 (visible only)"] == at2


def test_original_lsp_store_from_before_occluded_says_convert_again(tmp_path):
    """An original-LSP store converted before stores kept occluded joints labelled holds them
    as missing (no `occluded` array): scored as such, with a note to convert it again."""
    gt = np.random.default_rng(2).uniform(100, 300, (4, 14, 2))
    visible = np.ones((4, 14), np.uint8)
    visible[0, 0] = 0  # an occluded r_ankle, stored missing then
    old = lsp_store(tmp_path / "old.zarr", gt, visible, converter={"lsp": {"layout": "lsp"}})
    write_predictions_mat(tmp_path / "p.mat", gt)
    notes = score(tmp_path / "p.mat", old, tmp_path / "s.csv")["notes"]
    assert len(notes) == 2 and "convert it again" in notes[0] and "1 of 56 scored points are missing" in notes[1]


def lsp_sample_file(shared_data):
    path = shared_data / "lsp_sample" / "joints.mat"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def test_lsp_sample_placeholders_are_not_scored(shared_data, tmp_path):
    """The shared LSP-extended sample: its invisible joints are placeholders. Predicting each
    placeholder exactly and every labelled joint 1,000 px off scores 0, however many
    placeholders eval_pck.m would count as hits; the torso is never a placeholder."""
    from pose_pipeline.core.joints import LSP
    from pose_pipeline.data.formats import lsp

    joints_mat = lsp_sample_file(shared_data)
    people = lsp.read_joints(joints_mat)
    missing = people.visible == 0
    torso = ~missing[:, [LSP.index("l_shoulder"), LSP.index("r_hip")]].any(axis=1)
    assert missing.sum() > 500 and 0 < (~torso).sum() < len(people)  # the sample has both kinds
    preds = np.where(missing[..., None], people.keypoints, people.keypoints + 1000.0)
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", joints_mat, tmp_path / "s.csv", split="all")
    assert result["table"]["PCK@0.2"]["Mean"] == 0.0 and result["table"]["AUC@0.2"]["Mean"] == 0.0
    counted = (~missing & torso[:, None]).sum(axis=0)
    assert [result["per_joint"][name]["count"] for name in LSP.joints] == counted.tolist()
    (note,) = result["notes"]
    assert f"{missing.sum()} of {missing.size} scored points are missing" in note
    assert f"{(~torso).sum()} of them with a torso joint" in note
    # the ground truth itself scores 100 on what is counted, every labelled torso having a length
    write_predictions_mat(tmp_path / "gt.mat", people.keypoints)
    exact = score(tmp_path / "gt.mat", joints_mat, tmp_path / "g.csv", split="all")
    assert exact["table"]["PCK@0.2"]["Mean"] == 100.0 and exact["table"]["PCK@0.2 (visible only)"]["Mean"] == 100.0


def test_lsp_sample_ground_truth_scores_100(shared_data, tmp_path):
    """Converted, the sample scores the same from its store: placeholders missing there too."""
    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions

    sample = shared_data / "lsp_sample"
    store = convert(
        ConvertOptions(
            "lsp",
            sample / "joints.mat",
            sample / "images",
            tmp_path / "lsp.zarr",
            split="all",
            canvas_size=32,
            workers=1,
            progress=False,
            on_bad_sample="skip",
        )
    )["store"]
    gt, visible, _, _ = read_ground_truth(store)
    write_predictions_mat(tmp_path / "p.mat", np.nan_to_num(gt))
    result = score(tmp_path / "p.mat", store, tmp_path / "s.csv")
    # eval_pck.m would divide by a torso taken from placeholders, zero where both sit at (0, 0)
    assert (torso_size(gt) == 0).any() and (visible == 0).any()
    assert result["metric"] == "PCK" and result["table"]["PCK@0.2"]["Mean"] == 100.0
    assert result["table"]["PCK@0.2 (visible only)"]["Mean"] == 100.0 and len(result["notes"]) == 1


# ------------------------------------------------------------------------ COCO: OKS AP


COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10
)


@pytest.fixture
def coco_store(shared_data, tmp_path):
    pytest.importorskip("pycocotools", reason="OKS AP needs pycocotools (pip install -e '.[coco]')")
    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions

    annotations = shared_data / "coco_sample" / "person_keypoints_sample.json"
    store = convert(
        ConvertOptions(
            "coco",
            annotations,
            shared_data / "coco_sample" / "images",
            tmp_path / "coco.zarr",
            split="val",
            canvas_size=32,
            workers=1,
            progress=False,
        )
    )["store"]
    return store, annotations


def test_coco_ground_truth_as_predictions_ap_100(coco_store, tmp_path):
    store, annotations = coco_store
    gt, _, _, _ = read_ground_truth(store)
    write_predictions_mat(tmp_path / "p.mat", gt)
    assert (
        cli.main(
            [
                "score",
                "--preds",
                str(tmp_path / "p.mat"),
                "--gt",
                str(store),
                "--annotations",
                str(annotations),
                "--out",
                str(tmp_path / "s.csv"),
                "--per-joint",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["metric", "value"]
    assert [r[0] for r in rows[1:7]] == ["AP", "AP50", "AP75", "APm", "APl", "AR"]
    assert all(r[1] == "100.00" for r in rows[1:])
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["metric"] == "OKS" and data["num_samples"] == 12


def test_coco_displaced_person_lowers_ap(coco_store, tmp_path):
    """One person's joints moved so that each joint's OKS term is exp(-d^2 / (2 area k^2))
    = 0.72: it matches at OKS thresholds 0.50 ... 0.70 (5 of 10), not from 0.75 on. With
    12 people, AR = (5 x 12/12 + 5 x 11/12) / 10."""
    store, annotations = coco_store
    gt, visible, _, _ = read_ground_truth(store)
    from pose_pipeline.data.store import open_store

    ann_id = int(open_store(store).source_index[0, 1])
    area = next(a["area"] for a in json.loads(annotations.read_text())["annotations"] if a["id"] == ann_id)
    preds = gt.copy()
    preds[0, :, 0] += 2 * COCO_SIGMAS * np.sqrt(2 * area * -np.log(0.72))
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", store, tmp_path / "s.csv", annotations=annotations)
    table = {row: cols["value"] for row, cols in result["table"].items()}
    assert table["AR"] == pytest.approx(100 * (5 + 5 * 11 / 12) / 10)
    assert table["AP50"] == 100.0 and table["AP"] < 100.0 and table["AP75"] < 100.0
    assert result["curves"]["AP"][:5] == [100.0] * 5 and all(v < 100 for v in result["curves"]["AP"][5:])


def test_coco_needs_the_annotation_file_it_was_converted_from(coco_store, tmp_path):
    store, annotations = coco_store
    gt, _, _, _ = read_ground_truth(store)
    write_predictions_mat(tmp_path / "p.mat", gt)
    other = tmp_path / "other.json"
    other.write_text(annotations.read_text().replace('"area"', '"area" ', 1))
    with pytest.raises(UserError, match="not the annotation file"):
        score(tmp_path / "p.mat", store, tmp_path / "s.csv", annotations=other)
    assert not (tmp_path / "s.csv").exists()


def test_a_coco_store_is_scored_against_the_annotation_file_it_records(shared_data, tmp_path, capsys):
    """Without --annotations, the file the store was converted from, where it recorded it; gone,
    changed, or not recorded (a store from before): one line saying to give --annotations."""
    pytest.importorskip("pycocotools", reason="OKS AP needs pycocotools (pip install -e '.[coco]')")
    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions

    annotations = tmp_path / "mine.json"
    annotations.write_bytes((shared_data / "coco_sample" / "person_keypoints_sample.json").read_bytes())
    images = shared_data / "coco_sample" / "images"
    store = convert(
        ConvertOptions("coco", annotations, images, tmp_path / "c.zarr", split="val", canvas_size=32, workers=1)
    )["store"]
    write_predictions_mat(tmp_path / "p.mat", read_ground_truth(store)[0])
    argv = ["score", "--preds", str(tmp_path / "p.mat"), "--gt", str(store), "--out", str(tmp_path / "s.csv")]
    assert cli.main(argv + ["--per-joint", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["annotations"] == str(annotations)
    assert "AP " in capsys.readouterr().out

    def refusal() -> str:
        assert cli.main(argv) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "give --annotations" in lines[0]
        return lines[0]

    annotations.write_text(annotations.read_text().replace('"area"', '"area" ', 1))
    assert f"{annotations} has changed since {store} was converted from it" in refusal()
    annotations.unlink()
    assert f"{store} was converted from {annotations}, which is gone: give --annotations" in refusal()
    meta = json.loads((tmp_path / "c.zarr" / "zarr.json").read_text())
    for source in meta["attributes"]["sources"]:
        del source["path"]
    (tmp_path / "c.zarr" / "zarr.json").write_text(json.dumps(meta))
    assert "does not record where its mine.json lay" in refusal()


def test_coco_json_as_ground_truth(coco_store, tmp_path):
    """The COCO JSON itself as --gt: its people in the converter's order, no store needed."""
    store, annotations = coco_store
    gt, _, _, _ = read_ground_truth(store)
    write_predictions_mat(tmp_path / "p.mat", gt)
    result = score(tmp_path / "p.mat", annotations, tmp_path / "s.csv")  # metric oks from .json
    assert result["metric"] == "OKS" and result["table"]["AP"]["value"] == 100.0
    with pytest.raises(UserError, match="--split val: OKS AP scores every person"):
        score(tmp_path / "p.mat", annotations, tmp_path / "s.csv", split="val")


# ------------------------------------------------------- annotation files as ground truth


def original_lsp_joints(path, n: int = 2000, seed: int = 1):
    """An original-layout LSP joints.mat (3, 14, n): x, y, occluded (1 = occluded)."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(50, 250, (n, 14, 2))
    occluded = rng.random((n, 14)) < 0.2
    scipy.io.savemat(path, {"joints": np.concatenate([keypoints.transpose(2, 1, 0), occluded.T[None] * 1.0])})
    return keypoints, occluded


def test_lsp_joints_mat_as_ground_truth_split_as_convert(tmp_path):
    """Original LSP (2,000 images): --split val (the default) = images 1,001-2,000, as convert.
    Occluded joints (with guessed positions) count as every joint does in eval_pck.m."""
    gt_file = tmp_path / "joints.mat"
    keypoints, occluded = original_lsp_joints(gt_file)
    preds = keypoints[1000:].copy()
    preds[occluded[1000:]] += 1000.0  # every occluded joint badly wrong
    write_predictions_mat(tmp_path / "val.mat", preds)
    result = score(tmp_path / "val.mat", gt_file, tmp_path / "s.csv")
    # every joint labelled: eval_pck.m's rows, the torso the ground truth's (occluded or not), so
    # the occluded misses are exactly the misses
    assert result["protocol"].startswith("eval_pck.m (bearpaw/eval_pose)") and result["notes"] == []
    assert result["table"]["PCK@0.2"]["Mean"] == pytest.approx(100 * (1 - occluded[1000:].mean()))
    # visible-only: only visible joints of images whose torso joints are visible: all exact
    assert result["table"]["PCK@0.2 (visible only)"]["Mean"] == 100.0
    # --split train = the first half; those predictions scored as val (the default) miss
    write_predictions_mat(tmp_path / "train.mat", keypoints[:1000])
    train = score(tmp_path / "train.mat", gt_file, tmp_path / "t.csv", split="train")
    assert train["table"]["PCK@0.2"]["Mean"] == 100.0
    assert score(tmp_path / "train.mat", gt_file, tmp_path / "t.csv")["table"]["PCK@0.2"]["Mean"] < 50.0
    with pytest.raises(UserError, match="1000 predicted samples, but the ground truth .* has 2000"):
        score(tmp_path / "train.mat", gt_file, tmp_path / "t.csv", split="all")


def test_split_only_for_annotation_files(shared_data, tmp_path, capsys):
    write_predictions_mat(tmp_path / "p.mat", np.zeros((300, 14, 2)))
    joints = shared_data / "lsp_sample" / "joints.mat"
    # a 300-image sample has no val half: said so, naming the way out
    assert (
        cli.main(["score", "--preds", str(tmp_path / "p.mat"), "--gt", str(joints), "--out", str(tmp_path / "s.csv")])
        == 1
    )
    assert "use --split all" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "score",
                "--preds",
                str(tmp_path / "p.mat"),
                "--gt",
                str(joints),
                "--split",
                "all",
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 0
    )
    reference = reference_file(shared_data)
    with pytest.raises(UserError, match="--split val: selects the people of an annotation file"):
        score(tmp_path / "p.mat", reference, tmp_path / "s.csv", split="val")
