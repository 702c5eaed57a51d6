"""`pose-pipeline summary`: experiments side by side, one row per experiment.

Columns: experiment, dataset, format, arch, stacks, params (trainable parameters of the
saved model), epochs (completed, from the training log), then the experiment's score
table (for PCKh: `PCKh@0.5 Mean`, `PCKh@0.5 <group>` for each joint group, `PCKh@0.1
Mean`, `AUC@0.5 Mean`; LSP's PCK likewise with PCK@0.2 / PCK@0.1 / AUC@0.2; COCO's OKS:
AP, AP50, ... AR), then train_time_s (the training log's cumulative `elapsed_s`, resumed
runs included). Experiments of different metrics share the file: a column an experiment
does not have is left empty.

Input: a JSON list of experiments, each {name, dataset, format, arch, stacks, scores (the
score JSON), log (the training log CSV), model (model.pt)} (`workflow_lookups.summary_entries`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math

from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import TABLE_COLUMNS
from pose_pipeline.evaluate.oks import OKS_COLUMN
from pose_pipeline.evaluate.score_files import read_score_json, table_cell
from pose_pipeline.train.log import read_log
from pose_pipeline.util.atomic import write_text_atomic

FIXED_COLUMNS = ("experiment", "dataset", "format", "arch", "stacks", "params", "epochs")
ENTRY_KEYS = ("name", "dataset", "format", "arch", "stacks", "scores", "log", "model")


def metric_columns(evaluation: dict) -> dict[str, float | None]:
    """Summary columns of one score JSON: the headline row for every joint group (Mean
    first), the other rows' Mean; OKS rows as they are."""
    table, rows = evaluation["table"], evaluation.get("rows") or list(evaluation["table"])
    if evaluation.get("metric") == "OKS":
        return {row: table[row][OKS_COLUMN] for row in rows}
    columns = {f"{rows[0]} Mean": table[rows[0]]["Mean"]}
    groups = evaluation.get("columns", TABLE_COLUMNS)  # FLIC has no knees or ankles
    columns.update({f"{rows[0]} {c}": table[rows[0]][c] for c in groups if c != "Mean"})
    columns.update({f"{row} Mean": table[row]["Mean"] for row in rows[1:]})
    return columns


def parameter_count(model_path) -> int:
    """Trainable parameters of the model a checkpoint describes (built, not loaded)."""
    from pose_pipeline.models import build_model, model_config_of, read_checkpoint

    config = model_config_of(read_checkpoint(model_path), model_path)
    model = build_model(config, config["joints"])
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def summarize(entries: list[dict], out_csv) -> list[dict]:
    """Write the side-by-side CSV of `entries` (see the module docstring); returns its rows."""
    if not entries:
        raise UserError("no experiments to summarise")
    rows, metric_order = [], []
    for k, entry in enumerate(entries):
        missing = [key for key in ENTRY_KEYS if key not in entry]
        if missing:
            raise UserError(f"summary entry {k} ({entry.get('name', '?')}): missing {missing}")
        log = read_log(entry["log"], ("epoch", "elapsed_s"))
        epochs, elapsed = log.epochs_completed(), log.elapsed_s()
        metrics = metric_columns(read_score_json(entry["scores"], ("table",)))
        metric_order += [c for c in metrics if c not in metric_order]
        rows.append(
            {
                "experiment": entry["name"],
                "dataset": entry["dataset"],
                "format": entry["format"],
                "arch": entry["arch"],
                "stacks": entry["stacks"],
                "params": parameter_count(entry["model"]),
                "epochs": epochs,
                **metrics,
                "train_time_s": elapsed if math.isfinite(elapsed) else None,
            }
        )
    header = [*FIXED_COLUMNS, *metric_order, "train_time_s"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([table_cell(row.get(c)) for c in header])
    write_text_atomic(out_csv, buffer.getvalue())
    return rows


# ------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--experiments", required=True, help="JSON list of {name, dataset, format, arch, stacks, scores, log, model}"
    )
    p.add_argument("--out", required=True, help="summary CSV")


def run(args: argparse.Namespace) -> int:
    try:
        entries = json.loads(args.experiments)
    except json.JSONDecodeError as exc:
        raise UserError(f"--experiments: not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise UserError("--experiments: expected a JSON list of experiments")
    rows = summarize(entries, args.out)
    print(f"{args.out}: {len(rows)} experiments")
    return 0
