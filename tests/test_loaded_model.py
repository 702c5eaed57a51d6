"""One loader for inference (`inference.loaded_model.load_for_inference`): predict, infer and
export run a checkpoint at the codec it was trained with, read once, and share one definition
of their evaluation options (--device included).

The model is trained for one epoch at 128 px input, 32 px heatmaps and sigma 1.5 on a small
random store, so that nothing falls back to the 256 px default unnoticed.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from helpers import make_random_store, random_checkpoint, settings

from pose_pipeline import cli
from pose_pipeline.inference.loaded_model import load_for_inference

TRAINED = {"input_size": 128, "heatmap_size": 32, "sigma": 1.5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from pose_pipeline.train.loop import train

    root = tmp_path_factory.mktemp("loader")
    store = make_random_store(root / "train.zarr", num_samples=8, canvas_size=128)
    train(settings(epochs=1, **TRAINED), store, None, root / "run", device="cpu", progress=False)
    return {"root": root, "store": store, "model": root / "run" / "model.pt"}


@pytest.fixture
def loads(monkeypatch):
    """The files torch.load opens, in order."""
    opened = []
    real = torch.load

    def counting(f, *args, **kwargs):
        opened.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting)
    return opened


def test_the_codec_is_the_trained_one(trained, tmp_path):
    loaded = load_for_inference(trained["model"])
    codec = loaded.codec
    assert (codec.input_size, codec.heatmap_size, codec.sigma) == (128, 32, 1.5)
    assert codec.blur_sigma == 1.0  # the run's evaluation setting (the schema's default)
    assert loaded.joints.name == "mpii" and loaded.joints_recorded
    # the random store records no converter: the converters' defaults, as training_canvas_of says
    assert loaded.canvas == load_for_inference(random_checkpoint(tmp_path / "old.pt", None)).canvas


def test_predict_runs_at_the_trained_size_reading_the_checkpoint_once(trained, tmp_path, loads, caplog):
    caplog.set_level(logging.INFO)
    out = ["--out-mat", tmp_path / "p.mat", "--out-csv", tmp_path / "p.csv"]
    argv = ["predict", "--checkpoint", trained["model"], "--store", trained["store"], *out, "--device", "cpu"]
    assert cli.main([str(a) for a in argv]) == 0
    assert loads.count(str(trained["model"])) == 1
    assert "at 128 px" in caplog.text and "records no" not in caplog.text


def test_infer_runs_at_the_trained_size_reading_the_checkpoint_once(trained, tmp_path, loads):
    import cv2

    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        cv2.imwrite(str(tmp_path / "images" / f"{k}.png"), rng.integers(0, 256, (90, 70, 3), dtype=np.uint8))
    argv = ["infer", "--checkpoint", trained["model"], "--images", tmp_path / "images", "--out", tmp_path / "out"]
    assert cli.main([str(a) for a in [*argv, "--device", "cpu", "--no-progress"]]) == 0
    assert loads.count(str(trained["model"])) == 1
    header = json.loads((tmp_path / "out" / "keypoints.json").read_text())["header"]
    assert header["input_size"] == 128 and header["blur_sigma"] == 1.0


def test_export_runs_at_the_trained_size_reading_the_checkpoint_once(trained, tmp_path, loads):
    out = tmp_path / "m.pt"
    argv = ["export", "--checkpoint", trained["model"], "--format", "torchscript", "--out", out]
    assert cli.main([str(a) for a in argv]) == 0
    assert loads.count(str(trained["model"])) == 1
    description = json.loads((tmp_path / "m.pt.json").read_text())
    assert (description["input_size"], description["heatmap_size"]) == (128, 32)
    assert description["input"]["shape"] == ["N", 128, 128, 3] and not description["flip_test"]


def test_another_input_size_is_allowed_and_logged(trained, caplog):
    codec = load_for_inference(trained["model"], input_size=64, blur_sigma=0).codec
    assert (codec.input_size, codec.heatmap_size, codec.sigma, codec.blur_sigma) == (64, 16, 1.5, None)
    assert "trained at 128 px input; running it at --input-size 64" in caplog.text


def test_a_pytorch_pose_checkpoint_gets_the_schema_defaults_in_one_log_line(shared_fixtures, caplog):
    caplog.set_level(logging.INFO)
    path = shared_fixtures / "pytorch_pose" / "hg_s2_b1.pth.tar"
    loaded = load_for_inference(path)
    codec = loaded.codec
    assert (codec.input_size, codec.heatmap_size, codec.sigma) == (256, 64, 1.0)
    assert loaded.joints.num_joints == 16 and not loaded.joints_recorded
    lines = [r.getMessage() for r in caplog.records if "records no" in r.getMessage()]
    assert lines == [
        f"{path} records no input_size, heatmap_size, sigma: the schema's training defaults "
        "(input_size 256, heatmap_size 64, sigma 1.0)"
    ]


def test_an_older_checkpoint_with_its_input_size_only(tmp_path, caplog):
    """Saved before heatmap_size and sigma were kept: heatmaps 1/4 of the recorded input."""
    caplog.set_level(logging.INFO)
    codec = load_for_inference(random_checkpoint(tmp_path / "m.pt", None)).codec
    assert (codec.input_size, codec.heatmap_size, codec.sigma) == (64, 16, 1.0)
    assert "records no sigma" in caplog.text


def _help(stage: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([stage, "--help"])
    return " ".join(capsys.readouterr().out.split())  # unwrapped


def _option_help(text: str, option: str) -> str:
    """The help of `option` in unwrapped --help text, up to the next option."""
    start = text.index(f"{option} ", text.index("options:"))
    end = text.find(" --", start + len(option))
    return text[start : None if end < 0 else end]


def test_the_evaluation_options_have_one_definition(capsys):
    from pose_pipeline.config.schema import load_schema

    device = load_schema()["properties"]["device"]
    helps = {stage: _help(stage, capsys) for stage in ("predict", "infer", "export", "train")}
    shown = f"--device {{{','.join(device['enum'])}}} auto: CUDA when present, else the CPU"
    assert _option_help(helps["predict"], "--device") == f"{shown} (default: {device['default']})"
    assert _option_help(helps["infer"], "--device") == _option_help(helps["predict"], "--device")
    assert _option_help(helps["train"], "--device").startswith(f"{shown} (default: the config's device")
    assert "--device" not in helps["export"] and "--batch-size" not in helps["export"]
    for option in ("--flip-test, --no-flip-test", "--blur-sigma", "--input-size"):
        assert _option_help(helps["infer"], option) == _option_help(helps["predict"], option)
    batch = _option_help(helps["predict"], "--batch-size").replace("crops", "people")
    assert _option_help(helps["infer"], "--batch-size") == batch
    for option in ("--blur-sigma", "--input-size"):
        assert _option_help(helps["export"], option) == _option_help(helps["predict"], option)
    flip = _option_help(helps["export"], "--flip-test, --no-flip-test")
    assert flip == _option_help(helps["predict"], "--flip-test, --no-flip-test").replace(
        "(default: on)", "(default: off)"
    )
