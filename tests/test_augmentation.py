"""The opt-in augmentations (crop shift, half-body, erasing, blur): exact keypoint geometry,
draws fixed by (seed, step), the default path unchanged, and their config bounds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from pose_pipeline.core import geometry
from pose_pipeline.core.codec import HeatmapCodec
from pose_pipeline.core.joints import COCO, MPII
from pose_pipeline.data.augmentation import HALF_BODY_PADDING, Augmentation, crop_boxes, hash_noise
from pose_pipeline.data.batches import Samples, finish_batch, make_batch, prepare_batch

REPO = Path(__file__).resolve().parents[1]
CANVAS, CONTEXT = 160, 1.25
STORE = SimpleNamespace(canvas_size=CANVAS, context=CONTEXT, joint_set=MPII)
CODEC = HeatmapCodec(64, 16)
ALL_ON = Augmentation(shift=0.16, shift_prob=1, half_body_prob=1, erase_prob=1, blur_prob=1)


def standing_person(n: int, rng) -> np.ndarray:
    """(n,16,2) MPII joints of an upright figure in the canvas, jittered, at least 8 px apart."""
    # fmt: off
    base = np.array([
        [62, 140], [64, 115], [67, 92], [93, 92], [96, 115], [98, 140],
        [80, 92], [80, 50], [80, 38], [80, 20],
        [40, 86], [48, 66], [62, 50], [98, 50], [112, 66], [120, 86],
    ], float)
    # fmt: on
    return base + rng.uniform(-2, 2, (n, 16, 2))


def dots(points: np.ndarray) -> np.ndarray:
    """uint8 canvases (n,S,S,3), black with a Gaussian dot (sigma 1.5 px) at every joint."""
    grid = np.arange(CANVAS, dtype=float)
    gx = np.exp(-((grid - points[..., 0, None]) ** 2) / 4.5)  # (n,J,S)
    gy = np.exp(-((grid - points[..., 1, None]) ** 2) / 4.5)
    canvas = np.einsum("njy,njx->nyx", gy, gx).clip(0, 1)
    return np.repeat((canvas * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def geometric_params(n: int, rng) -> dict:
    """Flip, shift and half-body on every other sample, upper and lower halves, a rotation."""
    params = ALL_ON.sample(rng, n)
    params.update(
        flip=np.arange(n) % 2 == 0,
        half_body=np.arange(n) % 3 != 2,
        half_body_upper=np.arange(n) % 2 == 1,
        shift=rng.uniform(-0.16, 0.16, (n, 2)),
        rotation=rng.uniform(-20, 20, n),
    )
    del params["erase"], params["blur_sigma"]  # pixel ops: not geometry
    return params


def test_a_flipped_shifted_half_body_crop_maps_every_joint_where_its_affine_says():
    rng = np.random.default_rng(0)
    n = 6
    keypoints = standing_person(n, rng)
    labelled = np.ones((n, 16), np.uint8)
    params = geometric_params(n, rng)
    batch = prepare_batch(dots(keypoints), keypoints, labelled, STORE, CODEC, augmentation=ALL_ON, params=params)
    targets, weights = finish_batch(batch, CODEC, torch.device("cpu"), "torch")[1:]
    where = geometry.apply(batch.to_input, keypoints)  # joint k of the canvas, in the input
    source = np.where(params["flip"][:, None], MPII.flip_permutation(), np.arange(16))  # mirrored channels
    # the targets: channel j's decoded peak is where the affine takes joint source[j]
    peaks = geometry.apply(geometry.invert(CODEC.input_to_heatmap()), CODEC.decode(targets.numpy())[0])
    expected = np.take_along_axis(where, source[..., None], axis=1)
    on_heatmap = geometry.apply(CODEC.to_heatmap(batch.to_input), np.take_along_axis(keypoints, source[..., None], 1))
    # a peak on the heatmap's outer pixels has no neighbour for the sub-pixel step
    inner = ((on_heatmap > 0.5) & (on_heatmap < CODEC.heatmap_size - 1.5)).all(axis=-1)
    assert torch.equal(weights > 0, torch.as_tensor(((on_heatmap > -0.5) & (on_heatmap < 15.5)).all(-1)))
    np.testing.assert_allclose(peaks[inner], expected[inner], atol=0.05)
    assert inner.sum() > n * 8  # half-body crops leave out the other half's joints, not more
    # the pixels: one dot per image, at joint k; after the warp its centroid is where the affine says
    zoom = np.sqrt(np.abs(np.linalg.det(batch.to_input[:, :, :2])))
    margin = 4 * 1.5 * zoom[:, None]  # the warped dot's 4 sigma lie inside the input
    inside = ((where > margin[..., None]) & (where < CODEC.input_size - 1 - margin[..., None])).all(axis=-1)
    for k in range(16):
        one = prepare_batch(
            dots(keypoints[:, k : k + 1]), keypoints, labelled, STORE, CODEC, augmentation=ALL_ON, params=params
        )
        image = finish_batch(one, CODEC, torch.device("cpu"), "torch")[0].numpy()[:, 0] + 0.4404  # undo the mean
        for i in np.flatnonzero(inside[:, k]):
            ys, xs = np.mgrid[: CODEC.input_size, : CODEC.input_size]
            dot = np.array([(xs * image[i]).sum(), (ys * image[i]).sum()]) / image[i].sum()
            assert np.linalg.norm(dot - where[i, k]) < 1.0
    assert inside.sum() > n * 6
    # (that a half-body crop's box is its half's box: the next test, exactly)


def test_the_half_body_box_is_the_halfs_labelled_joints_box_enlarged():
    rng = np.random.default_rng(1)
    points = standing_person(4, rng)
    labelled = np.ones((4, 16), bool)
    labelled[2, :9] = False  # 7 labelled: fewer than half, no half-body
    labelled[3, [0, 1, 4, 5, 6]] = False  # lower half has 2 labelled joints: upper is taken
    params = {"half_body": np.ones(4, bool), "half_body_upper": np.array([True, False, True, False])}
    center, side = crop_boxes(params, points, labelled, MPII.body_halves(), CANVAS, CONTEXT)
    upper, lower = MPII.body_halves()
    for i, half in ((0, upper), (1, lower), (3, upper)):
        np.testing.assert_allclose(center[i], points[i, half].mean(axis=0))
        extent = points[i, half].max(axis=0) - points[i, half].min(axis=0)
        assert side[i] == pytest.approx(extent.max() * HALF_BODY_PADDING)
    np.testing.assert_allclose(center[2], (CANVAS - 1) / 2)  # the person box
    assert side[2] == pytest.approx(CANVAS / CONTEXT)


def test_body_halves_split_by_joint_names():
    upper, lower = MPII.body_halves()
    assert [MPII.joints[k] for k in lower] == ["r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis"]
    assert list(upper) == list(range(7, 16))  # MMPose's MPII upper_body_ids
    assert list(COCO.body_halves()[0]) == list(range(11))  # and COCO's


def test_the_same_seed_and_step_draw_the_same_augmentation():
    def draw(seed, step):
        return ALL_ON.sample(np.random.default_rng([seed, step]), 12)

    first, again, other = draw(3, 17), draw(3, 17), draw(3, 18)
    assert first.keys() == again.keys() >= {"shift", "half_body", "erase", "erase_box", "blur_sigma"}
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["shift"], other["shift"])
    # what each sample gets does not depend on the others sharing its batch (DDP ranks take slices)
    rng = np.random.default_rng(2)
    keypoints = standing_person(12, rng)
    images, labelled = dots(keypoints), np.ones((12, 16), np.uint8)
    whole = make_batch(
        Samples(images, keypoints, labelled), STORE, CODEC, "cpu", augmentation=ALL_ON, params=first, warp="torch"
    )
    half = {k: v[6:] for k, v in first.items()}
    part = make_batch(
        Samples(images[6:], keypoints[6:], labelled[6:]),
        STORE,
        CODEC,
        "cpu",
        augmentation=ALL_ON,
        params=half,
        warp="torch",
    )
    for a, b in zip(whole, part):
        torch.testing.assert_close(a[6:], b, rtol=0, atol=1e-6)


def test_the_default_options_draw_and_crop_as_before():
    """The new options off draw nothing and leave the affine as `canvas_to_input` without a box
    (the whole default path is checked byte for byte by the existing loader tests)."""
    params = Augmentation().sample(np.random.default_rng([0, 5]), 8)
    assert set(params) == {"scale", "rotation", "flip", "gain"}
    rng = np.random.default_rng([0, 5])  # PyTorch-Pose's draws, in their order
    np.testing.assert_array_equal(params["scale"], rng.uniform(0.75, 1.25, 8))
    keypoints = standing_person(8, np.random.default_rng(0))
    batch = prepare_batch(
        dots(keypoints), keypoints, np.ones((8, 16)), STORE, CODEC, augmentation=Augmentation(), params=params
    )
    plain = CODEC.canvas_to_input(CANVAS, CONTEXT, params["scale"], params["rotation"], params["flip"])
    np.testing.assert_array_equal(batch.to_input, plain)
    assert batch.blur_sigma is None and batch.erase_rects is None


def test_erasing_fills_its_rectangle_only_and_leaves_targets_alone():
    rng = np.random.default_rng(4)
    keypoints = standing_person(4, rng)
    images, labelled = dots(keypoints), np.ones((4, 16), np.uint8)
    aug = Augmentation(erase_prob=1.0)
    params = aug.sample(np.random.default_rng(9), 4)
    params["erase"][3] = False
    erased = prepare_batch(images, keypoints, labelled, STORE, CODEC, augmentation=aug, params=params)
    x, targets, weights = finish_batch(erased, CODEC, "cpu", "torch")
    plain = {k: v for k, v in params.items() if not k.startswith("erase")}
    x0, targets0, weights0 = make_batch(
        Samples(images, keypoints, labelled), STORE, CODEC, "cpu", augmentation=aug, params=plain, warp="torch"
    )
    assert torch.equal(targets, targets0) and torch.equal(weights, weights0)
    for i, (a, b, c, d) in enumerate(erased.erase_rects):
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[b:d, a:c] = True
        assert torch.equal(x[i][:, ~inside], x0[i][:, ~inside])
        assert inside.sum() == (0 if i == 3 else (c - a) * (d - b))
        assert i == 3 or (x[i][:, inside] != x0[i][:, inside]).any()
    # the mean fill is 0 once the mean is subtracted
    erased.erase_fill = "mean"
    x = finish_batch(erased, CODEC, "cpu", "torch")[0]
    a, b, c, d = erased.erase_rects[0]
    assert float(x[0, :, b:d, a:c].abs().max()) < 1e-6


def test_hash_noise_is_uniform_and_fixed_by_its_seed():
    seeds = torch.tensor([0, 1, 2**31 - 1])
    noise = hash_noise(seeds, (3, 32, 32))
    assert noise.shape == (3, 3, 32, 32) and torch.equal(noise, hash_noise(seeds, (3, 32, 32)))
    assert 0 <= float(noise.min()) and float(noise.max()) < 1
    assert abs(float(noise.mean()) - 0.5) < 0.02 and not torch.equal(noise[0], noise[1])


def test_blur_smooths_the_drawn_samples_only():
    rng = np.random.default_rng(5)
    keypoints = standing_person(4, rng)
    images, labelled = dots(keypoints), np.ones((4, 16), np.uint8)
    aug = Augmentation(blur_prob=1.0)
    params = aug.sample(np.random.default_rng(2), 4)
    params["blur_sigma"][1] = 0.0
    samples = Samples(images, keypoints, labelled)
    x = make_batch(samples, STORE, CODEC, "cpu", augmentation=aug, params=params, warp="torch")[0]
    plain = {k: v for k, v in params.items() if k != "blur_sigma"}
    x0 = make_batch(samples, STORE, CODEC, "cpu", augmentation=aug, params=plain, warp="torch")[0]
    assert torch.equal(x[1], x0[1])
    for i in (0, 2, 3):  # lower peaks, the same total brightness (mirrored border: nothing lost)
        assert float(x[i].max()) < float(x0[i].max())
        torch.testing.assert_close(x[i].sum(), x0[i].sum(), rtol=0.02, atol=1.0)


SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def test_augmentation_defaults_are_the_schemas():
    keys = SCHEMA["$defs"]["experiment"]["properties"]["training"]["properties"]["augmentation"]["properties"]
    defaults = {key: node["default"] for key, node in keys.items()}
    assert defaults == {k: list(v) if isinstance(v, tuple) else v for k, v in vars(Augmentation()).items()}


@pytest.mark.parametrize(
    "key,value",
    [
        ("shift", -0.1), ("shift", 0.6), ("shift_prob", 1.5), ("half_body_prob", -0.1), ("half_body_prob", 2),
        ("erase_prob", 1.1), ("erase_area", [0.1]), ("erase_area", [0.1, 1.2]), ("erase_area", [0.3, 0.1]),
        ("erase_ratio", [0, 3]), ("erase_ratio", [3, 0.3]), ("erase_fill", "zeros"), ("blur_prob", -1),
        ("blur_sigma", [0, 1]), ("blur_sigma", [1, 9]), ("blur_sigma", [2, 1]),
    ],
)  # fmt: skip
def test_each_new_augmentation_key_is_bounded(key, value):
    from pose_pipeline.config.schema import validate_config
    from pose_pipeline.errors import UserError

    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw["experiments"]["demo"].setdefault("training", {}).setdefault("augmentation", {})[key] = value
    with pytest.raises(UserError, match=rf"experiments\.demo\.training\.augmentation.*{key}"):
        validate_config(raw)


def test_the_published_settings_validate():
    from pose_pipeline.config.schema import validate_config

    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    published = {"shift": 0.16, "shift_prob": 0.3, "half_body_prob": 0.3, "erase_prob": 0.5, "blur_prob": 0.1}
    raw["experiments"]["demo"].setdefault("training", {})["augmentation"] = published
    augmentation = validate_config(raw)["experiments"]["demo"]["training"]["augmentation"]
    assert Augmentation(**augmentation).half_body_prob == 0.3
