# pose-pipeline: convert -> train -> predict -> score -> plot, cached per stage.
# Wiring only: every rule calls `pose-pipeline <stage>`; the logic lives in pose_pipeline/.
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from pose_pipeline.config.schema import read_config_file, validate_config
from pose_pipeline.errors import UserError

min_version("8.0")

# Snakemake merges a config file by copying its mappings, which would expand a YAML alias bomb
# before validate_config sees it, and names no line of bad YAML: the default file is read here
# first. (Files of --configfile are merged before the Snakefile runs.)
if Path("config/config.yaml").exists():
    try:
        read_config_file("config/config.yaml")
    except UserError as exc:
        raise WorkflowError(str(exc)) from None


configfile: "config/config.yaml"


# Validated once, when the DAG is built: unknown keys, wrong types and dangling names are
# reported together, each naming its key; defaults are filled in from the schema.
try:
    _validated = validate_config(config, source="the workflow config (config/config.yaml and --config/--configfile)")
except UserError as exc:
    raise WorkflowError(str(exc)) from None
config.clear()
config.update(_validated)


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_data.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/plot.smk"
include: "workflow/rules/summary.smk"
include: "workflow/rules/sweep.smk"


# Seconds of work each: on a cluster they run beside Snakemake instead of waiting in the queue.
localrules:
    all,
    score,
    score_reference,
    score_infer,
    mpii_submission,
    plot,
    examples,
    compare,
    summary,
    sweep_table,
    sweep_plot,


rule all:
    default_target: True
    input:
        expand("results/pckh/{experiment}.csv", experiment=config["default_experiments"]),
        expand("results/plots/{experiment}/{plot}.png", experiment=config["default_experiments"], plot=PLOTS),
        # side by side: rerun (alone) when an experiment is added to default_experiments
        ["results/summary.csv", "results/plots/pckh_all.png"] if COMPARED else [],
