"""The command line: version, help with defaults, -v on either side of the stage, errors on a
line of their own, exit codes."""

from __future__ import annotations

import logging

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
    from tqdm import tqdm

    from pose_pipeline import inspect
    from pose_pipeline.errors import UserError

    def fail(args):
        bar = tqdm(total=10, desc="work")
        bar.update(3)
        raise UserError("broken input")

    monkeypatch.setattr(inspect, "run", fail)
    assert cli.main(["inspect", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "\npose-pipeline inspect: error: broken input" in err


def test_usage_error_exit_code_is_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["convert", "--no-such-option"])
    assert exit_.value.code == 2
    assert cli.main([]) == 2


@pytest.mark.parametrize("preset", [None, "ACTIVE"])
def test_stages_load_torch_with_sleeping_openmp_waits_unless_the_user_chose(preset):
    """A stage run from the command line gets OMP_WAIT_POLICY=PASSIVE before torch loads its
    OpenMP runtime (spinning waits collapse CPU training on a shared machine); a user's own
    value is kept."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    script = ("import json, os, sys; from pose_pipeline import cli; assert 'torch' not in sys.modules; "
              "code = cli.main(['model-info', '--stacks', '1', '--features', '16', '--joints', '4', "
              "'--input', '64']); "
              "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, "
              "'policy': os.environ.get('OMP_WAIT_POLICY')}))")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {"code": 0, "torch": True, "policy": preset or "PASSIVE"}
