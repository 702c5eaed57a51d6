# Names and lookups shared by the rules; the functions themselves live in pose_pipeline.workflow_lookups.
import re

from pose_pipeline import workflow_lookups as ppc

PLOTS = ["curves", "pckh", "skeletons", "joints", "examples"]
# Per-experiment files that the comparison rules (summary, compare) read.
EXPERIMENT_FILES = {
    "scores": "results/pckh/{experiment}.json",
    "log": "results/train/{experiment}/log.csv",
    "model": "results/train/{experiment}/model.pt",
}
COMPARED = config["default_experiments"]  # the experiments summary.csv and pckh_all.png put side by side
SYNTHETIC = [name for name, ds in config["datasets"].items() if "synthetic" in ds]
# The one line Snakemake prints when a long job starts (in place of the rule's block, locally
# and on a cluster): where its progress goes and how to follow it.
FOLLOW_LOG = "{rule} ({wildcards}): follow its log with: tail -f {log}"


def _alternatives(names):
    # Exactly the configured names (each matches the schema's name pattern), a "." in one literal;
    # a regex that matches nothing where there are none.
    return "|".join(re.escape(name) for name in names) if names else "(?!)"


wildcard_constraints:
    dataset=_alternatives(list(config["datasets"])),
    synthetic=_alternatives(SYNTHETIC),
    experiment=_alternatives(list(config["experiments"])),
    imageset=_alternatives(list(config["imagesets"])),
    sweep=_alternatives(list(config["sweeps"])),
    split="train|val|test",


def dataset_of(wildcards):
    return config["experiments"][wildcards.experiment]["dataset"]


def store_path(dataset, split):
    return f"results/stores/{dataset}/{split}.zarr"


def convert_inputs(wildcards):
    # A real dataset's files are checked here, so only datasets a target needs must exist.
    ppc.check_dataset_files(config, wildcards.dataset)
    return ppc.dataset_sources(config, wildcards.dataset, wildcards.split)


def score_inputs(wildcards):
    dataset = dataset_of(wildcards)
    inputs = {"gt": store_path(dataset, "val")}
    if config["datasets"][dataset]["format"] == "coco":
        # OKS AP ranks people by confidence (mean heatmap peak), which only the CSV holds,
        # and matches them to the annotation file the store was converted from.
        inputs["preds"] = f"results/predict/{wildcards.experiment}/preds.csv"
        inputs["annotations"] = ppc.dataset_sources(config, dataset, "val")["annotations"]
    else:
        inputs["preds"] = f"results/predict/{wildcards.experiment}/preds.mat"
    return inputs


# Cluster resources (workflow/profiles/slurm maps gpu, cpus_per_task, mem_mb and runtime to
# sbatch --gpus, -c, --mem and -t); the values come from the config's `resources:` sections.
def experiment_resource(key):
    return lambda wildcards: config["experiments"][wildcards.experiment]["resources"][key]


def dataset_resource(key):
    return lambda wildcards: config["datasets"][wildcards.dataset]["resources"][key]


def predict_gpus(wildcards):
    return min(config["experiments"][wildcards.experiment]["resources"]["gpus"], 1)  # one process


def nproc_flag(wildcards):
    # More than one GPU: one training process per GPU under torchrun (`pose-pipeline train
    # --nproc`). One or none: no flag, so the single-process command is unchanged. A list: the
    # shell's {params.nproc:q} quotes each word, and renders no words at all for [].
    gpus = config["experiments"][wildcards.experiment]["resources"]["gpus"]
    return ["--nproc", str(gpus)] if gpus > 1 else []
