"""Sweeps: a base experiment and a grid of values over its settings, expanded into experiments.

    sweeps:
      lr_sigma:
        base: demo
        grid: {training.lr: [0.001, 0.005], training.sigma: [1.0, 2.0]}

Each point of the grid (one value per setting, every combination, in the order written) is an
ordinary experiment: the base *as written*, each setting replaced by the point's value, then
given the schema's defaults as a written experiment is. Expanding before the defaults are
filled in, a mapping value (`training.schedule: [{type: step}]`) gets its own defaults, and a
point is exactly the experiment one would write out by hand: the same settings, so the same
Snakemake params and cache.

A point's name is the sweep's, then SETTING-VALUE for each setting, joined by '.'
(`lr_sigma.lr-0.001.sigma-1.0`): SETTING is the path's last key (more of its keys where two
paths end alike: `training.batch_size`, `evaluation.batch_size`), VALUE the value as YAML writes
it, or a short hash for values no name can hold (a file path, a mapping). The name depends on
the sweep's name, its paths and the point's own values only, never on the other values or their
order: a value added to a grid adds points, and every other point keeps its name, its settings
and so its outputs (only the new points train).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import math
import re

from pose_pipeline.config.schema import _describe, _fill_defaults, _resolve, _schema, experiment_problems

# A typo can make a grid of millions of points: refused above this many (a grid that large is
# better split into sweeps anyway).
MAX_POINTS = 1000
# A point's name becomes a file name (results/pckh/NAME.csv and its atomic writer's temporary
# `.NAME.csv.PID-XXXXXXXX.partial.csv`): well under the 255 bytes file systems allow.
MAX_NAME_LENGTH = 200
_TEXT_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,40}")


# ------------------------------------------------------------------------------ names


def value_label(value) -> str:
    """A value as it reads in a point's name: numbers, booleans, null and short plain words as
    YAML writes them, a list of numbers joined by '_', anything else (a path, a mapping) as
    'h' and 8 hex digits of its JSON's SHA-256 (deterministic, the same in every run)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value).replace("+", "")  # 1e+20 -> 1e20: '+' is no name character
    if isinstance(value, str) and _TEXT_VALUE.fullmatch(value):
        return value
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        return "_".join(value_label(v) for v in value)
    return "h" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def path_labels(paths) -> dict[str, str]:
    """path -> the fewest last keys that tell it from the other paths (`lr` for training.lr)."""
    split = {path: path.split(".") for path in paths}
    labels = {}
    for path, keys in split.items():
        for n in range(1, len(keys) + 1):
            if all(other[-n:] != keys[-n:] for p, other in split.items() if p != path):
                break
        labels[path] = ".".join(keys[-n:])
    return labels


def grid_size(grid: dict) -> int:
    return math.prod(len(values) for values in grid.values())


def grid_points(sweep: str, grid: dict) -> list[tuple[str, dict]]:
    """(name, {path: value}) of every point of a sweep's grid, in the grid's order."""
    labels = path_labels(grid)
    points = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        name = ".".join([sweep, *(f"{labels[path]}-{value_label(value)}" for path, value in point.items())])
        points.append((name, point))
    return points


def point_names(sweeps: dict) -> list[str]:
    """Every point's name of every sweep (those over MAX_POINTS left out: they are refused)."""
    return [
        name
        for sweep, body in sweeps.items()
        if grid_size(body["grid"]) <= MAX_POINTS
        for name, _ in grid_points(sweep, body["grid"])
    ]


def describe_point(point: dict) -> str:
    return ", ".join(f"{path}={json.dumps(value)}" for path, value in point.items())


# ------------------------------------------------------------------------------ settings


def setting_paths(root: dict) -> dict[str, str]:
    """Dotted path -> the `$ref` of its schema in `root`, for every setting of an experiment
    (mappings included): a value is validated through it as the setting itself is."""
    found = {}

    def walk(prefix: str, pointer: str, schema: dict) -> None:
        pointer = schema.get("$ref", pointer)
        for key, sub in _resolve(schema, root).get("properties", {}).items():
            found[prefix + key] = f"{pointer}/properties/{key}"
            walk(f"{prefix}{key}.", found[prefix + key], sub)

    walk("", "#/$defs/experiment", root["$defs"]["experiment"])
    return found


def with_settings(experiment: dict, point: dict) -> dict:
    """A copy of `experiment` with each dotted path set to the point's value (mappings on the
    way created where the experiment leaves them out)."""
    experiment = copy.deepcopy(experiment)
    for path, value in point.items():
        *parents, key = path.split(".")
        node = experiment
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = copy.deepcopy(value)
    return experiment


# ------------------------------------------------------------------------------ checks


def _grid_problems(sweep: str, body: dict, experiments: dict, root: dict) -> list[str]:
    """The sweep's own problems: its base is an experiment, each path a setting (did-you-mean
    otherwise), no path inside another, each value valid for its setting, a grid of a size a
    workflow can hold."""
    import jsonschema

    where = f"sweeps.{sweep}"
    problems = []
    if body["base"] not in experiments:
        close = difflib.get_close_matches(body["base"], list(experiments), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{where}.base: unknown experiment {body['base']!r}{hint}; defined: {', '.join(experiments)}")
    settings = setting_paths(root)
    for path, values in body["grid"].items():
        if path not in settings:
            close = difflib.get_close_matches(path, list(settings), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                f"{where}.grid: unknown setting {path!r}{hint}; a setting is a dotted path, e.g. training.lr"
            )
            continue
        outer = [other for other in body["grid"] if path.startswith(other + ".")]
        if outer:
            problems.append(f"{where}.grid: {path} is inside {outer[0]}, which the grid sets too; sweep one of them")
        validator = jsonschema.Draft202012Validator({"$ref": settings[path], "$defs": root["$defs"]})
        for value in values:
            problems += [_describe(e, root, ("sweeps", sweep, "grid", path)) for e in validator.iter_errors(value)]
    if grid_size(body["grid"]) > MAX_POINTS:
        problems.append(
            f"{where}.grid: {grid_size(body['grid'])} points (the product of the numbers of values); "
            f"at most {MAX_POINTS} per sweep"
        )
    return problems


def _point_problems(sweep: str, name: str, point: dict, experiment: dict, config: dict, root: dict) -> list[str]:
    """One line per problem of a point's experiment (defaults filled in), naming the sweep and
    the point: values valid one by one may not be together (an input size and a heatmap size)."""
    import jsonschema

    where = f"sweeps.{sweep}: point {name} ({describe_point(point)})"
    if len(name) > MAX_NAME_LENGTH:
        return [f"{where}: its name is {len(name)} characters, over {MAX_NAME_LENGTH}; shorten the sweep's name"]
    if name in config["experiments"]:
        return [f"{where}: experiments.{name} has that name already; rename the sweep or the experiment"]
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/experiment", "$defs": root["$defs"]})
    problems = [f"{where}: {_describe(e, root)}" for e in validator.iter_errors(experiment)]
    if not problems:
        filled = _fill_defaults(copy.deepcopy(experiment), root["$defs"]["experiment"], root)
        problems = [f"{where}: {key}: {problem}" for key, problem in experiment_problems(filled, config["datasets"])]
    return problems


def expand_sweeps(raw: dict, config: dict, root: dict | None = None) -> tuple[dict, list[str]]:
    """({point name: experiment with defaults}, problems) of every sweep of a config that passed
    the schema: `raw` as written (the bases as written), `config` with its defaults filled in."""
    root = root or _schema()
    experiments, problems, seen = {}, [], {}
    for sweep, body in config["sweeps"].items():
        grid_problems = _grid_problems(sweep, body, raw["experiments"], root)
        problems += grid_problems
        if grid_problems:  # every point would repeat them
            continue
        base = raw["experiments"][body["base"]]
        for name, point in grid_points(sweep, body["grid"]):
            if name in seen:
                problems.append(
                    f"sweeps.{sweep}: point {name} ({describe_point(point)}) has the name of point "
                    f"{describe_point(seen[name][1])} of sweep {seen[name][0]}; give the values distinct names"
                )
                continue
            seen[name] = (sweep, point)
            experiment = with_settings(base, point)
            point_problems = _point_problems(sweep, name, point, experiment, config, root)
            problems += point_problems
            if not point_problems:
                experiments[name] = _fill_defaults(experiment, root["$defs"]["experiment"], root)
    return experiments, problems
