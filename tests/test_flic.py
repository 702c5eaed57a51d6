"""FLIC: the examples.mat reader (release layout and the same struct renamed), conversion,
and PCK as eval_pck.m scores FLIC, by hand and on the real annotations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from pose_pipeline import cli
from pose_pipeline.core.joints import FLIC, FLIC_PCK_POINTS
from pose_pipeline.data.formats import flic
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.ground_truth import read_ground_truth
from pose_pipeline.evaluate.score import score
from pose_pipeline.inference.prediction_files import write_predictions_mat

NAN = np.nan


def flic_sample(shared_data):
    return shared_data / "flic_sample"


def write_flic(path, records: list[dict], variable: str = "examples"):
    """A FLIC-layout .mat: a 1xN struct array under `variable`."""
    array = np.zeros((1, len(records)), dtype=[(key, object) for key in records[0]])
    for i, record in enumerate(records):
        for key, value in record.items():
            array[0, i][key] = value
    scipy.io.savemat(path, {variable: array})
    return path


def record(joints: dict, istest: int = 1, **extra) -> dict:
    """One example: `joints` maps FLIC joint names to (x, y); the rest of the 29 slots NaN."""
    coords = np.full((2, flic.NUM_SLOTS), NAN)
    for name, xy in joints.items():
        coords[:, flic.SLOTS[FLIC.index(name)]] = xy
    return {
        "coords": coords,
        "filepath": "frame.jpg",
        "torsobox": np.array([[50.0, 90.0, 120.0, 150.0]]),
        "istrain": 1 - istest,
        "istest": istest,
        **extra,
    }


# ------------------------------------------------------------------------ reading


def test_release_file_and_renamed_struct_read_alike(shared_data):
    examples = flic.read_examples(flic_sample(shared_data) / "examples.mat")
    assert examples.variable == "examples" and len(examples) == 20 and examples.isbad is not None
    assert examples.istrain.sum() == 15 and examples.istest.sum() == 5 and np.all(examples.istest[15:])
    assert examples.image_names[0] == "im00001.jpg"
    # the stand-ins carry LSP joints: eyes and nose NaN, the other eight slots annotated
    assert examples.visible[:, :8].all() and not examples.visible[:, 8:].any()
    anno = flic.read_examples(flic_sample(shared_data) / "flic_anno.mat")
    assert anno.variable == "flic_anno" and len(anno) == 5003 and anno.isbad is None
    assert (anno.istrain.sum(), anno.istest.sum()) == (3987, 1016)
    assert anno.visible.all()  # the real release annotates all 11 slots
    assert anno.image_names[0] == "12-oclock-high-special-edition-00006361.jpg"
    # slot 1 is L shoulder, slot 4 R shoulder: read from coords columns 0 and 3
    raw = scipy.io.loadmat(flic_sample(shared_data) / "flic_anno.mat", squeeze_me=True, struct_as_record=False)[
        "flic_anno"
    ][0].coords
    assert np.array_equal(anno.keypoints[0, FLIC.index("l_shoulder")], raw[:, 0])
    assert np.array_equal(anno.keypoints[0, FLIC.index("nose")], raw[:, 16])
    assert np.array_equal(anno.keypoints[0, FLIC.index("r_hip")], raw[:, 9])


def test_splits_and_isbad(tmp_path):
    records = [
        record({"l_shoulder": (10, 10)}, istest=0, isbad=0),
        record({"l_shoulder": (10, 10)}, istest=1, isbad=1),
        record({"l_shoulder": (10, 10)}, istest=1, isbad=0),
    ]
    examples = flic.read_examples(write_flic(tmp_path / "e.mat", records))
    assert list(flic.split_rows(examples, "train", "e.mat")) == [0]
    assert list(flic.split_rows(examples, "val", "e.mat")) == [2]  # the bad one dropped
    assert list(flic.split_rows(examples, "all", "e.mat")) == [0, 2]


def test_person_box_spans_torso_box_and_joints(tmp_path):
    """Torso box x 50..120, y 90..150; the joints reach x 40 and y 60: box x 40..120 (80),
    y 60..150 (90); scale = 90 x 1.4 / 200."""
    examples = flic.read_examples(
        write_flic(tmp_path / "e.mat", [record({"l_shoulder": (100, 100), "r_shoulder": (40, 100), "nose": (70, 60)})])
    )
    center, scale = flic.person_boxes(examples)
    assert center[0] == pytest.approx((80.0, 105.0)) and scale[0] == pytest.approx(90 * 1.4 / 200)


@pytest.mark.parametrize(
    "records, variable, message",
    [
        (
            [{"filepath": "a.jpg", "torsobox": np.zeros(4), "istrain": 1, "istest": 0}],
            "flic_anno",
            "variable `flic_anno` has no field `coords`",
        ),
        (
            [{**record({}), "coords": np.zeros((2, 14))}],
            "examples",
            "examples(1).coords is shape (2, 14); expected (2, 29)",
        ),
        ([{**record({}), "istest": 2}], "examples", "examples(1).istest is 2; expected 0 or 1"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, records, variable, message):
    path = write_flic(tmp_path / "bad.mat", records, variable)
    with pytest.raises(UserError) as err:
        flic.read_examples(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_file_without_a_struct_is_refused(tmp_path):
    scipy.io.savemat(tmp_path / "x.mat", {"coords": np.zeros((2, 29))})
    with pytest.raises(UserError, match="no single FLIC struct variable"):
        flic.read_examples(tmp_path / "x.mat")
    with pytest.raises(UserError, match="no ground truth"):  # nor is it any other ground truth
        read_ground_truth(tmp_path / "x.mat")


def test_convert_the_sample_end_to_end(shared_data, tmp_path):
    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions
    from pose_pipeline.data.store import open_store

    sample = flic_sample(shared_data)
    for split, count in (("train", 15), ("val", 5)):
        convert(
            ConvertOptions(
                "flic",
                sample / "examples.mat",
                sample / "images",
                tmp_path / f"{split}.zarr",
                split=split,
                canvas_size=32,
                workers=1,
                progress=False,
            )
        )
        store = open_store(tmp_path / f"{split}.zarr")
        assert len(store) == count and store.joint_set is FLIC and store.attrs["format"] == "flic"
    assert list(store.image_name) == [f"im{i:05d}.jpg" for i in range(16, 21)]
    # unannotated eyes and nose: not visible, stored at (0, 0) rather than NaN
    assert not np.asarray(store.visible)[:, 8:].any() and np.isfinite(np.asarray(store.keypoints)).all()
    assert store.attrs["converter"]["flic"]["variable"] == "examples"


# ------------------------------------------------------------------------ scoring


def hand_case(nose_annotated: bool = False) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Two examples, torso ||l_shoulder - r_hip|| = ||(30, -40)|| = 50 px. Example 0: r_shoulder
    predicted 10 px off (0.2: right at 0.2 only), so the predicted neck (the shoulders' midpoint)
    is 5 px off (0.1: right at both, <= inclusive); nose 11 px off (wrong). Example 1: exact,
    but its nose predicted at (0, 0), and annotated only with `nose_annotated` (else NaN)."""
    joints = {
        "l_shoulder": (100, 100),
        "r_shoulder": (60, 100),
        "l_elbow": (110, 130),
        "r_elbow": (50, 130),
        "l_wrist": (115, 160),
        "r_wrist": (45, 160),
        "l_hip": (95, 140),
        "r_hip": (70, 140),
        "l_eye": (90, 70),
        "r_eye": (70, 70),
        "nose": (80, 80),
    }
    second = joints if nose_annotated else {k: v for k, v in joints.items() if k != "nose"}
    records = [record(joints), record(second)]
    gt = np.array([[joints[name] for name in FLIC.joints]] * 2, dtype=np.float64)
    preds = gt.copy()
    preds[0, FLIC.index("r_shoulder"), 0] += 10.0
    preds[0, FLIC.index("nose"), 1] += 11.0
    preds[1, FLIC.index("nose")] = (0.0, 0.0)
    return gt, preds, records


def test_flic_pck_computed_by_hand(tmp_path):
    """Every point labelled: eval_pck.m's protocol, every point of every example counted."""
    _, preds, records = hand_case(nose_annotated=True)
    gt_file = write_flic(tmp_path / "examples.mat", records)
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", gt_file, tmp_path / "s.csv", tmp_path / "s.json")  # --split val
    assert result["metric"] == "PCK" and result["columns"] == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Mean"]
    assert result["protocol"].startswith("eval_pck.m (bearpaw/eval_pose)") and result["notes"] == []
    at2, at1 = result["table"]["PCK@0.2"], result["table"]["PCK@0.1"]
    assert at2["Head"] == 50.0 and at2["Shoulder"] == 100.0  # nose 0 of 2, neck 2 of 2
    assert at2["Mean"] == pytest.approx(100 * 18 / 20)  # 10 points x 2 examples, both noses missed
    assert at1["Shoulder"] == 75.0 and at1["Head"] == 50.0  # r_shoulder 1 of 2; neck right at 0.1
    assert at1["Mean"] == pytest.approx(100 * 17 / 20)
    # AUC of Mean: 16 points right at every threshold, neck of example 0 from step 10 of 20,
    # r_shoulder from step 20, each with half a step on its ramp
    assert result["table"]["AUC@0.2"]["Mean"] == pytest.approx(100 * (16 + 10.5 / 20 + 0.5 / 20) / 20)
    assert list(result["per_joint"]) == [name for name, _ in FLIC_PCK_POINTS]
    header = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert header == "metric,Head,Shoulder,Elbow,Wrist,Hip,Mean,Mean(weighted)"


def test_flic_unannotated_nose_is_left_out_and_said(tmp_path, capsys):
    """Example 1's nose is NaN (not annotated): a missing point, not a miss. The rows count the
    19 labelled points (eval_pck.m would count 20, the NaN one missed), and the output says so."""
    _, preds, records = hand_case()
    gt_file = write_flic(tmp_path / "examples.mat", records)
    write_predictions_mat(tmp_path / "p.mat", preds)
    result = score(tmp_path / "p.mat", gt_file, tmp_path / "s.csv")
    at2, at1 = result["table"]["PCK@0.2"], result["table"]["PCK@0.1"]
    assert at2["Head"] == 50.0 and at1["Head"] == 50.0  # nose 0 of 1, neck 2 of 2
    assert at2["Mean"] == pytest.approx(100 * 18 / 19) and at1["Mean"] == pytest.approx(100 * 17 / 19)
    assert result["per_joint"]["nose"]["count"] == 1 and result["per_joint"]["neck"]["count"] == 2
    (note,) = result["notes"]
    assert "1 of 20 scored points are missing" in note and "in 1 of 2 persons, 0 of them with a torso joint" in note
    argv = ["score", "--preds", str(tmp_path / "p.mat"), "--gt", str(gt_file), "--out", str(tmp_path / "c.csv")]
    assert cli.main(argv) == 0
    assert f"note: {note}" in capsys.readouterr().out


def test_flic_store_scores_as_the_file(tmp_path):
    """A store keeps unannotated joints at (0, 0) with visible 0; scoring treats them as the
    file's NaN (missed), so file and store give the same table."""
    from pose_pipeline.data.store_writer import StoreWriter

    gt, preds, records = hand_case()
    gt_file = write_flic(tmp_path / "examples.mat", records)
    visible = np.ones((2, FLIC.num_joints), np.uint8)
    visible[1, FLIC.index("nose")] = 0
    writer = StoreWriter(
        tmp_path / "val.zarr", 2, FLIC, 16, attrs={"pixel_origin": 1.0, "context": 1.5, "format": "flic"}
    )
    writer.write_block(np.zeros((2, 16, 16, 3), np.uint8))
    writer.set_metadata(
        keypoints=np.where(visible[..., None] > 0, gt, 0).astype(np.float32),
        visible=visible,
        affine=np.tile(np.eye(2, 3), (2, 1, 1)),
        center=np.zeros((2, 2)),
        scale=np.ones(2),
        head_size=np.full(2, np.nan),
        image_name=np.array(["a.jpg", "b.jpg"]),
        source_index=np.zeros((2, 2), np.int64),
    )
    writer.commit()
    write_predictions_mat(tmp_path / "p.mat", preds)
    from_file = score(tmp_path / "p.mat", gt_file, tmp_path / "f.csv")
    from_store = score(tmp_path / "p.mat", tmp_path / "val.zarr", tmp_path / "s.csv")
    assert from_store["table"] == from_file["table"]


def test_real_annotations_score_100_against_themselves(shared_data, tmp_path):
    anno = flic_sample(shared_data) / "flic_anno.mat"
    gt, _, _, joints = read_ground_truth(anno, "val")
    assert joints is FLIC and len(gt) == 1016
    write_predictions_mat(tmp_path / "p.mat", gt)
    assert (
        cli.main(
            [
                "score",
                "--preds",
                str(tmp_path / "p.mat"),
                "--gt",
                str(anno),
                "--split",
                "val",
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 0
    )
    assert (tmp_path / "s.csv").read_text().splitlines()[1] == "PCK@0.2," + ",".join(["100.00"] * 7)
    # predictions of the whole file against --split val: the counts differ, said so
    all_gt, _, _, _ = read_ground_truth(anno, "all")
    write_predictions_mat(tmp_path / "all.mat", all_gt)
    with pytest.raises(UserError, match="5003 predicted samples, but the ground truth .* has 1016"):
        score(tmp_path / "all.mat", anno, tmp_path / "x.csv")


def test_joint_count_mismatch_names_the_file(shared_data, tmp_path):
    write_predictions_mat(tmp_path / "p.mat", np.zeros((5, 10, 2)))  # eval_pose's 10-point order
    with pytest.raises(UserError) as err:
        score(tmp_path / "p.mat", flic_sample(shared_data) / "examples.mat", tmp_path / "s.csv")
    assert str(tmp_path / "p.mat") in str(err.value) and "expected 11 joints, got 10" in str(err.value)


def test_flic_curves_plot_its_own_columns(tmp_path):
    from pose_pipeline.report.charts import plot_pckh_curves

    _, preds, records = hand_case()
    write_predictions_mat(tmp_path / "p.mat", preds)
    score(tmp_path / "p.mat", write_flic(tmp_path / "e.mat", records), tmp_path / "s.csv", tmp_path / "s.json")
    panels = plot_pckh_curves({"flic": tmp_path / "s.json"}, tmp_path / "pck.png", dpi=30)
    assert [p["title"] for p in panels] == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Mean"]
