"""Load and validate the workflow config once, with messages a person can act on.

The JSON schema (workflow/schemas/config.schema.yaml, shipped in the package as
`pose_pipeline/config.schema.yaml`) is the single description of every key and default;
`validate_config` fills the defaults in and adds the checks a schema cannot express (an
experiment naming a dataset that does not exist, say). The stages' own defaults (argparse,
`convert()`, `demo_data.generate()`, the model configs) come from `schema_defaults`, so a
default is written once, in the schema. The lookups only the Snakemake rules use live in
`pose_pipeline.workflow_config`.
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
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate against the schema, fill defaults, cross-check names; returns a new dict.

    Raises UserError with every problem, one per line, each naming the key.
    """
    import jsonschema

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
        for name, exp in config["experiments"].items():
            if exp["dataset"] not in datasets:
                problems.append(f"experiments.{name}.dataset: unknown dataset {exp['dataset']!r}; "
                                f"defined: {', '.join(datasets)}")
            training = exp["training"]
            if training["input_size"] % training["heatmap_size"]:
                problems.append(f"experiments.{name}.training: input_size {training['input_size']} is "
                                f"not a multiple of heatmap_size {training['heatmap_size']}")
            elif training["input_size"] // training["heatmap_size"] != 4:
                problems.append(f"experiments.{name}.training: the models output heatmaps at 1/4 of "
                                f"the input; input_size {training['input_size']} needs heatmap_size "
                                f"{training['input_size'] // 4}")
        for name, ds in datasets.items():
            if ds.get("reference_predictions") and ds["format"] != "mpii":
                problems.append(f"datasets.{name}.reference_predictions: published reference predictions are "
                                f"drawn on the PCKh chart, for MPII-format datasets only (format is {ds['format']!r})")
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


def synthetic_paths(name: str, results: str = "results") -> dict:
    """Where the built-in generator writes a synthetic dataset."""
    root = f"{results}/data/{name}"
    return {
        "root": root,
        "annotations": f"{root}/mpii_release.mat",
        "images": f"{root}/images",
        "val_split": f"{root}/val_split.mat",
    }


def dataset_sources(config: dict, name: str, split: str | None = None) -> dict:
    """Annotation, image and split paths of a dataset (generated ones for synthetic data).

    With `split="val"` and a `val_annotations` file, the validation split comes from that
    file (and `val_images`) instead of the split file.
    """
    ds = config["datasets"][name]
    if "synthetic" in ds:
        return {k: v for k, v in synthetic_paths(name).items() if k != "root"}
    if split == "val" and ds.get("val_annotations"):
        return {"annotations": ds["val_annotations"], "images": ds.get("val_images") or ds["images"]}
    return {key: ds[key] for key in ("annotations", "images", "val_split") if ds.get(key)}


def converter_split(config: dict, name: str, split: str) -> str:
    """The converter's `--split` for the store of `split` ("train" or "val").

    With `val_annotations`, LSP and COCO files are each taken whole ("all"): the split is
    the file (a 300-image LSP sample, say, has no train/val halves of its own). MPII keeps
    the split: the release .mat selects training people by `img_train`, and the hourglass
    .h5 files are taken whole anyway.
    """
    ds = config["datasets"][name]
    if ds.get("val_annotations") and ds["format"] in ("lsp", "coco"):
        return "all"
    return split


def converter_settings(config: dict, name: str) -> dict:
    """The convert rule's parameters for a dataset (a change reruns conversion)."""
    ds = config["datasets"][name]
    settings = {key: ds[key] for key in ("format", "canvas_size", "context", "shard_size", "on_bad_sample")}
    settings["extra"] = f"--min-keypoints {ds['min_keypoints']}" if ds.get("min_keypoints") else ""
    return settings


def check_dataset_files(config: dict, name: str) -> None:
    """For a real dataset, one clear message for each file the config names but is absent."""
    ds = config["datasets"][name]
    if "synthetic" in ds:
        return
    keys = ("annotations", "images", "val_split", "val_annotations", "val_images")
    missing = [f"datasets.{name}.{key}: {ds[key]} does not exist"
               for key in keys if ds.get(key) and not Path(ds[key]).exists()]
    if missing:
        raise UserError("dataset files are missing (point the config at your copy):\n  " + "\n  ".join(missing))


def experiment_settings(config: dict, name: str) -> dict:
    """Everything that determines an experiment's training: model, training, joint set."""
    exp = config["experiments"][name]
    return {"name": name, "dataset": exp["dataset"], "model": exp["model"],
            "training": exp["training"], "device": config["device"]}


def experiment_settings_json(config: dict, name: str) -> str:
    return json.dumps(experiment_settings(config, name), sort_keys=True)


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def summary_entries(config: dict, names, paths: dict) -> list[dict]:
    """What `pose-pipeline summary` needs of each experiment: its config (dataset, format,
    arch, stacks) and its files, `paths` mapping scores / log / model to templates with
    `{experiment}`."""
    entries = []
    for name in names:
        exp = config["experiments"][name]
        entries.append({"name": name, "dataset": exp["dataset"],
                        "format": config["datasets"][exp["dataset"]]["format"],
                        "arch": exp["model"]["arch"], "stacks": exp["model"]["stacks"],
                        **{key: template.format(experiment=name) for key, template in paths.items()}})
    return entries


def reference_datasets(config: dict, names) -> list[str]:
    """Datasets of the experiments `names` that have reference predictions, in order."""
    datasets = []
    for name in names:
        dataset = config["experiments"][name]["dataset"]
        if config["datasets"][dataset].get("reference_predictions") and dataset not in datasets:
            datasets.append(dataset)
    return datasets


def reference_ground_truth(config: dict, dataset: str, val_store: str) -> str:
    """What a dataset's reference predictions are scored against: the reference file itself
    when it holds the reference ground truth (detections_our_format.mat), else `val_store`."""
    from pose_pipeline.score import holds_reference_ground_truth

    path = config["datasets"][dataset]["reference_predictions"]
    if not Path(path).exists():
        raise UserError(f"datasets.{dataset}.reference_predictions: {path} does not exist")
    return path if holds_reference_ground_truth(path) else val_store


def original_images(config: dict, dataset: str) -> str:
    """The folder holding a dataset's original validation images (store image names are
    relative to it)."""
    return dataset_sources(config, dataset, "val")["images"]
