# Names and lookups shared by the rules; the functions themselves live in pose_pipeline.config.
from pose_pipeline import config as ppc

PLOTS = ["curves", "pckh", "skeletons", "joints"]
SYNTHETIC = [name for name, ds in config["datasets"].items() if "synthetic" in ds]


def _alternatives(names):
    return "|".join(names) if names else "(?!)"  # a regex that matches nothing


wildcard_constraints:
    dataset=_alternatives(list(config["datasets"])),
    synthetic=_alternatives(SYNTHETIC),
    experiment=_alternatives(list(config["experiments"])),
    split="train|val",


def dataset_of(wildcards):
    return config["experiments"][wildcards.experiment]["dataset"]


def store_path(dataset, split):
    return f"results/stores/{dataset}/{split}.zarr"
