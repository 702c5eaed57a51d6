"""Shared test fixtures: the real data samples beside the checkout (../shared/data), a random store.

Helpers that tests import by name live in helpers.py (a conftest is pytest's, not a module to import)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SHARED, TINY, make_random_store, snakemake, write_config


def _shared_dir(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data sample {path} is absent (CI has ../shared; a fresh clone does not)")
    return path


@pytest.fixture
def shared_data() -> Path:
    """../shared/data: real LSP, MPII and COCO samples; the test skips where it is absent."""
    return _shared_dir("data")


@pytest.fixture
def shared_fixtures() -> Path:
    """../shared/fixtures: reference checkpoints and outputs."""
    return _shared_dir("fixtures")


@pytest.fixture
def random_store(tmp_path_factory):
    return make_random_store(tmp_path_factory.mktemp("store") / "train.zarr")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, str]:
    """The tiny demo DAG (helpers.TINY: demo data, stores, a trained 1-stack model at
    results/train/tiny/model.pt, its predictions, scores and plots) run once for the session:
    (its folder, what Snakemake printed). Shared: a test that writes in it works on a copy
    (helpers.copy_run)."""
    workdir = tmp_path_factory.mktemp("tiny_run")
    write_config(workdir, TINY)
    return workdir, snakemake(workdir)
