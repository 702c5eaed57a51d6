"""One bounds table for every numeric option of every stage (`option_bounds`): a value out of
bounds, NaN or infinite is refused by the real command line with one line naming the option,
exit code 1, no traceback and nothing written; box files' impossible numbers are skipped rows."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, make_random_store, settings

from pose_pipeline import cli
from pose_pipeline.config import option_bounds
from pose_pipeline.errors import UserError

SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Inputs every stage accepts: demo data (3 training and 2 validation images of 64 px), a
    random store, and a checkpoint of an untrained 1-stack hourglass at 64 px."""
    import torch

    from pose_pipeline.core.joints import MPII
    from pose_pipeline.data.demo.generate import generate
    from pose_pipeline.models import build_model

    root = tmp_path_factory.mktemp("bounds")
    generate(root / "demo", seed=2, train=3, val=2, image_size=64, progress=False)
    torch.manual_seed(0)
    config = {"arch": "hourglass", "stacks": 1, "blocks": 1, "features": 16, "joints": MPII.num_joints}
    model = build_model(config, MPII.num_joints)
    record = {"model_config": config, "joint_set": MPII.to_dict(), "state_dict": model.state_dict(), "input_size": 64}
    torch.save(record, root / "model.pt")
    return {
        "demo": root / "demo",
        "store": make_random_store(root / "random.zarr", num_samples=4, shard_size=4),
        "model": root / "model.pt",
    }


def stage_argv(stage: str, inputs: dict, out: Path) -> list[str]:
    """A command line of `stage` that runs as it is, its outputs under `out`."""
    demo, store, model = inputs["demo"], inputs["store"], inputs["model"]
    argv = {
        "convert": ["mpii", "--annotations", demo / "mpii_release.mat", "--images", demo / "images"]
        + ["--out", out / "s.zarr", "--workers", "1", "--no-progress"],
        "predict": ["--checkpoint", model, "--store", store, "--out-mat", out / "p.mat", "--out-csv", out / "p.csv"],
        "infer": ["--checkpoint", model, "--images", demo / "images", "--out", out / "infer", "--device", "cpu"],
        "export": ["--checkpoint", model, "--format", "torchscript", "--out", out / "m.pt"],
        "roundtrip": ["--annotations", store, "--out", out / "r.mat"],
        "train": ["--settings", json.dumps(settings(epochs=1)), "--train-store", store, "--out", out / "run"]
        + ["--device", "cpu", "--no-progress"],
        "demo-data": ["--out", out / "d", "--train", "1", "--val", "1", "--image-size", "64", "--no-progress"],
        "model-info": ["--stacks", "1", "--features", "16", "--joints", "16", "--input-size", "64"],
        "inspect": [store, "--sheet", out / "sheet.png"],
        "plot": ["skeletons", "--preds", out / "p.mat", "--store", store, "--out", out / "k.png"],
    }[stage]
    return [stage, *map(str, argv)]


# (stage, option, value, the bounds in words): the cases first
REFUSED = [
    ("predict", "--batch-size", "0", "a whole number at least 1"),
    ("predict", "--input-size", "63", "a multiple of 64 from 64 to 1024"),
    ("predict", "--input-size", "0", "a multiple of 64 from 64 to 1024"),
    ("predict", "--blur-sigma", "nan", "a finite number from 0 to 32"),
    ("predict", "--blur-sigma", "-1", "a finite number from 0 to 32"),
    ("predict", "--blur-sigma", "1e9", "a finite number from 0 to 32"),
    ("infer", "--context", "0", "a finite number from 1 to 3"),
    ("infer", "--context", "nan", "a finite number from 1 to 3"),
    ("infer", "--canvas-size", "0", "a whole number from 32 to 2048"),
    ("infer", "--batch-size", "-1", "a whole number at least 1"),
    ("export", "--blur-sigma", "nan", "a finite number from 0 to 32"),
    ("export", "--input-size", "100", "a multiple of 64 from 64 to 1024"),
    ("convert", "--canvas-size", "100000", "a whole number from 32 to 2048"),
    ("convert", "--context", "nan", "a finite number from 1 to 3"),
    ("convert", "--context", "inf", "a finite number from 1 to 3"),
    ("convert", "--workers", "-2", "a whole number at least 0 (0: as many as the cores)"),
    ("convert", "--shard-size", "0", "a whole number at least 1"),
    ("roundtrip", "--sigma", "0", "a finite number > 0"),
    ("roundtrip", "--sigma", "inf", "a finite number > 0"),
    ("roundtrip", "--blur-sigma", "inf", "a finite number from 0 to 32"),
    ("roundtrip", "--input-size", "96", "a multiple of 64 from 64 to 1024"),
    ("roundtrip", "--heatmap-size", "4", "a whole number from 8 to 256"),
    ("train", "--epochs", "0", "a whole number at least 1"),
    ("train", "--nproc", "0", "a whole number at least 1"),
    ("demo-data", "--train", "0", "a whole number at least 1"),
    ("demo-data", "--test", "-1", "a whole number at least 0"),
    ("demo-data", "--image-size", "100000", "a whole number from 64 to 4096"),
    ("demo-data", "--seed", "-1", "a whole number at least 0"),
    ("model-info", "--features", "4", "a whole number at least 8"),
    ("model-info", "--input-size", "100", "a multiple of 64 from 64 to 1024"),
    ("inspect", "--count", "0", "a whole number at least 1"),
    ("plot", "--dpi", "0", "a whole number from 30 to 600"),
    ("plot", "--count", "-3", "a whole number from 1 to 60"),
]


def run_refused(argv: list[str], out: Path, capsys) -> str:
    """Run the real command line; it must refuse with exit code 1 and one line, write nothing
    into `out`, and print no traceback. Returns the line."""
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and len(err.splitlines()) == 1, captured.err
    assert list(out.iterdir()) == []
    return err


@pytest.mark.parametrize("stage, option, value, words", REFUSED, ids=[f"{s} {o} {v}" for s, o, v, _ in REFUSED])
def test_an_option_out_of_bounds_is_one_line_naming_it(inputs, tmp_path, capsys, stage, option, value, words):
    out = tmp_path / "out"
    out.mkdir()
    err = run_refused(stage_argv(stage, inputs, out) + [option, value], out, capsys)
    shown = {"1e9": "1e+09"}.get(value, value)
    assert err == f"pose-pipeline {stage}: error: {option}: must be {words}, got {shown}"


def test_the_console_script_refuses_the_671_gib_canvas(inputs, tmp_path):
    """`pose-pipeline convert --canvas-size 100000` (a 671 GiB allocation) through the installed
    entry point: exit code 1, one line, nothing written."""
    out = tmp_path / "out"
    out.mkdir()
    argv = stage_argv("convert", inputs, out) + ["--canvas-size", "100000"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    script = Path(sys.executable).with_name("pose-pipeline")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pose_pipeline"]
    done = subprocess.run(command + argv, env=env, capture_output=True)
    assert done.returncode == 1
    assert done.stderr.decode().strip().splitlines() == [
        "pose-pipeline convert: error: --canvas-size: must be a whole number from 32 to 2048, got 100000"
    ]
    assert list(out.iterdir()) == []


def test_workers_0_is_as_many_as_the_cores(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = stage_argv("convert", inputs, out)
    argv[argv.index("--workers") + 1] = "0"
    assert cli.main(argv + ["--split", "all"]) == 0, capsys.readouterr().err
    assert (out / "s.zarr").is_dir()


@pytest.mark.parametrize(
    "text, words",
    [
        ("[1, 2]", "--settings: a JSON list; expected a JSON object"),
        ('{"name": "e", "dataset": "d"}', "'model' is a required property"),
        ('{"dataset": "d", "model": {"arch": "hourglass"}, "learning": {}}', "unknown keys ['learning']"),
        ('{"dataset": "d", "model": {"arch": "hourglass"}, "training": {"input_size": 100}}', "input_size 100"),
        ('{"dataset": "d", "model": {"arch": "hourglass"}, "evaluation": {"blur_sigma": -1}}', "-1 is less than"),
    ],
)
def test_bad_settings_are_refused_naming_the_problem(inputs, tmp_path, capsys, text, words):
    out = tmp_path / "out"
    out.mkdir()
    argv = stage_argv("train", inputs, out)
    argv[argv.index("--settings") + 1] = text
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and words in captured.err and "--settings" in captured.err
    assert list(out.iterdir()) == []


def test_the_rules_settings_pass_unchanged_and_missing_keys_take_the_schemas_defaults():
    from pose_pipeline.config.schema import schema_defaults
    from pose_pipeline.train.cli import checked_settings

    full = settings()
    assert checked_settings(json.dumps(full)) == full
    least = checked_settings('{"dataset": "d", "model": {"arch": "hourglass"}}')
    assert least["model"]["stacks"] == schema_defaults("experiment", "model")["stacks"]
    assert least["training"]["input_size"] == 256 and least["training"]["schedule"]["type"] == "multistep"
    assert "evaluation" not in least  # validation fills it in where it uses it


@pytest.mark.parametrize("stage", ["demo-data", "convert", "infer"])
def test_the_working_folder_is_no_output_folder(inputs, tmp_path, monkeypatch, capsys, stage):
    """A folder output is built beside its place and swapped in: "." has no place beside it."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    argv = stage_argv(stage, inputs, tmp_path)
    argv[argv.index("--out") + 1] = "."
    err = run_refused(argv, here, capsys)
    assert err.startswith(f"pose-pipeline {stage}: error: --out .: is the working folder")


def test_box_numbers_no_box_can_hold_are_skipped_and_listed(inputs, tmp_path, capsys):
    """A box of 1e30 px or a score of inf (which keypoints.json, strict JSON, cannot hold) is a
    skipped row of skipped.csv, as a box outside its image is."""
    image = sorted((inputs["demo"] / "images").iterdir())[0].name
    (tmp_path / "boxes.csv").write_text(
        "image,x,y,w,h,score\n"
        f"{image},4,4,50,50,0.9\n"
        f"{image},0,0,1e30,1e30,0.9\n"
        f"{image},4,4,50,50,inf\n"
        f"{image},nan,4,50,50,0.5\n"
    )
    argv = stage_argv("infer", inputs, tmp_path) + ["--boxes", str(tmp_path / "boxes.csv")]
    out = tmp_path / "infer"
    assert cli.main(argv) == 0, capsys.readouterr().err

    def refuse(constant):
        raise AssertionError(f"keypoints.json holds {constant}")

    found = json.loads((out / "keypoints.json").read_text(), parse_constant=refuse)
    assert [r["box_score"] for r in found["results"]] == [0.9]
    reasons = [row["reason"] for row in csv.DictReader(open(out / "skipped.csv"))]
    assert len(reasons) == 3
    assert "line 3: box [0.0, 0.0, 1e+30, 1e+30] reaches beyond 1e+06 pixels" in reasons[0]
    assert "line 4: score inf is not a finite number" in reasons[1]
    assert "line 5: box [nan, 4.0, 50.0, 50.0] is not finite" in reasons[2]


# ------------------------------------------------------------------------------ the table


def stage_parsers():
    """(stage, parser) of every stage, as `pose-pipeline` builds them."""
    import argparse

    for stage in cli.STAGES:
        parser, _ = cli.build_parser([stage])
        stages = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        yield stage, stages.choices[stage]


def test_every_numeric_option_of_every_stage_has_bounds():
    found = []
    for stage, parser in stage_parsers():
        for action in option_bounds.numeric_actions(parser, stage):
            option = action.option_strings[-1]
            option_bounds.rule_of(option, stage)  # a KeyError names an option without bounds
            found.append(f"{stage} {option}")
    assert {"convert --canvas-size", "infer --context", "predict --batch-size", "train --epochs"} <= set(found)


@pytest.mark.parametrize("option", sorted(option_bounds.BOUNDS))
def test_the_bounds_of_an_option_with_a_config_key_are_the_schemas(option):
    stage, _, name = option.rpartition(" ")
    bound = option_bounds.BOUNDS[option]
    rule = option_bounds.rule_of(name, stage or None)
    assert rule["type"] in ("integer", "number")
    if bound.schema:
        first, *rest = bound.schema.split(".")
        schema = yaml.safe_load(SCHEMA.read_text())
        node = schema["$defs"][first] if first in schema["$defs"] else schema["properties"][first]
        for key in rest:
            node = node["properties"][key]
        assert {k: rule[k] for k in node if k not in ("default", "description")} == {
            k: bound.extra.get(k, node[k]) for k in node if k not in ("default", "description")
        }


@pytest.mark.parametrize(
    "rule, words",
    [
        ({"type": "number", "exclusiveMinimum": 0}, "a finite number > 0"),
        ({"type": "number", "exclusiveMinimum": 0, "maximum": 2.5}, "a finite number > 0 and <= 2.5"),
        ({"type": "integer", "maximum": 9}, "a whole number <= 9"),
        ({"type": "integer"}, "a whole number"),
    ],
)
def test_bounds_in_words(rule, words):
    assert option_bounds.describe(rule) == words


def test_the_api_entry_points_check_the_same_table(tmp_path):
    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions
    from pose_pipeline.data.demo.generate import generate

    (tmp_path / "in").mkdir()
    with pytest.raises(UserError, match=r"^--context: must be a finite number from 1 to 3, got nan$"):
        convert(ConvertOptions("mpii", tmp_path / "in", tmp_path / "in", tmp_path / "s.zarr", context=float("nan")))
    with pytest.raises(UserError, match=r"^--image-size: must be a whole number from 64 to 4096, got 8$"):
        generate(tmp_path / "d", image_size=8)
    assert [p.name for p in tmp_path.iterdir()] == ["in"]
