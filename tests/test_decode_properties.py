"""The one decode (`codec.decode_heatmaps_torch`) is right on any map, with and without blur:
random and adversarial maps (all negative, flat, zero, one higher pixel, peaks on the border
and in the corners, two equal peaks, NaN and inf) through torch, the numpy path of
`HeatmapCodec.decode` and the decode exported alone to ONNX and TorchScript."""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.ndimage import gaussian_filter

from pose_pipeline.core.codec import HeatmapCodec, blur_heatmaps, decode_heatmaps_torch

BLURS = (0.0, 1.0)
EXPORTED_SHAPE = (9, 11)  # not square: a swapped height and width would show
KINDS = ("random", "negative", "flat", "zero", "one_higher", "peak", "two_equal")
# float32 outputs decoded in float64: this range is far from overflow, and wide enough for
# heights of any sign around ordinary heatmap values
VALUES = st.floats(-1e3, 1e3, allow_nan=False)
HEIGHTS = st.floats(1e-6, 1e3)
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pixel(draw, h: int, w: int, border: bool = False):
    """(y, x) anywhere, or on the border (corners included) when `border`."""
    if not border:
        return draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    edges = {(y, x) for y in range(h) for x in (0, w - 1)} | {(y, x) for y in (0, h - 1) for x in range(w)}
    return draw(st.sampled_from(sorted(edges)))


@st.composite
def heatmaps(draw, shape=None):
    """One (H,W) float64 map of one of KINDS, with NaN and +-inf put in about half of them."""
    h, w = shape or (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    kind = draw(st.sampled_from(KINDS))
    background = draw(VALUES)
    if kind == "random":
        m = draw(arrays(np.float64, (h, w), elements=VALUES))
    elif kind == "negative":
        m = draw(arrays(np.float64, (h, w), elements=st.floats(-1e3, -1e-6)))
    elif kind in ("flat", "zero"):
        m = np.full((h, w), background if kind == "flat" else 0.0)
    elif kind == "one_higher":
        m = np.full((h, w), background)
        m[pixel(draw, h, w)] += draw(HEIGHTS)
    elif kind == "peak":  # a spike or a Gaussian on the border, over any background
        y, x = pixel(draw, h, w, border=True)
        width = draw(st.sampled_from([0.0, 1.0, 2.0]))
        yy, xx = np.mgrid[:h, :w]
        bump = (yy == y) & (xx == x) if width == 0 else np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * width**2))
        m = background + draw(HEIGHTS) * bump
    else:  # two equal peaks
        m = np.full((h, w), background)
        height = background + draw(HEIGHTS)
        m[pixel(draw, h, w)] = height
        m[pixel(draw, h, w)] = height
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            m[pixel(draw, h, w)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return m


def finite_or_lowest(m: np.ndarray) -> np.ndarray:
    """What the decode documents for non-finite values: its map's lowest finite value (or 0)."""
    finite = np.isfinite(m)
    return np.where(finite, m, m[finite].min() if finite.any() else 0.0)


def check_decoded(m: np.ndarray, blur: float, coords, score) -> None:
    """Coordinates within the map and finite; the score finite, within the map's finite [min,
    max]; never inverted: a pixel within one pixel of the coordinates holds the (blurred) map's
    maximum and the score, which is the map's maximum without blur."""
    h, w = m.shape
    clean = finite_or_lowest(m)
    smoothed = gaussian_filter(clean, blur, mode="reflect", truncate=4.0) if blur else clean
    x, y = coords
    assert np.isfinite(coords).all() and np.isfinite(score)
    assert 0 <= x <= w - 1 and 0 <= y <= h - 1
    assert clean.min() <= score <= clean.max()
    yy, xx = np.mgrid[:h, :w]
    near = (np.abs(xx - x) <= 1) & (np.abs(yy - y) <= 1)
    # scipy's blur and the decode's matrix product round differently
    top = smoothed >= smoothed.max() - 1e-9 * (1 + np.abs(smoothed).max())
    assert (near & top & (clean == score)).any(), (coords, score)
    if not blur:
        assert score == clean.max()


def decode_torch(m: np.ndarray, blur: float):
    coords, scores = decode_heatmaps_torch(torch.from_numpy(m)[None, None], blur)
    return coords[0, 0].numpy(), float(scores[0, 0])


class Decode(torch.nn.Module):
    """The decode alone, as the exported models carry it."""

    def __init__(self, blur: float):
        super().__init__()
        self.blur = blur

    def forward(self, maps):
        return decode_heatmaps_torch(maps, self.blur)


@cache
def exported(shape: tuple[int, int], blur: float, tmp: str):
    """(onnxruntime session, traced TorchScript module) of the decode of (1, 1, *shape) float64 maps."""
    import onnxruntime

    example = torch.zeros((1, 1, *shape), dtype=torch.float64)
    path = f"{tmp}/decode_{shape[0]}x{shape[1]}_{blur}.onnx"
    program = torch.onnx.export(Decode(blur).eval(), (example,), dynamo=True, opset_version=18, verbose=False)
    program.save(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and the tracer's constant sizes
        traced = torch.jit.trace(Decode(blur).eval(), (example,), check_trace=False)
    return session, traced


@pytest.fixture(scope="module")
def exported_decode(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    tmp = str(tmp_path_factory.mktemp("decode"))

    def run(m: np.ndarray, blur: float):
        """[(coords, score) of ONNX Runtime, of TorchScript] for one map."""
        session, traced = exported(m.shape, blur, tmp)
        maps = m[None, None]
        coords, scores = session.run(None, {session.get_inputs()[0].name: maps})
        with torch.no_grad():
            t_coords, t_scores = traced(torch.from_numpy(maps))
        return [(coords[0, 0], float(scores[0, 0])), (t_coords[0, 0].numpy(), float(t_scores[0, 0]))]

    return run


@pytest.mark.parametrize("blur", BLURS)
@PROPERTY_SETTINGS
@given(m=heatmaps())
def test_torch_and_numpy_decode_any_map(blur, m):
    coords, score = decode_torch(m, blur)
    check_decoded(m, blur, coords, score)
    np_coords, np_scores = HeatmapCodec(64, blur_sigma=blur).decode(m[None, None].copy())
    np.testing.assert_array_equal(np_coords[0, 0], coords)
    assert np_scores[0, 0] == score or (np.isnan(np_scores[0, 0]) and np.isnan(score))


@pytest.mark.parametrize("blur", BLURS)
@settings(max_examples=60, deadline=None)
@given(m=heatmaps(EXPORTED_SHAPE))
def test_exported_decode_agrees_on_any_map(exported_decode, blur, m):
    coords, score = decode_torch(m, blur)
    for got_coords, got_score in exported_decode(m, blur):
        check_decoded(m, blur, got_coords, got_score)
        np.testing.assert_allclose(got_coords, coords, atol=1e-6)
        np.testing.assert_allclose(got_score, score, rtol=1e-12)


def regression_map() -> np.ndarray:
    """All negative: the blur rescaled by peak / clamp(blurred max, 1e-12) flipped it, and its
    arg-min (12, 12) was decoded with a score of ~9e7."""
    m = np.full((16, 16), -0.05)
    m[4, 4], m[12, 12] = -0.001, -0.3
    return m


@pytest.mark.parametrize("blur", BLURS)
def test_an_all_negative_map_decodes_its_maximum(exported_decode, blur):
    m = regression_map()
    results = [decode_torch(m, blur), *exported_decode(m, blur)]
    coords, scores = HeatmapCodec(64, blur_sigma=blur).decode(m[None, None])
    results.append((coords[0, 0], float(scores[0, 0])))
    for coords, score in results:
        np.testing.assert_allclose(coords, [4.0, 4.0], atol=1e-9)
        assert score == -0.001


def test_the_blur_moves_no_peak_for_a_map_plus_a_constant():
    """The blur's weights sum to 1 at every pixel (the map mirrored beyond its border, not
    zeros), so adding a constant moves no arg-max: a map below 0 peaks where it does above 0,
    in a corner and on an edge too, and its integer peak is what the decode returns."""
    m = np.random.default_rng(3).random((2, 5, 13, 10))
    m[0, :, 0, 0] += 2
    m[1, :, 6, -1] += 2
    for blur in (1.0, 2.5):
        up = blur_heatmaps(torch.from_numpy(m), blur).flatten(2).argmax(-1)
        down = blur_heatmaps(torch.from_numpy(m - 10), blur).flatten(2).argmax(-1)
        assert torch.equal(up, down)
        coords, scores = decode_heatmaps_torch(torch.from_numpy(m - 10), blur)
        assert torch.equal(coords[..., 1] * 10 + coords[..., 0], down.double())
        assert bool((scores < -7).all())
