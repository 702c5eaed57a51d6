"""The workflow on a real SLURM cluster through `workflow/profiles/slurm`.

A single-node SLURM (slurmctld + slurmd + munge, two fake GPUs) is started on this machine by
`.ci/slurm-localhost.sh` and torn down afterwards. The tiny demo DAG of test_workflow.py runs
with the cluster profile: every rule is an sbatch job, the train rule's GPU request is
scheduled on a fake GPU (training itself runs on the CPU). Then a train job cancelled with
`scancel` mid-run fails the run, and the next run redoes it, resuming from its checkpoint.

Needs root (it installs the Debian packages when missing and starts daemons); skips with the
reason otherwise. About two minutes, most of it the executor's status polling.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import OUTPUTS, REFERENCE, TINY, write_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / ".ci" / "slurm-localhost.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
INSTALL_FAILED = 3  # slurm-localhost.sh's exit status when the packages cannot be installed

pytestmark = pytest.mark.slurm

SMALL = {"cpus": 2, "mem_mb": 1000, "runtime": 15}
CONFIG = copy.deepcopy(TINY)
CONFIG["datasets"]["demo"]["resources"] = dict(SMALL)
CONFIG["experiments"]["tiny"]["resources"] = {**SMALL, "gpus": 1}
# Built only by the cancellation test: long enough to be cancelled between two epochs.
CONFIG["experiments"]["slow"] = copy.deepcopy(CONFIG["experiments"]["tiny"])
CONFIG["experiments"]["slow"]["training"].update(epochs=40, checkpoint_every=1000)
JOBS = {"demo_data": 1, "convert": 2, "train": 1, "predict": 1}  # the rest are the Snakefile's localrules
LOCAL = ["score", "plot", "examples", "compare", "summary"] + (["score_reference"] if REFERENCE.exists() else [])
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+)")


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("needs root to install and start a local SLURM cluster")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')")
    started = subprocess.run([str(CLUSTER), "start"], capture_output=True, text=True, timeout=900)
    if started.returncode == INSTALL_FAILED:
        pytest.skip(f"SLURM packages cannot be installed: {started.stderr.strip()}")
    try:
        assert started.returncode == 0, f"{CLUSTER} start failed:\n{started.stdout}{started.stderr}"
        yield
    finally:
        stopped = subprocess.run([str(CLUSTER), "stop"], capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, f"{CLUSTER} stop failed:\n{stopped.stdout}{stopped.stderr}"


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    # SIGINT on timeout: the executor then cancels its SLURM jobs (SIGTERM would wait for them).
    return [
        "timeout",
        "-s",
        "INT",
        "-k",
        "30",
        "600",
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(PROFILE),
        # poll from 1 s on (the profile's 5 s is for real clusters); keep the job logs
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--slurm-keep-successful-logs",
        *args,
    ]


def environment() -> dict:
    # The jobs run `pose-pipeline` from this checkout (sbatch --export=ALL passes this on).
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(workdir, *args), capture_output=True, text=True, env=environment(), timeout=700
    )


def describe(done: subprocess.CompletedProcess, workdir: Path) -> str:
    logs = "".join(
        f"\n--- {p}\n{p.read_text()[-2000:]}"
        for p in sorted(workdir.glob("results/logs/*/*.log")) + sorted(workdir.glob(".snakemake/slurm_logs/**/*.log"))
    )
    return f"exit status {done.returncode}\n{(done.stdout + done.stderr)[-6000:]}{logs}"


def slurm_job(job_id: str) -> dict:
    """`scontrol show job` as a dict (finished jobs stay visible for MinJobAge, 300 s)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def rule_of(job: dict) -> str:
    # The executor puts "rule_<name>_wildcards_<values>" in the job's comment.
    return re.match(r"rule_(.+?)(_wildcards_|$)", job["Comment"]).group(1)


def snakefile_printing_whole_jobs(folder: Path) -> Path:
    """The workflow's Snakefile less the long rules' one-line `message:`, which Snakemake
    prints in place of a job's block: a dry run then shows every job's resources."""
    snakefile = folder / "Snakefile.whole-jobs"
    snakefile.write_text(
        f"include: {str(REPO / 'Snakefile')!r}\n\nfor _rule in workflow.rules:\n    _rule.message = None\n"
    )
    return snakefile


def dry_run_jobs(output: str) -> dict[tuple[str, str], tuple[dict, str]]:
    """(rule, wildcards) -> (resources, shell command) from `snakemake -n -p` output."""
    jobs = {}
    for block in output.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        if resources and shell:
            values = dict(item.split("=", 1) for item in resources.group(1).split(", "))
            jobs[rule, wildcards.group(1) if wildcards else ""] = values, shell.group(1)
    return jobs


def test_rules_ask_for_the_configured_resources(tmp_path):
    """No cluster needed: what each rule asks for, and --nproc only for more than one GPU."""
    config = copy.deepcopy(CONFIG)
    config["experiments"]["tiny"]["resources"] = {"gpus": 2, "cpus": 3, "mem_mb": 1234, "runtime": 56}
    write_config(tmp_path, config)
    snakefile = snakefile_printing_whole_jobs(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(snakefile),
            "--directory",
            str(tmp_path),
            "--cores",
            "4",
            "--dry-run",
            "--printshellcmds",
            "results/predict/tiny/preds.mat",
            "results/train/slow/model.pt",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = dry_run_jobs(done.stdout)
    resources, shell = jobs["train", "experiment=tiny"]
    assert {k: resources.get(k) for k in ("gpu", "cpus_per_task", "mem_mb", "runtime")} == {
        "gpu": "2",
        "cpus_per_task": "3",
        "mem_mb": "1234",
        "runtime": "56",
    }
    assert shell.rstrip().endswith("--out results/train/tiny --nproc 2 > results/logs/train/tiny.log 2>&1")
    resources, shell = jobs["train", "experiment=slow"]
    assert resources["gpu"] == "1" and "--nproc" not in shell  # one GPU: the single-process command
    resources, _ = jobs["predict", "experiment=tiny"]
    assert resources["gpu"] == "1" and resources["cpus_per_task"] == "3"  # prediction is one process
    resources, shell = jobs["convert", "dataset=demo, split=train"]
    assert {k: resources.get(k) for k in ("cpus_per_task", "mem_mb", "runtime")} == {
        "cpus_per_task": "2",
        "mem_mb": "1000",
        "runtime": "15",
    }
    assert "--workers 2 " in shell


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    write_config(workdir, CONFIG)
    done = run_snakemake(workdir)
    assert done.returncode == 0, describe(done, workdir)
    return workdir, done.stdout + done.stderr


@pytest.mark.slow
def test_heavy_rules_run_as_slurm_jobs_and_light_ones_beside_snakemake(cluster_run):
    workdir, output = cluster_run
    for path in OUTPUTS:
        assert (workdir / path).exists(), path
    assert sorted(set(re.findall(r"^localrule (\w+):", output, re.MULTILINE)) - {"all"}) == sorted(LOCAL)
    # a submitted job's one line, printed by Snakemake on the login node: where its log is
    assert "train (experiment=tiny): follow its log with: tail -f results/logs/train/tiny.log" in output
    job_ids = SUBMITTED.findall(output)
    assert len(job_ids) == sum(JOBS.values()), output[-4000:]
    jobs = {job_id: slurm_job(job_id) for job_id in job_ids}
    rules = [rule_of(job) for job in jobs.values()]
    assert {rule: rules.count(rule) for rule in rules} == JOBS
    for job_id, job in jobs.items():
        assert job["JobState"] == "COMPLETED", (job_id, job)
        # every job's SLURM log is named by its job id
        assert list(workdir.glob(f".snakemake/slurm_logs/rule_{rule_of(job)}/**/{job_id}.log")), job_id
    train = next(job for job in jobs.values() if rule_of(job) == "train")
    # the experiment's resources reached sbatch: a GPU, 2 CPUs, 1000 MB, 15 minutes
    assert "gpu:1" in train.get("TresPerJob", ""), train
    assert train["NumCPUs"] == "2" and train["MinMemoryNode"] == "1000M" and train["TimeLimit"] == "00:15:00", train
    convert = next(job for job in jobs.values() if rule_of(job) == "convert")
    assert convert["NumCPUs"] == "2" and "gpu" not in convert.get("TresPerJob", ""), convert


@pytest.mark.slow
def test_second_run_submits_nothing(cluster_run):
    workdir, _ = cluster_run
    done = run_snakemake(workdir)
    assert done.returncode == 0, describe(done, workdir)
    assert "Nothing to be done" in done.stdout + done.stderr
    assert not SUBMITTED.findall(done.stdout + done.stderr)


@pytest.mark.slow
def test_cancelled_train_job_is_redone_by_the_next_run(cluster_run):
    workdir, _ = cluster_run
    target = "results/train/slow/model.pt"
    checkpoint = workdir / "results/train/slow/checkpoints/last.pt"
    run = subprocess.Popen(
        snakemake_command(workdir, target),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
    )
    try:
        # Cancel once the job is RUNNING and has finished an epoch (its checkpoint exists).
        deadline, job_id = time.monotonic() + 300, None
        while time.monotonic() < deadline and run.poll() is None:
            queue = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True, text=True, timeout=30
            ).stdout.split()
            running = dict(zip(queue[::2], queue[1::2]))
            job_id = next((i for i, comment in running.items() if comment.startswith("rule_train_")), None)
            if job_id and checkpoint.exists():
                break
            time.sleep(0.2)
        assert job_id and checkpoint.exists(), "the train job never ran (or finished too soon to be cancelled)"
        subprocess.run(["scancel", job_id], check=True, timeout=30)
        output, _ = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.send_signal(2)
            run.communicate(timeout=60)
    assert run.returncode != 0, output[-4000:]
    assert not (workdir / target).exists()
    assert slurm_job(job_id)["JobState"] == "CANCELLED"

    done = run_snakemake(workdir, target)
    assert done.returncode == 0, describe(done, workdir)
    assert (workdir / target).exists()
    [new_id] = SUBMITTED.findall(done.stdout + done.stderr)
    assert new_id != job_id
    # the redone job continued from the cancelled one's checkpoint
    assert "resumed from" in (workdir / "results/logs/train/slow.log").read_text()
