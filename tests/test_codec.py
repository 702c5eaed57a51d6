"""The heatmap codec: targets, sub-pixel decoding and the canvas -> input -> heatmap chain."""

from __future__ import annotations

import numpy as np
import pytest

from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HEATMAP_STRIDE, HeatmapCodec


def test_heatmap_size_is_a_quarter_of_the_input_unless_given():
    assert HeatmapCodec(256).heatmap_size == 256 // HEATMAP_STRIDE == 64
    assert HeatmapCodec(256, 32).heatmap_size == 32
    assert HeatmapCodec(256, blur_sigma=0.0).blur_sigma is None


def test_encode_decode_is_exact_for_subpixel_targets():
    codec = HeatmapCodec(256, sigma=1.0)
    points = np.array([[[10.3, 20.7], [31.9, 1.2], [40.0, 40.0], [70.0, 5.0]]])
    targets, weights = codec.encode(points, np.ones((1, 4)))
    assert targets.shape == (1, 4, 64, 64)
    assert weights.tolist() == [[1.0, 1.0, 1.0, 0.0]]  # (70, 5) lies outside a 64 x 64 map
    assert float(targets[0, 3].abs().sum()) == 0.0
    coords, scores = codec.decode(targets.numpy())
    np.testing.assert_allclose(coords[0, :3], points[0, :3], atol=1e-4)
    np.testing.assert_allclose(scores[0, :3], 1.0, atol=0.2)
    # blurring keeps a Gaussian Gaussian: still exact away from the border (the blur pads
    # with zeros, which skews a peak one pixel from the edge)
    coords, _ = HeatmapCodec(256, sigma=1.0, blur_sigma=1.0).decode(targets.numpy())
    np.testing.assert_allclose(coords[0, [0, 2]], points[0, [0, 2]], atol=1e-3)


@pytest.mark.parametrize("input_size,sigma", [(256, 1.0), (64, 2.0)])
def test_canvas_keypoints_come_back_to_the_sub_pixel(input_size, sigma):
    """Canvas points through the codec's affines, encoded, decoded and mapped back land
    within 1e-3 canvas pixels; whole-heatmap-pixel decoding (arg-max only) would be off by
    up to half a heatmap pixel (> 0.5 canvas pixels here), so the check can fail."""
    codec = HeatmapCodec(input_size, sigma=sigma)
    canvas, context = 2 * input_size, 1.25
    rng = np.random.default_rng(7)
    # well inside the box the input shows, whatever the rotation
    box = canvas / context
    points = (canvas - 1) / 2 + rng.uniform(-0.3 * box, 0.3 * box, (5, 6, 2))
    to_heatmap = codec.to_heatmap(
        codec.canvas_to_input(canvas, context, scale=np.ones(5), rotation_deg=rng.uniform(-30, 30, 5))
    )
    targets, weights = codec.encode(geometry.apply(to_heatmap, points), np.ones((5, 6)))
    assert bool((weights == 1).all())
    coords, _ = codec.decode(targets.numpy())
    back = geometry.apply(geometry.invert(to_heatmap), coords)
    np.testing.assert_allclose(back, points, atol=1e-3)

    flat = targets.numpy().reshape(5, 6, -1).argmax(-1)
    whole = np.stack([flat % codec.heatmap_size, flat // codec.heatmap_size], -1).astype(float)
    assert np.abs(geometry.apply(geometry.invert(to_heatmap), whole) - points).max() > 0.5


def test_image_to_heatmap_is_image_to_canvas_then_canvas_to_heatmap():
    codec = HeatmapCodec(64)
    image_to_canvas = geometry.crop_affine(np.array([[120.0, 80.0]]), np.array([90.0]), 96)
    point = np.array([[[130.0, 70.0]]])
    via_canvas = geometry.apply(
        codec.to_heatmap(codec.canvas_to_input(96, 1.5)), geometry.apply(image_to_canvas, point)
    )
    np.testing.assert_allclose(
        geometry.apply(codec.image_to_heatmap(image_to_canvas, 96, 1.5), point), via_canvas, atol=1e-9
    )
    # the canvas centre is the heatmap centre
    np.testing.assert_allclose(
        geometry.apply(codec.image_to_heatmap(image_to_canvas, 96, 1.5), np.array([[[120.0, 80.0]]])),
        [[[7.5, 7.5]]],
        atol=1e-9,
    )


def test_from_settings_reads_training_and_evaluation():
    codec = HeatmapCodec.from_settings({"input_size": 128, "heatmap_size": 32, "sigma": 2.0}, {"blur_sigma": 0.5})
    assert codec == HeatmapCodec(128, 32, 2.0, 0.5)
    assert HeatmapCodec.from_settings({"input_size": 128, "heatmap_size": 32, "sigma": 2.0}).blur_sigma is None


def test_the_codec_decodes_tensors_on_their_device_as_numpy_arrays():
    import torch

    maps = np.random.default_rng(0).random((2, 3, 16, 16)).astype(np.float32)
    codec = HeatmapCodec(64, blur_sigma=1.0)
    for got, expected in zip(codec.decode(torch.from_numpy(maps)), codec.decode(maps)):
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        np.testing.assert_array_equal(got, expected)
