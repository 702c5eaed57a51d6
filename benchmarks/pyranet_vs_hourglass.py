"""PyraNet against the hourglass: validation PCKh@0.5 per epoch, several seeds, one recipe.

Both models are trained by `pose-pipeline train --settings JSON` (the code the Snakemake rule
runs) with one experiment's recipe (default: `demo` in config/config.yaml, validated every
epoch), the same stacks, blocks and features; only `model.arch` (and PyraNet's `prm`) and the
seed differ. Runs go seed by seed (every model's seed 0 first, then seed 1, ...), so a run cut
short still compares like with like; a run whose log.csv already holds every epoch is read,
not retrained, so the script can be rerun to add seeds.

    PYTHONPATH=. python benchmarks/pyranet_vs_hourglass.py --epochs 10 --seeds 0,1,2 \\
        --out results/benchmarks/pyranet_vs_hourglass

The stores are the experiment's dataset's (`results/stores/<dataset>/{train,val}.zarr`); when
they are absent they are built once by `snakemake --cores 2 <the two stores>`. Prints, per epoch,
each run's validation PCKh@0.5 and, per model, the mean and spread (max - min) over the seeds,
then the last epoch's ratio PyraNet / hourglass.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402

from pose_pipeline.config.schema import experiment_settings, load_config  # noqa: E402


def run_settings(base: dict, arch: str, prm: str, seed: int, epochs: int) -> dict:
    """The experiment's settings with this run's model family, seed and epochs; validated every epoch."""
    settings = json.loads(json.dumps(base))
    model = {k: v for k, v in settings["model"].items() if k != "prm"}
    model["arch"] = arch
    if arch == "pyranet":
        model["prm"] = prm
    settings["model"] = model
    settings["training"].update(seed=seed, epochs=epochs)
    settings["evaluation"]["validate_every"] = 1
    settings["name"] = f"{settings['name']}-{arch}-seed{seed}"
    return settings


def read_scores(log_path: Path) -> list[tuple[float, float]]:
    """(val_score, val_loss) per epoch of a log.csv, in epoch order."""
    if not log_path.is_file():
        return []
    with open(log_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_score")]
    return [(float(r["val_score"]), float(r["val_loss"])) for r in rows]


def train_once(settings: dict, stores: tuple[Path, Path], out: Path, device: str) -> float:
    """Train one run unless its log already holds every epoch; the wall seconds spent."""
    if len(read_scores(out / "log.csv")) >= settings["training"]["epochs"]:
        return 0.0
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        "pose-pipeline",
        "train",
        "--settings",
        json.dumps(settings, sort_keys=True),
        "--train-store",
        str(stores[0]),
        "--val-store",
        str(stores[1]),
        "--out",
        str(out),
        "--device",
        device,
        "--no-progress",
    ]
    start = time.perf_counter()
    with open(out / "train.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def ensure_stores(dataset: str) -> tuple[Path, Path]:
    stores = tuple(Path(f"results/stores/{dataset}/{split}.zarr") for split in ("train", "val"))
    if not all(s.exists() for s in stores):
        subprocess.run(["snakemake", "--cores", "2", *map(str, stores)], check=True)
    return stores


def summarise(curves: dict[str, dict[int, list[tuple[float, float]]]], epochs: int) -> None:
    """Per-epoch table: every run's PCKh@0.5, then each model's mean and spread over seeds."""
    names = list(curves)
    header = ["epoch"]
    for name in names:
        header += [f"{name} s{seed}" for seed in curves[name]] + [f"{name} mean", f"{name} spread"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for epoch in range(epochs):
        cells = [str(epoch + 1)]
        for name in names:
            values = [c[epoch][0] for c in curves[name].values() if len(c) > epoch]
            cells += [f"{c[epoch][0]:.1f}" if len(c) > epoch else "" for c in curves[name].values()]
            cells += [f"{statistics.mean(values):.1f}", f"{max(values) - min(values):.1f}"] if values else ["", ""]
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "first validation loss per run: "
        + "; ".join(f"{name} s{seed} {c[0][1]:.5g}" for name in names for seed, c in curves[name].items() if c)
    )
    finals = {n: [c[-1][0] for c in curves[n].values() if len(c) >= epochs] for n in names}
    if len(names) == 2 and all(finals.values()):
        ratio = statistics.mean(finals[names[1]]) / statistics.mean(finals[names[0]])
        print(f"epoch {epochs}: {names[1]} / {names[0]} = {100 * ratio:.1f} % of the mean PCKh@0.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, run in this order")
    parser.add_argument("--prm", default="B", help="PyraNet's PRM variant")
    parser.add_argument("--models", default="hourglass,pyranet", help="which of hourglass, pyranet to train")
    parser.add_argument("--out", default="results/benchmarks/pyranet_vs_hourglass")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--summary-only", action="store_true", help="read the logs already there, train nothing")
    args = parser.parse_args()

    base = experiment_settings(load_config(args.config), args.experiment)
    stores = None if args.summary_only else ensure_stores(base["dataset"])
    seeds = [int(s) for s in args.seeds.split(",")]
    shape = {k: base["model"].get(k) for k in ("stacks", "blocks", "features")}
    print(
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); recipe: experiment {args.experiment!r}, {shape}, "
        f"training {json.dumps({**base['training'], 'epochs': args.epochs, 'seed': seeds}, sort_keys=True)}",
        flush=True,
    )
    names = {"hourglass": "hourglass", "pyranet": f"pyranet-{args.prm}"}
    models = {names[arch]: arch for arch in ("hourglass", "pyranet") if arch in args.models.split(",")}
    curves: dict[str, dict[int, list]] = {name: {} for name in models}
    for seed in seeds:
        for name, arch in models.items():
            out = Path(args.out) / f"{name}-seed{seed}"
            if not args.summary_only:
                settings = run_settings(base, arch, args.prm, seed, args.epochs)
                seconds = train_once(settings, stores, out, args.device)
                done = f"trained in {seconds:.0f} s" if seconds else "log already complete"
                print(f"{name} seed {seed}: {done}", flush=True)
            curves[name][seed] = read_scores(out / "log.csv")[: args.epochs]
    summarise(curves, args.epochs)


if __name__ == "__main__":
    main()
