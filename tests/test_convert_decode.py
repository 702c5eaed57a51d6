"""How convert decodes its sources: RGB straight from libjpeg (bit-identical to BGR +
cvtColor), the JPEG frame header read without decoding, and the reduced decode (JPEG DCT scaling,
the default) whose crops keep the exact geometry and stay close to a full decode's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from helpers import blob_image, centroid, mpii_sample_stores

from pose_pipeline.core import geometry
from pose_pipeline.data.convert import convert
from pose_pipeline.data.convert_crops import crop_block, crop_sample
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.images import SourceImage, jpeg_reduction, jpeg_shape, load_image
from pose_pipeline.data.store import open_store
from pose_pipeline.errors import UserError


def test_rgb_decode_is_bit_identical_to_bgr_and_cvtcolor(shared_data):
    for path in (
        sorted((shared_data / "mpii_sample" / "images").glob("*.jpg"))[:3]
        + sorted((shared_data / "lsp_sample" / "images").glob("*.jpg"))[:3]
    ):
        image, problem = load_image(path)
        assert problem == "" and np.array_equal(image, cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))


def test_jpeg_shape_reads_the_frame_header(shared_data, tmp_path):
    for path in (
        sorted((shared_data / "mpii_sample" / "images").glob("*.jpg"))[:2]
        + sorted((shared_data / "lsp_sample" / "images").glob("*.jpg"))[:2]
    ):  # progressive and baseline
        assert jpeg_shape(path.read_bytes()) == cv2.imread(str(path)).shape[:2]
    image = np.zeros((37, 53, 3), np.uint8)
    assert jpeg_shape(cv2.imencode(".png", image)[1].tobytes()) is None
    data = cv2.imencode(".jpg", image)[1].tobytes()
    assert jpeg_shape(data) == (37, 53)
    exif = b"\xff\xe1" + (8).to_bytes(2, "big") + b"Exif\x00\x00"  # OpenCV may turn such an image
    assert jpeg_shape(data[:2] + exif + data[2:]) is None


def test_jpeg_reduction_never_magnifies_the_reduced_image():
    for box, expected in [(300, 1), (383, 1), (768, 2), (1000, 2), (1536, 4), (3072, 8), (9000, 8)]:
        affine = geometry.crop_affine(np.array([500.0, 400.0]), box, 384, rotation_deg=30)
        reduce = jpeg_reduction(affine)
        assert reduce == expected, box
        stretch = np.linalg.norm(affine[:, :2], 2)
        assert (reduce == 1 or reduce * stretch <= 1) and (reduce == 8 or 2 * reduce * stretch > 1)
    # its closed-form largest singular value holds for any 2x2 part: sheared, stretched, mirrored
    for affine in np.random.default_rng(0).normal(0, 0.15, (200, 2, 3)):
        stretch = np.linalg.norm(affine[:, :2], 2)
        expected = next((r for r in (8, 4, 2) if r * stretch <= 1), 1)
        assert jpeg_reduction(affine) == expected, affine


@pytest.mark.parametrize("box", [800.0, 1600.0, 3200.0])  # reductions 2, 4, 8 at canvas 384
def test_reduced_decode_keeps_the_geometry_exact(tmp_path, box):
    points = np.array([[400.3, 250.7], [780.8, 460.2], [612.5, 365.5], [450.1, 520.9]])
    path = tmp_path / "blobs.jpg"
    path.write_bytes(cv2.imencode(".jpg", blob_image(points), [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes())
    affine = geometry.crop_affine(np.array([583.0, 340.0]), box, 384, rotation_deg=17)
    reduce = jpeg_reduction(affine)
    assert reduce == {800.0: 2, 1600.0: 4, 3200.0: 8}[box]
    crops = {}
    for reduced in (False, True):
        source = SourceImage(path)
        crops[reduced] = np.zeros((384, 384, 3), np.uint8)
        assert crop_sample(source, affine, np.array([0, 0, 10, 10.0]), 384, crops[reduced], reduced) == ""
        assert reduced == (reduce in source._decoded and reduce > 1)  # it did decode reduced
    # Each blob's centre lands where the affine puts it, with either decode, and at the same place:
    # a half-pixel slip of the reduced image's grid would move it by reduce/2 image pixels, about
    # 0.4-0.5 crop pixels here.
    radius = int(3 * 20.0 * np.linalg.norm(affine[:, :2], 2)) + 1  # 3 blob sigmas, in crop pixels
    for at in geometry.apply(affine, points):
        full, reduced = centroid(crops[False], at, radius), centroid(crops[True], at, radius)
        assert np.abs(full - at).max() < 0.15 and np.abs(reduced - at).max() < 0.15
        assert np.abs(reduced - full).max() < 0.05, reduced - full
    # A smooth image leaves no aliasing to differ by, except at the image's edges, where the black
    # outside begins half a decoded pixel out: (reduce - 1) / 2 image pixels further out.
    margin = reduce + int(2 / np.linalg.norm(affine[:, :2], 2))  # and two crop pixels
    inside = np.zeros((720, 1280), np.uint8)
    inside[margin:-margin, margin:-margin] = 1
    inside = geometry.warp_image(inside, affine, 384) == 1
    difference = np.abs(crops[True].astype(int) - crops[False])
    # (at 1/8 libjpeg keeps each 8x8 block's mean only: a blob's peak, 220 high, flattens by ~5%)
    assert difference.mean() < 0.5 and difference[inside].max() <= 12, difference[inside].max()


def test_convert_with_reduced_decode_is_close_to_the_full_decode(shared_data, tmp_path):
    mpii = shared_data / "mpii_sample"
    stores = mpii_sample_stores(shared_data, tmp_path)
    full, reduced = stores[False], stores[True]
    assert reduced.attrs["converter"]["reduced_decode"] is True and "reduced_decode" not in full.attrs["converter"]
    for name in ("keypoints", "affine", "image_name", "source_index", "scale"):
        assert np.array_equal(getattr(full, name), getattr(reduced, name)), name
    reductions = [jpeg_reduction(a) for a in full.affine]
    assert sorted(reductions) == [4, 8, 8, 8, 8]  # the sample's people are large against 128 px crops
    # Real photographs: the full decode's bilinear sampling (no low-pass filter) aliases fine
    # texture, which the DCT scaling averages away; so single pixels differ from the full decode,
    # while the crops equal, within a grey level or two, the image area-averaged by the same
    # factor and warped: what a reduced decode should be.
    difference = np.abs(full.images().astype(int) - reduced.images())
    assert difference.mean() < 6, difference.mean()
    for i, (name, affine, reduce) in enumerate(zip(full.image_name, full.affine, reductions)):
        image = load_image(mpii / "images" / name)[0]
        area = cv2.resize(
            image, (-(-image.shape[1] // reduce), -(-image.shape[0] // reduce)), interpolation=cv2.INTER_AREA
        )
        expected = geometry.warp_image(area, geometry.compose(affine, geometry.resize_affine(1, reduce)), 128)
        difference = np.abs(expected.astype(int) - reduced.images(i, i + 1)[0])
        assert difference.mean() < 1 and np.percentile(difference, 90) <= 2, (name, difference.mean())


def test_the_config_key_reaches_the_command_line():
    from pose_pipeline.config.schema import validate_config
    from pose_pipeline.workflow_lookups import converter_settings

    for value, extra in ((None, "--reduced-decode"), (False, "--no-reduced-decode"), (True, "--reduced-decode")):
        dataset = {"format": "coco", "annotations": "a.json", "images": "img", "min_keypoints": 3}
        if value is not None:
            dataset["reduced_decode"] = value
        config = validate_config(
            {"datasets": {"d": dataset}, "experiments": {"e": {"dataset": "d", "model": {"arch": "hourglass"}}}}
        )
        assert converter_settings(config, "d")["extra"] == ["--min-keypoints", "3", extra]


def test_the_image_codec_key_reaches_the_command_line():
    from pose_pipeline.config.schema import validate_config
    from pose_pipeline.workflow_lookups import converter_settings

    experiments = {"e": {"dataset": "d", "model": {"arch": "hourglass"}}}
    for value, option in ((None, []), ("lz4", []), ("zstd", ["--image-codec", "zstd"])):
        dataset = {"format": "coco", "annotations": "a.json", "images": "img"}
        dataset.update({"image_codec": value} if value else {})
        config = validate_config({"datasets": {"d": dataset}, "experiments": experiments})
        # the default is left out: a store converted before the key existed is not converted again
        assert converter_settings(config, "d")["extra"] == ["--reduced-decode", *option]
    with pytest.raises(UserError, match="image_codec"):
        validate_config({"datasets": {"d": {**dataset, "image_codec": "lz5"}}, "experiments": experiments})


def test_two_workers_with_small_jobs_write_the_same_store_as_one(shared_data, tmp_path, monkeypatch):
    import scipy.io

    from pose_pipeline.data import convert_crops

    lsp = shared_data / "lsp_sample"
    joints = scipy.io.loadmat(lsp / "joints.mat")["joints"][:, :, :30]
    scipy.io.savemat(tmp_path / "joints30.mat", {"joints": joints})
    images = tmp_path / "images"
    images.mkdir()
    for i in range(1, 31):
        if i != 12:  # one missing image: skipped, the rest regrouped around it
            (images / f"im{i:05d}.jpg").symlink_to(lsp / "images" / f"im{i:05d}.jpg")
    monkeypatch.setattr(convert_crops, "WORKER_BLOCK", 5)  # jobs of 5, shards of 8: never aligned
    stores = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.zarr"
        summary = convert(
            ConvertOptions(
                "lsp",
                tmp_path / "joints30.mat",
                images,
                out,
                split="all",
                canvas_size=64,
                shard_size=8,
                on_bad_sample="skip",
                workers=workers,
                progress=False,
            )
        )
        assert summary["samples"] == 29 and summary["skipped"] == 1
        stores.append(open_store(out))
    one, two = stores
    assert np.array_equal(one.images(), two.images())
    for name in ("keypoints", "affine", "image_name", "source_index"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    assert "im00012.jpg" not in set(one.image_name)


def crop_block_noting_threads(args):
    """convert_crops.crop_block, each sample a problem unless OpenCV has one thread (in a worker:
    as the fork inherited it)."""
    crops, problems = crop_block(args)
    threads = cv2.getNumThreads()
    return crops, [problem or ("" if threads == 1 else f"cut with {threads} OpenCV threads") for problem in problems]


def test_crops_are_cut_with_one_opencv_thread_and_the_setting_restored(shared_data, tmp_path, monkeypatch):
    """OpenCV's pool stays idle while crops are cut, in the process and in its forked workers (a
    crop is too small to share out); the caller's thread count is back afterwards."""
    from pose_pipeline.data import convert_crops

    monkeypatch.setattr(convert_crops, "crop_block", crop_block_noting_threads)  # forked workers inherit it
    cv2.setNumThreads(2)
    lsp = shared_data / "lsp_sample"
    for workers in (1, 2):
        convert(
            ConvertOptions(
                "lsp",
                lsp / "joints.mat",
                lsp / "images",
                tmp_path / f"w{workers}.zarr",
                split="all",
                canvas_size=32,
                workers=workers,
                progress=False,
            )
        )  # a problem is an error: on_bad_sample "error"
        assert cv2.getNumThreads() == 2
