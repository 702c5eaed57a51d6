"""`pose-pipeline inspect`: the store summary and the contact sheet.

Expectations are facts worked out by hand (file sizes written, joints made visible, where a
canvas pixel lands in a tile twice its size), not the implementation's formulas again.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from helpers import make_random_store

from pose_pipeline import cli
from pose_pipeline.core.joints import MPII
from pose_pipeline.data.convert import convert
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.inspect import bytes_on_disk, contact_sheet, pick_samples, summarize, write_sheet
from pose_pipeline.data.store import IMAGE_ZSTD_LEVEL, open_store
from pose_pipeline.data.store_writer import StoreWriter
from pose_pipeline.errors import UserError

# the skeleton palette, written out: matplotlib's tab:blue, tab:red and gold
BLUE, RED, GOLD = (31, 119, 180), (214, 39, 40), (255, 215, 0)
GREY = (128, 128, 128)


def drawn_store(path, points: dict, num_samples=1, canvas_size=64, image=None, visible_rows=None):
    """A store whose keypoints land on known canvas pixels: `points` maps joint name ->
    annotated (x, y) with pixel origin 1 and an identity affine, so canvas pixel = annotated
    - 1. Joints not named are invisible; images are flat grey unless `image` is given."""
    n, j = num_samples, MPII.num_joints
    keypoints = np.zeros((n, j, 2), np.float32)
    visible = np.zeros((n, j), np.uint8)
    for name, xy in points.items():
        keypoints[:, MPII.index(name)] = xy
        visible[:, MPII.index(name)] = 1
    if visible_rows is not None:
        visible = np.asarray(visible_rows, np.uint8)
    images = np.full((n, canvas_size, canvas_size, 3), 128, np.uint8) if image is None else image
    writer = StoreWriter(
        path,
        n,
        MPII,
        canvas_size,
        shard_size=4,
        attrs={
            "dataset": "drawn",
            "split": "val",
            "format": "mpii",
            "pixel_origin": 1.0,
            "context": 1.5,
            "converter": {},
            "sources": [{"file": "x", "sha256": "0"}],
        },
    )
    for start in range(0, n, 4):
        writer.write_block(images[start : start + 4])
    writer.set_metadata(
        keypoints=keypoints,
        visible=visible,
        affine=np.tile(np.eye(2, 3), (n, 1, 1)),
        center=np.full((n, 2), 32.0),
        scale=np.ones(n),
        head_size=np.full(n, 10.0),
        image_name=np.array([f"{i}.jpg" for i in range(n)], dtype=str),
        source_index=np.stack([np.arange(n), np.zeros(n, int)], 1),
    )
    return writer.commit()


def test_summary_of_a_converted_mpii_store(shared_data, tmp_path):
    sample = shared_data / "mpii_sample"
    out = tmp_path / "val.zarr"
    convert(
        ConvertOptions(
            "mpii",
            sample / "valid.h5",
            sample / "images",
            out,
            split="val",
            canvas_size=64,
            on_bad_sample="skip",
            workers=1,
            progress=False,
        )
    )
    s = summarize(open_store(out))
    assert s["samples"] == 5 and s["bad_samples"] == 2953
    assert s["joint_set"] == "mpii" and s["joints"] == list(MPII.joints)
    assert s["canvas_size"] == 64 and s["context"] == 1.5 and s["pixel_origin"] == 1.0
    assert s["uncompressed_bytes_per_sample"] == 12288  # 64 x 64 RGB
    assert s["image_codec"] == "blosc lz4 level 1, crc32c"  # the default
    digest = hashlib.sha256((sample / "valid.h5").read_bytes()).hexdigest()
    assert s["sources"] == [{"file": "valid.h5", "sha256": digest[:12]}]
    assert s["converter"]["canvas_size"] == 64 and s["converter"]["on_bad_sample"] == "skip"


def test_lz4_crops_are_the_zstd_crops_and_inspect_names_the_codec(shared_data, tmp_path, capfd):
    """`--image-codec` changes how the crops are compressed, not what they are; the store
    records it (zarr.json, the converter parameters) and `inspect` reports it."""
    lsp = shared_data / "lsp_sample"
    stores = {}
    for codec in ("zstd", "lz4"):
        out = tmp_path / f"{codec}.zarr"
        args = ["convert", "lsp", "--annotations", lsp / "joints.mat", "--images", lsp / "images", "--out", out]
        args += ["--split", "all", "--canvas-size", "64", "--workers", "1", "--no-progress", "--image-codec", codec]
        assert cli.main(list(map(str, args))) == 0, capfd.readouterr().err
        stores[codec] = open_store(out)
    assert np.array_equal(stores["lz4"].images(), stores["zstd"].images())
    assert stores["lz4"].attrs["converter"]["image_codec"] == "lz4"
    assert summarize(stores["lz4"])["image_codec"] == "blosc lz4 level 1, crc32c"
    assert summarize(stores["zstd"])["image_codec"] == f"zstd level {IMAGE_ZSTD_LEVEL}, crc32c"
    with pytest.raises(ValueError, match="image codec 'lz5'"):
        StoreWriter(tmp_path / "bad.zarr", 1, MPII, 64, image_codec="lz5")
    assert not list(tmp_path.glob("bad.zarr*"))  # the bad name stopped it before anything was written


def test_bytes_on_disk_is_the_sum_of_the_files_written(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "one").write_bytes(b"x" * 10)
    (tmp_path / "a" / "two").write_bytes(b"x" * 20)
    (tmp_path / "a" / "b" / "three").write_bytes(b"x" * 300)
    (tmp_path / "a" / "empty").write_bytes(b"")
    assert bytes_on_disk(tmp_path) == 330


def test_summary_visibility_counts_the_joints_made_visible(tmp_path):
    """4 samples: r_ankle visible in 3, head_top in all, pelvis in none, l_wrist in 1."""
    rows = np.zeros((4, MPII.num_joints), np.uint8)
    rows[:3, MPII.index("r_ankle")] = 1
    rows[:, MPII.index("head_top")] = 1
    rows[3, MPII.index("l_wrist")] = 1
    s = summarize(open_store(drawn_store(tmp_path / "v.zarr", {}, num_samples=4, canvas_size=32, visible_rows=rows)))
    assert s["visibility"]["r_ankle"] == 0.75 and s["visibility"]["head_top"] == 1.0
    assert s["visibility"]["pelvis"] == 0.0 and s["visibility"]["l_wrist"] == 0.25
    assert s["mean_visible_joints"] == 2.0  # 8 visible joints over 4 samples
    assert s["uncompressed_bytes_per_sample"] == 3072  # 32 x 32 RGB


def test_summary_sizes_tell_noise_from_flat_images(tmp_path):
    """The crops' compressor cannot shrink random pixels but shrinks a flat grey image to almost nothing:
    two stores alike but for that differ on disk by about the 8 x 3072 bytes of noise."""
    noise = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    random = summarize(open_store(drawn_store(tmp_path / "n.zarr", {}, 8, 32, image=noise)))
    flat = summarize(open_store(drawn_store(tmp_path / "f.zarr", {}, 8, 32)))
    assert random["bytes_per_sample"] > 3072
    assert random["bytes_on_disk"] - flat["bytes_on_disk"] == pytest.approx(8 * 3072, rel=0.05)


def test_summary_of_a_random_store_and_cli_output(tmp_path, capsys):
    path = make_random_store(tmp_path / "r.zarr", num_samples=10, canvas_size=32, shard_size=4)
    s = summarize(open_store(path))
    assert s["samples"] == 10 and s["bad_samples"] is None
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
    """A 64 px canvas is drawn twice as large (128 px tiles): canvas pixel (x, y) covers
    tile pixels 2x..2x+1, 2y..2y+1. Annotated (11, 21) is canvas (10, 20) (1-based
    annotations), so tile pixels (20..21, 40..41)."""
    path = drawn_store(
        tmp_path / "d.zarr", {"l_wrist": (11, 21), "l_elbow": (11, 41), "r_hip": (41, 31), "pelvis": (41, 11)}
    )
    sheet, indices = contact_sheet(open_store(path), count=1, seed=0)
    assert sheet.shape == (128, 128, 3) and list(indices) == [0]
    colour = lambda x, y: tuple(int(v) for v in sheet[y, x])  # noqa: E731
    # joints: left blue, right red, centre gold, each on its own pixels
    assert colour(20, 40) == colour(21, 41) == BLUE  # l_wrist
    assert colour(20, 80) == BLUE  # l_elbow at canvas (10, 40)
    assert colour(80, 60) == colour(81, 61) == RED  # r_hip at canvas (40, 30)
    assert colour(80, 20) == GOLD  # pelvis at canvas (40, 10)
    # edges: the left forearm is left; r_hip - pelvis is a right limb, not centre
    assert colour(20, 60) == BLUE and colour(21, 60) == BLUE
    assert colour(80, 40) == RED and colour(81, 40) == RED
    # elsewhere the crop is untouched: one canvas pixel off the joints is still grey
    assert colour(50, 40) == colour(20, 100) == colour(110, 110) == GREY


def test_contact_sheet_grid_and_tiles(tmp_path):
    """9 samples make a 3 x 3 grid of 128 px tiles with 2 px gaps; a tile without
    skeleton is the crop enlarged (each canvas pixel a 2 x 2 block)."""
    image = np.random.default_rng(1).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    path = drawn_store(tmp_path / "g.zarr", {}, num_samples=9, image=image)
    sheet, indices = contact_sheet(open_store(path), count=9, seed=1)
    assert sheet.shape == (3 * 128 + 4, 3 * 128 + 4, 3) and sorted(indices) == list(range(9))
    tile = sheet[130:258, 260:388]  # row 1, column 2: the sixth sample shown
    crop = image[indices[5]]
    assert (tile[40:, :] == np.repeat(np.repeat(crop, 2, 0), 2, 1)[40:, :]).all()  # below the label
    assert (sheet[128:130, :] == 255).all() and (sheet[:, 128:130] == 255).all()  # white gaps


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
