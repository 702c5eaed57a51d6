"""Names are data (issue 26): config-defined names match one pattern, every word the rules put
in a shell command is quoted, and a config whose YAML aliases explode is refused unexpanded."""

from __future__ import annotations

import ast
import copy
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import TINY, snakemake_command, write_config

from pose_pipeline.config.schema import load_config, read_config_file, validate_config
from pose_pipeline.errors import UserError

REPO = Path(__file__).resolve().parents[1]
ALLOWED = "a name is letters, digits, '_', '-' and '.', not starting with '.' or '-'"


def _config(**sections) -> dict:
    config = {
        "datasets": {"d": {"format": "mpii", "synthetic": {}}},
        "experiments": {"e": {"dataset": "d", "model": {"arch": "hourglass"}}},
    }
    config.update(sections)
    return config


def _refusal(config) -> list[str]:
    with pytest.raises(UserError) as err:
        validate_config(config, source="my.yaml")
    first, *problems = str(err.value).splitlines()
    assert first == "invalid configuration in my.yaml:"
    return [p.strip() for p in problems]


def test_a_shell_command_or_a_path_as_a_name_is_refused_naming_it():
    config = _config(imagesets={"x;touch PWNED_SM;y": {"images": "img"}})
    config["experiments"]["../../x"] = config["experiments"].pop("e")
    assert _refusal(config) == [
        f"experiments: the name '../../x' is not allowed; {ALLOWED}",
        f"imagesets: the name 'x;touch PWNED_SM;y' is not allowed; {ALLOWED}",
    ]


@pytest.mark.parametrize("name", [".hidden", "-option", "a b", "a/b", "", "x\n", "é", "a=b", "{x}"])
def test_every_name_outside_the_pattern_is_refused(name):
    assert _refusal(_config(datasets={name: {"format": "mpii", "synthetic": {}}, "d": {"format": "mpii"}})) == [
        f"datasets: the name {name!r} is not allowed; {ALLOWED}"
    ]


def test_names_that_refer_to_entries_are_names_too():
    config = _config(default_experiments=["e", "../e"])
    config["experiments"]["e"]["dataset"] = "d;x"
    assert _refusal(config) == [
        f"default_experiments.1: '../e' is not a valid name; {ALLOWED}",
        f"experiments.e.dataset: 'd;x' is not a valid name; {ALLOWED}",
    ]
    # a valid name that names nothing is refused by the cross-check, so a reference is always a key
    config = _config(default_experiments=["f"])
    config["experiments"]["e"]["dataset"] = "c"
    assert _refusal(config) == [
        "experiments.e.dataset: unknown dataset 'c'; defined: d",
        "default_experiments: unknown experiment 'f'",
    ]


def test_names_with_dots_dashes_and_underscores_are_valid():
    config = _config(default_experiments=["v1.2_b-3"], imagesets={"my.photos-2": {"images": "i"}})
    config["datasets"]["_d.1"] = config["datasets"].pop("d")
    config["experiments"]["v1.2_b-3"] = {**config["experiments"].pop("e"), "dataset": "_d.1"}
    assert list(validate_config(config)["experiments"]) == ["v1.2_b-3"]


def test_the_did_you_mean_hint_stays_beside_a_refused_name():
    config = _config(imagesets={"a b": {"image": "i"}})
    assert _refusal(config) == [
        f"imagesets: the name 'a b' is not allowed; {ALLOWED}",
        "imagesets.'a b': unknown key 'image' (did you mean 'images'?); allowed: images, boxes, annotations, "
        "keypoint_score_threshold, oks_nms_threshold",
        "imagesets.'a b': 'images' is a required property",
    ]


# ---------------------------------------------------------------- YAML aliases and errors


def _alias_bomb(leaf: str) -> list[str]:
    """YAML lines anchoring b0 .. b9, each nine aliases of the one before: b9 is 9**9 leaves."""
    lines = [f"  - &b0 {leaf}"]
    lines += [f"  - &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]" for i in range(1, 10)]
    return lines


def _bomb_files(folder: Path) -> dict[str, Path]:
    shipped = (REPO / "config" / "config.yaml").read_text()
    experiments = "\n".join(["default_experiments:", *_alias_bomb("demo")]) + "\n"
    experiments_file = folder / "experiments.yaml"
    experiments_file.write_text(shipped.replace("default_experiments: [demo]\n", experiments))
    pairs = "\n".join(["    flip_pairs:", *("  " + line for line in _alias_bomb("[left_a, right_a]"))]) + "\n"
    pairs_file = folder / "pairs.yaml"
    pairs_file.write_text(shipped.replace("  mpii:\n    format: mpii\n", "  mpii:\n    format: coco\n" + pairs))
    return {"default_experiments": experiments_file, "datasets.mpii.flip_pairs": pairs_file}


def test_an_alias_bomb_is_refused_fast_in_one_line_naming_where(tmp_path):
    for where, path in _bomb_files(tmp_path).items():
        for load in (load_config, lambda p: validate_config(yaml.safe_load(p.read_text()), source=str(p))):
            start = time.perf_counter()
            with pytest.raises(UserError) as err:
                load(path)
            assert time.perf_counter() - start < 5
            message = str(err.value)
            assert "\n" not in message and message.startswith(f"invalid configuration in {path}: {where}: ")
            assert "YAML aliases make the config's" in message


def test_a_value_holding_itself_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text((REPO / "config" / "config.yaml").read_text() + "plots: &p {dpi: *p}\n")
    with pytest.raises(UserError, match=r"^invalid configuration in .*loop.yaml: a YAML alias refers to a value"):
        read_config_file(path)


def test_aliases_a_person_writes_are_accepted(tmp_path):
    path = tmp_path / "anchors.yaml"
    text = (REPO / "config" / "config.yaml").read_text()
    path.write_text(text + "imagesets:\n  a: &set {images: img}\n  b: *set\n  c: *set\n")
    assert sorted(load_config(path)["imagesets"]) == ["a", "b", "c"]


def test_bad_yaml_is_named_by_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets:\n  d: {format: mpii}\nexperiments:\n\te: {}\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert str(err.value).startswith(f"config file {path} is not valid YAML at line 4, column 1: ")
    assert "\n" not in str(err.value)
    path.write_bytes(b"datasets: {d: \xff}\n")
    with pytest.raises(UserError, match=r"is not UTF-8 text \(invalid start byte\)$"):
        load_config(path)


def test_the_workflow_refuses_an_alias_bomb_and_bad_yaml_in_one_line(tmp_path):
    files = _bomb_files(tmp_path)
    shipped = (REPO / "config" / "config.yaml").read_text()
    # a mapping bomb: Snakemake's own merge of config/config.yaml would copy every mapping
    mappings = "x0: &m0 {k: v}\n" + "".join(
        f"x{i}: &m{i} {{{', '.join(f'k{j}: *m{i - 1}' for j in range(9))}}}\n" for i in range(1, 10)
    )
    merged = "the workflow config (config/config.yaml and --config/--configfile)"
    cases = [  # config/config.yaml, --configfile, the line expected
        (files["default_experiments"].read_text(), [], "config/config.yaml: default_experiments: "),
        (mappings, [], "config/config.yaml: x9.k0: "),
        # merged by Snakemake before the Snakefile runs: refused by validate_config
        (shipped, ["--configfile", str(files["datasets.mpii.flip_pairs"])], f"{merged}: datasets.mpii.flip_pairs: "),
        ("datasets:\n\td: {}\n", [], "config file config/config.yaml is not valid YAML at line 2, column 1: "),
    ]
    (tmp_path / "config").mkdir()
    for text, options, expected in cases:
        (tmp_path / "config" / "config.yaml").write_text(text)
        start = time.perf_counter()
        command = snakemake_command(tmp_path, "--dry-run", *options)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and time.perf_counter() - start < 60
        lines = (done.stdout + done.stderr).splitlines()
        assert [line for line in lines if expected in line and line.startswith(("invalid", "config file"))], lines


# ---------------------------------------------------------------- quoting in the rules


def _shell_commands() -> dict[str, str]:
    """rule -> its shell command as written (the `shell:` block's string literals joined)."""
    commands = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "shell:":
                continue
            indent, block = len(line) - len(line.lstrip()), []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following)
            rule = next(
                re.match(r"rule (\w+)", lines[j]).group(1) for j in range(i, -1, -1) if lines[j].startswith("rule ")
            )
            commands[rule] = ast.literal_eval("(" + "\n".join(block) + ")")
    return commands


def test_every_placeholder_in_a_shell_command_is_quoted():
    commands = _shell_commands()
    assert len(commands) >= 12 and {"convert", "train", "infer", "plot", "compare"} <= set(commands)
    unquoted = {
        rule: fields
        for rule, command in commands.items()
        if (fields := [f for f in re.findall(r"(?<!\{)\{([^{}]*)\}(?!\})", command) if not f.endswith(":q")])
    }
    assert unquoted == {}


def test_the_commands_keep_names_and_paths_with_spaces_whole(tmp_path):
    """A dry run printing the commands: each word is what a name or a path with spaces must be."""
    (tmp_path / "my data" / "images").mkdir(parents=True)
    (tmp_path / "my data" / "a b.json").write_text("{}")
    (tmp_path / "my boxes.csv").write_text("")
    config = copy.deepcopy(TINY)
    config["datasets"]["c.1"] = {
        "format": "coco",
        "annotations": "my data/a b.json",
        "images": "my data/images",
        "flip_pairs": [["left eye", "right_eye"]],
        "oks_sigmas": [0.5] * 17,
    }
    config["experiments"]["v1.2_c-d"] = {**config["experiments"]["tiny"], "dataset": "c.1", "resources": {"gpus": 2}}
    config["default_experiments"] = ["tiny", "v1.2_c-d"]
    config["imagesets"] = {"my.photos": {"images": "my data/images", "boxes": "my boxes.csv"}}
    write_config(tmp_path, config)
    targets = ["all", "results/pckh/v1.2_c-d.csv", "results/infer/v1.2_c-d/my.photos/keypoints.json"]
    done = subprocess.run(
        snakemake_command(tmp_path, "-n", "-p", *targets), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    commands = [shlex.split(line) for line in re.findall(r"^Shell command: (.*)$", done.stdout, re.M)]
    assert all(word for command in commands for word in command)  # an empty option is no word, not ''

    def holding(*words):
        return [command for command in commands if all(word in command for word in words)]

    def after(command, option):
        return command[command.index(option) + 1]

    converts = holding("convert", "coco")
    assert len(converts) == 2
    for command in converts:
        assert after(command, "--annotations") == "my data/a b.json" and after(command, "--dataset") == "c.1"
        assert command[command.index("--flip-pair") + 1 :][:2] == ["left eye", "right_eye"]
    [train] = holding("--train-store", "results/stores/c.1/train.zarr")
    assert train[train.index("--nproc") :] == ["--nproc", "2", ">", "results/logs/train/v1.2_c-d.log", "2>&1"]
    [score] = holding("--preds", "results/pckh/v1.2_c-d.csv")
    assert after(score, "--annotations") == "my data/a b.json" and after(score, "--oks-sigmas") == ",".join(
        ["0.5"] * 17
    )
    [infer] = holding("infer")
    assert after(infer, "--images") == "my data/images" and after(infer, "--boxes") == "my boxes.csv"
    assert after(infer, "--out") == "results/infer/v1.2_c-d/my.photos"
    [compare] = holding("results/plots/pckh_all.png")
    assert compare[compare.index("v1.2_c-d=results/pckh/v1.2_c-d.json") - 1] == "--scores"
    [plot] = holding("results/plots/v1.2_c-d/curves.png")
    assert after(plot, "--log") == "v1.2_c-d=results/train/v1.2_c-d/log.csv"
