"""Where CPU training time goes, and which settings buy speed: variants of the demo's training
step timed side by side, interleaved step by step in one process, on the demo store.

    PYTHONPATH=. python benchmarks/cpu_train_settings.py --store results/stores/demo/train.zarr \\
        --val-store results/stores/demo/val.zarr --steps 30 \\
        --variant base= --variant 'threads=1' --variant 'channels_last=0' --variant 'batch_size=32'

A variant is `name=key:value,key:value` (or `key:value,...`, named after itself; `base=` is the
experiment unchanged). Keys: `threads` (torch intra-op threads, set before each of its steps),
`channels_last` (0/1: the model's and input's memory format), `compile` (0/1: torch.compile),
and any key of the experiment's `training` or `model` section (`batch_size`, `input_size`,
`heatmap_size`, `stacks`, `features`, ...).

Each variant is a real training run (`training_setup.setup`, `train.run_batches`,
`train.train_step`: the code `pose-pipeline train` runs) kept open side by side; a round runs
`--chunk` steps of each variant in turn, so a noisy neighbour slows every variant alike.
Per variant: median and lower-quartile step wall time split into data (read, augmentation,
warp, targets) and compute (forward, backward, optimiser), images/s from the median, the
process CPU seconds per image (how many of the cores it kept busy), and, with --val-store,
the validation pass (no flip test) per image. The machine's CPU and torch's threads are
printed first; --json writes it all.

`--omp-env default,OMP_WAIT_POLICY=PASSIVE,GOMP_SPINCOUNT=30000` compares how torch's OpenMP
threads wait at barriers, which the runtime reads once when it loads: each round then runs
this script once per setting, in a child process with that one variable set (`default`:
neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT set, libgomp spins 300,000 times before it sleeps),
the variants' steps of all children pooled per setting (`GOMP_SPINCOUNT=30000` is what the
CLI sets). `--busy N` keeps N busy-looping processes running meanwhile: a CPU shared with
other work, where the settings differ most.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_model

OPENMP_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pose_pipeline.config.schema import experiment_settings, load_config  # noqa: E402
from pose_pipeline.data.store import open_store  # noqa: E402
from pose_pipeline.inference.engine import predict_store  # noqa: E402
from pose_pipeline.train import loop as train_module  # noqa: E402
from pose_pipeline.train.setup import setup, wrap_for_training  # noqa: E402
from pose_pipeline.util.devices import World  # noqa: E402

SPEED_KEYS = ("threads", "channels_last", "compile")
MODEL_KEYS = ("stacks", "blocks", "features", "arch")


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.rpartition("=") if "=" in text else ("", "", text)
    pairs = dict(item.split(":", 1) for item in body.split(",") if item)
    return name or body or "base", {k: _number(v) for k, v in pairs.items()}


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def variant_settings(base: dict, changes: dict) -> dict:
    settings = copy.deepcopy(base)
    for key, value in changes.items():
        if key in MODEL_KEYS:
            settings["model"][key] = value
        elif key not in SPEED_KEYS:
            if key not in settings["training"]:
                raise SystemExit(f"unknown key {key!r}")
            settings["training"][key] = value
    settings["training"]["compile"] = bool(changes.get("compile", settings["training"]["compile"]))
    return settings


class Variant:
    """One training run held open: its Run, batch iterator and the times of its steps."""

    def __init__(self, name: str, changes: dict, base: dict, store: str, out: Path):
        self.name, self.changes = name, changes
        self.threads = int(changes.get("threads", torch.get_num_threads()))
        self.settings = variant_settings(base, changes)
        self.run = setup(World(), self.settings, store, None, out, None)
        if not changes.get("channels_last", 1):
            self.run.memory_format = torch.contiguous_format
            self.run.model.to(memory_format=torch.contiguous_format)
        self.run.net = wrap_for_training(self.run)
        self.batches = train_module.run_batches(self.run, 0, 0)
        self.data_ms, self.step_ms, self.cpu_s, self.images = [], [], 0.0, 0
        self.val_ms_per_image: list[float] = []

    @property
    def batch_size(self) -> int:
        return self.settings["training"]["batch_size"]

    def steps(self, count: int, record: bool = True) -> None:
        torch.set_num_threads(self.threads)
        self.run.net.train()
        for _ in range(count):
            cpu0, t0 = time.process_time(), time.perf_counter()
            batch = next(self.batches)
            t1 = time.perf_counter()
            loss = train_module.train_step(self.run, batch)
            float(loss.detach())  # on the CPU the step is done anyway; kept for devices
            t2 = time.perf_counter()
            if record:
                self.data_ms.append((t1 - t0) * 1e3)
                self.step_ms.append((t2 - t1) * 1e3)
                self.cpu_s += time.process_time() - cpu0
                self.images += self.batch_size

    def validate(self, val) -> None:
        torch.set_num_threads(self.threads)
        started = time.perf_counter()
        predict_store(
            self.run.model,
            val,
            self.run.codec,
            flip_test=False,
            batch_size=self.run.evaluation["batch_size"],
            device=self.run.world.device,
        )
        self.val_ms_per_image.append((time.perf_counter() - started) * 1e3 / len(val))

    def raw(self) -> dict:
        return {
            "name": self.name,
            "changes": self.changes,
            "batch_size": self.batch_size,
            "data_ms": self.data_ms,
            "step_ms": self.step_ms,
            "cpu_s": self.cpu_s,
            "val_ms_per_image": self.val_ms_per_image,
            "openmp_env": {name: os.environ.get(name) for name in OPENMP_WAIT_VARIABLES},
        }


def summarise(raw: dict) -> dict:
    """Medians of a variant's timed steps (pooled over children, with --omp-env)."""
    total = [d + s for d, s in zip(raw["data_ms"], raw["step_ms"])]
    median = statistics.median(total)
    row = {
        "name": raw["name"],
        "changes": raw["changes"],
        "steps": len(total),
        "batch_size": raw["batch_size"],
        "median_ms": median,
        "q25_ms": _quantile(total, 0.25),
        "data_median_ms": statistics.median(raw["data_ms"]),
        "compute_median_ms": statistics.median(raw["step_ms"]),
        "images_per_s": raw["batch_size"] * 1e3 / median,
        "cores_busy": raw["cpu_s"] / (sum(total) / 1e3),
        "openmp_env": raw["openmp_env"],
    }
    if raw["val_ms_per_image"]:
        row["val_ms_per_image"] = statistics.median(raw["val_ms_per_image"])
    return row


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def machine() -> dict:
    return {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="training store (the demo's)")
    parser.add_argument("--val-store", help="also time a validation pass per round and variant")
    parser.add_argument("--config", default=str(ROOT / "config/config.yaml"))
    parser.add_argument("--experiment", default="demo")
    parser.add_argument("--variant", action="append", default=[], help="name=key:value,... (repeat)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant (per policy and round)")
    parser.add_argument("--chunk", type=int, default=3, help="steps of one variant before the next one's")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument(
        "--omp-env",
        help="comma-separated settings to compare, each 'default' (OMP_WAIT_POLICY and GOMP_SPINCOUNT unset) "
        "or VAR=VALUE; one child process each per round",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of children (with --omp-env)")
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes kept running while timing")
    parser.add_argument("--raw-json", help=argparse.SUPPRESS)  # a child's raw step times
    parser.add_argument("--json", help="write the report here")
    return parser.parse_args(argv)


def time_variants(args) -> list[dict]:
    """The raw step times of each variant, interleaved in this process."""
    base = experiment_settings(load_config(args.config), args.experiment)
    val = open_store(args.val_store) if args.val_store else None
    with tempfile.TemporaryDirectory() as tmp:
        variants = [
            Variant(*parse_variant(text), base, args.store, Path(tmp) / str(i))
            for i, text in enumerate(args.variant or ["base="])
        ]
        for variant in variants:
            variant.steps(args.warmup, record=False)
        rounds = -(-args.steps // args.chunk)
        for round_ in range(rounds):
            for variant in variants:
                variant.steps(args.chunk)
            print(
                f"round {round_ + 1}/{rounds}: "
                + ", ".join(f"{v.name} {statistics.median(v.step_ms):.0f} ms" for v in variants),
                file=sys.stderr,
                flush=True,
            )
        if val is not None:
            for _ in range(2):
                for variant in variants:
                    variant.validate(val)
        for variant in variants:
            variant.batches.close()
        return [variant.raw() for variant in variants]


def time_policies(args, argv: list[str]) -> list[dict]:
    """Per round, one child per OpenMP wait setting; each variant's steps pooled per setting."""
    pooled: dict[str, dict] = {}
    for _ in range(args.rounds):
        for policy in args.omp_env.split(","):
            env = {k: v for k, v in os.environ.items() if k not in OPENMP_WAIT_VARIABLES}
            if policy != "default":
                name, _, value = policy.partition("=")
                env[name] = value
            with tempfile.NamedTemporaryFile(suffix=".json") as raw_file:
                child = [a for a in argv if not a.startswith(("--omp-env", "--busy"))]
                subprocess.run([sys.executable, __file__, *child, "--raw-json", raw_file.name], env=env, check=True)
                for raw in json.loads(Path(raw_file.name).read_text()):
                    name = f"{policy} {raw['name']}"
                    if name not in pooled:
                        pooled[name] = {**raw, "name": name}
                    else:
                        for key in ("data_ms", "step_ms", "val_ms_per_image"):
                            pooled[name][key] += raw[key]
                        pooled[name]["cpu_s"] += raw["cpu_s"]
    return list(pooled.values())


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    argv = _joined(argv)
    info = machine()
    if args.raw_json:
        Path(args.raw_json).write_text(json.dumps(time_variants(args)))
        return {}
    print(json.dumps(info), flush=True)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        raws = time_policies(args, argv) if args.omp_env else time_variants(args)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    rows = [summarise(raw) for raw in raws]
    print("| variant | batch | step ms median (q25) | data ms | compute ms | images/s | cores busy | val ms/image |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['batch_size']} | {r['median_ms']:.0f} ({r['q25_ms']:.0f}) | "
            f"{r['data_median_ms']:.1f} | {r['compute_median_ms']:.0f} | {r['images_per_s']:.1f} | "
            f"{r['cores_busy']:.2f} | {r.get('val_ms_per_image', float('nan')):.2f} |"
        )
    report = {"machine": info, "args": vars(args), "variants": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


def _joined(argv: list[str]) -> list[str]:
    """`--omp-env X` and `--busy N` as one `--omp-env=X` / `--busy=N` item (what the child leaves out)."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("--omp-env", "--busy"):
            out.append(f"{a}={argv[i + 1]}")
            skip = True
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    main()
