"""MPII conversion into the Zarr v3 store, on the real validation sample."""

from __future__ import annotations

import csv
import shutil

import cv2
import h5py
import numpy as np
import pytest

from pose_pipeline import cli, geometry
from pose_pipeline.convert import convert
from pose_pipeline.errors import UserError
from pose_pipeline.store import open_store


@pytest.fixture
def mpii_sample(shared_data):
    return shared_data / "mpii_sample"


def _partial_leftovers(folder):
    return [p.name for p in folder.iterdir() if "partial" in p.name]


def test_converts_real_mpii_people_with_the_affine_back(mpii_sample, tmp_path):
    out = tmp_path / "val.zarr"
    summary = convert("mpii", mpii_sample / "valid.h5", mpii_sample / "images", out, split="val",
                      canvas_size=128, on_bad_sample="skip", workers=2, progress=False)
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
    # crop == warpAffine(original, affine)
    for i, name in enumerate(names):
        image = cv2.cvtColor(cv2.imread(str(mpii_sample / "images" / name)), cv2.COLOR_BGR2RGB)
        expected = geometry.warp_image(image, store.affine[i], 128)
        assert np.abs(expected.astype(int) - store.images(i, i + 1)[0]).max() <= 1
    # annotated joints land inside the crop, where the person is
    inside = store.keypoints_in_canvas()[store.visible > 0]
    assert ((inside > -1) & (inside < 129)).mean() > 0.95
    bad = list(csv.DictReader(open(tmp_path / "val.bad_samples.csv")))
    assert len(bad) == 2953 and bad[0]["reason"].startswith("missing image")


def test_missing_image_is_an_error_naming_it_and_leaves_nothing(mpii_sample, tmp_path):
    with pytest.raises(UserError) as err:
        convert("mpii", mpii_sample / "valid.h5", mpii_sample / "images", tmp_path / "val.zarr",
                split="val", canvas_size=64, workers=1, progress=False)
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
    with pytest.raises(UserError, match="zero or negative scale"):
        convert("mpii", tmp_path / "five.h5", images, tmp_path / "s.zarr", split="val", canvas_size=64,
                workers=1, progress=False)
    summary = convert("mpii", tmp_path / "five.h5", images, tmp_path / "s.zarr", split="val",
                      canvas_size=64, on_bad_sample="skip", workers=1, progress=False)
    assert summary["samples"] == 3
    reasons = {row["index"]: row["reason"] for row in csv.DictReader(open(tmp_path / "s.bad_samples.csv"))}
    assert "truncated JPEG" in reasons["0"] and "scale" in reasons["2"]


def test_cli_reports_a_missing_annotation_file(tmp_path, capsys):
    code = cli.main(["convert", "mpii", "--annotations", str(tmp_path / "nope.mat"), "--images",
                     str(tmp_path), "--out", str(tmp_path / "x.zarr")])
    assert code == 1
    assert "nope.mat does not exist" in capsys.readouterr().err
