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


def _describe(error, schema_root: dict) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = list(_resolve(error.schema, schema_root).get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"{where}: unknown key {', '.join(hints)}; allowed: {', '.join(allowed)}"
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


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate against the schema, fill defaults, cross-check names; returns a new dict.

    Raises UserError with every problem, one per line, each naming the key.
    """
    import jsonschema

    from pose_pipeline.core.codec import HEATMAP_STRIDE, HOURGLASS_DEPTH

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    problems = [_describe(e, schema) for e in errors]
    if not problems:
        config = _fill_defaults(copy.deepcopy(config), schema, schema)
        datasets = config["datasets"]
        for name, ds in datasets.items():
            if "synthetic" not in ds:
                for key in ("annotations", "images"):
                    if key not in ds:
                        problems.append(f"datasets.{name}: {key!r} is required unless the dataset is synthetic")
                problems += _hourglass_h5_problems(name, ds)
        for name, exp in config["experiments"].items():
            if exp["dataset"] not in datasets:
                problems.append(
                    f"experiments.{name}.dataset: unknown dataset {exp['dataset']!r}; defined: {', '.join(datasets)}"
                )
            training = exp["training"]
            if training["input_size"] != HEATMAP_STRIDE * training["heatmap_size"]:
                problems.append(
                    f"experiments.{name}.training: the models output heatmaps at 1/{HEATMAP_STRIDE} "
                    f"of the input; input_size {training['input_size']} needs heatmap_size "
                    f"{training['input_size'] / HEATMAP_STRIDE:g}"
                )
            elif training["heatmap_size"] % 2**HOURGLASS_DEPTH:
                problems.append(
                    f"experiments.{name}.training: heatmap_size {training['heatmap_size']} must be a "
                    f"multiple of {2**HOURGLASS_DEPTH} (an hourglass halves it {HOURGLASS_DEPTH} times), "
                    f"i.e. input_size a multiple of {HEATMAP_STRIDE * 2**HOURGLASS_DEPTH}"
                )
        for name, ds in datasets.items():
            problems += [
                f"datasets.{name}.{key}: for COCO-format files only (format is {ds['format']!r})"
                for key in ("flip_pairs", "oks_sigmas", "min_keypoints")
                if key in ds and ds["format"] != "coco"
            ]
            if ds.get("reference_predictions") and ds["format"] != "mpii":
                problems.append(
                    f"datasets.{name}.reference_predictions: published reference predictions are "
                    f"drawn on the PCKh chart, for MPII-format datasets only (format is {ds['format']!r})"
                )
        for name in config["default_experiments"]:
            if name not in config["experiments"]:
                problems.append(f"default_experiments: unknown experiment {name!r}")
    if problems:
        raise UserError(f"invalid configuration in {source}:\n  " + "\n  ".join(problems))
    return config


def load_config(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UserError(f"config file {path} does not exist")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise UserError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"config file {path}: expected a mapping with 'datasets' and 'experiments'")
    return validate_config(raw, source=str(path))


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
