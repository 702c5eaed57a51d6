"""Shared test fixtures: the real data samples beside the checkout (../shared/data), a random store.

Helpers that tests import by name live in helpers.py (a conftest is pytest's, not a module to import)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SHARED, make_random_store


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
