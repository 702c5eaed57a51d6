"""`pose-pipeline convert`: annotations + images -> crop-normalised Zarr v3 store.

Each sample is the person box (200 x scale pixels, hourglass convention) enlarged by
`context`, warped to a `canvas_size` square; the store keeps the affine back to the
original image, so every later stage can return to original pixels exactly.

Here: the option and annotation checks, bad samples (an error, or skipped and listed), the
store's provenance and metadata, and the command line; the crops themselves are cut and
written by `convert_crops`.

The options are a `ConvertOptions` (`convert_options`), whose defaults are the config schema's
(`datasets.*`), the command line's too.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import os
from pathlib import Path

import numpy as np

from pose_pipeline.config.option_bounds import check_output_folder_place, check_values
from pose_pipeline.core.joints import PERSON_BOX
from pose_pipeline.data.convert_crops import sample_affines, write_crops
from pose_pipeline.data.convert_options import DEFAULTS, ConvertOptions
from pose_pipeline.data.formats.readers import READERS, Samples
from pose_pipeline.data.images import unsafe_image_name
from pose_pipeline.data.store import IMAGE_CODECS, IMAGE_ZSTD_LEVEL, check_store_replaceable, lock_store, sha256_of
from pose_pipeline.data.store_writer import StoreWriter
from pose_pipeline.errors import UserError
from pose_pipeline.util.atomic import check_no_overlap, partial_path, write_files_atomic
from pose_pipeline.util.output_errors import writing

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------ annotations


def check_image_name(name: str) -> str:
    if not name:
        return "no image name (the annotation file names no images, e.g. a split file such as detections.mat)"
    if unsafe_image_name(name):
        return f"image name {name!r} is absolute or leaves the image folder"
    return ""


MAX_COORDINATE = 1e6  # pixels: no photograph is this large; float32 holds it exactly enough


def annotation_problems(samples: Samples, joints_required: bool = True) -> list[str]:
    """One reason per sample ('' where fine); `joints_required` False for people whose joints are
    not given (MPII's test people)."""
    problems = []
    for i in range(len(samples)):
        problem = samples.problems[i] or check_image_name(samples.image_names[i])
        if not problem:
            vis = samples.visible[i] > 0
            coordinates = np.concatenate([samples.keypoints[i][vis].ravel(), samples.center[i]])
            if not np.all(np.isfinite(coordinates)):
                problem = "NaN or infinite coordinates"
            elif np.abs(coordinates).max() > MAX_COORDINATE:
                problem = f"coordinate {np.abs(coordinates).max():.3g} is beyond {MAX_COORDINATE:.0e} pixels"
            elif not np.isfinite(samples.scale[i]) or samples.scale[i] <= 0:
                problem = f"scale {samples.scale[i]} is not positive"
            elif joints_required and not vis.any():
                problem = "no annotated joints"
        problems.append(problem)
    return problems


# ---------------------------------------------------------------------------- convert


def check_bounds(options: dict) -> None:
    """Converter options ({key: value}, None: not given) within their bounds (`option_bounds`:
    the config schema's), each named as its command-line option."""
    check_values({f"--{key.replace('_', '-')}": value for key, value in options.items()})


def check_options(options: ConvertOptions) -> None:
    """Everything checkable before reading an image: inputs exist and are not the output, the
    output is new or a store, numbers within the schema's bounds, options the format takes."""
    fmt, out = options.format, options.out
    inputs = {"annotation file": options.annotations, "image folder": options.images, "split file": options.val_split}
    for what, path in inputs.items():
        if path is not None and not path.exists():
            raise UserError(f"{what} {path} does not exist")
    check_output_folder_place(out, "train.zarr")
    check_no_overlap(out, inputs)
    check_store_replaceable(out)  # before the work, not after it
    check_bounds(options.bounded())
    for option, value in (("--min-keypoints", options.min_keypoints), ("--flip-pair", options.flip_pairs)):
        if value is not None and fmt != "coco":
            raise UserError(f"{option} is a COCO option; format {fmt!r} does not take it")
    if options.val_last is not None and fmt != "lsp":
        raise UserError(f"--val-last is an LSP option; format {fmt!r} does not take it")
    if options.split == "test" and fmt != "mpii":
        raise UserError(
            f"--split test is MPII's test set (the release's img_train == 0 people); format {fmt!r} "
            "has train, val or all"
        )


def _store_attrs(options: ConvertOptions, samples) -> dict:
    """The store's provenance: dataset, split, pixel origin, converter parameters, source files
    (name, sha256 and absolute path: `score` finds a COCO store's annotation file by it)."""
    fmt, sources = options.format, (options.annotations, options.val_split)
    return {
        "dataset": options.dataset or options.annotations.stem,
        "split": options.split,
        "format": fmt,
        "pixel_origin": samples.pixel_origin,
        "context": options.context,
        "converter": {
            **options.converter_parameters(),
            "person_box": PERSON_BOX,
            **({"reduced_decode": True} if options.reduced_decode else {}),
            **({fmt: samples.parameters} if samples.parameters else {}),
        },
        "sources": [
            {"file": path.name, "sha256": sha256_of(path), "path": os.path.abspath(path)} for path in sources if path
        ],
    }


def convert(options: ConvertOptions) -> dict:
    """Convert one split as `options` say; returns a summary {samples, skipped, store}."""
    check_options(options)
    annotations, split, out = options.annotations, options.split, options.out
    with lock_store(out, "pose-pipeline convert"):  # a second convert into `out` is refused
        reader_options = {"images": options.images, "min_keypoints": options.min_keypoints}
        reader_options.update(flip_pairs=options.flip_pairs, val_last=options.val_last)
        samples = READERS[options.format](annotations, split, options.val_split, reader_options)
        if len(samples) == 0:
            raise UserError(f"{annotations}: no annotated people in split {split!r}")

        reject = _Rejections(annotations, samples, options.on_bad_sample)
        keep = reject.check_annotations(joints_required=split != "test")
        with np.errstate(divide="ignore", invalid="ignore"):  # bad scales are rejected above
            affines = sample_affines(samples, options.canvas_size, options.context)
        written = write_store(options, samples, keep, affines, reject)
    if reject.bad:
        log.warning("skipped %d bad samples, listed in %s", len(reject.bad), bad_samples_path(out))
    return {"samples": len(written), "skipped": len(reject.bad), "store": str(out)}


def write_store(options: ConvertOptions, samples: Samples, keep, affines, reject) -> list[int]:
    """The `keep` samples' crops and metadata as the store `options.out` (built beside it and
    swapped in whole, `StoreWriter`), with its provenance (`_store_attrs`); returns the samples
    written. A write the system refuses (a full disk, a file-size limit) is one line naming the
    store, which is left as it was."""
    out, attrs = options.out, _store_attrs(options, samples)
    with writing({partial_path(out): out}):
        writer = StoreWriter(
            out,
            len(keep),
            samples.joints,
            options.canvas_size,
            options.shard_size,
            attrs=attrs,
            image_codec=options.image_codec,
        )
        try:
            written = write_crops(writer, samples, keep, affines, reject, options)
            # the store records its list of bad samples (written beside it first): a list beside
            # it that is not this one (a crash between the two) is known for another's
            writer.group.attrs["bad_samples"] = reject.settle(out, options.split, written)
            finish_store(writer, samples, affines, np.asarray(written, dtype=np.int64))
        except BaseException:
            writer.abort()
            raise
        if not reject.bad:  # after the swap: until then the list beside is the earlier store's
            bad_samples_path(out).unlink(missing_ok=True)
    return written


class _Rejections:
    """A bad sample is an error naming its record (on_bad_sample "error") or is left out and
    listed in `bad` as (index, image, reason) (on_bad_sample "skip")."""

    def __init__(self, annotations: Path, samples: Samples, on_bad_sample: str):
        self.annotations, self.samples, self.on_bad_sample = annotations, samples, on_bad_sample
        self.bad: list[tuple[int, str, str]] = []

    def __call__(self, index: int, problem: str) -> None:
        name = self.samples.image_names[index]
        if self.on_bad_sample == "error":
            record = f"{self.annotations}: record {self.samples.source_index[index].tolist()} (image {name})"
            raise UserError(f"{record}: {problem} (use --on-bad-sample skip to leave such samples out)")
        self.bad.append((index, name, problem))

    def check_annotations(self, joints_required: bool) -> np.ndarray:
        """The indices of the samples whose annotation is fine; the others rejected."""
        for i, problem in enumerate(annotation_problems(self.samples, joints_required=joints_required)):
            if problem:
                self(i, problem)
        return np.array(sorted(set(range(len(self.samples))) - {b[0] for b in self.bad}), dtype=np.int64)

    def settle(self, out: Path, split: str, written: list[int]) -> dict:
        """The bad samples listed beside `out` (on_bad_sample "skip", when there are any); an
        error if none was good. Returns the store's record of the list: {count, sha256}."""
        listing = bad_samples_bytes(self.bad) if self.bad else None
        if listing is not None:
            write_files_atomic({bad_samples_path(out): listing})
        if not written:
            raise UserError(
                f"{self.annotations}: all {len(self.samples)} samples of split {split!r} are bad, nothing to "
                f"store (the reasons are listed in {bad_samples_path(out)})"
            )
        return {"count": len(self.bad), "sha256": hashlib.sha256(listing).hexdigest() if listing else None}


def finish_store(writer: StoreWriter, samples: Samples, affines: np.ndarray, order: np.ndarray) -> None:
    """The per-sample metadata of the samples written, in `order`, and the store committed."""
    writer.truncate(len(order))
    writer.set_metadata(
        keypoints=samples.keypoints[order].astype(np.float32),
        visible=samples.visible[order],
        occluded=samples.occluded[order],
        affine=affines[order],
        center=samples.center[order],
        scale=samples.scale[order],
        head_size=samples.head_size[order],
        image_name=np.array([samples.image_names[i] for i in order], dtype=str),
        source_index=samples.source_index[order],
    )
    writer.commit()


def bad_samples_path(out: Path) -> Path:
    """The list of the samples a conversion left out, beside the store: there only when it left
    some out, and the store's own when its digest is the one the store records (attribute
    `bad_samples`: {count, sha256}; `inspect.bad_samples_count`)."""
    return out.with_suffix(".bad_samples.csv")


def bad_samples_bytes(bad: list[tuple[int, str, str]]) -> bytes:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["index", "image", "reason"])
    out.writerows(sorted(bad))
    return buffer.getvalue().encode("utf-8")


# -------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    from pose_pipeline.data.formats.coco import DEFAULT_MIN_KEYPOINTS

    p.add_argument(
        "format",
        choices=sorted(READERS),
        help="annotation format: mpii (release .mat or hourglass .h5), lsp (joints.mat, LSP or "
        "LSP-extended layout), flic (examples.mat), coco (person_keypoints_*.json)",
    )
    p.add_argument(
        "--annotations",
        required=True,
        help="annotation file (MPII release .mat or hourglass .h5; LSP joints.mat; FLIC examples.mat; "
        "COCO keypoint .json)",
    )
    p.add_argument("--images", required=True, help="folder of the original images")
    p.add_argument(
        "--out", required=True, help="output store (a .zarr folder): new, empty, or an earlier store (replaced)"
    )
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        default="train",
        help="mpii: by is_train or --val-split, test = the single persons of the release's test "
        "images (img_train 0; objpos and scale, no joints: for `mpii-submission`); lsp: 2,000 "
        "images -> first 1,000 train, last 1,000 val, 10,000 (extended) -> all train, other sizes "
        "-> only all; flic: istrain / istest; coco: the "
        "file is the split (recorded only)",
    )
    p.add_argument("--val-split", help="mpii only: file naming the validation people (detections.mat layout)")
    p.add_argument(
        "--val-last",
        type=int,
        default=None,
        metavar="N",
        help="lsp only: the last N images of the file are the val split, the others train (any file size)",
    )
    p.add_argument(
        "--min-keypoints",
        type=int,
        default=None,
        help=f"coco only: leave out people with fewer labelled keypoints (default {DEFAULT_MIN_KEYPOINTS})",
    )
    p.add_argument(
        "--flip-pair",
        dest="flip_pairs",
        nargs=2,
        action="append",
        metavar=("LEFT", "RIGHT"),
        help="coco only, for a file declaring its own keypoints: a left/right pair by name (repeat "
        "it; given, these are all the pairs; default: by the names' left_/right_, l_/r_ prefixes)",
    )
    _crop_options(p)


def _crop_options(p: argparse.ArgumentParser) -> None:
    """What is stored of each person, and how the work runs."""
    p.add_argument("--canvas-size", type=int, default=DEFAULTS["canvas_size"], help="side of the stored crops")
    p.add_argument("--context", type=float, default=DEFAULTS["context"], help="crop = person box x context")
    p.add_argument("--shard-size", type=int, default=DEFAULTS["shard_size"], help="samples per shard file")
    p.add_argument(
        "--on-bad-sample",
        choices=["error", "skip"],
        default=DEFAULTS["on_bad_sample"],
        help="a bad sample (missing or corrupt image, bad annotation) stops the conversion (error) "
        "or is left out and listed in OUT.bad_samples.csv (skip; a conversion that leaves none out removes it)",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default, or 0: one per core)")
    p.add_argument("--dataset", help="dataset name recorded in the store")
    p.add_argument(
        "--reduced-decode",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS["reduced_decode"],
        help="decode a JPEG at 1/2, 1/4 or 1/8 of its size when the crop shrinks the person at least "
        "that much (less decode time: about a fifth on MPII-sized people; the same geometry; no "
        "aliasing: the crop is the image area-averaged by that factor, within a grey level or two); "
        "--no-reduced-decode: a full decode, crop == warpAffine(image, affine) exactly",
    )
    p.add_argument(
        "--image-codec",
        choices=IMAGE_CODECS,
        default=DEFAULTS["image_codec"],
        help=f"compressor of the stored crops, lossless either way: lz4 (through Blosc), or zstd (level "
        f"{IMAGE_ZSTD_LEVEL}), which stores about 15%% fewer bytes for about a quarter more CPU per converted "
        "image and nearly twice the CPU to read a crop",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    summary = convert(ConvertOptions.from_args(args))
    print(f"{summary['store']}: {summary['samples']} samples, {summary['skipped']} skipped")
    return 0
