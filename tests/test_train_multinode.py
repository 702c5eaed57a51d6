"""Multi-node training as the SLURM recipe of docs/cluster.md runs it: the recipe's own lines, read from
docs/cluster.md, on two "nodes" of this machine (two torchrun agents, one rank each, c10d
rendezvous on localhost, gloo), against one process with the combined batch."""

from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
import sys

import pytest
from helpers import DDP_ENV as ENV
from helpers import RANK_SCRIPT, REPO_ROOT, WITHOUT_BATCH_STATISTICS, assert_same_weights, settings, state_dict

pytestmark = pytest.mark.slow  # two torchrun agents in subprocesses, then a single process

MARKER = "<!-- multi-node-recipe -->"


def readme_recipe() -> str:
    """The bash block after the marker in docs/cluster.md (the SLURM batch script)."""
    text = (REPO_ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    assert MARKER in text, "docs/cluster.md lost the multi-node recipe marker"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.S)
    return block.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# What SLURM gives the batch script, played on one machine: `scontrol` names the node list's
# first host, and `srun` starts the command once per node (--ntasks-per-node=1), in parallel,
# failing when any fails. `torchrun` is torch's console script for torch.distributed.run.
SLURM_STAND_IN = """
scontrol() { echo 127.0.0.1; }
srun() {
    local pids=() rc=0
    for _ in $(seq "$SLURM_NNODES"); do "$@" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
    return $rc
}
torchrun() { "$PYTHON" -m torch.distributed.run "$@"; }
"""


def test_two_torchrun_nodes_run_the_readme_recipe_and_equal_one_process(random_store, tmp_path):
    recipe = readme_recipe()
    assert 'srun torchrun --nnodes="$SLURM_NNODES" --nproc-per-node=4' in recipe
    # The recipe's 4 GPUs per node become 1 CPU rank per node; its fixed port a free one (other
    # runs may share this machine). Everything else is the recipe's text.
    script = recipe.replace("--nproc-per-node=4", "--nproc-per-node=1").replace(":29500", f":{free_port()}")
    work = tmp_path / "cluster"  # the job's working directory: the recipe's relative paths
    (work / "results" / "stores" / "mpii").mkdir(parents=True)
    for split in ("train", "val"):
        (work / "results" / "stores" / "mpii" / f"{split}.zarr").symlink_to(random_store)
    s = settings(epochs=2, batch_size=4, checkpoint_every=100, weight_decay=0.01)
    (work / "hg8-settings.json").write_text(json.dumps(s))
    # Both nodes' ranks (and the reference below) without batch statistics, as in the 2-rank
    # test: gloo has no SyncBatchNorm. Installed at interpreter start, so that the command line
    # stays the recipe's own.
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(WITHOUT_BATCH_STATISTICS)
    env = {
        **ENV,
        "PYTHONPATH": f"{patch}:{ENV['PYTHONPATH']}",
        "PYTHON": sys.executable,
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "localhost",
    }
    nodes = subprocess.run(
        ["bash", "-c", SLURM_STAND_IN + script], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert nodes.returncode == 0, nodes.stderr[-4000:]
    assert "world size 2 (batch 8 = 4 per rank x 2)" in nodes.stderr
    assert nodes.stderr.count("epoch 2/2: train loss") == 1  # the rank of node 0 logs, node 1's does not
    out = work / "results" / "train" / "hg8"

    reference = tmp_path / "rank.py"
    reference.write_text(RANK_SCRIPT)
    single = subprocess.run(
        [
            sys.executable,
            str(reference),
            "train",
            "--settings",
            json.dumps({**s, "training": {**s["training"], "batch_size": 8}}),
            "--train-store",
            str(random_store),
            "--val-store",
            str(random_store),
            "--out",
            str(tmp_path / "single"),
            "--no-progress",
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert "world size 1 (batch 8 = 8 per rank x 1)" in single.stderr

    # The 2-rank test's tolerance: float summation order only.
    assert_same_weights(state_dict(tmp_path / "single" / "model.pt"), state_dict(out / "model.pt"), atol=1e-5)
    rows = {
        name: list(csv.DictReader(open(folder / "log.csv")))
        for name, folder in (("nodes", out), ("single", tmp_path / "single"))
    }
    assert [r["step"] for r in rows["nodes"]] == [r["step"] for r in rows["single"]] == ["3", "6"]
    for n, s1 in zip(rows["nodes"], rows["single"]):
        assert float(n["train_loss"]) == pytest.approx(float(s1["train_loss"]), rel=1e-5)
        assert float(n["val_loss"]) == pytest.approx(float(s1["val_loss"]), rel=1e-5)  # node 0 validates
