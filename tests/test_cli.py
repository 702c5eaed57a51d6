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
