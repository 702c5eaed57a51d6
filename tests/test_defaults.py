"""One home per default: the config schema. Each stage's defaults (function signatures,
command-line options, model configs) must equal the schema's, read here straight from the
YAML file, so a default changed on one side only fails."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest
import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def schema_node(*path: str) -> dict:
    node = yaml.safe_load(SCHEMA.read_text())["$defs"][path[0]]
    for key in path[1:]:
        node = node["properties"][key]
    return node["properties"]


def default(*path: str):
    *where, key = path
    return schema_node(*where)[key]["default"]


def parser_defaults(module) -> dict:
    parser = argparse.ArgumentParser()
    module.configure_parser(parser)
    return {action.dest: action.default for action in parser._actions}


def signature_defaults(function) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_the_package_ships_the_workflow_schema():
    from pose_pipeline.config.schema import SCHEMA_PATH

    assert SCHEMA_PATH.read_text() == SCHEMA.read_text()


CONVERT_KEYS = ["canvas_size", "context", "shard_size", "on_bad_sample", "reduced_decode", "image_codec"]


@pytest.mark.parametrize("key", CONVERT_KEYS)
def test_convert_defaults_are_the_schemas(key):
    from pose_pipeline.data import convert
    from pose_pipeline.data.convert_options import ConvertOptions

    assert signature_defaults(ConvertOptions)[key] == default("dataset", key)
    assert parser_defaults(convert)[key] == default("dataset", key)


INFER_KEYS = {
    "batch_size": ("experiment", "evaluation", "batch_size"),
    "flip_test": ("experiment", "evaluation", "flip_test"),
    "keypoint_score_threshold": ("imageset", "keypoint_score_threshold"),
    "oks_nms_threshold": ("imageset", "oks_nms_threshold"),
}


@pytest.mark.parametrize("key", INFER_KEYS)
def test_infer_defaults_are_the_schemas(key):
    from pose_pipeline.inference import infer
    from pose_pipeline.inference.infer_options import InferOptions

    assert signature_defaults(InferOptions)[key] == default(*INFER_KEYS[key])
    assert parser_defaults(infer)[key] == default(*INFER_KEYS[key])


def test_infer_options_device_is_the_schemas_and_the_command_line_names_every_option():
    """`InferOptions.from_args` reads each field by its name: each is a parser dest."""
    import dataclasses

    from pose_pipeline.inference import infer
    from pose_pipeline.inference.infer_options import InferOptions

    device = yaml.safe_load(SCHEMA.read_text())["properties"]["device"]["default"]
    assert signature_defaults(InferOptions)["device"] == parser_defaults(infer)["device"] == device
    fields = {field.name for field in dataclasses.fields(InferOptions)}
    assert fields <= set(parser_defaults(infer))


def test_the_store_writers_image_codec_is_the_schemas():
    """Every store writer (convert, the tests' stores, the demo's) compresses crops alike."""
    from pose_pipeline.data.store import IMAGE_CODECS
    from pose_pipeline.data.store_writer import StoreWriter

    assert signature_defaults(StoreWriter.__init__)["image_codec"] == default("dataset", "image_codec")
    assert list(IMAGE_CODECS) == schema_node("dataset")["image_codec"]["enum"]


@pytest.mark.parametrize("key", ["seed", "train", "val", "image_size"])
def test_demo_data_defaults_are_the_schemas(key):
    from pose_pipeline.data.demo import generate as demo_data

    assert signature_defaults(demo_data.generate)[key] == default("dataset", "synthetic", key)
    assert parser_defaults(demo_data)[key] == default("dataset", "synthetic", key)


@pytest.mark.parametrize("key", ["stacks", "blocks", "features"])
def test_model_defaults_are_the_schemas(key):
    from pose_pipeline.models import hourglass, info, pyranet

    expected = default("experiment", "model", key)
    assert getattr(hourglass.HourglassConfig(), key) == expected
    assert getattr(pyranet.PyraNetConfig(), key) == expected
    assert parser_defaults(info)[key] == expected


@pytest.mark.parametrize("arch", ["hourglass", "pyranet"])
def test_a_model_config_without_shape_builds_the_schema_default(arch):
    """build() of an experiment's `model:` with only `arch` is the schema's model: 8 stacks."""
    import torch

    from pose_pipeline.models import build_model
    from pose_pipeline.models.info import model_info

    with torch.device("meta"):
        model = build_model({"arch": arch}, 16)
    assert model.num_stacks == default("experiment", "model", "stacks")
    assert model.score[0].in_channels == default("experiment", "model", "features")
    info = model_info({"arch": arch}, 16)
    assert (info["stacks"], info["blocks"], info["features"]) == tuple(
        default("experiment", "model", key) for key in ("stacks", "blocks", "features")
    )


def test_pyranet_prm_default_is_the_one_the_schema_describes():
    """prm has no schema default (it would be filled into hourglass experiments too); the
    schema's description names PyraNetConfig's."""
    from pose_pipeline.models import info, pyranet

    prm = pyranet.PyraNetConfig().prm
    assert f"default {prm}" in schema_node("experiment", "model")["prm"]["description"]
    assert pyranet.build({"stacks": 1, "features": 16}, 16).prm == prm
    assert info.model_info({"arch": "pyranet", "stacks": 1, "features": 16}, 16, 64)["prm"] == prm


def test_model_info_input_default_is_the_training_input_size():
    from pose_pipeline.models import info

    assert parser_defaults(info)["input_size"] == default("experiment", "training", "input_size")


@pytest.mark.parametrize("key", list(schema_node("experiment", "training")))
def test_training_config_defaults_are_the_schemas(key):
    """TrainingConfig's defaults, nested ones included (schedule, augmentation: {} in the schema,
    their own keys' defaults filled in)."""
    from pose_pipeline.config.training import TrainingConfig

    node = schema_node("experiment", "training")[key]
    expected = (
        {name: sub["default"] for name, sub in node["properties"].items()} if "properties" in node else node["default"]
    )
    assert getattr(TrainingConfig(), key) == expected
    assert getattr(TrainingConfig.from_settings({}), key) == expected


def test_the_heatmap_codecs_defaults_are_the_training_schemas():
    """core may not import config (config is above it), so HeatmapCodec keeps its literals:
    held to the schema here. Its blur stays off by default (None): decoding blurs only when
    evaluation settings ask (`HeatmapCodec.from_settings`)."""
    from pose_pipeline.core.codec import HeatmapCodec

    codec = HeatmapCodec()
    for key in ("input_size", "heatmap_size", "sigma"):
        assert getattr(codec, key) == default("experiment", "training", key)
    assert codec.blur_sigma is None


def test_the_store_writers_shard_size_is_the_schemas():
    from pose_pipeline.data.store_writer import StoreWriter

    assert signature_defaults(StoreWriter.__init__)["shard_size"] == default("dataset", "shard_size")


def test_roundtrip_defaults_are_the_training_schemas_and_its_blur_is_off():
    """The oracle's codec is training's; no blur unless asked, as its help says."""
    from pose_pipeline.evaluate import roundtrip

    options = parser_defaults(roundtrip)
    assert options["input_size"] == default("experiment", "training", "input_size")
    assert options["sigma"] == default("experiment", "training", "sigma")
    assert options["heatmap_size"] is None  # input size / 4: the schema's 64 at its 256
    assert options["input_size"] // 4 == default("experiment", "training", "heatmap_size")
    assert options["blur_sigma"] == 0.0
    blur_help = next(a.help for a in _parser(roundtrip)._actions if a.dest == "blur_sigma")
    assert "0: none" in blur_help
    assert signature_defaults(roundtrip.roundtrip)["codec"] is None


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.configure_parser(parser)
    return parser
