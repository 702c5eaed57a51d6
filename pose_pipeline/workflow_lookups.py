"""The Snakemake rules' lookups into the validated config (`ppc` in workflow/rules/common.smk).

Where a dataset's files are (generated ones for synthetic data), the convert rule's settings
and split, the experiments and reference files the comparison rules read. Only the workflow
calls these; loading and validating the config is `pose_pipeline.config.schema`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pose_pipeline.config.schema import experiment_settings, schema_defaults
from pose_pipeline.config.sweeps import grid_points
from pose_pipeline.errors import UserError


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
    file (and `val_images`) instead of the split file. `split="test"` (MPII's test people) reads
    the annotations and images alone.
    """
    ds = config["datasets"][name]
    if "synthetic" in ds:
        sources = {k: v for k, v in synthetic_paths(name).items() if k != "root"}
    elif split == "val" and ds.get("val_annotations"):
        return {"annotations": ds["val_annotations"], "images": ds.get("val_images") or ds["images"]}
    else:
        sources = {key: ds[key] for key in ("annotations", "images", "val_split") if ds.get(key)}
    if split == "test":
        sources.pop("val_split", None)
    return sources


def converter_split(config: dict, name: str, split: str) -> str:
    """The converter's `--split` for the store of `split` ("train", "val" or MPII's "test").

    With `val_annotations`, LSP, FLIC and COCO files are each taken whole ("all"): the split
    is the file (a 300-image LSP sample, say, has no train/val halves of its own). MPII keeps
    the split: the release .mat selects training people by `img_train`, and an hourglass .h5
    is split by `val_split` when given (else taken whole; config validation refuses a lone
    .h5 that would make validation the training data).
    """
    ds = config["datasets"][name]
    if split != "test" and ds.get("val_annotations") and ds["format"] in ("lsp", "flic", "coco"):
        return "all"
    return split


def converter_settings(config: dict, name: str) -> dict:
    """The convert rule's parameters for a dataset (a change reruns conversion); `extra` is
    the optional command-line words, unquoted (the rule's `{...:q}` quotes each)."""
    ds = config["datasets"][name]
    settings = {key: ds[key] for key in ("format", "canvas_size", "context", "shard_size", "on_bad_sample")}
    extra = ["--min-keypoints", str(ds["min_keypoints"])] if ds.get("min_keypoints") else []
    extra += ["--val-last", str(ds["val_last"])] if ds.get("val_last") else []
    for left, right in ds.get("flip_pairs", []):
        extra += ["--flip-pair", left, right]
    extra.append("--reduced-decode" if ds["reduced_decode"] else "--no-reduced-decode")
    if ds["image_codec"] != schema_defaults("dataset")["image_codec"]:  # stores of the default: no rerun
        extra += ["--image-codec", ds["image_codec"]]
    settings["extra"] = extra
    return settings


def oks_sigmas_option(config: dict, name: str) -> list[str]:
    """The score rule's `--oks-sigmas` words for a COCO-format dataset (none: pycocotools' own)."""
    sigmas = config["datasets"][name].get("oks_sigmas")
    return ["--oks-sigmas", ",".join(repr(float(s)) for s in sigmas)] if sigmas else []


def check_dataset_files(config: dict, name: str) -> None:
    """For a real dataset, one clear message for each file the config names but is absent."""
    ds = config["datasets"][name]
    if "synthetic" in ds:
        return
    keys = ("annotations", "images", "val_split", "val_annotations", "val_images")
    missing = [
        f"datasets.{name}.{key}: {ds[key]} does not exist" for key in keys if ds.get(key) and not Path(ds[key]).exists()
    ]
    if missing:
        raise UserError("dataset files are missing (point the config at your copy):\n  " + "\n  ".join(missing))


def experiment_settings_json(config: dict, name: str) -> str:
    return json.dumps(experiment_settings(config, name), sort_keys=True)


def summary_entries(config: dict, names, paths: dict) -> list[dict]:
    """What `pose-pipeline summary` needs of each experiment: its config (dataset, format,
    arch, stacks) and its files, `paths` mapping scores / log / model to templates with
    `{experiment}`."""
    entries = []
    for name in names:
        exp = config["experiments"][name]
        entries.append(
            {
                "name": name,
                "dataset": exp["dataset"],
                "format": config["datasets"][exp["dataset"]]["format"],
                "arch": exp["model"]["arch"],
                "stacks": exp["model"]["stacks"],
                **{key: template.format(experiment=name) for key, template in paths.items()},
            }
        )
    return entries


def sweep_experiments(config: dict, sweep: str) -> list[str]:
    """The experiments of a sweep's points, in the grid's order."""
    return [name for name, _ in grid_points(sweep, config["sweeps"][sweep]["grid"])]


def sweep_table_entries(config: dict, sweep: str, paths: dict) -> list[dict]:
    """What `pose-pipeline sweep table` needs of each point of a sweep: its experiment, its
    grid values and its files (`paths`: log and scores, templates with `{experiment}`). A value
    added to the grid changes this, and so reruns the table alone."""
    return [
        {"name": name, "settings": point, **{key: paths[key].format(experiment=name) for key in ("log", "scores")}}
        for name, point in grid_points(sweep, config["sweeps"][sweep]["grid"])
    ]


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
    from pose_pipeline.evaluate.ground_truth import holds_reference_ground_truth

    path = config["datasets"][dataset]["reference_predictions"]
    if not Path(path).exists():
        raise UserError(f"datasets.{dataset}.reference_predictions: {path} does not exist")
    return path if holds_reference_ground_truth(path) else val_store


def original_images(config: dict, dataset: str) -> str:
    """The folder holding a dataset's original validation images (store image names are
    relative to it)."""
    return dataset_sources(config, dataset, "val")["images"]


def infer_inputs(config: dict, experiment: str, imageset: str) -> dict:
    """The `infer` rule's inputs: the experiment's model, the image set's images (and boxes);
    for a folder also each image infer reads in it, at any depth (`infer_inputs.folder_images`),
    so that an image added, replaced or removed anywhere below reruns infer."""
    from pose_pipeline.inference.infer_inputs import folder_images

    images = config["imagesets"][imageset]
    folder = Path(images["images"])
    return {
        "model": f"results/train/{experiment}/model.pt",
        "images": images["images"],
        **({"image_files": [str(folder / name) for name in folder_images(folder)]} if folder.is_dir() else {}),
        **({"boxes": images["boxes"]} if images.get("boxes") else {}),
    }


def boxes_option(config: dict, imageset: str) -> list[str]:
    """The infer rule's `--boxes` words (none without boxes), unquoted: the rule quotes each."""
    boxes = config["imagesets"][imageset].get("boxes")
    return ["--boxes", boxes] if boxes else []


def person_score_options(config: dict, imageset: str) -> list[str]:
    """infer's rescoring and OKS-NMS words, unquoted: with boxes only, on which they act."""
    images, defaults = config["imagesets"][imageset], schema_defaults("imageset")
    if not images.get("boxes"):
        return []
    words = []
    for key in ("keypoint_score_threshold", "oks_nms_threshold"):
        words += ["--" + key.replace("_", "-"), str(images.get(key, defaults[key]))]
    return words


def imageset_annotations(config: dict, imageset: str) -> str:
    """The COCO annotations an image set's keypoints.json is scored against (its `annotations`)."""
    annotations = config["imagesets"][imageset].get("annotations")
    if not annotations:
        raise UserError(
            f"imagesets.{imageset}: oks.csv scores its keypoints against COCO annotations: set `annotations`"
        )
    return annotations
