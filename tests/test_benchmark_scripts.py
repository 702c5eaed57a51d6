"""The conversion and inference benchmarks still run end to end, at a tiny size: a script that
has stopped running (as infer_speed had, after model_record changed) is caught here, not in the
next session that needs its figures. Their figures are not checked: timings are not tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

pytestmark = pytest.mark.slow  # each benchmark script end to end in a subprocess


def run_benchmark(script: str, *args: str, cwd) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_convert_speed_runs_at_a_tiny_size(shared_data, tmp_path):
    out = run_benchmark(
        "convert_speed.py", "--images", "8", "--repeats", "1", "--canvas", "64", "--shard-size", "4", cwd=tmp_path
    )
    for row in ("plain decode", "`convert` workers=1", "`convert --image-codec zstd` workers=1", "LZ4 (Blosc)"):
        assert row in out, row
    assert "ms per store" in out and "**`convert` workers=1, total**" in out


def test_infer_speed_runs_at_a_tiny_size(tmp_path):
    out = run_benchmark("infer_speed.py", "--images", "4", "--repeats", "1", "--threads", "1", cwd=tmp_path)
    for row in ("predict (store)", "infer (raw JPEGs + boxes)", "JPEG decode + canvas cut only"):
        assert row in out, row
