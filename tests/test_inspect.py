"""`pose-pipeline inspect`: the store summary and the contact sheet."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from conftest import make_random_store
from pose_pipeline import cli
from pose_pipeline.convert import convert
from pose_pipeline.errors import UserError
from pose_pipeline.inspect import (SIDE_COLOURS, contact_sheet, pick_samples, summarize, tile_scale,
                                   to_tile, write_sheet)
from pose_pipeline.joints import MPII
from pose_pipeline.store import open_store, sha256_of


def _files_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def test_summary_of_a_converted_mpii_store(shared_data, tmp_path):
    sample = shared_data / "mpii_sample"
    out = tmp_path / "val.zarr"
    convert("mpii", sample / "valid.h5", sample / "images", out, split="val", canvas_size=64,
            on_bad_sample="skip", workers=1, progress=False)
    store = open_store(out)
    s = summarize(store)
    assert s["samples"] == 5 and s["bad_samples"] == 2953
    assert s["joint_set"] == "mpii" and s["joints"] == list(MPII.joints)
    assert s["canvas_size"] == 64 and s["context"] == 1.5 and s["pixel_origin"] == 1.0
    assert s["bytes_on_disk"] == _files_size(out) > 0
    assert s["bytes_per_sample"] == pytest.approx(s["bytes_on_disk"] / 5)
    assert s["uncompressed_bytes_per_sample"] == 64 * 64 * 3
    assert s["image_codec"] == "zstd level 3, crc32c"
    np.testing.assert_allclose([s["visibility"][j] for j in MPII.joints], (store.visible > 0).mean(axis=0))
    assert s["sources"] == [{"file": "valid.h5", "sha256": sha256_of(sample / "valid.h5")[:12]}]
    assert s["converter"]["canvas_size"] == 64 and s["converter"]["on_bad_sample"] == "skip"


def test_summary_of_a_random_store_and_cli_output(tmp_path, capsys):
    path = make_random_store(tmp_path / "r.zarr", num_samples=10, canvas_size=32, shard_size=4)
    s = summarize(open_store(path))
    assert s["samples"] == 10 and s["bad_samples"] is None
    assert s["bytes_on_disk"] == _files_size(path)
    assert cli.main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "samples     10" in text and "mpii (16 joints)" in text and "r_ankle" in text
    assert "bytes/sample" in text and "sha256 0" in text


def test_not_a_store_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="not a converted store"):
        open_store(tmp_path)
    assert cli.main(["inspect", str(tmp_path / "missing.zarr")]) == 1
    assert "not a converted store" in capsys.readouterr().err


def test_pick_samples_is_seeded_distinct_and_bounded():
    a = pick_samples(100, 16, seed=3)
    assert len(set(a.tolist())) == 16 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, pick_samples(100, 16, seed=3))
    assert not np.array_equal(a, pick_samples(100, 16, seed=4))
    np.testing.assert_array_equal(pick_samples(5, 16, seed=0), np.arange(5))


def test_contact_sheet_draws_keypoints_where_the_affine_puts_them(tmp_path):
    path = make_random_store(tmp_path / "r.zarr", num_samples=12, canvas_size=64, shard_size=4)
    store = open_store(path)
    sheet, indices = contact_sheet(store, count=9, seed=1)
    scale = tile_scale(64)
    side = 64 * scale
    assert len(indices) == 9 and sheet.shape == (3 * side + 4, 3 * side + 4, 3)
    points = store.keypoints_in_canvas()
    hits = total = 0
    for slot, index in enumerate(indices):
        r, c = divmod(slot, 3)
        for k in np.flatnonzero(store.visible[index]):
            x, y = np.round(to_tile(points[index, k], scale)).astype(int)
            if 3 <= x < side - 3 and 20 <= y < side - 3:  # inside the tile, clear of the label
                total += 1
                pixel = sheet[r * (side + 2) + y, c * (side + 2) + x]
                hits += tuple(pixel) == SIDE_COLOURS[MPII.side(int(k))]
    assert total > 50 and hits / total > 0.7  # the rest are covered by later joints
    # without a skeleton the tile is the (enlarged) crop itself
    crop = cv2.resize(store.images(int(indices[0]), int(indices[0]) + 1)[0], (side, side),
                      interpolation=cv2.INTER_NEAREST)
    assert (sheet[:side, :side] == crop).all(axis=2).mean() > 0.5


def test_cli_writes_the_sheet_atomically(tmp_path, capsys):
    path = make_random_store(tmp_path / "r.zarr", num_samples=6, canvas_size=128, shard_size=3)
    sheet_path = tmp_path / "sheets" / "s.png"
    assert cli.main(["inspect", str(path), "--sheet", str(sheet_path), "--count", "4", "--seed", "2"]) == 0
    image = cv2.imread(str(sheet_path))
    assert image.shape == (2 * 128 + 2, 2 * 128 + 2, 3)
    assert [p.name for p in sheet_path.parent.iterdir()] == ["s.png"]
    assert "contact sheet" in capsys.readouterr().out
    with pytest.raises(UserError, match="PNG"):
        write_sheet(tmp_path / "s.jpg", np.zeros((4, 4, 3), np.uint8))
