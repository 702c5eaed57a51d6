"""benchmarks/train_throughput.py is ready for a GPU session: its real-device mode at a tiny
size on the CPU, and its stand-in mode, each end to end on a store built from the real MPII sample."""

from __future__ import annotations

import json
import sys

from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


def test_real_device_mode_at_a_tiny_size(shared_data, tmp_path):
    import train_throughput

    out = tmp_path / "real.json"
    report = train_throughput.main(
        [
            "--real",
            "--tiny",
            "--device",
            "cpu",
            "--models",
            "hg2",
            "--compile",
            "off",
            "--images",
            "24",
            "--canvas",
            "96",
            "--shard-size",
            "8",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--peak-tflops",
            "1",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["rows"] == report["rows"]
    rows = report["rows"]
    # per model: bf16 and fp32, batch 2 and the largest that fits (4 here, the tiny cap)
    assert [(r["model"], r["precision"], r["batch_size"]) for r in rows] == [
        (m, p, b) for m in ("hg2",) for p in ("bf16", "fp32") for b in (2, 4)
    ]
    for r in rows:
        assert r["images_per_s"] > 0 and r["flops_per_step"] > 0 and 0 < r["mfu"] < 1
        assert 0 <= r["wait_fraction"] < 1


def test_stand_in_mode(shared_data, tmp_path):
    import train_throughput

    report = train_throughput.main(
        ["--stand-in-ms", "20", "--images", "40", "--canvas", "96", "--shard-size", "8", "--seconds", "0.2"]
    )
    (row,) = report["rows"]
    assert row["ideal"] == 16 * 1000 / 20
    assert 0 < row["serial"] <= row["ideal"] * 1.05 and 0 < row["overlapped"] <= row["ideal"] * 1.05
