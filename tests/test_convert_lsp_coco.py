"""LSP and COCO conversion into the Zarr v3 store, on the real samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from helpers import SHARED, expected_crop

from pose_pipeline import cli
from pose_pipeline.data.convert import convert
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.formats import coco as coco_format
from pose_pipeline.data.formats.readers import read_lsp
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError

CANVAS = 64


@pytest.fixture
def lsp_sample(shared_data):
    return shared_data / "lsp_sample"


def lsp_options(annotations, out, **options) -> ConvertOptions:
    """A conversion of the LSP sample's images: one worker, no progress bar, unless
    `options` say otherwise."""
    images = SHARED / "data" / "lsp_sample" / "images"
    return ConvertOptions("lsp", annotations, images, out, **{"workers": 1, "progress": False, **options})


@pytest.fixture
def coco_sample(shared_data):
    return shared_data / "coco_sample"


def _assert_crops_match(store, image_dir, rows):
    for i in rows:
        expected = expected_crop(image_dir / store.image_name[i], store.affine[i], CANVAS)
        assert np.abs(expected.astype(int) - store.images(i, i + 1)[0]).max() <= 1, store.image_name[i]


# ------------------------------------------------------------------------------- LSP


def _write_original_layout(path, joints_ext):
    """(14,3,N) x,y,visible -> (3,14,N) x,y,occluded (the original LSP release layout)."""
    original = joints_ext.transpose(1, 0, 2).copy()
    original[2] = 1.0 - original[2]
    scipy.io.savemat(path, {"joints": original})


def _with_guessed_positions(joints_ext):
    """The sample as the original LSP annotates it: each invisible joint's placeholder replaced
    by a guessed position inside the person (the centre of the visible joints' box), so
    converted to the original layout they are occluded joints, not placeholders."""
    joints = joints_ext.copy()
    for i in range(joints.shape[2]):
        seen = joints[:, 2, i] > 0
        centre = (joints[seen, :2, i].min(axis=0) + joints[seen, :2, i].max(axis=0)) / 2
        joints[~seen, :2, i] = centre
    return joints


def is_placeholder(points):
    """LSP-extended's placeholder positions: one coordinate 0, the other 0 or negative."""
    x, y = points[..., 0], points[..., 1]
    return ((x == 0) & (y <= 0)) | ((y == 0) & (x <= 0))


def test_lsp_sample_converts_with_the_affine_back(lsp_sample, tmp_path):
    out = tmp_path / "lsp.zarr"
    summary = convert(lsp_options(lsp_sample / "joints.mat", out, split="all", canvas_size=CANVAS))
    assert summary == {"samples": 300, "skipped": 0, "store": str(out)}
    store = open_store(out)
    joints = scipy.io.loadmat(lsp_sample / "joints.mat")["joints"]  # (14, 3, 300)
    assert len(store) == 300 and store.attrs["joint_set"] == "lsp" and store.attrs["format"] == "lsp"
    assert store.attrs["pixel_origin"] == 1.0
    assert store.attrs["converter"]["lsp"]["layout"] == "lsp-extended"
    assert store.attrs["converter"]["lsp"]["scale_margin"] == 1.4
    np.testing.assert_allclose(store.keypoints, joints[:, :2].transpose(2, 0, 1), atol=1e-4)
    np.testing.assert_array_equal(store.visible, joints[:, 2].T.astype(np.uint8))
    # LSP-extended's invisible joints are placeholders, so missing, and none is occluded
    assert is_placeholder(store.keypoints[store.visible == 0]).all() and (store.visible == 0).sum() > 500
    assert not is_placeholder(store.keypoints[store.visible == 1]).any()
    assert store.has_occluded and not store.occluded.any()
    assert store.attrs["converter"]["lsp"]["invisible_joints"].startswith("missing")
    assert list(store.image_name[:2]) == ["im00001.jpg", "im00002.jpg"]  # found in the folder
    assert store.image_name[-1] == "im00300.jpg"
    assert np.isnan(store.head_size).all()
    np.testing.assert_array_equal(store.source_index[:, 0], np.arange(300))
    # centre/scale: the visible joints' box, its larger side x 1.4 = 200 x scale
    vis = joints[:, 2, 0] > 0
    pts = joints[vis, :2, 0]
    np.testing.assert_allclose(store.center[0], (pts.min(0) + pts.max(0)) / 2)
    np.testing.assert_allclose(store.scale[0] * 200, (pts.max(0) - pts.min(0)).max() * 1.4)
    _assert_crops_match(store, lsp_sample / "images", range(0, 300, 7))
    # every visible joint lands inside the crop (box x 1.4 x context 1.5 around it)
    inside = store.keypoints_in_canvas()[store.visible > 0]
    assert (inside >= 0).all() and (inside <= CANVAS - 1).all()


def test_lsp_original_layout_reads_the_same(lsp_sample, tmp_path):
    """The same people in both layouts: the original's occluded joints (guessed positions) are
    labelled and occluded, where LSP-extended's invisible ones (placeholders) are missing."""
    joints = _with_guessed_positions(scipy.io.loadmat(lsp_sample / "joints.mat")["joints"])
    _write_original_layout(tmp_path / "joints.mat", joints)
    ext = read_lsp(lsp_sample / "joints.mat", "all", None, {"images": lsp_sample / "images"})
    orig = read_lsp(tmp_path / "joints.mat", "all", None, {"images": lsp_sample / "images"})
    assert orig.parameters["layout"] == "lsp" and ext.parameters["layout"] == "lsp-extended"
    seen = ext.visible == 1
    np.testing.assert_array_equal(orig.keypoints[seen], ext.keypoints[seen])
    assert orig.visible.all() and not ext.occluded.any()
    np.testing.assert_array_equal(orig.occluded, 1 - ext.visible)
    np.testing.assert_array_equal(orig.center, ext.center)  # the guesses lie inside the box
    np.testing.assert_array_equal(orig.scale, ext.scale)
    assert orig.image_names == ext.image_names  # im%05d.jpg because those files exist
    # without the images the width follows the layout: original LSP names have 4 digits
    assert read_lsp(tmp_path / "joints.mat", "all", None, {}).image_names[0] == "im0001.jpg"
    assert read_lsp(lsp_sample / "joints.mat", "all", None, {}).image_names[0] == "im00001.jpg"


def test_lsp_original_layout_converts(lsp_sample, tmp_path):
    """Original LSP's occluded joints are stored labelled (trainable) and flagged occluded."""
    joints = _with_guessed_positions(scipy.io.loadmat(lsp_sample / "joints.mat")["joints"])
    _write_original_layout(tmp_path / "joints.mat", joints)
    store = open_store(
        convert(lsp_options(tmp_path / "joints.mat", tmp_path / "o.zarr", split="all", canvas_size=CANVAS))["store"]
    )
    np.testing.assert_allclose(store.keypoints, joints[:, :2].transpose(2, 0, 1), atol=1e-4)
    assert store.visible.all() and store.occluded.sum() == (joints[:, 2] == 0).sum() > 500
    np.testing.assert_array_equal(store.occluded, 1 - joints[:, 2].T.astype(np.uint8))
    assert store.attrs["converter"]["lsp"]["layout"] == "lsp"
    assert store.attrs["converter"]["lsp"]["invisible_joints"].startswith("occluded")


@pytest.mark.parametrize(
    "contents, message",
    [
        ({"joints": np.zeros((14, 2, 5))}, "shape (14, 2, 5)"),
        ({"joints": np.zeros((3, 16, 5))}, "shape (3, 16, 5)"),
        ({"joints": np.zeros((14, 3, 5, 2))}, "shape (14, 3, 5, 2)"),
        ({"joints": np.zeros((14, 3, 0))}, "no images"),
        ({"points": np.zeros((14, 3, 5))}, "no variable `joints`"),
    ],
)
def test_lsp_bad_joints_file_names_the_file_and_the_layouts(tmp_path, contents, message):
    path = tmp_path / "joints.mat"
    scipy.io.savemat(path, contents)
    with pytest.raises(UserError) as err:
        convert(ConvertOptions("lsp", path, tmp_path, tmp_path / "x.zarr", split="all", workers=1, progress=False))
    text = str(err.value)
    assert str(path) in text and message in text
    assert "(3, 14, N)" in text and "(14, 3, N)" in text
    assert not (tmp_path / "x.zarr").exists()


def test_lsp_not_a_mat_file(tmp_path):
    path = tmp_path / "joints.mat"
    path.write_text("not matlab")
    with pytest.raises(UserError, match="not a readable MATLAB"):
        read_lsp(path, "all", None)


def _synthetic_joints(n, seed=0):
    rng = np.random.default_rng(seed)
    joints = np.empty((14, 3, n))
    joints[:, :2] = rng.uniform(10, 200, (14, 2, n))
    joints[:, 2] = rng.random((14, n)) > 0.2
    joints[12, 2] = 1  # at least two visible joints each
    joints[13, 2] = 1
    return joints


def test_lsp_splits_follow_the_dataset_size(tmp_path):
    _write_original_layout(tmp_path / "lsp.mat", _synthetic_joints(2000))
    train = read_lsp(tmp_path / "lsp.mat", "train", None)
    val = read_lsp(tmp_path / "lsp.mat", "val", None)
    assert len(train) == len(val) == 1000
    assert train.image_names[0] == "im0001.jpg" and train.image_names[-1] == "im1000.jpg"
    assert val.image_names[0] == "im1001.jpg" and val.image_names[-1] == "im2000.jpg"
    np.testing.assert_array_equal(val.source_index[:, 0], np.arange(1000, 2000))
    assert len(read_lsp(tmp_path / "lsp.mat", "all", None)) == 2000

    scipy.io.savemat(tmp_path / "ext.mat", {"joints": _synthetic_joints(10000)})
    ext = read_lsp(tmp_path / "ext.mat", "train", None)
    assert len(ext) == 10000 and ext.image_names[-1] == "im10000.jpg"
    with pytest.raises(UserError, match="all training data"):
        read_lsp(tmp_path / "ext.mat", "val", None)


def test_lsp_val_last_splits_a_file_of_any_size(lsp_sample, tmp_path):
    """datasets.*.val_last / --val-last: the last N images validate, the rest train; the two
    halves are the file's rows in order, disjoint and complete."""
    train = read_lsp(lsp_sample / "joints.mat", "train", None, {"val_last": 60})
    val = read_lsp(lsp_sample / "joints.mat", "val", None, {"val_last": 60})
    assert (len(train), len(val)) == (240, 60)
    assert train.image_names[-1] == "im00240.jpg" and val.image_names[0] == "im00241.jpg"
    np.testing.assert_array_equal(np.concatenate([train.source_index[:, 0], val.source_index[:, 0]]), np.arange(300))
    for bad in (300, 301):
        with pytest.raises(UserError, match="leaves no training images"):
            read_lsp(lsp_sample / "joints.mat", "train", None, {"val_last": bad})
    out = tmp_path / "val.zarr"
    options = {"split": "val", "canvas_size": CANVAS, "workers": 1, "progress": False}
    summary = convert(
        ConvertOptions("lsp", lsp_sample / "joints.mat", lsp_sample / "images", out, val_last=60, **options)
    )
    assert summary["samples"] == 60
    assert open_store(out).attrs["converter"]["lsp"]["val_last"] == 60  # the split's rule, recorded
    with pytest.raises(UserError, match="--val-last is an LSP option"):
        convert(
            ConvertOptions(
                "flic", lsp_sample / "joints.mat", lsp_sample / "images", tmp_path / "f.zarr", val_last=6, **options
            )
        )
    with pytest.raises(UserError, match="--val-last: must be a whole number at least 1"):
        convert(
            ConvertOptions(
                "lsp", lsp_sample / "joints.mat", lsp_sample / "images", tmp_path / "z.zarr", val_last=0, **options
            )
        )


def test_lsp_sample_has_no_train_split(lsp_sample):
    for split in ("train", "val"):
        with pytest.raises(UserError) as err:
            read_lsp(lsp_sample / "joints.mat", split, None)
        assert "joints.mat" in str(err.value) and "--split all" in str(err.value)


def test_lsp_nan_and_empty_people_are_problems(lsp_sample, tmp_path):
    joints = scipy.io.loadmat(lsp_sample / "joints.mat")["joints"][:, :, :4].copy()
    joints[0, :2, 1] = np.nan  # r_ankle of image 2, made visible
    joints[0, 2, 1] = 1
    joints[:, 2, 2] = 0  # image 3: nothing labelled
    joints[5, 0, 3] = np.inf  # an invisible joint's garbage is not a problem
    joints[5, 2, 3] = 0
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    samples = read_lsp(tmp_path / "joints.mat", "all", None)
    assert samples.problems[0] == "" and samples.problems[3] == ""
    assert "NaN or infinite" in samples.problems[1] and "r_ankle" in samples.problems[1]
    assert samples.problems[2] == "no labelled joints"
    with pytest.raises(UserError, match="NaN or infinite"):
        convert(lsp_options(tmp_path / "joints.mat", tmp_path / "x.zarr", split="all", canvas_size=CANVAS))
    summary = convert(
        lsp_options(tmp_path / "joints.mat", tmp_path / "x.zarr", split="all", canvas_size=CANVAS, on_bad_sample="skip")
    )
    assert summary["samples"] == 2 and summary["skipped"] == 2


def test_min_keypoints_is_coco_only(lsp_sample, tmp_path):
    with pytest.raises(UserError, match="COCO option"):
        convert(lsp_options(lsp_sample / "joints.mat", tmp_path / "x.zarr", split="all", min_keypoints=3))


# ------------------------------------------------------------------------------ COCO


def _expected_people(data, min_keypoints=1):
    return [
        a
        for a in data["annotations"]
        if not a.get("iscrowd", 0) and sum(v > 0 for v in a["keypoints"][2::3]) >= min_keypoints
    ]


def test_coco_sample_converts_one_sample_per_person(coco_sample, tmp_path):
    path = coco_sample / "person_keypoints_sample.json"
    data = json.loads(path.read_text())
    expected = _expected_people(data)
    crowd = sum(bool(a.get("iscrowd", 0)) for a in data["annotations"])
    few = sum(
        1 for a in data["annotations"] if not a.get("iscrowd", 0) and not any(v > 0 for v in a["keypoints"][2::3])
    )
    # derived from the JSON: 14 instances, none crowd, two with no labelled keypoint
    assert (len(data["annotations"]), crowd, few, len(expected)) == (14, 0, 2, 12)

    out = tmp_path / "coco.zarr"
    summary = convert(
        ConvertOptions(
            "coco", path, coco_sample / "images", out, split="val", canvas_size=CANVAS, workers=1, progress=False
        )
    )
    assert summary == {"samples": 12, "skipped": 0, "store": str(out)}
    store = open_store(out)
    assert store.attrs["joint_set"] == "coco" and store.attrs["pixel_origin"] == 0.0
    assert store.attrs["converter"]["coco"] == {
        "min_keypoints": 1,
        "bbox_padding": 1.25,
        "skipped_crowd": 0,
        "skipped_few_keypoints": 2,
        "skipped_other_category": 0,
    }
    kp = np.array([a["keypoints"] for a in expected], dtype=np.float64).reshape(-1, 17, 3)
    np.testing.assert_allclose(store.keypoints, kp[..., :2], atol=1e-4)
    np.testing.assert_array_equal(store.visible, (kp[..., 2] > 0).astype(np.uint8))
    np.testing.assert_array_equal(store.occluded, (kp[..., 2] == 1).astype(np.uint8))  # labelled, hidden
    names = {im["id"]: im["file_name"] for im in data["images"]}
    assert list(store.image_name) == [names[a["image_id"]] for a in expected]
    np.testing.assert_array_equal(store.source_index, [[a["image_id"], a["id"]] for a in expected])
    bbox = np.array([a["bbox"] for a in expected])
    np.testing.assert_allclose(store.center, bbox[:, :2] + bbox[:, 2:] / 2 - 0.5)
    np.testing.assert_allclose(store.scale * 200, bbox[:, 2:].max(1) * 1.25)
    assert np.isnan(store.head_size).all()
    _assert_crops_match(store, coco_sample / "images", range(len(store)))
    inside = store.keypoints_in_canvas()[store.visible > 0]
    assert (inside >= 0).all() and (inside <= CANVAS - 1).all()


def test_coco_skips_crowds_and_sparse_people(coco_sample, tmp_path, caplog):
    data = json.loads((coco_sample / "person_keypoints_sample.json").read_text())
    data["annotations"][0]["iscrowd"] = 1
    data["annotations"][0]["num_keypoints"] = 0
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(data))
    expected = _expected_people(data, min_keypoints=15)
    assert len(expected) == 8  # 13 non-crowd people, 5 of them with fewer than 15 keypoints
    with caplog.at_level("INFO"):
        people = coco_format.read_annotations(path, min_keypoints=15)
    assert people.skipped == {"crowd": 1, "few_keypoints": 5, "other_category": 0}
    assert people.annotation_id.tolist() == [a["id"] for a in expected]
    assert "skipped 1 crowd, 5 with fewer than 15" in caplog.text
    # through the CLI
    code = cli.main(
        [
            "convert",
            "coco",
            "--annotations",
            str(path),
            "--images",
            str(coco_sample / "images"),
            "--out",
            str(tmp_path / "c.zarr"),
            "--canvas-size",
            str(CANVAS),
            "--workers",
            "1",
            "--min-keypoints",
            "15",
        ]
    )
    assert code == 0
    store = open_store(tmp_path / "c.zarr")
    assert len(store) == 8 and store.attrs["converter"]["coco"]["skipped_crowd"] == 1


def test_coco_truncated_json_names_the_file(coco_sample, tmp_path):
    text = (coco_sample / "person_keypoints_sample.json").read_text()
    path = tmp_path / "truncated.json"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(UserError) as err:
        convert(ConvertOptions("coco", path, coco_sample / "images", tmp_path / "x.zarr", workers=1, progress=False))
    assert str(path) in str(err.value) and "not valid JSON" in str(err.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.update(keypoints=a["keypoints"][:50]), "has 50 numbers"),
        (lambda a: a.pop("bbox"), "missing bbox"),
        (lambda a: a.update(image_id=-7), "image_id -7 is not in `images`"),
        (lambda a: a["keypoints"].__setitem__(2, 3), "visibility flags [3.0]"),
        (lambda a: a["keypoints"].__setitem__(0, "x"), "non-numbers"),
    ],
)
def test_coco_bad_annotation_names_the_file_and_the_annotation(coco_sample, tmp_path, edit, message):
    data = json.loads((coco_sample / "person_keypoints_sample.json").read_text())
    ann = data["annotations"][3]
    edit(ann)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as err:
        convert(ConvertOptions("coco", path, coco_sample / "images", tmp_path / "x.zarr", workers=1, progress=False))
    text = str(err.value)
    assert str(path) in text and f"annotation id {ann['id']}" in text and message in text


def test_coco_missing_top_level_keys(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="`annotations` is missing"):
        coco_format.read_annotations(path)
