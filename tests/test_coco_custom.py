"""COCO-format files that declare their own keypoints and skeleton: the joint set built from
the category, flip pairs, OKS with the dataset's sigmas, validation, plots, and each bad
input. The files are made from the real COCO sample (helpers.write_custom_coco)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import CUSTOM_KEYPOINTS, CUSTOM_SIGMAS, CUSTOM_SKELETON, write_custom_coco

from pose_pipeline import cli
from pose_pipeline.config.schema import validate_config
from pose_pipeline.core.joints import COCO, LSP, MPII, JointSet, mirror_pairs, torso_pair
from pose_pipeline.data.convert import convert
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.formats import coco
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import validation_score
from pose_pipeline.evaluate.score import score
from pose_pipeline.inference.prediction_files import write_predictions_csv

NAMES = list(CUSTOM_KEYPOINTS)


@pytest.fixture
def custom_json(shared_data, tmp_path):
    path = tmp_path / "custom.json"
    write_custom_coco(shared_data, path)
    return path


@pytest.fixture
def custom_store(shared_data, custom_json, tmp_path):
    out = tmp_path / "custom.zarr"
    convert(
        ConvertOptions(
            "coco", custom_json, shared_data / "coco_sample" / "images", out, canvas_size=64, workers=1, progress=False
        )
    )
    return out


def _edit(custom_json, tmp_path, edit):
    data = json.loads(custom_json.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


# ------------------------------------------------------------------ the joint set


def test_the_category_declares_the_joint_set(custom_json):
    people = coco.read_annotations(custom_json)
    joints = people.joints
    assert joints.name == "upper_body" and list(joints.joints) == NAMES
    assert joints.edges == tuple((a - 1, b - 1) for a, b in CUSTOM_SKELETON)  # 1-based in the file
    # left_x with right_x by name, wherever they sit in the order
    assert sorted(tuple(sorted(p)) for p in joints.flip_pairs) == [(1, 2), (3, 4), (5, 6), (7, 8)]
    assert joints.flip_permutation().tolist() == [0, 2, 1, 4, 3, 6, 5, 8, 7]
    assert [joints.side(k) for k in range(9)] == [
        "centre",
        "right",
        "left",
        "left",
        "right",
        "left",
        "right",
        "left",
        "right",
    ]
    assert people.keypoints.shape[1:] == (9, 2)
    # the keypoints are the file's own, in the custom order (head = COCO's nose)
    data = json.loads(custom_json.read_text())
    first = next(a for a in data["annotations"] if any(a["keypoints"][2::3]))
    row = list(people.annotation_id).index(first["id"])
    assert people.keypoints[row].ravel().tolist() == [
        v for k in range(9) for v in first["keypoints"][3 * k : 3 * k + 2]
    ]


def test_standard_coco_keeps_the_builtin_set(shared_data):
    people = coco.read_annotations(shared_data / "coco_sample" / "person_keypoints_sample.json")
    assert people.joints is COCO


def test_flip_pairs_from_short_and_long_prefixes_any_case():
    names = ("Left_Paw", "right_paw", "l_ear", "r_ear", "tail", "left_eye")  # left_eye has no mirror
    assert mirror_pairs(names) == ((0, 1), (2, 3))
    assert mirror_pairs(COCO.joints) == COCO.flip_pairs
    assert sorted(tuple(sorted(p)) for p in mirror_pairs(MPII.joints)) == sorted(
        tuple(sorted(p)) for p in MPII.flip_pairs
    )


def test_sides_and_torso_by_long_names():
    joints = JointSet("x", ("LEFT_shoulder", "right_hip", "nose", "r_knee"), (), ())
    assert [joints.side(k) for k in range(4)] == ["left", "right", "centre", "right"]
    assert torso_pair(joints) == (0, 1) and torso_pair(LSP) == (9, 2)
    assert torso_pair(JointSet("hand", ("wrist", "thumb_tip"), (), ())) is None


def test_flip_pairs_given_by_name_replace_the_derived_ones(custom_json):
    joints = coco.read_annotations(custom_json, flip_pairs=[["left_wrist", "right_wrist"]]).joints
    assert joints.flip_pairs == ((5, 6),)


def test_the_store_and_the_checkpoint_record_the_custom_set(custom_store):
    store = open_store(custom_store)
    assert store.attrs["joint_set"] == "upper_body" and store.attrs["joints"] == NAMES
    assert store.attrs["converter"]["coco"]["flip_pairs"] == "names"
    assert store.joint_set == JointSet.from_dict(store.joint_set.to_dict())
    assert store.joint_set.edges == tuple((a - 1, b - 1) for a, b in CUSTOM_SKELETON)


def test_convert_cli_takes_flip_pairs(shared_data, custom_json, tmp_path):
    out = tmp_path / "pairs.zarr"
    code = cli.main(
        [
            "convert",
            "coco",
            "--annotations",
            str(custom_json),
            "--images",
            str(shared_data / "coco_sample" / "images"),
            "--out",
            str(out),
            "--canvas-size",
            "64",
            "--workers",
            "1",
            "--flip-pair",
            "left_hip",
            "right_hip",
            "--flip-pair",
            "left_wrist",
            "right_wrist",
        ]
    )
    assert code == 0
    store = open_store(out)
    assert store.joint_set.flip_pairs == ((7, 8), (5, 6)) and store.attrs["converter"]["coco"]["flip_pairs"] == "config"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["annotations"][3].update(keypoints=d["annotations"][3]["keypoints"] + [1, 2, 2]),
            "`keypoints` has 30 numbers; expected 27 ([x, y, v] x 9",
        ),
        (lambda d: d["categories"][0].update(skeleton=[[1, 2], [0, 3]]), "skeleton[1] = [0, 3]"),
        (
            lambda d: d["categories"][0].update(skeleton=[[1, 2], [9, 10]]),
            "from 1 to 9 (COCO skeleton indices are 1-based)",
        ),
        (lambda d: d["categories"][0].update(keypoints=NAMES[:-1] + ["head"]), "keypoint names repeat: ['head']"),
        (
            lambda d: d["categories"].append({**d["categories"][0], "id": 2, "keypoints": NAMES[::-1]}),
            "must share one list",
        ),
    ],
)
def test_bad_custom_files_name_the_file_and_the_record(custom_json, tmp_path, edit, message):
    path = _edit(custom_json, tmp_path, edit)
    with pytest.raises(UserError) as err:
        coco.read_annotations(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_wrong_joint_count_names_the_annotation(custom_json, tmp_path):
    path = _edit(custom_json, tmp_path, lambda d: d["annotations"][3].update(keypoints=[0, 0, 0] * 17))
    with pytest.raises(
        UserError,
        match=r"annotation id \d+ \(annotations\[3\]\): `keypoints` has 51 numbers; "
        r"expected 27 \(\[x, y, v\] x 9, the 9 keypoints of its category\)",
    ):
        coco.read_annotations(path)


@pytest.mark.parametrize(
    "pairs, message",
    [
        ([["left_wrist", "right_paw"]], "flip_pairs [left_wrist, right_paw]: 'right_paw' is not a keypoint"),
        ([["left_wrist", "right_wrist"], ["left_wrist", "right_hip"]], "in two pairs"),
        ([["head", "head"]], "paired with itself"),
    ],
)
def test_bad_flip_pairs_name_the_key_and_the_file(custom_json, pairs, message):
    with pytest.raises(UserError) as err:
        coco.read_annotations(custom_json, flip_pairs=pairs)
    assert str(custom_json) in str(err.value) and message in str(err.value)


def test_flip_pairs_for_the_standard_set_or_another_format_are_refused(shared_data, tmp_path):
    with pytest.raises(UserError, match="declares COCO's 17 keypoints, whose pairs are known"):
        coco.read_annotations(
            shared_data / "coco_sample" / "person_keypoints_sample.json", flip_pairs=[["left_eye", "right_eye"]]
        )
    lsp = shared_data / "lsp_sample"
    with pytest.raises(UserError, match="--flip-pair is a COCO option"):
        convert(
            ConvertOptions(
                "lsp",
                lsp / "joints.mat",
                lsp / "images",
                tmp_path / "x.zarr",
                split="all",
                flip_pairs=[["l_hip", "r_hip"]],
                workers=1,
                progress=False,
            )
        )


def _config(**dataset):
    return {
        "datasets": {"d": {"format": "coco", "annotations": "a.json", "images": "img", **dataset}},
        "experiments": {"e": {"dataset": "d", "model": {"arch": "hourglass"}}},
    }


@pytest.mark.parametrize(
    "dataset, message",
    [
        ({"oks_sigmas": [0.1, -0.2]}, "datasets.d.oks_sigmas"),
        ({"oks_sigmas": "0.1"}, "datasets.d.oks_sigmas"),
        ({"flip_pairs": [["a", "b", "c"]]}, "datasets.d.flip_pairs"),
        ({"format": "lsp", "oks_sigmas": [0.1]}, "datasets.d.oks_sigmas: for COCO-format files only"),
        ({"format": "mpii", "flip_pairs": [["a", "b"]]}, "datasets.d.flip_pairs: for COCO-format files only"),
    ],
)
def test_config_validates_sigmas_and_flip_pairs(dataset, message):
    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        validate_config(_config(**dataset))
    validate_config(_config(oks_sigmas=CUSTOM_SIGMAS, flip_pairs=[["left_hip", "right_hip"]]))


# ------------------------------------------------------------------ OKS AP with the sigmas


def _ground_truth_predictions(store_path, out, offset=None):
    """The store's own keypoints as a prediction CSV (what `predict` writes), `offset` (J,2)
    pixels added."""
    store = open_store(store_path)
    preds = np.asarray(store.keypoints, dtype=np.float64) + (0 if offset is None else offset)
    write_predictions_csv(out, preds, list(store.image_name), list(store.joint_set.joints), np.ones(preds.shape[:2]))
    return out


def test_oks_ap_uses_the_dataset_sigmas(custom_json, custom_store, tmp_path):
    pytest.importorskip("pycocotools")
    exact = _ground_truth_predictions(custom_store, tmp_path / "exact.csv")
    table = score(exact, custom_store, tmp_path / "s.csv", annotations=custom_json, oks_sigmas=CUSTOM_SIGMAS)
    assert table["table"]["AP"]["value"] == pytest.approx(100.0) and table["oks_sigmas"] == CUSTOM_SIGMAS
    # 12 px off at the head: a tight head sigma costs AP, a loose one does not (the sigmas reach COCOeval)
    offset = np.zeros((9, 2))
    offset[NAMES.index("head")] = (12.0, 0.0)
    moved = _ground_truth_predictions(custom_store, tmp_path / "moved.csv", offset)
    tight = score(
        moved, custom_store, tmp_path / "t.csv", annotations=custom_json, oks_sigmas=[0.005] + CUSTOM_SIGMAS[1:]
    )["table"]["AP"]["value"]
    loose = score(
        moved, custom_store, tmp_path / "l.csv", annotations=custom_json, oks_sigmas=[5.0] + CUSTOM_SIGMAS[1:]
    )["table"]["AP"]["value"]
    assert loose == pytest.approx(100.0) and tight < 90.0
    # the annotation file itself as ground truth gives the same
    assert score(moved, custom_json, tmp_path / "j.csv", oks_sigmas=[0.005] + CUSTOM_SIGMAS[1:])["table"]["AP"][
        "value"
    ] == pytest.approx(tight)


@pytest.mark.parametrize(
    "sigmas, message",
    [
        (
            None,
            "OKS AP for a joint set of its own needs one sigma per joint (COCOeval's are for COCO's 17 "
            "keypoints): set `oks_sigmas`",
        ),
        (CUSTOM_SIGMAS[:5], "`oks_sigmas` has 5 values for 9 joints"),
        (CUSTOM_SIGMAS[:8] + [0.0], "`oks_sigmas` holds values that are not positive"),
    ],
)
def test_sigmas_missing_or_of_the_wrong_length_name_the_key(custom_json, custom_store, tmp_path, sigmas, message):
    preds = _ground_truth_predictions(custom_store, tmp_path / "exact.csv")
    with pytest.raises(UserError) as err:
        score(preds, custom_store, tmp_path / "s.csv", annotations=custom_json, oks_sigmas=sigmas)
    assert str(custom_store) in str(err.value) and "joint set upper_body, 9 joints" in str(err.value)
    assert message in str(err.value)


def test_a_set_of_its_own_with_17_joints_still_needs_sigmas():
    from pose_pipeline.evaluate.oks import check_sigmas

    renamed = JointSet("paw17", tuple(f"p{k}" for k in range(17)), (), ())
    with pytest.raises(ValueError, match="set `oks_sigmas`"):
        check_sigmas(None, renamed)
    assert check_sigmas(None, COCO) is None and check_sigmas([0.1] * 17, renamed).tolist() == [0.1] * 17


def test_standard_coco_takes_the_config_sigmas_too(shared_data, tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.cocoeval import Params

    path = shared_data / "coco_sample" / "person_keypoints_sample.json"
    people = coco.read_annotations(path)
    preds = people.keypoints.copy()
    preds[:, COCO.index("nose")] += (12.0, 0.0)
    csv_path = tmp_path / "p.csv"
    write_predictions_csv(csv_path, preds, people.image_names, COCO, np.ones(preds.shape[:2]))
    default = score(csv_path, path, tmp_path / "d.csv")["table"]["AP"]["value"]
    coco_sigmas = Params(iouType="keypoints").kpt_oks_sigmas.tolist()
    same = score(csv_path, path, tmp_path / "s.csv", oks_sigmas=coco_sigmas)["table"]["AP"]["value"]
    loose = score(csv_path, path, tmp_path / "l.csv", oks_sigmas=[5.0] + coco_sigmas[1:])["table"]["AP"]["value"]
    assert same == pytest.approx(default) and default < 95.0 and loose == pytest.approx(100.0)


def test_score_cli_reads_sigmas(custom_json, custom_store, tmp_path, capsys):
    pytest.importorskip("pycocotools")
    preds = _ground_truth_predictions(custom_store, tmp_path / "exact.csv")
    args = [
        "score",
        "--preds",
        str(preds),
        "--gt",
        str(custom_store),
        "--annotations",
        str(custom_json),
        "--out",
        str(tmp_path / "s.csv"),
    ]
    assert cli.main(args + ["--oks-sigmas", ",".join(map(str, CUSTOM_SIGMAS))]) == 0
    with pytest.raises(SystemExit) as exit_:
        cli.main(args + ["--oks-sigmas", "0.1,x"])
    assert exit_.value.code == 2  # an argparse usage error
    assert "expected comma-separated numbers" in capsys.readouterr().err


# ------------------------------------------------------------------ validation, predict, plots


def test_validation_without_a_torso_uses_the_keypoint_box():
    hand = JointSet("hand", ("wrist", "thumb_tip", "index_tip"), (), ())
    gt = np.array([[[0.0, 0.0], [40.0, 10.0], [20.0, 30.0]]])  # box 40 x 30: unit 40
    preds = gt + np.array([[[7.9, 0.0], [0.0, 8.1], [100.0, 0.0]]])  # 0.1975, 0.2025, 2.5 units
    label, value = validation_score(preds, gt, np.ones((1, 3)), np.full(1, np.nan), hand)
    assert label == "PCK@0.2 box" and value == pytest.approx(100 / 3)
    # an unannotated joint neither counts nor widens the box: unit 30 (x 0..20, y 0..30)
    label, value = validation_score(preds, gt, np.array([[1, 0, 1]]), np.full(1, np.nan), hand)
    assert value == pytest.approx(0.0)  # 7.9 / 30 > 0.2 and 100 / 30 > 0.2


def test_validation_of_the_custom_set_is_torso_pck(custom_store):
    store = open_store(custom_store)
    gt, visible = np.asarray(store.keypoints, np.float64), np.asarray(store.visible)
    label, value = validation_score(gt, gt, visible, store.head_size, store.joint_set)
    assert label == "PCK@0.2" and value == pytest.approx(100.0)


def test_predict_refuses_a_checkpoint_of_another_set_with_as_many_joints(custom_store, tmp_path):
    import torch

    from pose_pipeline.inference.loaded_model import LoadedModel
    from pose_pipeline.inference.predict import check_joint_names
    from pose_pipeline.models import build_model

    store = open_store(custom_store)
    config = {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16, "joints": 9}
    other = JointSet("paw", tuple(f"p{k}" for k in range(9)), (), ())
    record = {"model_config": config, "joint_set": other.to_dict(), "state_dict": build_model(config, 9).state_dict()}
    with pytest.raises(UserError, match=r"trained on joint set paw .* the store .* holds upper_body"):
        check_joint_names(tmp_path / "m.pt", LoadedModel(None, other, None, {}, True), store)
    check_joint_names(tmp_path / "m.pt", LoadedModel(None, store.joint_set, None, {}, True), store)
    torch.save({**record, "joint_set": other.to_dict()}, tmp_path / "m.pt")
    code = cli.main(
        [
            "predict",
            "--checkpoint",
            str(tmp_path / "m.pt"),
            "--store",
            str(custom_store),
            "--out-mat",
            str(tmp_path / "p.mat"),
            "--out-csv",
            str(tmp_path / "p.csv"),
            "--input-size",
            "64",
            "--device",
            "cpu",
        ]
    )
    assert code == 1 and not (tmp_path / "p.mat").exists()


def test_skeleton_plot_draws_the_files_skeleton(custom_store, tmp_path):
    from pose_pipeline.core.joints import SIDE_COLOURS
    from pose_pipeline.report.skeleton_drawings import plot_skeletons

    preds = _ground_truth_predictions(custom_store, tmp_path / "exact.csv")
    panels = plot_skeletons(preds, custom_store, tmp_path / "s.png", count=4, dpi=30)
    hexes = {side: "#{:02x}{:02x}{:02x}".format(*rgb) for side, rgb in SIDE_COLOURS.items()}
    expected = [hexes[open_store(custom_store).joint_set.edge_side(a - 1, b - 1)] for a, b in CUSTOM_SKELETON]
    assert len(panels) == 4
    for panel in panels:
        assert [line["colour"] for line in panel["lines"]] == expected
        assert "box sizes" not in panel["title"] and "torso sizes" in panel["title"]


def test_the_commented_custom_example_of_config_yaml_validates():
    import yaml
    from helpers import REPO_ROOT

    text = (REPO_ROOT / "config" / "config.yaml").read_text()
    block = text[text.index("  # macaque:") : text.index("\nexperiments:")].splitlines()
    uncommented = yaml.safe_load(
        "\n".join(
            line[4:]
            for line in block
            if line.startswith("  # ") and (line.startswith("  #   ") or line.endswith("macaque:"))
        )
    )
    dataset = uncommented["macaque"]
    assert dataset["format"] == "coco" and dataset["oks_sigmas"] and dataset["flip_pairs"]
    validate_config(
        {"datasets": uncommented, "experiments": {"e": {"dataset": "macaque", "model": {"arch": "hourglass"}}}}
    )


def test_the_rules_pass_flip_pairs_to_convert_and_sigmas_to_score():

    from pose_pipeline import workflow_lookups as ppc

    config = validate_config(_config(oks_sigmas=[0.026, 0.5], flip_pairs=[["left paw", "right_paw"]]))
    # words, each quoted by the rule's {...:q}
    extra = ppc.converter_settings(config, "d")["extra"]
    assert extra == ["--flip-pair", "left paw", "right_paw", "--reduced-decode"]
    assert ppc.oks_sigmas_option(config, "d") == ["--oks-sigmas", "0.026,0.5"]
    assert ppc.oks_sigmas_option(validate_config(_config()), "d") == []
