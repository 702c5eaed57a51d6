"""The geometry module (affines, warps) and the heatmap codec on real poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.data.formats import mpii
from pose_pipeline.evaluate.roundtrip import encode_decode


def test_compose_invert_apply_roundtrip():
    rng = np.random.default_rng(0)
    a = geometry.crop_affine(rng.uniform(0, 500, (5, 2)), rng.uniform(50, 300, 5), 128, rng.uniform(-30, 30, 5))
    points = rng.uniform(0, 500, (5, 7, 2))
    back = geometry.apply(geometry.invert(a), geometry.apply(a, points))
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_crop_affine_maps_box_to_crop():
    a = geometry.crop_affine(np.array([100.0, 50.0]), 40.0, 64)
    # the centre goes to the crop centre, the box edges to the crop edges
    np.testing.assert_allclose(geometry.apply(a, np.array([[100.0, 50.0]])), [[31.5, 31.5]])
    np.testing.assert_allclose(
        geometry.apply(a, np.array([[80.0, 30.0], [120.0, 70.0]])), [[31.5 - 32, 31.5 - 32], [31.5 + 32, 31.5 + 32]]
    )


def test_warp_image_follows_the_affine():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:43, 70:73] = 255  # a bright dot at (71, 41)
    a = geometry.crop_affine(np.array([60.0, 50.0]), 80.0, 160, rotation_deg=25.0)
    crop = geometry.warp_image(image, a, 160)
    weight = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:160, :160]
    x, y = (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()
    expected = geometry.apply(a, np.array([[71.0, 41.0]]))[0]
    assert np.hypot(x - expected[0], y - expected[1]) < 0.5


def test_warp_batch_matches_cv2_warp():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    affines = geometry.crop_affine(rng.uniform(20, 44, (3, 2)), rng.uniform(30, 60, 3), 48, rng.uniform(-40, 40, 3))
    batch = geometry.warp_batch(torch.from_numpy(images), affines, 48).permute(0, 2, 3, 1).numpy() * 255
    for i in range(3):
        reference = geometry.warp_image(images[i], affines[i], 48).astype(np.float64)
        inner = (slice(4, -4), slice(4, -4))  # borders differ only in how zero padding blends
        assert np.abs(batch[i][inner] - reference[inner]).mean() < 2.0


def test_flip_affine_swaps_sides():
    flip = geometry.hflip_affine(64)
    np.testing.assert_allclose(geometry.apply(flip, np.array([[0.0, 5.0], [63.0, 7.0]])), [[63.0, 5.0], [0.0, 7.0]])


def test_canvas_to_input_shows_the_person_box():
    # canvas of 192 px holding the box x 1.5: the input shows the central 128 canvas pixels
    a = geometry.canvas_to_input_affine(192, 1.5, 128)
    np.testing.assert_allclose(
        geometry.apply(a, np.array([[32.0, 32.0], [159.5, 95.5]])), [[0.0, 0.0], [127.5, 63.5]], atol=1e-9
    )


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_roundtrip_on_real_mpii_validation_poses(shared_data):
    """Acceptance: every annotated joint of the 2,958 MPII validation people encoded into a
    64 x 64 target and decoded back errs on average by < 0.01 head units (`normalize`)."""
    people = mpii.read_hourglass_h5(shared_data / "mpii_sample" / "valid.h5", is_train=False)
    assert len(people) == 2958
    points = geometry.annotated_to_array(people.keypoints, 1.0)
    codec = HeatmapCodec(256, 64, sigma=1.0)
    to_heatmap = codec.person_to_heatmap(geometry.annotated_to_array(people.center, 1.0), people.scale)
    decoded, encoded = encode_decode(points, people.annotated.astype(np.float32), to_heatmap, codec)
    # the few joints outside the person box cannot be encoded; nearly all can
    assert encoded.sum() >= 0.99 * people.annotated.sum()
    error = np.linalg.norm(decoded - points, axis=-1) / people.head_size[:, None]
    assert error[encoded].mean() < 0.01
    # and an integer-position target (what the seeds drew) would not pass: the test can fail
    rounded = geometry.apply(geometry.invert(to_heatmap), np.round(geometry.apply(to_heatmap, points)))
    assert (np.linalg.norm(rounded - points, axis=-1) / people.head_size[:, None])[encoded].mean() > 0.02
