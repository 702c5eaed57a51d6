"""Shared test fixtures: the real data samples beside the checkout (../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


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
