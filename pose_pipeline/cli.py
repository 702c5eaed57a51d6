"""`pose-pipeline <stage> ...`: one subcommand per pipeline stage.

Each stage module exposes `configure_parser(parser)` and `run(args) -> int`; this file only
dispatches, so importing the CLI does not import torch for stages that do not need it.

Exit codes: 0 done, 1 bad input (a file, option or config the message names), 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from pose_pipeline import __version__
from pose_pipeline.errors import UserError
from pose_pipeline.util.output_errors import unnamed_failure

# subcommand -> (module, one-line help)
STAGES = {
    "demo-data": ("pose_pipeline.data.demo.generate", "generate the synthetic demo dataset (MPII release format)"),
    "convert": ("pose_pipeline.data.convert", "convert annotations + images to a crop-normalised Zarr v3 store"),
    "inspect": ("pose_pipeline.data.inspect", "summarise a converted store and draw a contact sheet"),
    "train": ("pose_pipeline.train.cli", "train a model on a converted store"),
    "predict": ("pose_pipeline.inference.predict", "predict keypoints in original image coordinates"),
    "mpii-submission": (
        "pose_pipeline.evaluate.mpii_submission",
        "MPII test-set submission file (pred_keypoints_mpii.mat)",
    ),
    "infer": ("pose_pipeline.inference.infer", "keypoints for the people in your own images or video (boxes optional)"),
    "score": ("pose_pipeline.evaluate.score", "score predictions: PCKh (MPII), PCK@0.2 by torso (LSP), OKS AP (COCO)"),
    "summary": ("pose_pipeline.report.summary", "experiments side by side: model, epochs, scores, training time"),
    "sweep": (
        "pose_pipeline.report.sweeps",
        "a sweep's points side by side (table) and its score over the grid (plot)",
    ),
    "roundtrip": ("pose_pipeline.evaluate.roundtrip", "encode ground truth as targets and decode it back"),
    "plot": ("pose_pipeline.report.charts", "training curves, PCKh curves and skeleton overlays"),
    "export": (
        "pose_pipeline.inference.export",
        "a model as one ONNX or TorchScript file: RGB crops in, heatmaps and keypoints out",
    ),
    "model-info": ("pose_pipeline.models.info", "parameter count, FLOPs and output shapes of a model"),
}


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, where it has one worth showing."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        # a flag (no value) is off unless given; 0 is a default worth showing (`not in` would hide it)
        shown = action.nargs != 0 and not action.required and action.default not in (None, argparse.SUPPRESS)
        if shown and action.option_strings and "%(default)" not in help_text and "(default" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(
        prog="pose-pipeline", description=__doc__.splitlines()[0], epilog="exit codes: 0 done, 1 bad input, 2 usage"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging of pose-pipeline")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # -v also after the stage name: SUPPRESS keeps the subparser from resetting the main one's
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging of pose-pipeline"
    )
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    module = None
    # Only the chosen stage's module is imported (keeps `--help` and light stages fast).
    chosen = next((a for a in argv if a in STAGES), None)
    for name, (module_name, help_text) in STAGES.items():
        p = sub.add_parser(
            name, help=help_text, description=help_text, parents=[verbose], formatter_class=DefaultsHelpFormatter
        )
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
    return parser, module


# libgomp lets a thread that waits at a barrier spin 300,000 times before it sleeps. A tenth
# of that keeps the idle-machine speed of spinning and, on a CPU shared with other work, most of
# the gain of sleeping waits (OMP_WAIT_POLICY=PASSIVE): BENCHMARKS.md, "CPU training: how long
# OpenMP threads spin".
OPENMP_SPIN_COUNT = "30000"


def bounded_openmp_spinning() -> None:
    """Set GOMP_SPINCOUNT for torch's OpenMP threads before any stage imports torch (the
    runtime reads it once, when it loads); a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins."""
    if "torch" in sys.modules or {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
        return
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bounded_openmp_spinning()
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 2
    # Third-party libraries stay at WARNING: their DEBUG lines would drown the pipeline's own.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("pose_pipeline").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        check_option_bounds(parser, args)
        return int(module.run(args) or 0)
    except UserError as exc:
        print(f"pose-pipeline {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:
        # disk full, quota, file-size limit, read-only or forbidden output that no stage named
        # (`output_errors.writing` names the output where a stage writes): no traceback either
        line = unnamed_failure(exc)
        if line is None:
            raise
        print(f"pose-pipeline {args.stage}: error: {line}", file=sys.stderr)
        return 1


def check_option_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The chosen stage's numeric options within their bounds (`option_bounds`), before it runs."""
    from pose_pipeline.config.option_bounds import check_args

    stages = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    check_args(stages.choices[args.stage], args, args.stage)
