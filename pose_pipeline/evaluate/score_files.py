"""The score stage's files: the table CSV (metric rows x joint-group columns) and the whole
evaluation as JSON, written by `score` and read by the plots and the summary (which so need
not import the score stage).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from pose_pipeline.errors import UserError
from pose_pipeline.evaluate.metrics import TABLE_COLUMNS, WEIGHTED_MEAN_COLUMN
from pose_pipeline.evaluate.oks import OKS_COLUMN
from pose_pipeline.util.atomic import write_text_atomic


def table_cell(value) -> str:
    """A table cell of the score CSV and the summary: empty for None or NaN, a float to 2
    decimals, anything else (an epoch count, a name) as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table_rows(evaluation: dict) -> list[list[str]]:
    """Header and rows of the score CSV (2 decimals, empty where NaN): metric rows x
    joint-group columns (+ Mean(weighted)) for PCKh and PCK, metric rows x one `value`
    column for OKS."""
    metric_rows = evaluation["rows"]
    if evaluation["metric"] == "OKS":
        return [["metric", OKS_COLUMN]] + [
            [row, table_cell(evaluation["table"][row][OKS_COLUMN])] for row in metric_rows
        ]
    columns = evaluation.get("columns", TABLE_COLUMNS)  # FLIC has no knees or ankles
    rows = [["metric", *columns, WEIGHTED_MEAN_COLUMN]]
    for row in metric_rows:
        cols = evaluation["table"][row]
        rows.append([row, *(table_cell(cols[c]) for c in columns), table_cell(evaluation["mean_weighted"][row])])
    return rows


def write_score_files(evaluation: dict, out_csv, per_joint_json=None) -> None:
    """Write the score table CSV (`table_rows`) and, if asked, the whole evaluation as
    JSON (`read_score_json` reads it back), each atomically."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(table_rows(evaluation))
    write_text_atomic(out_csv, buffer.getvalue())
    if per_joint_json is not None:
        write_text_atomic(per_joint_json, json.dumps(evaluation, indent=1, allow_nan=False) + "\n")


def read_json(path: Path, what: str, kind: str):
    """A JSON file's data; UserError naming the file when it is missing ("no such `what`") or
    not JSON ("not `kind`")."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not {kind}: {exc}") from None


def read_score_json(path, required=("table",)) -> dict:
    """A score JSON (`score --per-joint`), UserError naming the file unless it holds the
    `required` keys."""
    path = Path(path)
    data = read_json(path, "score file", "a score JSON")
    # an OKS score has no per-joint rates (an empty dict) but always a table
    missing = [
        k for k in required if not isinstance(data, dict) or data.get(k) is None or (k == "table" and not data[k])
    ]
    if missing:
        raise UserError(f"{path}: not a score JSON (`pose-pipeline score --per-joint`): missing {', '.join(missing)}")
    return data
