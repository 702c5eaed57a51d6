"""Sweeps (issue 28, item 1): a grid over an experiment's settings expanded into ordinary
experiments with stable names, refused in one line per problem, and tabulated and plotted
from logs and scores written by the real writers."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from pose_pipeline import cli, workflow_lookups
from pose_pipeline.config.schema import experiment_settings, load_schema, validate_config
from pose_pipeline.config.sweeps import grid_points, path_labels, value_label
from pose_pipeline.core.joints import MPII
from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import pckh_evaluation
from pose_pipeline.evaluate.score_files import write_score_files
from pose_pipeline.report.sweeps import plot_sweep, read_sweep_table
from pose_pipeline.train.log import write_log

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(load_schema()["$defs"]["name"]["pattern"])
ALLOWED = "a name is letters, digits, '_', '-' and '.', not starting with '.' or '-'"
LR_SIGMA = {"training.lr": [0.001, 0.005], "training.sigma": [1.0, 2.0]}


@pytest.fixture
def raw_config() -> dict:
    with open(REPO / "config" / "config.yaml") as f:
        return yaml.safe_load(f)


def with_sweeps(raw: dict, **sweeps) -> dict:
    config = copy.deepcopy(raw)
    config["sweeps"] = sweeps
    return config


def refusal(config) -> list[str]:
    with pytest.raises(UserError) as err:
        validate_config(config, source="my.yaml")
    first, *problems = str(err.value).splitlines()
    assert first == "invalid configuration in my.yaml:"
    return [p.strip() for p in problems]


# ------------------------------------------------------------------------------ names


def test_points_are_named_by_sweep_setting_and_value_in_the_grids_order():
    assert [name for name, _ in grid_points("lr_sigma", LR_SIGMA)] == [
        "lr_sigma.lr-0.001.sigma-1.0",
        "lr_sigma.lr-0.001.sigma-2.0",
        "lr_sigma.lr-0.005.sigma-1.0",
        "lr_sigma.lr-0.005.sigma-2.0",
    ]
    assert grid_points("s", {"training.lr": [0.001]}) == [("s.lr-0.001", {"training.lr": 0.001})]


def test_adding_a_value_keeps_every_other_points_name_and_settings():
    before = dict(grid_points("lr_sigma", LR_SIGMA))
    after = dict(grid_points("lr_sigma", {"training.lr": [0.0001, 0.001, 0.005], "training.sigma": [1.0, 2.0, 3.0]}))
    assert {name: after[name] for name in before} == before
    assert len(after) == 9


@pytest.mark.parametrize(
    "value,label",
    [
        (0.001, "0.001"),
        (1e-05, "1e-05"),
        (1e20, "1e20"),
        (2.0, "2.0"),
        (2, "2"),
        (-0.5, "-0.5"),
        (True, "true"),
        (None, "null"),
        ("adam", "adam"),
        ([60, 90], "60_90"),
    ],
)
def test_values_read_in_names_as_yaml_writes_them(value, label):
    assert value_label(value) == label


@pytest.mark.parametrize("value", ["results/train/demo/model.pt", {"type": "step"}, "", "a b", [[1]], "x" * 41])
def test_values_no_name_can_hold_are_a_stable_hash(value):
    label = value_label(value)
    assert re.fullmatch(r"h[0-9a-f]{8}", label) and value_label(copy.deepcopy(value)) == label
    assert NAME.match(f"s.x-{label}")


def test_settings_that_end_alike_are_told_apart():
    labels = path_labels(["training.batch_size", "evaluation.batch_size", "training.lr"])
    assert labels == {
        "training.batch_size": "training.batch_size",
        "evaluation.batch_size": "evaluation.batch_size",
    } | {"training.lr": "lr"}


# ------------------------------------------------------------------------------ expansion


def test_a_sweep_expands_into_experiments_with_defaults(raw_config):
    config = validate_config(with_sweeps(raw_config, lr_sigma={"base": "demo", "grid": LR_SIGMA}))
    names = [name for name in config["experiments"] if name.startswith("lr_sigma")]
    assert names == [name for name, _ in grid_points("lr_sigma", LR_SIGMA)] and all(NAME.match(n) for n in names)
    point = config["experiments"]["lr_sigma.lr-0.005.sigma-2.0"]
    demo = config["experiments"]["demo"]
    assert point["training"] == {**demo["training"], "lr": 0.005, "sigma": 2.0}
    assert point["evaluation"]["flip_test"] is True  # a default, filled in as in a written experiment
    assert {k: v for k, v in point.items() if k != "training"} == {k: v for k, v in demo.items() if k != "training"}
    assert config["default_experiments"] == ["demo"]  # the default target is unchanged


def test_a_point_is_the_experiment_written_out_by_hand(raw_config):
    """The same settings, so the same Snakemake params: a point caches as an experiment does.
    A mapping value gets its defaults as a written one does (expanded before they are filled)."""
    grid = {"training.schedule": [{"type": "step", "step_size": 5}], "training.optimizer": ["rmsprop"]}
    raw = with_sweeps(raw_config, s={"base": "demo", "grid": grid})
    by_hand = copy.deepcopy(raw["experiments"]["demo"])
    by_hand["training"].update(schedule={"type": "step", "step_size": 5}, optimizer="rmsprop")
    raw["experiments"]["by_hand"] = by_hand
    config = validate_config(raw)
    [(name, _)] = grid_points("s", grid)
    point, written = experiment_settings(config, name), experiment_settings(config, "by_hand")
    assert {**point, "name": "by_hand"} == written
    assert point["training"]["schedule"]["milestones"] == [60, 90]


def test_the_lookups_list_a_sweeps_points_and_files(raw_config):
    config = validate_config(with_sweeps(raw_config, s={"base": "demo", "grid": {"training.sigma": [1.0, 2.0]}}))
    assert workflow_lookups.sweep_experiments(config, "s") == ["s.sigma-1.0", "s.sigma-2.0"]
    paths = {"log": "results/train/{experiment}/log.csv", "scores": "results/pckh/{experiment}.json", "model": "x"}
    assert workflow_lookups.sweep_table_entries(config, "s", paths)[1] == {
        "name": "s.sigma-2.0",
        "settings": {"training.sigma": 2.0},
        "log": "results/train/s.sigma-2.0/log.csv",
        "scores": "results/pckh/s.sigma-2.0.json",
    }


# ------------------------------------------------------------------------------ refusals


def test_a_misspelt_setting_is_refused_with_a_suggestion(raw_config):
    config = with_sweeps(raw_config, s={"base": "demo", "grid": {"training.lrr": [0.1], "trainig.sigma": [1.0]}})
    assert refusal(config) == [
        "sweeps.s.grid: unknown setting 'training.lrr' (did you mean 'training.lr'?); "
        "a setting is a dotted path, e.g. training.lr",
        "sweeps.s.grid: unknown setting 'trainig.sigma' (did you mean 'training.sigma'?); "
        "a setting is a dotted path, e.g. training.lr",
    ]


def test_each_value_is_validated_as_the_setting_itself(raw_config):
    grid = {
        "training.lr": [0.001, -1, "fast"],
        "model.arch": ["hourglass", "resnet"],
        "training.schedule": [{"typ": "step"}],
        "dataset": ["demo", "a/b"],
    }
    assert refusal(with_sweeps(raw_config, s={"base": "demo", "grid": grid})) == [
        "sweeps.s.grid.training.lr: -1 is less than or equal to the minimum of 0",
        "sweeps.s.grid.training.lr: 'fast' is not of type 'number'",
        "sweeps.s.grid.model.arch: 'resnet' is not one of ['hourglass', 'pyranet']",
        "sweeps.s.grid.training.schedule: unknown key 'typ' (did you mean 'type'?); "
        "allowed: type, milestones, step_size, gamma, warmup_epochs",
        f"sweeps.s.grid.dataset: 'a/b' is not a valid name; {ALLOWED}",
    ]


def test_a_point_whose_settings_do_not_fit_together_is_one_line_naming_sweep_and_point(raw_config):
    grid = {"training.input_size": [128, 256], "dataset": ["demo", "nope"]}
    assert refusal(with_sweeps(raw_config, res={"base": "demo", "grid": grid})) == [
        'sweeps.res: point res.input_size-128.dataset-nope (training.input_size=128, dataset="nope"): '
        "dataset: unknown dataset 'nope'; defined: demo, mpii, lsp",
        'sweeps.res: point res.input_size-256.dataset-demo (training.input_size=256, dataset="demo"): '
        "training: the models output heatmaps at 1/4 of the input; input_size 256 needs heatmap_size 64",
        'sweeps.res: point res.input_size-256.dataset-nope (training.input_size=256, dataset="nope"): '
        "dataset: unknown dataset 'nope'; defined: demo, mpii, lsp",
        'sweeps.res: point res.input_size-256.dataset-nope (training.input_size=256, dataset="nope"): '
        "training: the models output heatmaps at 1/4 of the input; input_size 256 needs heatmap_size 64",
    ]


def test_a_point_named_as_an_existing_experiment_is_refused(raw_config):
    config = with_sweeps(raw_config, s={"base": "demo", "grid": {"training.sigma": [1.0, 2.0]}})
    config["experiments"]["s.sigma-2.0"] = config["experiments"]["demo"]
    assert refusal(config) == [
        "sweeps.s: point s.sigma-2.0 (training.sigma=2.0): experiments.s.sigma-2.0 has that name already; "
        "rename the sweep or the experiment"
    ]


def test_points_given_one_name_are_refused(raw_config):
    config = with_sweeps(
        raw_config,
        a={"base": "demo", "grid": {"training.seed": [0], "model.prm": ["B"]}},
        **{"a.seed-0": {"base": "hg2", "grid": {"model.prm": ["B"]}}},
        s={"base": "demo", "grid": {"training.init_checkpoint": ["null", None]}},  # a file named null
    )
    assert refusal(config) == [
        'sweeps.a.seed-0: point a.seed-0.prm-B (model.prm="B") has the name of point training.seed=0, '
        'model.prm="B" of sweep a; give the values distinct names',
        "sweeps.s: point s.init_checkpoint-null (training.init_checkpoint=null) has the name of point "
        'training.init_checkpoint="null" of sweep s; give the values distinct names',
    ]


def test_base_sweep_name_nesting_and_size_are_refused(raw_config):
    config = with_sweeps(
        raw_config,
        **{
            "a b": {"base": "demo", "grid": {"training.seed": [0]}},
            "x": {"base": "dmo", "grid": {"training": [{}], "training.seed": [0, 1]}},
            "big": {
                "base": "demo",
                "grid": {f"training.{k}": list(range(1, 12)) for k in ("seed", "epochs", "batch_size")},
            },
            "dup": {"base": "demo", "grid": {"training.seed": [1, 1]}},
            "empty": {"base": "demo", "grid": {}},
        },
    )
    assert refusal(config) == [
        f"sweeps: the name 'a b' is not allowed; {ALLOWED}",
        "sweeps.dup.grid.training.seed: [1, 1] has non-unique elements",
        "sweeps.empty.grid: {} should be non-empty",
    ]
    del config["sweeps"]["a b"], config["sweeps"]["dup"], config["sweeps"]["empty"]
    assert refusal(config) == [
        "sweeps.x.base: unknown experiment 'dmo' (did you mean 'demo'?); defined: demo, hg2, hg8, lsp_small",
        "sweeps.x.grid: training.seed is inside training, which the grid sets too; sweep one of them",
        "sweeps.big.grid: 1331 points (the product of the numbers of values); at most 1000 per sweep",
    ]


# ------------------------------------------------------------------------------ table and plot

PEOPLE = 20


def write_point_files(entry: dict, index: int) -> None:
    """A point's training log and score files, written by the real writers: 3 epochs, the
    last loss 0.25 + index/100, images/s 5 (a warm-up), then 20 + index and 22 + index, 30 +
    index seconds; PCKh@0.5 Mean 100 - 5 index (the first `index` of 20 people far off)."""
    rows = [
        {"epoch": e, "step": 4 * e, "train_loss": loss, "lr": 1e-3, "images_per_s": speed, "elapsed_s": seconds}
        for e, loss, speed, seconds in [
            (1, 1.0, 5.0, 10.0),
            (2, 0.5, 20.0 + index, 20.0),
            (3, 0.25 + index / 100, 22.0 + index, 30.0 + index),
        ]
    ]
    rows[-1].update(val_loss=0.3, val_score=50.0, val_metric="PCKh@0.5")
    write_log(entry["log"], rows)
    gt = np.random.default_rng(index).uniform(0, 100, (PEOPLE, MPII.num_joints, 2))
    preds = gt.copy()
    preds[:index] += 100.0  # 10 head sizes off
    evaluation = pckh_evaluation(preds, gt, np.ones((PEOPLE, MPII.num_joints)), np.full(PEOPLE, 10.0))
    write_score_files(evaluation, Path(entry["scores"]).with_suffix(".csv"), entry["scores"])


GRIDS = {
    "1-D": {"training.lr": [0.01, 0.001, 0.1]},
    "2-D": LR_SIGMA,
    "3-D": {**LR_SIGMA, "training.optimizer": ["adam", "rmsprop"]},
}


@pytest.fixture(params=list(GRIDS))
def sweep_table(request, raw_config, tmp_path):
    """(grid, entries, the table CSV) of a sweep whose points' files were written by the real writers."""
    grid = GRIDS[request.param]
    config = validate_config(with_sweeps(raw_config, s=dict(base="demo", grid=grid)))
    paths = {"log": f"{tmp_path}/train/{{experiment}}/log.csv", "scores": f"{tmp_path}/pckh/{{experiment}}.json"}
    entries = workflow_lookups.sweep_table_entries(config, "s", paths)
    for index, entry in enumerate(entries):
        write_point_files(entry, index)
    out = tmp_path / "sweeps" / "s.csv"
    assert cli.main(["sweep", "table", "--points", json.dumps(entries), "--out", str(out)]) == 0
    return grid, entries, out


def test_the_table_has_a_row_per_point_from_its_log_and_score(sweep_table):
    grid, entries, out = sweep_table
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    assert header == ["experiment", *grid, "metric", "score", "epochs", "train_loss", "images_per_s", "train_time_s"]
    assert [row["experiment"] for row in rows] == [entry["name"] for entry in entries]
    for index, (row, entry) in enumerate(zip(rows, entries)):
        assert {path: row[path] for path in grid} == {
            path: value if isinstance(value, str) else json.dumps(value) for path, value in entry["settings"].items()
        }
        assert row["metric"] == "PCKh@0.5 Mean" and float(row["score"]) == pytest.approx(100 - 5 * index)
        assert row["epochs"] == "3" and float(row["train_loss"]) == pytest.approx(0.25 + index / 100)
        assert float(row["images_per_s"]) == 20 + index and float(row["train_time_s"]) == 30 + index
    paths, table = read_sweep_table(out)
    assert paths == list(grid) and [row["score"] for row in table] == pytest.approx(
        [100 - 5 * i for i in range(len(rows))]
    )


def test_the_plot_draws_the_score_over_the_grid(sweep_table):
    grid, entries, out = sweep_table
    png = out.with_suffix(".png")
    panels = plot_sweep(out, png, dpi=40)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    score = {tuple(e["settings"].values()): 100 - 5 * i for i, e in enumerate(entries)}
    if len(grid) == 1:  # a line, values ascending: 0.001, 0.01, 0.1
        [panel] = panels
        [line] = panel["lines"]
        np.testing.assert_allclose(line["x"], [0.001, 0.01, 0.1])
        np.testing.assert_allclose(line["y"], [score[(0.001,)], score[(0.01,)], score[(0.1,)]])
        assert panel["xlabel"] == "training.lr" and panel["title"] == "s: PCKh@0.5 Mean"
        return
    lrs, sigmas = grid["training.lr"], grid["training.sigma"]
    others = grid.get("training.optimizer", [None])
    assert len(panels) == len(others)
    for panel, other in zip(panels, others):
        rest = () if other is None else (other,)
        assert panel["images"] == [(2, 2)] and (panel["ylabel"], panel["xlabel"]) == ("training.lr", "training.sigma")
        assert panel["texts"] == [f"{score[(lr, sigma, *rest)]:.4g}" for lr in lrs for sigma in sigmas]
        assert panel["title"] == ("s: PCKh@0.5 Mean" if other is None else f"training.optimizer={other}")


def test_the_plot_command_writes_the_png(sweep_table, tmp_path):
    _, _, out = sweep_table
    assert cli.main(["sweep", "plot", "--table", str(out), "--out", str(tmp_path / "p.png"), "--dpi", "30"]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_table_that_is_not_a_sweeps_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("experiment,score\na,1\n")
    with pytest.raises(UserError, match=r"t.csv: not a sweep table"):
        read_sweep_table(tmp_path / "t.csv")
    with pytest.raises(UserError, match=r"no such sweep table"):
        read_sweep_table(tmp_path / "none.csv")


def test_the_commented_example_in_the_shipped_config_is_valid():
    """config/config.yaml carries the README's example commented out: uncommented, it is a 2x2 sweep."""
    lines = (REPO / "config" / "config.yaml").read_text().splitlines()
    start = lines.index("# sweeps:")
    block = [lines[start]] + [line for line in lines[start + 1 :] if line.startswith("#   ")][:3]
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    raw.update(yaml.safe_load("\n".join(line[2:] for line in block)))
    assert raw["sweeps"] == {"lr_sigma": {"base": "demo", "grid": LR_SIGMA}}
    config = validate_config(raw)
    assert [n for n in config["experiments"] if n.startswith("lr_sigma.")] == [
        n for n, _ in grid_points("lr_sigma", LR_SIGMA)
    ]
    assert "sweeps" not in yaml.safe_load((REPO / "config" / "config.yaml").read_text())  # not enabled by default
