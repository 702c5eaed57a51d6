"""MPII conversion into the Zarr v3 store, on the real validation sample."""

from __future__ import annotations

import csv
import shutil

import h5py
import numpy as np
import pytest
import scipy.io
from helpers import SHARED, expected_crop

from pose_pipeline import cli
from pose_pipeline.core.joints import PCKH_HEAD_FACTOR, head_size_from_boxes
from pose_pipeline.data.convert import check_image_name, convert
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.demo.release_file import release_mat_bytes
from pose_pipeline.data.images import jpeg_reduction, unsafe_image_name
from pose_pipeline.data.inspect import summarize
from pose_pipeline.data.store import open_store, sha256_of
from pose_pipeline.errors import UserError


@pytest.fixture
def mpii_sample(shared_data):
    return shared_data / "mpii_sample"


def mpii_options(annotations, out, **options) -> ConvertOptions:
    """A conversion of the MPII sample's images: one worker, no progress bar, unless
    `options` say otherwise."""
    images = SHARED / "data" / "mpii_sample" / "images"
    return ConvertOptions("mpii", annotations, images, out, **{"workers": 1, "progress": False, **options})


def _partial_leftovers(folder):
    return [p.name for p in folder.iterdir() if "partial" in p.name]


def test_converts_real_mpii_people_with_the_affine_back(mpii_sample, tmp_path):
    out = tmp_path / "val.zarr"
    summary = convert(
        mpii_options(mpii_sample / "valid.h5", out, split="val", canvas_size=128, on_bad_sample="skip", workers=2)
    )
    # the sample ships the images of the first five validation people only
    assert summary == {"samples": 5, "skipped": 2953, "store": str(out)}
    store = open_store(out)
    assert len(store) == 5
    assert store.attrs["joint_set"] == "mpii" and store.attrs["split"] == "val"
    assert store.attrs["sources"][0]["file"] == "valid.h5" and len(store.attrs["sources"][0]["sha256"]) == 64
    assert store.images().shape == (5, 128, 128, 3) and store.images().dtype == np.uint8
    with h5py.File(mpii_sample / "valid.h5") as h5:
        np.testing.assert_allclose(store.keypoints, h5["part"][:5], atol=1e-4)
        np.testing.assert_allclose(store.head_size, h5["normalize"][:5])
        names = [n.decode() for n in h5["imgname"][:5]]
    assert list(store.image_name) == names
    # crop == warpAffine(original decoded at 1/f, affine composed with that scaling), f 4 or 8 for
    # these people against 128 px crops
    assert all(jpeg_reduction(affine) > 1 for affine in store.affine)
    for i, name in enumerate(names):
        expected = expected_crop(mpii_sample / "images" / name, store.affine[i], 128)
        assert np.abs(expected.astype(int) - store.images(i, i + 1)[0]).max() <= 1
    # annotated joints land inside the crop, where the person is
    inside = store.keypoints_in_canvas()[store.visible > 0]
    assert ((inside > -1) & (inside < 129)).mean() > 0.95
    bad = list(csv.DictReader(open(tmp_path / "val.bad_samples.csv")))
    assert len(bad) == 2953 and bad[0]["reason"].startswith("missing image")


def test_missing_image_is_an_error_naming_it_and_leaves_nothing(mpii_sample, tmp_path):
    with pytest.raises(UserError) as err:
        convert(mpii_options(mpii_sample / "valid.h5", tmp_path / "val.zarr", split="val", canvas_size=64))
    assert "valid.h5" in str(err.value) and "missing image" in str(err.value)
    assert "--on-bad-sample skip" in str(err.value)
    assert not (tmp_path / "val.zarr").exists()
    assert _partial_leftovers(tmp_path) == []


def test_truncated_jpeg_and_bad_scale_are_reported(mpii_sample, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    with h5py.File(mpii_sample / "valid.h5") as src, h5py.File(tmp_path / "five.h5", "w") as dst:
        for key in src:
            dst[key] = src[key][:5]
        names = [n.decode() for n in src["imgname"][:5]]
        scale = src["scale"][:5]
        scale[2] = 0.0
        dst["scale"][...] = scale
    for name in names:
        shutil.copy(mpii_sample / "images" / name, images / name)
    data = (images / names[0]).read_bytes()
    (images / names[0]).write_bytes(data[: len(data) // 2])
    options = {"split": "val", "canvas_size": 64, "workers": 1, "progress": False}
    with pytest.raises(UserError, match="zero or negative scale"):
        convert(ConvertOptions("mpii", tmp_path / "five.h5", images, tmp_path / "s.zarr", **options))
    summary = convert(
        ConvertOptions("mpii", tmp_path / "five.h5", images, tmp_path / "s.zarr", on_bad_sample="skip", **options)
    )
    assert summary["samples"] == 3
    reasons = {row["index"]: row["reason"] for row in csv.DictReader(open(tmp_path / "s.bad_samples.csv"))}
    assert "truncated JPEG" in reasons["0"] and "scale" in reasons["2"]


def test_cli_reports_a_missing_annotation_file(tmp_path, capsys):
    code = cli.main(
        [
            "convert",
            "mpii",
            "--annotations",
            str(tmp_path / "nope.mat"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "x.zarr"),
        ]
    )
    assert code == 1
    assert "nope.mat does not exist" in capsys.readouterr().err


# --------------------------------------------------------------- detections.mat, bad inputs

from pose_pipeline.data.formats import mpii  # noqa: E402


def test_detections_mat_reads_the_same_people_as_valid_h5(mpii_sample):
    """The validation split as release-layout structs (top-level annolist, no RELEASE)."""
    import scipy.io

    release = mpii.read_release(mpii_sample / "detections.mat")
    h5 = mpii.read_hourglass_h5(mpii_sample / "valid.h5", is_train=False)
    assert len(release) == len(h5) == 2958
    assert not any(release.problems) and not release.is_train.any()  # no img_train: default_is_train
    # detections.mat indexes its own annolist; RELEASE_*_index place each entry in the full
    # release, which valid.h5's index/person name (0-based)
    mat = scipy.io.loadmat(mpii_sample / "detections.mat", variable_names=["RELEASE_img_index", "RELEASE_person_index"])
    img_index = mat["RELEASE_img_index"].ravel().astype(np.int64) - 1
    person_index = mat["RELEASE_person_index"].ravel().astype(np.int64) - 1
    keys = list(zip(img_index[release.image_index], person_index[release.image_index]))
    h5_row = {key: row for row, key in enumerate(zip(h5.image_index.tolist(), h5.person_index.tolist()))}
    rows = np.array([h5_row[key] for key in keys])
    np.testing.assert_array_equal(rows, np.arange(2958))  # same people, same order
    np.testing.assert_array_equal(release.annotated, h5.annotated)
    # valid.h5 truncates upper neck and head top to whole pixels; everything else agrees
    diff = np.abs(release.keypoints - h5.keypoints)
    assert diff.max() < 1.0
    others = [k for k in range(16) if k not in (8, 9)]
    assert diff[:, others].max() < 1e-3
    np.testing.assert_allclose(release.head_size, h5.head_size, rtol=1e-6)
    np.testing.assert_allclose(release.center, h5.center, atol=1e-3)
    np.testing.assert_allclose(release.scale, h5.scale, rtol=1e-6)
    np.testing.assert_array_equal(release.is_visible, h5.is_visible)


def _release_from_h5(mpii_sample, tmp_path, names, edit=None):
    """A release .mat (RELEASE struct) with valid.h5's first five people, one per image."""
    with h5py.File(mpii_sample / "valid.h5") as h5:
        part, visible = h5["part"][:5], h5["visible"][:5]
        center, scale, normalize = h5["center"][:5], h5["scale"][:5], h5["normalize"][:5]
    scale_raw = scale / mpii.HOURGLASS_SCALE_FACTOR
    objpos = center - np.stack([np.zeros(5), mpii.HOURGLASS_CENTER_SHIFT * scale_raw], axis=1)
    side = normalize / PCKH_HEAD_FACTOR / np.sqrt(2)  # square head box, same PCKh unit
    top_left = part[:, 9] - side[:, None] / 2
    head_box = np.concatenate([top_left, top_left + side[:, None]], axis=1)
    fields = {"names": list(names), "head_box": head_box}
    if edit:
        edit(fields)
    path = tmp_path / "release.mat"
    path.write_bytes(
        release_mat_bytes(fields["names"], part, visible, fields["head_box"], scale_raw, objpos, np.ones(5))
    )
    return path


def _h5_names(mpii_sample):
    with h5py.File(mpii_sample / "valid.h5") as h5:
        return [n.decode() for n in h5["imgname"][:5]]


def test_release_mat_of_good_people_converts(mpii_sample, tmp_path):
    names = _h5_names(mpii_sample)
    path = _release_from_h5(mpii_sample, tmp_path, names)
    summary = convert(mpii_options(path, tmp_path / "r.zarr", split="train", canvas_size=32))
    assert summary["samples"] == 5 and summary["skipped"] == 0
    with h5py.File(mpii_sample / "valid.h5") as h5:
        np.testing.assert_allclose(open_store(tmp_path / "r.zarr").head_size, h5["normalize"][:5], rtol=1e-6)


def _zero_size_head_box(fields):
    fields["head_box"][2, 2] = fields["head_box"][2, 0]  # x2 == x1


def _dotdot_name(fields):
    fields["names"][2] = "../images/" + fields["names"][2]


def _absolute_name(fields):
    fields["names"][2] = "/etc/" + fields["names"][2]


@pytest.mark.parametrize(
    "edit, reason",
    [
        (_zero_size_head_box, "zero-size head box"),
        (_dotdot_name, "unsafe image name '../images/"),
        (_absolute_name, "unsafe image name '/etc/"),
    ],
)
def test_bad_release_record_is_an_error_or_listed_when_skipping(mpii_sample, tmp_path, edit, reason):
    path = _release_from_h5(mpii_sample, tmp_path, _h5_names(mpii_sample), edit)
    out = tmp_path / "r.zarr"
    with pytest.raises(UserError) as err:
        convert(
            ConvertOptions(
                "mpii", path, mpii_sample / "images", out, split="train", canvas_size=32, workers=1, progress=False
            )
        )
    message = str(err.value)
    assert "release.mat" in message and "record [2, 0]" in message and reason in message
    assert not out.exists() and _partial_leftovers(tmp_path) == []
    summary = convert(mpii_options(path, out, split="train", canvas_size=32, on_bad_sample="skip"))
    assert summary["samples"] == 4 and summary["skipped"] == 1
    rows = list(csv.DictReader(open(tmp_path / "r.bad_samples.csv")))
    assert len(rows) == 1 and rows[0]["index"] == "2" and reason in rows[0]["reason"]
    assert 2 not in open_store(out).source_index[:, 0]


def _five_people_h5(mpii_sample, path, edit=None, keys=None):
    with h5py.File(mpii_sample / "valid.h5") as src, h5py.File(path, "w") as dst:
        data = {key: src[key][:5] for key in (keys or src)}
        if edit:
            edit(data)
        for key, value in data.items():
            dst[key] = value
    return path


def _nan_part(data):
    data["part"] = data["part"].astype(np.float64)
    data["part"][3, 12] = np.nan


def test_nan_coordinates_are_an_error_or_listed_when_skipping(mpii_sample, tmp_path, capsys):
    path = _five_people_h5(mpii_sample, tmp_path / "nan.h5", _nan_part)
    with pytest.raises(UserError) as err:
        convert(mpii_options(path, tmp_path / "n.zarr", split="val", canvas_size=32))
    message = str(err.value)
    assert "nan.h5" in message and "non-finite joint coordinates" in message
    assert "record [29, 0]" in message  # valid.h5 index/person (0-based) of the fourth person
    # the CLI in skip mode reports the count
    code = cli.main(
        [
            "convert",
            "mpii",
            "--annotations",
            str(path),
            "--images",
            str(mpii_sample / "images"),
            "--out",
            str(tmp_path / "n.zarr"),
            "--split",
            "val",
            "--canvas-size",
            "32",
            "--workers",
            "1",
            "--on-bad-sample",
            "skip",
        ]
    )
    assert code == 0
    assert f"{tmp_path / 'n.zarr'}: 4 samples, 1 skipped" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "n.bad_samples.csv")))
    assert [(r["index"], r["reason"]) for r in rows] == [("3", "non-finite joint coordinates")]
    assert len(open_store(tmp_path / "n.zarr")) == 4


def test_cli_skip_mode_with_nothing_bad_reports_zero_skipped(mpii_sample, tmp_path, capsys):
    path = _five_people_h5(mpii_sample, tmp_path / "five.h5")
    code = cli.main(
        [
            "convert",
            "mpii",
            "--annotations",
            str(path),
            "--images",
            str(mpii_sample / "images"),
            "--out",
            str(tmp_path / "f.zarr"),
            "--split",
            "val",
            "--canvas-size",
            "32",
            "--workers",
            "1",
            "--on-bad-sample",
            "skip",
        ]
    )
    assert code == 0 and "5 samples, 0 skipped" in capsys.readouterr().out
    assert not (tmp_path / "f.bad_samples.csv").exists()  # a list only of samples left out
    assert open_store(tmp_path / "f.zarr").attrs["bad_samples"] == {"count": 0, "sha256": None}


def _convert_five(mpii_sample, path, out, **options):
    options = {"split": "val", "canvas_size": 32, "workers": 1, "progress": False, **options}
    return convert(ConvertOptions("mpii", path, mpii_sample / "images", out, **options))


@pytest.mark.parametrize("on_bad_sample", ["error", "skip"])
def test_a_conversion_without_bad_samples_removes_the_earlier_list(mpii_sample, tmp_path, on_bad_sample, caplog):
    nan, five = (
        _five_people_h5(mpii_sample, tmp_path / "nan.h5", _nan_part),
        _five_people_h5(mpii_sample, tmp_path / "five.h5"),
    )
    out, listed = tmp_path / "s.zarr", tmp_path / "s.bad_samples.csv"
    _convert_five(mpii_sample, nan, out, on_bad_sample="skip")
    assert open_store(out).attrs["bad_samples"] == {"count": 1, "sha256": sha256_of(listed)}
    _convert_five(mpii_sample, five, out, on_bad_sample=on_bad_sample)
    assert not listed.exists()  # else it would list a sample of the earlier store as this one's
    caplog.clear()
    with caplog.at_level("WARNING", logger="pose_pipeline"):
        assert summarize(open_store(out))["bad_samples"] == 0
    assert not caplog.records


def test_a_list_of_bad_samples_its_store_did_not_follow_is_known_for_anothers(
    mpii_sample, tmp_path, monkeypatch, caplog
):
    """A crash after the list is written and before the store is swapped in leaves the new list
    beside the earlier store: the store records its own list, so the mismatch is seen."""
    from pose_pipeline.data import convert as convert_module

    out, listed = tmp_path / "s.zarr", tmp_path / "s.bad_samples.csv"
    _convert_five(mpii_sample, _five_people_h5(mpii_sample, tmp_path / "five.h5"), out)

    def crash(*args):
        raise KeyboardInterrupt  # the process killed between the list and the swap

    monkeypatch.setattr(convert_module, "finish_store", crash)
    nan = _five_people_h5(mpii_sample, tmp_path / "nan.h5", _nan_part)
    with pytest.raises(KeyboardInterrupt):
        _convert_five(mpii_sample, nan, out, on_bad_sample="skip")
    assert listed.exists() and len(open_store(out)) == 5  # the new list, the earlier store
    caplog.clear()
    with caplog.at_level("WARNING", logger="pose_pipeline"):
        assert summarize(open_store(out))["bad_samples"] == 0  # the store's, not the list's 1
    assert [r.getMessage() for r in caplog.records] == [
        f"{listed}: another conversion's list, not this store's; the store's conversion left out 0 samples"
    ]


def _wrong_layout_mat(path):
    import scipy.io

    scipy.io.savemat(path, {"joints": np.zeros((14, 3, 2))})


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("empty.mat", lambda p: p.write_bytes(b""), "empty file"),
        ("empty.h5", lambda p: p.write_bytes(b""), "empty file"),
        ("layout.mat", _wrong_layout_mat, "found variables ['joints']"),
        ("notmat.mat", lambda p: p.write_text("not matlab"), "not a readable MATLAB"),
        ("notmat.h5", lambda p: p.write_text("not hdf5"), "not a readable HDF5"),
    ],
)
@pytest.mark.parametrize("on_bad_sample", ["error", "skip"])
def test_unreadable_annotation_file_names_it_in_both_modes(mpii_sample, tmp_path, name, make, message, on_bad_sample):
    path = tmp_path / name
    make(path)
    with pytest.raises(UserError) as err:
        convert(mpii_options(path, tmp_path / "x.zarr", split="all", canvas_size=32, on_bad_sample=on_bad_sample))
    assert str(path) in str(err.value) and message in str(err.value)
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "x.bad_samples.csv").exists()


def test_h5_missing_datasets_names_them(mpii_sample, tmp_path, capsys):
    path = _five_people_h5(mpii_sample, tmp_path / "partial.h5", keys=["imgname", "center", "scale", "part"])
    code = cli.main(
        [
            "convert",
            "mpii",
            "--annotations",
            str(path),
            "--images",
            str(mpii_sample / "images"),
            "--out",
            str(tmp_path / "p.zarr"),
            "--split",
            "val",
            "--on-bad-sample",
            "skip",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "partial.h5" in err and "missing datasets ['visible', 'normalize', 'index', 'person']" in err
    assert not (tmp_path / "p.zarr").exists()


def test_detections_mat_is_a_split_file_without_image_names(mpii_sample, tmp_path):
    with pytest.raises(UserError) as err:
        convert(mpii_options(mpii_sample / "detections.mat", tmp_path / "d.zarr", split="all", canvas_size=32))
    assert "detections.mat" in str(err.value) and "no image name" in str(err.value)


# ---------------------------------------------------------- hourglass .h5 with a split file


def _split_file(path, h5_path, rows):
    """A detections.mat-style split naming the .h5 people at `rows` (1-based release indices)."""
    with h5py.File(h5_path) as h5:
        index, person = h5["index"][()][rows], h5["person"][()][rows]
    scipy.io.savemat(path, {"RELEASE_img_index": index + 1, "RELEASE_person_index": person + 1})
    return path


def test_hourglass_h5_with_val_split_applies_it(mpii_sample, tmp_path):
    """Never the same people in train and val: the split file's people are val, the rest train."""
    from pose_pipeline.data.formats.readers import read_mpii

    h5 = _five_people_h5(mpii_sample, tmp_path / "five.h5")
    split = _split_file(tmp_path / "split.mat", h5, [1, 3])
    val = read_mpii(h5, "val", split)
    train = read_mpii(h5, "train", split)
    assert val.source_index.tolist() == read_mpii(h5, "all", None).source_index[[1, 3]].tolist()
    people = {name: set(map(tuple, s.source_index.tolist())) for name, s in (("train", train), ("val", val))}
    assert len(train) == 3 and not people["train"] & people["val"]
    assert len(read_mpii(h5, "val", None)) == 5  # no split file: the file is the split (valid.h5)
    # a split none of whose people is in the file (hourglass train.h5 holds no validation people)
    other = _split_file(tmp_path / "other.mat", mpii_sample / "valid.h5", [100])
    with pytest.raises(UserError, match="none of the 1 people of the split file .*val_annotations"):
        read_mpii(h5, "val", other)


@pytest.mark.parametrize(
    ("name", "unsafe"),
    [
        ("images/000001.jpg", False),
        ("a..b.jpg", False),
        ("", False),
        ("../images/x.jpg", True),
        ("/etc/passwd", True),
        ("images\\..\\..\\x.jpg", True),  # a Windows-made annotation file's '..'
        ("C:\\images\\x.jpg", True),
        ("C:x.jpg", True),
    ],
)
def test_one_rule_for_unsafe_image_names(name, unsafe):
    """convert and the MPII readers reject the same names: `images.unsafe_image_name` alone decides."""
    assert unsafe_image_name(name) is unsafe
    assert (check_image_name(name) != "" and name != "") is unsafe


def test_head_size_takes_either_box_layout():
    """The reference layout (2,2,N) and rows (N,4) give the same PCKh unit, PCKH_HEAD_FACTOR x diagonal."""
    rows = np.array([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 3.0, 4.0]])
    reference = np.stack([rows[:, :2].T, rows[:, 2:].T])  # (corner, coordinate, sample)
    expected = PCKH_HEAD_FACTOR * np.array([50.0, 5.0])
    assert np.array_equal(head_size_from_boxes(rows), expected)
    assert np.array_equal(head_size_from_boxes(reference), expected)
