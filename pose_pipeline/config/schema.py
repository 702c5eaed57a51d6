"""Load and validate the workflow config once, with messages a person can act on.

The JSON schema (workflow/schemas/config.schema.yaml, shipped in the package as
`pose_pipeline/config/schema/config.schema.yaml`) is the single description of every key and default;
`validate_config` fills the defaults in and adds the checks a schema cannot express (an
experiment naming a dataset that does not exist, say). The stages' own defaults (argparse,
`convert()`, `demo_data.generate()`, the model configs) come from `schema_defaults`, so a
default is written once, in the schema. The lookups only the Snakemake rules use live in
`pose_pipeline.workflow_lookups`.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import yaml

from pose_pipeline.errors import UserError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def load_schema() -> dict:
    return copy.deepcopy(_schema())


@functools.lru_cache(maxsize=1)
def _schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def schema_defaults(*path: str) -> dict:
    """{key: default} of the schema object at `path`: a `$defs` name, then property names,
    e.g. `("dataset",)` (datasets.*), `("dataset", "synthetic")`, `("experiment", "model")`.
    Keys without a default are left out."""
    node = _schema()["$defs"][path[0]]
    for key in path[1:]:
        node = node["properties"][key]
    return {key: copy.deepcopy(sub["default"]) for key, sub in node["properties"].items() if "default" in sub}


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        node = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node
    return schema


def _fill_defaults(value, schema: dict, root: dict):
    """Fill schema defaults into a (validated) config, depth first."""
    schema = _resolve(schema, root)
    if not isinstance(value, dict):
        return value
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = _fill_defaults(value[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in schema.get("properties", {}):
                value[key] = _fill_defaults(value[key], extra, root)
    return value


def checked_section(value, *path: str, where: str) -> dict:
    """`value` checked against the schema object at `path` (as `schema_defaults`: a `$defs` name,
    then property names) and returned with its defaults filled in; UserError with every problem
    otherwise, one per line, each named from `where` (an unknown key with its did-you-mean)."""
    import jsonschema

    root = _schema()
    pointer = "/".join(["#/$defs", path[0], *(f"properties/{key}" for key in path[1:])])
    validator = jsonschema.Draft202012Validator({"$ref": pointer, "$defs": root["$defs"]})
    problems = [_describe(e, root, (where,)) for e in validator.iter_errors(value)]
    if problems:
        raise UserError("\n  ".join(["invalid settings:", *problems]))
    return _fill_defaults(copy.deepcopy(value), {"$ref": pointer}, root)


def _where(path) -> str:
    # A key that is no valid name (the one being refused, say) is quoted, so the message stays one line.
    pattern = re.compile(_schema()["$defs"]["name"]["pattern"])
    parts = [str(p) if isinstance(p, int) or pattern.match(str(p)) else repr(p) for p in path]
    return ".".join(parts) or "(top level)"


def _describe(error, schema_root: dict, prefix=()) -> str:
    """One line for a schema error, naming the key: `prefix` + the error's path (a value
    validated on its own, a sweep's grid value say, is named by where it is written)."""
    where = _where([*prefix, *error.absolute_path])
    if error.validator == "additionalProperties":
        allowed = list(_resolve(error.schema, schema_root).get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1) if isinstance(key, str) else []
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{where}: unknown key {', '.join(hints)}; allowed: {', '.join(allowed)}"
    if error.schema == schema_root["$defs"]["name"]:
        allowed = f"a name is {error.schema['description']}"
        if "propertyNames" in error.schema_path:  # the key itself
            return f"{where}: the name {error.instance!r} is not allowed; {allowed}"
        return f"{where}: {error.instance!r} is not a valid name; {allowed}"
    return f"{where}: {error.message}"


def _hourglass_h5_problems(name: str, ds: dict) -> list[str]:
    """An hourglass .h5 holds one split: converted for both stores without val_annotations or
    val_split, validation would silently be the training people."""
    annotations = str(ds.get("annotations", ""))
    if ds["format"] != "mpii" or not annotations.endswith((".h5", ".hdf5")):
        return []
    if ds.get("val_annotations") or ds.get("val_split"):
        return []
    return [
        f"datasets.{name}.annotations: {annotations} is an hourglass .h5 file, which holds one split; "
        f"set datasets.{name}.val_annotations (the validation .h5, e.g. valid.h5) or datasets.{name}.val_split "
        "(a file naming the validation people, e.g. detections.mat), or validation would be the training data"
    ]


# A config is refused when YAML aliases make it, read as a tree, larger than this many values
# or this many times the values it writes: validation, a deep copy or an error message quoting a
# value would each expand every alias (9 levels of 9 aliases are 9**9 values).
MAX_CONFIG_VALUES = 1_000_000
MAX_EXPANSION = 100
_CONTAINERS = (dict, list, tuple, set, frozenset)


def _children(node) -> list:
    return [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)


def _tree_sizes(root) -> tuple[dict, Counter, int] | None:
    """({id: values in that container read as a tree}, {id: references to that container},
    values written), without expanding it: each container is visited once (memo by id), a
    scalar counts one. None when a container holds itself (an endless tree)."""
    sizes, references, active, written = {}, Counter(), set(), 0
    stack = [(root, False)] if isinstance(root, _CONTAINERS) else []
    while stack:
        node, finished = stack.pop()
        if finished:
            active.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] if isinstance(c, _CONTAINERS) else 1 for c in _children(node))
        elif id(node) in active:
            return None
        elif id(node) not in sizes:
            children = _children(node)
            active.add(id(node))
            written += 1 + len(children)
            stack.append((node, True))
            inner = [c for c in children if isinstance(c, _CONTAINERS)]
            references.update(id(c) for c in inner)
            stack += [(c, False) for c in inner]
    return sizes, references, written


def _expanded_path(node, sizes: dict, references: Counter, limit: int) -> str:
    """Where the expansion is: down the mappings into the value holding the most while it is over
    the limit, up to the first alias (a value that stands in more than one place)."""
    path = []
    while isinstance(node, dict):
        inner = [(sizes[id(v)], key, v) for key, v in node.items() if isinstance(v, _CONTAINERS)]
        size, key, node = max(inner, key=lambda t: t[0], default=(0, None, None))
        if size <= limit:
            break
        path.append(key)
        if references[id(node)] > 1:
            break
    return _where(path)


def check_expansion(config, source: str) -> None:
    """Refuse, in one line, a config whose YAML aliases repeat its values far beyond what it
    writes (an alias bomb), before anything reads it as a tree."""
    measured = _tree_sizes(config)
    if measured is None:
        raise UserError(f"invalid configuration in {source}: a YAML alias refers to a value holding it (endless)")
    sizes, references, written = measured
    total, limit = sizes.get(id(config), 1), min(MAX_CONFIG_VALUES, MAX_EXPANSION * written)
    if total > limit:
        where = _expanded_path(config, sizes, references, limit)
        raise UserError(
            f"invalid configuration in {source}: {where}: YAML aliases make the config's {written} written "
            f"values {total:.3g} (refused above {MAX_EXPANSION} times as many, or {MAX_CONFIG_VALUES:,}); "
            "write the repeated parts out"
        )


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate against the schema, fill defaults, cross-check names, expand the sweeps into
    experiments (`pose_pipeline.config.sweeps`); returns a new dict.

    Raises UserError with every problem, one per line, each naming the key.
    """
    import jsonschema

    from pose_pipeline.config.sweeps import expand_sweeps, point_names

    check_expansion(config, source)
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e, schema) for e in errors]
    if not problems:
        raw, config = config, _fill_defaults(copy.deepcopy(config), schema, schema)
        datasets = config["datasets"]
        problems += _dataset_problems(datasets)
        for name, exp in config["experiments"].items():
            problems += [f"experiments.{name}.{key}: {problem}" for key, problem in experiment_problems(exp, datasets)]
        if not problems:  # the points start from valid experiments: each problem is the point's own
            points, sweep_problems = expand_sweeps(raw, config, schema)
            problems += sweep_problems
            config["experiments"].update(points)
        known = set(config["experiments"]) | set(point_names(config["sweeps"]))
        problems += [
            f"default_experiments: unknown experiment {name!r}"
            for name in config["default_experiments"]
            if name not in known
        ]
    if problems:
        raise UserError(f"invalid configuration in {source}:\n  " + "\n  ".join(problems))
    return config


def _dataset_problems(datasets: dict) -> list[str]:
    problems = []
    for name, ds in datasets.items():
        if "synthetic" not in ds:
            for key in ("annotations", "images"):
                if key not in ds:
                    problems.append(f"datasets.{name}: {key!r} is required unless the dataset is synthetic")
            problems += _hourglass_h5_problems(name, ds)
    for name, ds in datasets.items():
        problems += [
            f"datasets.{name}.{key}: for COCO-format files only (format is {ds['format']!r})"
            for key in ("flip_pairs", "oks_sigmas", "min_keypoints")
            if key in ds and ds["format"] != "coco"
        ]
        if "val_last" in ds and ds["format"] != "lsp":
            problems.append(f"datasets.{name}.val_last: for LSP-format files only (format is {ds['format']!r})")
        if "val_last" in ds and ds.get("val_annotations"):
            problems.append(
                f"datasets.{name}.val_last: with val_annotations the validation split is that file; "
                "give one or the other"
            )
        if ds.get("reference_predictions") and ds["format"] != "mpii":
            problems.append(
                f"datasets.{name}.reference_predictions: published reference predictions are "
                f"drawn on the PCKh chart, for MPII-format datasets only (format is {ds['format']!r})"
            )
    return problems


def experiment_problems(exp: dict, datasets: dict) -> list[tuple[str, str]]:
    """(key, problem) of what the schema cannot check in one experiment (defaults filled in):
    its dataset is defined, its augmentation ranges are ranges, its heatmap fits its input.
    Written experiments and sweep points are checked alike; each names where it is."""
    from pose_pipeline.core.codec import HEATMAP_STRIDE, HOURGLASS_DEPTH

    problems = []
    if exp["dataset"] not in datasets:
        problems.append(("dataset", f"unknown dataset {exp['dataset']!r}; defined: {', '.join(datasets)}"))
    training = exp["training"]
    # JSON Schema bounds each end of a [low, high] range, not their order
    problems += [
        (f"training.augmentation.{key}", f"[{low:g}, {high:g}] is not a range: low must not exceed high")
        for key in ("erase_area", "erase_ratio", "blur_sigma")
        for low, high in [training["augmentation"][key]]
        if low > high
    ]
    if training["input_size"] != HEATMAP_STRIDE * training["heatmap_size"]:
        problems.append(
            (
                "training",
                f"the models output heatmaps at 1/{HEATMAP_STRIDE} of the input; input_size "
                f"{training['input_size']} needs heatmap_size {training['input_size'] / HEATMAP_STRIDE:g}",
            )
        )
    elif training["heatmap_size"] % 2**HOURGLASS_DEPTH:
        problems.append(
            (
                "training",
                f"heatmap_size {training['heatmap_size']} must be a multiple of {2**HOURGLASS_DEPTH} (an "
                f"hourglass halves it {HOURGLASS_DEPTH} times), i.e. input_size a multiple of "
                f"{HEATMAP_STRIDE * 2**HOURGLASS_DEPTH}",
            )
        )
    return problems


def read_config_file(path) -> dict:
    """A config file's mapping, unvalidated: bad YAML named by line and column, an alias bomb
    refused before anything expands it."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:  # as Snakemake reads its config files
            raw = yaml.safe_load(f)
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {path} is not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"config file {path} is not valid YAML{where}: {' '.join(problem.split())}") from None
    if not isinstance(raw, dict):
        raise UserError(f"config file {path}: expected a mapping with 'datasets' and 'experiments'")
    check_expansion(raw, str(path))
    return raw


def load_config(path) -> dict:
    return validate_config(read_config_file(path), source=str(path))


def experiment_settings(config: dict, name: str) -> dict:
    """Everything that determines an experiment's training: model, training, joint set, and the
    evaluation settings its validation uses (they pick best.pt, but are not the run identity:
    changing them reruns the train job, which resumes where it is)."""
    exp = config["experiments"][name]
    validation = {key: exp["evaluation"][key] for key in VALIDATION_KEYS}
    return {
        "name": name,
        "dataset": exp["dataset"],
        "model": exp["model"],
        "training": exp["training"],
        "evaluation": validation,
        "device": config["device"],
    }


# What validation during training takes of `evaluation` (it runs without flip test, so a
# flip_test change reruns prediction only).
VALIDATION_KEYS = ("batch_size", "blur_sigma", "validate_every")


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
