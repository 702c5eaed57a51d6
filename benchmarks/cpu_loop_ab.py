"""CPU training with and without the loader thread: the demo's first epochs, serial against
read-ahead, on the demo store.

    PYTHONPATH=. python benchmarks/cpu_loop_ab.py --store results/stores/demo/train.zarr [--epochs 3]

Trains the `demo` experiment of config/config.yaml (2 torch threads, CPU) for --epochs epochs
twice per round, once with the batches prepared in the caller's thread (depth 0, what the CPU
uses) and once PREFETCH_DEPTH ahead in a background thread (what an accelerator uses), two
rounds interleaved; prints each epoch's images/s from the training log.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from pose_pipeline.config.schema import experiment_settings, load_config
from pose_pipeline.train import loop as train_module


def one_run(settings: dict, store: str, epochs: int, depth: int) -> tuple[float, list[float]]:
    train_module.depth_for = lambda device, default: depth  # what run_batches asks for
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        train_module.train(settings, store, None, out, device="cpu", epochs=epochs, progress=False)
        wall = time.perf_counter() - started
        rows = list(csv.DictReader(open(Path(out) / "log.csv")))
    return wall, [float(r["images_per_s"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    settings = experiment_settings(load_config(args.config), "demo")
    settings["training"]["num_threads"] = 2
    print("| round | loop | wall s | images/s per epoch |\n|---|---|---|---|")
    for round_ in (1, 2):
        for name, depth in (
            ("serial (CPU default)", 0),
            (f"read-ahead {train_module.PREFETCH_DEPTH}", train_module.PREFETCH_DEPTH),
        ):
            wall, rates = one_run(settings, args.store, args.epochs, depth)
            print(f"| {round_} | {name} | {wall:.1f} | {', '.join(f'{r:.1f}' for r in rates)} |", flush=True)


if __name__ == "__main__":
    main()
