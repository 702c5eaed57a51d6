"""The command line: version, help text and defaults on every option of every stage, -v on
either side of the stage, errors on a line of their own, exit codes."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import pytest

from pose_pipeline import __version__, cli


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pose-pipeline {__version__}"


def test_help_shows_each_default_and_not_none(capsys):
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: train)" in out and "(default: error)" in out
    assert "(default: None)" not in out


@pytest.mark.parametrize("argv", [["-v", "inspect", "X"], ["inspect", "-v", "X"]])
def test_verbose_before_or_after_the_stage(tmp_path, argv):
    argv = [str(tmp_path / "missing.zarr") if a == "X" else a for a in argv]
    assert cli.main(argv) == 1  # no such store: a bad input
    assert logging.getLogger("pose_pipeline").level == logging.DEBUG
    assert logging.getLogger().level == logging.WARNING  # third-party loggers stay quiet


def test_an_error_ends_an_open_progress_bar_line(tmp_path, capsys, monkeypatch):
    """A stage's bar is a context manager: an error leaving it closes the bar's line first."""
    from tqdm import tqdm

    from pose_pipeline.data import inspect
    from pose_pipeline.errors import UserError

    def fail(args):
        with tqdm(total=10, desc="work") as bar:
            bar.update(3)
            raise UserError("broken input")

    monkeypatch.setattr(inspect, "run", fail)
    assert cli.main(["inspect", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "\npose-pipeline inspect: error: broken input" in err


def test_every_progress_bar_of_the_package_is_a_context_manager():
    """`with tqdm(...) as bar`: a bar closes itself when an error leaves it (the CLI needs no
    global closing through tqdm's private list of bars)."""
    import ast

    package = Path(cli.__file__).parent
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        managed = {
            id(item.context_expr) for node in ast.walk(tree) if isinstance(node, ast.With) for item in node.items
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tqdm":
                assert id(node) in managed, f"{path.relative_to(package)}:{node.lineno}: tqdm(...) outside a with"


def test_train_help_says_model_pt_is_the_last_epoch_and_best_pt_the_best(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "model.pt, the weights after the last epoch (not the best" in text
    assert "checkpoints/best.pt, the validated epoch with the best score" in text


def test_usage_error_exit_code_is_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["convert", "--no-such-option"])
    assert exit_.value.code == 2
    assert cli.main([]) == 2


def stage_parsers():
    """(name, parser) of every stage of cli.STAGES and of every sub-command under one (plot KIND),
    as `pose-pipeline` builds them."""

    def children(parser):
        return [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]

    found = []
    for stage in cli.STAGES:
        parser, _ = cli.build_parser([stage])
        todo = [(stage, children(parser)[0].choices[stage])]
        while todo:
            name, p = todo.pop()
            found.append((name, p))
            todo += [(f"{name} {kind}", q) for sub in children(p) for kind, q in sub.choices.items()]
    return found


def options(parser):
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


@pytest.mark.parametrize("name,parser", [pytest.param(n, p, id=n) for n, p in stage_parsers()])
def test_every_option_has_help_and_help_shows_every_default(name, parser):
    shown = " ".join(parser.format_help().split())
    assert "(default: None)" not in shown
    for action in options(parser):
        label = action.option_strings or action.dest
        # help that says what the option is, not only its default
        assert re.sub(r"\(?default:? ?%\(default\)s\)?", "", action.help or "").strip(), (name, label)
        expanded = " ".join(parser._get_formatter()._expand_help(action).split())
        # whitespace aside: argparse wraps lines after hyphens too ("per-" / "joint")
        assert expanded.replace(" ", "") in shown.replace(" ", ""), (name, label)
        if action.option_strings and action.nargs != 0 and not action.required and action.default is not None:
            assert f"(default: {action.default})" in expanded, (name, label)


def test_stage_parsers_cover_every_stage_and_plot_kind():
    names = [name for name, _ in stage_parsers()]
    assert set(cli.STAGES) <= set(names)
    assert {f"plot {kind}" for kind in ("curves", "pckh", "joints", "skeletons", "examples")} <= set(names)


@pytest.mark.parametrize("preset", [{}, {"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "5"}])
def test_stages_load_torch_with_bounded_openmp_spinning_unless_the_user_chose(preset):
    """A stage run from the command line gets GOMP_SPINCOUNT before torch loads its OpenMP
    runtime (libgomp's long spinning collapses CPU training on a shared machine, sleeping at
    once slows it on an idle one); a user's own wait policy or spin count is kept as it is."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(preset)
    script = (
        "import json, os, sys; from pose_pipeline import cli; assert 'torch' not in sys.modules; "
        "code = cli.main(['model-info', '--stacks', '1', '--features', '16', '--joints', '4', "
        "'--input-size', '64']); "
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, "
        "'policy': os.environ.get('OMP_WAIT_POLICY'), 'spin': os.environ.get('GOMP_SPINCOUNT')}))"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    chosen = preset or {"GOMP_SPINCOUNT": cli.OPENMP_SPIN_COUNT}  # the user's setting, else the CLI's
    assert seen == {
        "code": 0,
        "torch": True,
        "policy": chosen.get("OMP_WAIT_POLICY"),
        "spin": chosen.get("GOMP_SPINCOUNT"),
    }
