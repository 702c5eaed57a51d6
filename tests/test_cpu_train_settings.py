"""benchmarks/cpu_train_settings.py: the CPU settings of a training step timed side by side,
end to end at a tiny size (the variants really change the run, the OpenMP wait policies run
in children of their own)."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

TINY_EXPERIMENT = {
    "datasets": {"d": {"format": "mpii", "annotations": "a.mat", "images": "img"}},
    "experiments": {
        "e": {
            "dataset": "d",
            "model": {"arch": "hourglass", "stacks": 1, "features": 16},
            "training": {"epochs": 1, "batch_size": 4, "input_size": 64, "heatmap_size": 16},
        }
    },
    "default_experiments": ["e"],
}


def tiny_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    return str(path)


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_variants_are_timed_side_by_side(random_store, tmp_path):
    import cpu_train_settings

    out = tmp_path / "report.json"
    report = cpu_train_settings.main(
        [
            "--store",
            str(random_store),
            "--val-store",
            str(random_store),
            "--config",
            tiny_config(tmp_path),
            "--experiment",
            "e",
            "--steps",
            "2",
            "--chunk",
            "1",
            "--warmup",
            "1",
            "--variant",
            "base=",
            "--variant",
            "threads:1",
            "--variant",
            "nocl=channels_last:0",
            "--variant",
            "batch_size:2",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["variants"] == report["variants"]
    rows = {r["name"]: r for r in report["variants"]}
    assert list(rows) == ["base", "threads:1", "nocl", "batch_size:2"]
    assert rows["batch_size:2"]["batch_size"] == 2 and rows["base"]["batch_size"] == 4
    for row in rows.values():
        assert row["steps"] == 2 and row["images_per_s"] > 0 and row["val_ms_per_image"] > 0
        assert row["median_ms"] >= row["compute_median_ms"] > 0


def test_variant_settings_change_the_run_and_refuse_unknown_keys():
    import cpu_train_settings
    import pytest

    from pose_pipeline.config.schema import experiment_settings, validate_config

    base = experiment_settings(validate_config(json.loads(json.dumps(TINY_EXPERIMENT))), "e")
    name, changes = cpu_train_settings.parse_variant("small=features:8,input_size:32,compile:1")
    settings = cpu_train_settings.variant_settings(base, changes)
    assert name == "small" and settings["model"]["features"] == 8 and settings["training"]["input_size"] == 32
    assert settings["training"]["compile"] is True and base["model"]["features"] == 16
    with pytest.raises(SystemExit, match="epochz"):
        cpu_train_settings.variant_settings(base, {"epochz": 3})


@pytest.mark.slow  # over 5 s on 2 cores (CI --durations)
def test_openmp_wait_settings_run_in_children_and_pool_per_setting(random_store, tmp_path):
    import cpu_train_settings

    report = cpu_train_settings.main(
        [
            "--store",
            str(random_store),
            "--config",
            tiny_config(tmp_path),
            "--experiment",
            "e",
            "--steps",
            "1",
            "--chunk",
            "1",
            "--warmup",
            "0",
            "--rounds",
            "2",
            "--omp-env",
            "default,GOMP_SPINCOUNT=30000",
            "--busy",
            "1",
            "--variant",
            "t1=threads:1",
        ]
    )
    rows = {r["name"]: r for r in report["variants"]}
    assert list(rows) == ["default t1", "GOMP_SPINCOUNT=30000 t1"]
    assert rows["default t1"]["openmp_env"] == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    assert rows["GOMP_SPINCOUNT=30000 t1"]["openmp_env"] == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "30000"}
    assert all(r["steps"] == 2 for r in rows.values())  # one step per round, two rounds pooled
