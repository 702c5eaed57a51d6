"""A sweep in the Snakemake DAG (issue 28, item 1): its points are planned as experiments, its
table and plot are targets, and a value added to the grid plans only the new points. Dry runs
of the real `snakemake`, after the first points' outputs were faked and recorded with
`--touch` (which records each job's params as a run does), in seconds."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
from helpers import TINY, planned_jobs, snakemake, snakemake_command, write_config

pytestmark = pytest.mark.slow  # Snakemake on the tiny DAG, several times a test

SWEEP = {"base": "tiny", "grid": {"training.lr": [0.001, 0.005], "training.sigma": [1.0, 2.0]}}
UPSTREAM = {"demo_data": 1, "convert": 2}


def config_with(sweep: dict) -> dict:
    config = copy.deepcopy(TINY)
    config["sweeps"] = {"s": sweep}
    return config


def fake_outputs(workdir: Path, target: str) -> None:
    """Create (empty) every output of the jobs `target` needs, then let Snakemake touch them in
    the DAG's order and record their metadata, as if they had run."""
    done = subprocess.run(
        snakemake_command(workdir, "--summary", target), capture_output=True, text=True, timeout=300, check=True
    )
    for line in done.stdout.splitlines()[1:]:
        path = workdir / line.split("\t")[0]
        if path.suffix in ("", ".zarr"):  # the directory outputs: demo images, stores
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    snakemake(workdir, "--touch", "--forceall", target)


def test_a_2x2_sweep_plans_four_trainings_and_its_table_and_plot(tmp_path):
    write_config(tmp_path, config_with(SWEEP))
    points = {"train": 4, "predict": 4, "score": 4}
    assert planned_jobs(snakemake(tmp_path, "--dry-run", "results/sweeps/s.csv")) == {
        **UPSTREAM,
        **points,
        "sweep_table": 1,
    }
    assert planned_jobs(snakemake(tmp_path, "--dry-run", "results/sweeps/s.png")) == {
        **UPSTREAM,
        **points,
        "sweep_table": 1,
        "sweep_plot": 1,
    }
    # the default target is the config's default_experiments, sweeps or not
    default = planned_jobs(snakemake(tmp_path, "--dry-run"))
    assert default["train"] == 1 and "sweep_table" not in default


def test_adding_a_value_plans_only_the_new_points(tmp_path):
    write_config(tmp_path, config_with(SWEEP))
    fake_outputs(tmp_path, "results/sweeps/s.csv")
    assert planned_jobs(snakemake(tmp_path, "--dry-run", "results/sweeps/s.csv")) == {}
    grown = copy.deepcopy(SWEEP)
    grown["grid"]["training.lr"].append(0.01)
    write_config(tmp_path, config_with(grown))
    # two new points (lr 0.01 with each sigma); the table's points changed
    assert planned_jobs(snakemake(tmp_path, "--dry-run", "results/sweeps/s.csv")) == {
        "train": 2,
        "predict": 2,
        "score": 2,
        "sweep_table": 1,
    }
    # the check is real: a base setting changed reruns every point, old and new
    grown_base = config_with(grown)
    grown_base["experiments"]["tiny"]["training"]["epochs"] = 2
    write_config(tmp_path, grown_base)
    assert planned_jobs(snakemake(tmp_path, "--dry-run", "results/sweeps/s.csv"))["train"] == 6
