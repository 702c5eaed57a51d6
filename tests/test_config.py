"""Config validation: one clear message per problem, naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pose_pipeline.config.schema import experiment_settings, load_config, settings_hash, validate_config
from pose_pipeline.errors import UserError
from pose_pipeline.workflow_lookups import check_dataset_files, dataset_sources

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw_config() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def test_shipped_config_is_valid_and_gets_defaults(raw_config):
    config = validate_config(raw_config)
    demo = config["experiments"]["demo"]
    assert demo["evaluation"]["flip_test"] is True  # filled from the schema
    assert config["experiments"]["hg8"]["training"]["optimizer"] == "rmsprop"
    assert config["experiments"]["hg8"]["training"]["lr"] == pytest.approx(2.5e-4)
    assert config["default_experiments"] == ["demo"]
    assert "flip_test" not in (raw_config["experiments"]["demo"].get("evaluation") or {})  # input untouched


def test_misspelt_key_is_named_with_a_suggestion(raw_config):
    raw_config["experiments"]["demo"]["training"]["epochz"] = 3
    with pytest.raises(UserError) as err:
        validate_config(raw_config, source="my.yaml")
    message = str(err.value)
    assert "my.yaml" in message
    assert "experiments.demo.training" in message and "'epochz'" in message and "'epochs'" in message


def test_wrong_type_and_dangling_names_all_reported(raw_config):
    raw_config["experiments"]["demo"]["training"]["batch_size"] = "sixteen"
    with pytest.raises(UserError, match=r"experiments\.demo\.training\.batch_size"):
        validate_config(raw_config)
    raw_config["experiments"]["demo"]["training"]["batch_size"] = 16
    raw_config["experiments"]["demo"]["dataset"] = "nope"
    raw_config["default_experiments"] = ["demo", "missing"]
    with pytest.raises(UserError) as err:
        validate_config(raw_config)
    assert "unknown dataset 'nope'" in str(err.value)
    assert "unknown experiment 'missing'" in str(err.value)


def test_heatmap_must_be_a_quarter_of_the_input(raw_config):
    raw_config["experiments"]["demo"]["training"]["heatmap_size"] = 64
    with pytest.raises(UserError, match="needs heatmap_size 32"):
        validate_config(raw_config)


def test_missing_dataset_files_are_named(raw_config, tmp_path):
    config = validate_config(raw_config)
    with pytest.raises(UserError) as err:
        check_dataset_files(config, "mpii")
    assert "datasets.mpii.annotations" in str(err.value)
    assert "mpii_human_pose_v1_u12_1.mat does not exist" in str(err.value)
    check_dataset_files(config, "demo")  # generated: nothing to check
    assert dataset_sources(config, "demo")["annotations"] == "results/data/demo/mpii_release.mat"


def test_load_config_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_settings_hash_tracks_training_options_only(raw_config):
    config = validate_config(raw_config)
    base = settings_hash(experiment_settings(config, "demo"))
    changed = copy.deepcopy(config)
    changed["plots"]["dpi"] = 50
    assert settings_hash(experiment_settings(changed, "demo")) == base
    changed["experiments"]["demo"]["training"]["lr"] = 0.1
    assert settings_hash(experiment_settings(changed, "demo")) != base


def test_reference_predictions_only_for_mpii(raw_config):
    raw_config["datasets"]["lsp"] = {
        "format": "lsp",
        "annotations": "a.mat",
        "images": "i",
        "reference_predictions": "r.mat",
    }
    with pytest.raises(UserError, match="datasets.lsp.reference_predictions"):
        validate_config(raw_config)


def test_comparison_helpers(raw_config, tmp_path, shared_data):
    import numpy as np
    import scipy.io

    from pose_pipeline.workflow_lookups import reference_datasets, reference_ground_truth, summary_entries

    ref = shared_data / "mpii_sample" / "detections_our_format.mat"
    raw_config["datasets"]["demo"]["reference_predictions"] = str(ref)
    config = validate_config(raw_config)
    entries = summary_entries(config, ["demo", "hg8"], {"scores": "results/pckh/{experiment}.json"})
    assert entries[1] == {
        "name": "hg8",
        "dataset": "mpii",
        "format": "mpii",
        "arch": "hourglass",
        "stacks": 8,
        "scores": "results/pckh/hg8.json",
    }
    assert reference_datasets(config, ["demo", "hg8", "demo"]) == ["demo"]
    # a file with ground truth is scored against itself, predictions alone against the store
    assert reference_ground_truth(config, "demo", "val.zarr") == str(ref)
    scipy.io.savemat(tmp_path / "preds.mat", {"preds": np.zeros((2, 16, 2))})
    config["datasets"]["demo"]["reference_predictions"] = str(tmp_path / "preds.mat")
    assert reference_ground_truth(config, "demo", "val.zarr") == "val.zarr"
    config["datasets"]["demo"]["reference_predictions"] = str(tmp_path / "absent.mat")
    with pytest.raises(UserError, match="does not exist"):
        reference_ground_truth(config, "demo", "val.zarr")


def test_cluster_resources_get_defaults_and_do_not_touch_the_training_hash(raw_config):
    config = validate_config(raw_config)
    assert config["experiments"]["hg8"]["resources"] == {"gpus": 1, "cpus": 8, "mem_mb": 32000, "runtime": 1440}
    assert config["experiments"]["demo"]["resources"]["gpus"] == 0  # filled from the schema
    assert config["datasets"]["mpii"]["resources"] == {"cpus": 8, "mem_mb": 16000, "runtime": 240}
    base = settings_hash(experiment_settings(config, "demo"))
    config["experiments"]["demo"]["resources"].update(cpus=32, mem_mb=64000, runtime=10)
    assert settings_hash(experiment_settings(config, "demo")) == base  # asking for more retrains nothing


def test_bad_cluster_resources_are_named(raw_config):
    raw_config["experiments"]["hg8"]["resources"]["gpus"] = -1
    raw_config["datasets"]["demo"]["resources"] = {"cpu": 4}
    with pytest.raises(UserError) as err:
        validate_config(raw_config)
    message = str(err.value)
    assert "experiments.hg8.resources.gpus" in message
    assert "datasets.demo.resources: unknown key 'cpu' (did you mean 'cpus'?)" in message


def test_separate_val_annotations_take_lsp_and_coco_files_whole(raw_config):
    from pose_pipeline.workflow_lookups import converter_split

    raw_config["datasets"]["lsp"] = {"format": "lsp", "annotations": "a.mat", "images": "i"}
    config = validate_config(raw_config)
    assert converter_split(config, "lsp", "train") == "train"  # the file's own halves (original LSP)
    config["datasets"]["lsp"]["val_annotations"] = "b.mat"
    assert [converter_split(config, "lsp", s) for s in ("train", "val")] == ["all", "all"]
    config["datasets"]["mpii"]["val_annotations"] = "valid.h5"
    assert converter_split(config, "mpii", "train") == "train"  # img_train still selects


def test_val_last_is_lsp_only_and_not_with_val_annotations(raw_config):
    from pose_pipeline.workflow_lookups import converter_settings, converter_split

    raw_config["datasets"]["lsp"] = {"format": "lsp", "annotations": "a.mat", "images": "i", "val_last": 60}
    config = validate_config(raw_config)
    assert converter_split(config, "lsp", "val") == "val"
    assert converter_settings(config, "lsp")["extra"][:2] == ["--val-last", "60"]
    raw_config["datasets"]["lsp"]["val_annotations"] = "b.mat"
    raw_config["datasets"]["mpii"]["val_last"] = 5
    with pytest.raises(UserError) as err:
        validate_config(raw_config)
    assert "datasets.lsp.val_last: with val_annotations" in str(err.value)
    assert "datasets.mpii.val_last: for LSP-format files only" in str(err.value)


def test_every_lookup_the_rules_call_is_in_workflow_lookups():
    """The rules call `ppc.<name>` (workflow/rules/common.smk); a name missing there would
    fail only when Snakemake parses the rules."""
    import re

    from pose_pipeline import workflow_lookups

    rules = "".join(path.read_text() for path in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    assert "from pose_pipeline import workflow_lookups as ppc" in rules
    called = set(re.findall(r"\bppc\.(\w+)", rules))
    assert "dataset_sources" in called and "converter_settings" in called
    assert [name for name in sorted(called) if not callable(getattr(workflow_lookups, name, None))] == []


def test_an_input_size_the_hourglass_cannot_halve_is_refused_naming_the_key():
    from pose_pipeline.config.schema import validate_config

    config = {
        "datasets": {"d": {"format": "mpii", "annotations": "a.mat", "images": "img"}},
        "experiments": {
            "e": {"dataset": "d", "model": {"arch": "hourglass"}, "training": {"input_size": 96, "heatmap_size": 24}}
        },
    }
    with pytest.raises(
        UserError,
        match=r"experiments.e.training: heatmap_size 24 must be a multiple of 16 .* "
        r"input_size a multiple of 64",
    ):
        validate_config(config)


def test_hourglass_h5_without_a_split_is_refused(raw_config):
    """A lone .h5 would be converted whole for both stores: validation = training data."""
    raw_config["datasets"]["mpii"] = {"format": "mpii", "annotations": "data/mpii/train.h5", "images": "i"}
    with pytest.raises(UserError) as err:
        validate_config(raw_config)
    message = str(err.value)
    assert "datasets.mpii.annotations: data/mpii/train.h5 is an hourglass .h5" in message
    assert "datasets.mpii.val_annotations" in message and "datasets.mpii.val_split" in message
    for key, value in (("val_annotations", "valid.h5"), ("val_split", "detections.mat")):
        fixed = copy.deepcopy(raw_config)
        fixed["datasets"]["mpii"][key] = value
        validate_config(fixed)


def test_flic_dataset_config(raw_config):
    from pose_pipeline.workflow_lookups import converter_split

    raw_config["datasets"]["flic"] = {"format": "flic", "annotations": "examples.mat", "images": "i"}
    config = validate_config(raw_config)
    assert [converter_split(config, "flic", s) for s in ("train", "val")] == ["train", "val"]  # istrain / istest
    config["datasets"]["flic"]["val_annotations"] = "other.mat"
    assert [converter_split(config, "flic", s) for s in ("train", "val")] == ["all", "all"]
