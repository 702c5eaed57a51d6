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


def test_pyranet_init_scale_runs_at_a_tiny_size(tmp_path):
    out = run_benchmark("pyranet_init_scale.py", "--input-size", "64", "--features", "8", cwd=tmp_path)
    assert "| hourglass | 8 |" in out and "| PyraNet PRM-B | 8 |" in out


def test_pyranet_vs_hourglass_summarises_the_logs_it_finds(tmp_path):
    """--summary-only reads each run's log.csv (no training): per-epoch scores, mean and spread."""
    header = "epoch,step,train_loss,val_loss,val_score,val_metric,lr,images_per_s,elapsed_s\n"
    for name, scores in {"hourglass-seed0": (10, 20), "hourglass-seed1": (12, 24), "pyranet-B-seed0": (30, 40)}.items():
        (tmp_path / name).mkdir()
        rows = [f"{e + 1},1,0.1,0.0{e + 5},{s},PCKh@0.5,0.001,1,1\n" for e, s in enumerate(scores)]
        (tmp_path / name / "log.csv").write_text(header + "".join(rows))
    config = str(REPO_ROOT / "config" / "config.yaml")
    out = run_benchmark(
        "pyranet_vs_hourglass.py",
        "--summary-only",
        "--epochs",
        "2",
        "--seeds",
        "0,1",
        "--config",
        config,
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert "| 2 | 20.0 | 24.0 | 22.0 | 4.0 | 40.0 |  | 40.0 | 0.0 |" in out, out
    assert "pyranet-B / hourglass = 181.8 %" in out, out


def test_loader_speed_runs_at_a_tiny_size(tmp_path):
    out = run_benchmark(
        "loader_speed.py",
        *("--images", "8", "--repeats", "1", "--canvas", "64", "--shard-size", "4", "--batch-size", "2"),
        *("--features", "8", "--stacks", "1", "--train-steps", "1", "--warmup-steps", "0"),
        cwd=tmp_path,
    )
    assert "baseline" in out and "project" in out, out


def test_lsp_small_reads_curves_and_scores_its_baselines(shared_data, tmp_path, capsys):
    """The parts of benchmarks/lsp_small.py around the workflow run: the sweep config it adds,
    a log's validated epochs, the per-epoch table, and the two baselines on a real split."""
    import sys

    from helpers import SHARED

    from pose_pipeline.data.convert import convert
    from pose_pipeline.data.convert_options import ConvertOptions

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import lsp_small

    config = lsp_small.sweep_config("s", ["hourglass"], [0, 1], {"training.lr": 0.01})
    assert config["sweeps"]["s"] == {
        "base": "lsp_small",
        "grid": {"training.lr": [0.01], "model.arch": ["hourglass"], "training.seed": [0, 1]},
    }
    assert config["datasets"]["lsp"]["val_last"] == lsp_small.VAL_LAST
    header = "epoch,step,train_loss,val_loss,val_score,val_metric,lr,images_per_s,elapsed_s\n"
    (tmp_path / "log.csv").write_text(header + "1,1,0.1,,,,0.001,1,5\n2,2,0.1,0.01,12.5,PCK@0.2,0.001,1,9\n")
    assert lsp_small.read_curve(tmp_path / "log.csv") == [(2, 12.5, 9.0)]
    lsp_small.print_curves({"hourglass": {0: [(2, 12.5, 9.0)], 1: [(2, 10.5, 9.0)]}})
    assert "| 2 | 12.5 | 10.5 | 11.5 | 2.0 |" in capsys.readouterr().out
    sample = SHARED / "data" / "lsp_sample"
    stores = [tmp_path / f"{split}.zarr" for split in ("train", "val")]
    for split, store in zip(("train", "val"), stores):
        options = {"split": split, "val_last": 60, "canvas_size": 64, "workers": 1, "progress": False}
        convert(ConvertOptions("lsp", sample / "joints.mat", sample / "images", store, **options))
    scores = lsp_small.baselines(*stores)
    assert 0 <= scores["chance (uniform)"] < scores["mean pose"] < 20
