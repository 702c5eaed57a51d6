"""summary.csv: experiments side by side, columns from the score JSON, log and model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers import write_training_log

from pose_pipeline import cli
from pose_pipeline.core.joints import LSP, MPII
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import pckh_evaluation
from pose_pipeline.evaluate.pck_torso import pck_torso_evaluation
from pose_pipeline.models import build_model
from pose_pipeline.report.summary import summarize


def write_model(path, stacks=1, joints=16):
    config = {"arch": "hourglass", "stacks": stacks, "blocks": 1, "features": 16, "joints": joints}
    model = build_model(config, joints)
    torch.save({"model_config": config, "state_dict": model.state_dict()}, path)
    return sum(p.numel() for p in model.parameters())


def experiment(tmp_path, name, dataset, fmt, evaluation, elapsed, stacks=1, joints=16):
    (tmp_path / f"{name}.json").write_text(json.dumps(evaluation))
    rows = [(1, 4, 1.0, "", "", 0.001, 10, elapsed / 2), (2, 8, 0.5, 0.6, 40, 0.001, 10, elapsed)]
    write_training_log(tmp_path / f"{name}.csv", rows)
    params = write_model(tmp_path / f"{name}.pt", stacks, joints)
    entry = {
        "name": name,
        "dataset": dataset,
        "format": fmt,
        "arch": "hourglass",
        "stacks": stacks,
        "scores": str(tmp_path / f"{name}.json"),
        "log": str(tmp_path / f"{name}.csv"),
        "model": str(tmp_path / f"{name}.pt"),
    }
    return entry, params


def test_summary_side_by_side(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 100, (5, MPII.num_joints, 2))
    mpii = pckh_evaluation(gt + 2.0, gt, np.ones((5, 16)), np.full(5, 10.0))
    lsp_gt = rng.uniform(0, 100, (5, LSP.num_joints, 2))
    lsp = pck_torso_evaluation(lsp_gt + 1.0, lsp_gt, np.ones((5, 14)))
    a, params_a = experiment(tmp_path, "a", "mpii", "mpii", mpii, 120.0, stacks=1)
    b, params_b = experiment(tmp_path, "b", "lsp", "lsp", lsp, 61.25, stacks=2, joints=14)
    entries = [a, b]
    assert cli.main(["summary", "--experiments", json.dumps(entries), "--out", str(tmp_path / "s.csv")]) == 0
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
        f.seek(0)
        header = next(csv.reader(f))
    assert header[:7] == ["experiment", "dataset", "format", "arch", "stacks", "params", "epochs"]
    assert header[7:9] == ["PCKh@0.5 Mean", "PCKh@0.5 Head"] and header[-1] == "train_time_s"
    assert "PCKh@0.1 Mean" in header and "AUC@0.5 Mean" in header and "PCK@0.2 Mean" in header
    assert [r["experiment"] for r in rows] == ["a", "b"]
    assert rows[0]["params"] == str(params_a) and rows[1]["params"] == str(params_b) and params_b > params_a
    assert rows[0]["epochs"] == "2" and rows[0]["train_time_s"] == "120.00" and rows[1]["train_time_s"] == "61.25"
    # 2 px off with 10 px head sizes: every joint right at 0.5, wrong at 0.1
    assert rows[0]["PCKh@0.5 Mean"] == "100.00" and rows[0]["PCKh@0.1 Mean"] == "0.00"
    assert rows[0]["PCKh@0.5 Wrist"] == "100.00"
    assert rows[0]["PCK@0.2 Mean"] == "" and rows[1]["PCKh@0.5 Mean"] == ""
    assert rows[1]["PCK@0.2 Mean"] == f"{lsp['table']['PCK@0.2']['Mean']:.2f}"
    assert "2 experiments" in capsys.readouterr().out


def test_summary_refuses_bad_inputs(tmp_path):
    a, _ = experiment(tmp_path, "a", "mpii", "mpii", {"table": {}}, 1.0)
    with pytest.raises(UserError, match="missing table"):
        summarize([a], tmp_path / "s.csv")
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(UserError, match="elapsed_s"):
        summarize([{**a, "log": str(tmp_path / "bad.csv")}], tmp_path / "s.csv")
    with pytest.raises(UserError, match="missing"):
        summarize([{"name": "x"}], tmp_path / "s.csv")
    with pytest.raises(UserError, match="no such score file"):
        summarize([{**a, "scores": str(tmp_path / "absent.json")}], tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()
