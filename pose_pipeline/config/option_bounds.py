"""The bounds of every numeric option of every stage, in one table, checked one way.

Each option names the config schema key it sets (workflow/schemas/config.schema.yaml), whose
`minimum`, `maximum`, `multipleOf`... are its bounds, with the constraints the schema cannot
hold beside it (the input size the models take, a count that means "auto"); options no config
key sets have their bounds here. `pose-pipeline` checks every option of the chosen stage
against the table after parsing (`check_args`), before the stage reads or writes anything;
the stages' Python entry points check their arguments with `check_values`. A value out of
bounds is a `UserError` naming the option: one line, exit code 1, as every bad input.

NaN and infinities are refused first: a NaN passes every comparison a bound makes.

Beside the table, the one bound of an --out folder's place (`check_output_folder_place`) and the
one --device option (`add_device_option`).
"""

from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass, field

from pose_pipeline.core.codec import HEATMAP_STRIDE, HOURGLASS_DEPTH
from pose_pipeline.errors import UserError

# The models output heatmaps at 1/HEATMAP_STRIDE of their input and halve them HOURGLASS_DEPTH
# times: the input side is a multiple of both.
INPUT_MULTIPLE = HEATMAP_STRIDE * 2**HOURGLASS_DEPTH


@dataclass(frozen=True)
class Bound:
    """schema: the config key, dotted ("dataset.context": `$defs` name or top-level key, then
    property names), None for an option no key sets; extra: JSON-schema constraints added to
    the key's (or all of them, without a key); note: what a special value means."""

    schema: str | None
    extra: dict = field(default_factory=dict)
    note: str = ""


WHOLE = {"type": "integer"}

# option -> bounds, for every stage that has the option; "STAGE --option" where a stage's
# option of that name means something else.
BOUNDS = {
    # convert (and infer's canvas)
    "--canvas-size": Bound("dataset.canvas_size"),
    "--context": Bound("dataset.context"),
    "--shard-size": Bound("dataset.shard_size"),
    "--min-keypoints": Bound("dataset.min_keypoints"),
    "--val-last": Bound("dataset.val_last"),
    "--workers": Bound(None, {**WHOLE, "minimum": 0}, "0: as many as the cores"),
    # demo-data
    "--seed": Bound("dataset.synthetic.seed"),
    "--train": Bound("dataset.synthetic.train"),
    "--val": Bound("dataset.synthetic.val"),
    "--test": Bound("dataset.synthetic.test"),
    "--image-size": Bound("dataset.synthetic.image_size"),
    # the model, its codec and its evaluation (train, predict, infer, export, roundtrip, model-info)
    "--input-size": Bound("experiment.training.input_size", {"minimum": INPUT_MULTIPLE, "multipleOf": INPUT_MULTIPLE}),
    "--heatmap-size": Bound("experiment.training.heatmap_size"),
    "--sigma": Bound("experiment.training.sigma"),
    "--epochs": Bound("experiment.training.epochs"),
    "--nproc": Bound(None, {**WHOLE, "minimum": 1}),
    "--batch-size": Bound("experiment.evaluation.batch_size"),
    "--blur-sigma": Bound("experiment.evaluation.blur_sigma"),
    "--stacks": Bound("experiment.model.stacks"),
    "--blocks": Bound("experiment.model.blocks"),
    "--features": Bound("experiment.model.features"),
    "--joints": Bound(None, {**WHOLE, "minimum": 1}),
    # infer with detector boxes (an imageset's keys)
    "--keypoint-score-threshold": Bound("imageset.keypoint_score_threshold"),
    "--oks-nms-threshold": Bound("imageset.oks_nms_threshold"),
    # plots and inspect
    "--dpi": Bound("plots.dpi"),
    "--count": Bound("plots.skeleton_count"),
    "inspect --count": Bound(None, {**WHOLE, "minimum": 1}),
    "inspect --seed": Bound(None, {**WHOLE, "minimum": 0}),
}


def bound_of(option: str, stage: str | None = None) -> Bound | None:
    return BOUNDS.get(f"{stage} {option}") or BOUNDS.get(option)


@functools.cache
def rule_of(option: str, stage: str | None = None) -> dict:
    """The JSON schema an option's value must satisfy: its config key's, with the table's extras."""
    from pose_pipeline.config.schema import load_schema

    bound = bound_of(option, stage)
    if bound is None:
        raise KeyError(f"{option} has no entry in option_bounds.BOUNDS")
    rule = {}
    if bound.schema:
        root = load_schema()
        first, *rest = bound.schema.split(".")
        node = root["$defs"][first] if first in root["$defs"] else root["properties"][first]
        for key in rest:
            node = node["properties"][key]
        rule = {k: v for k, v in node.items() if k not in ("default", "description")}
    return {**rule, **bound.extra}


def check_value(option: str, value, stage: str | None = None) -> None:
    """`value` of `option` within its bounds, else a UserError naming the option."""
    import jsonschema

    rule = rule_of(option, stage)
    finite = not isinstance(value, float) or math.isfinite(value)
    if not finite or any(jsonschema.Draft202012Validator(rule).iter_errors(value)):
        note = bound_of(option, stage).note
        raise UserError(f"{option}: must be {describe(rule)}{f' ({note})' if note else ''}, got {_shown(value)}")


def check_values(values: dict, stage: str | None = None) -> None:
    """{option: value} each within its bounds; None values (not given: the stage decides) pass."""
    for option, value in values.items():
        if value is not None:
            check_value(option, value, stage)


def describe(rule: dict) -> str:
    """The bounds of `rule` in words: "a whole number at least 1", "a finite number from 1 to 3"."""
    kind = "a whole number" if rule.get("type") == "integer" else "a finite number"
    if "multipleOf" in rule:
        kind = f"a multiple of {_shown(rule['multipleOf'])}"
    low = _side(rule, "minimum", ">=", "exclusiveMinimum", ">")
    high = _side(rule, "maximum", "<=", "exclusiveMaximum", "<")
    if low[0] == ">=" and high[0] == "<=":
        return f"{kind} from {_shown(low[1])} to {_shown(high[1])}"
    if low[0] == ">=" and high[0] is None:
        return f"{kind} at least {_shown(low[1])}"
    sides = " and ".join(f"{op} {_shown(v)}" for op, v in (low, high) if op)
    return f"{kind} {sides}".strip()


def _side(rule: dict, inclusive: str, inclusive_op: str, exclusive: str, exclusive_op: str) -> tuple:
    """(operator, bound) of one side of `rule`, (None, None) where it has none."""
    if exclusive in rule:
        return exclusive_op, rule[exclusive]
    if inclusive in rule:
        return inclusive_op, rule[inclusive]
    return None, None


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------ the command line


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, stage: str) -> None:
    """Every numeric option of `parser` (a stage's, its sub-commands' included) that holds a
    number in `args` within its bounds. Options left at None (the stage's own default, e.g. the
    checkpoint's input size) and words ("auto") are the stage's to resolve."""
    for action in numeric_actions(parser, stage):
        value = getattr(args, action.dest, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_value(action.option_strings[-1], value, stage)


def numeric_actions(parser: argparse.ArgumentParser, stage: str) -> list[argparse.Action]:
    """The options of `parser` and its sub-commands that take a number (type int or float) or
    have bounds in the table."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += numeric_actions(sub, stage)
        elif action.option_strings and (
            action.type in (int, float) or bound_of(action.option_strings[-1], stage) is not None
        ):
            found.append(action)
    return found


def add_device_option(p: argparse.ArgumentParser, from_config: bool = False) -> None:
    """--device, one definition for every stage that runs a model: its choices and default are
    the config schema's `device` key. `from_config`: the default is left None, for a stage whose
    config names the device (train)."""
    from pose_pipeline.config.schema import load_schema

    key = load_schema()["properties"]["device"]
    shown = f"the config's device, else {key['default']}" if from_config else key["default"]
    p.add_argument(
        "--device",
        choices=key["enum"],
        default=None if from_config else key["default"],
        help=f"auto: CUDA when present, else the CPU (default: {shown})",
    )


def check_output_folder_place(out, example: str, option: str = "--out") -> None:
    """An output folder that is built beside its place and swapped in whole (demo-data, convert,
    infer) cannot be the working folder or one above it: it has no place beside it by name
    ("." has none), and the shell that ran the stage would be left in a deleted folder."""
    from pathlib import Path

    resolved, here = Path(out).resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise UserError(
            f"{option} {out}: is the working folder or holds it, and the output folder is built beside "
            f"it and swapped in whole; name a folder below it, e.g. {option} {Path(out) / example}"
        )
