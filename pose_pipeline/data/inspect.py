"""`pose-pipeline inspect STORE.zarr`: what a converted store holds, and a contact sheet.

The summary answers "what is in this store and where did it come from": sample count,
joint set, canvas, context, size on disk, per-joint visibility, the source files (with
their sha256) and the converter's parameters. The contact sheet shows random crops with
the stored keypoints projected through the stored affine, so a wrong affine, a swapped
left/right or an off-by-one pixel origin is visible at a glance.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from pose_pipeline.config.option_bounds import check_value
from pose_pipeline.core.joints import SIDE_COLOURS
from pose_pipeline.data.store import PoseStore, open_store, sha256_of
from pose_pipeline.errors import UserError
from pose_pipeline.util.atomic import atomic_output

log = logging.getLogger(__name__)

SHA_PREFIX = 12
MIN_TILE = 128  # small canvases are enlarged so the skeleton stays legible


def bytes_on_disk(path) -> int:
    """Sum of the file sizes under `path` (what the store costs on disk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.path.getsize(os.path.join(root, name))
    return total


def bad_samples_count(store: PoseStore) -> int | None:
    """The samples the store's conversion left out: as the store records them (attribute
    `bad_samples`, `convert.bad_samples_path`), a warning when `<store>.bad_samples.csv` beside
    it is not their list (another conversion's, or gone: a crash between the two); for a store
    converted before it recorded them, the rows of that file, if any."""
    path = store.path.with_suffix(".bad_samples.csv")
    record = store.attrs.get("bad_samples")
    if record is not None:
        listed = sha256_of(path) if path.is_file() else None
        if listed != record.get("sha256"):
            problem = "another conversion's list, not this store's" if listed else "no such file"
            log.warning("%s: %s; the store's conversion left out %d samples", path, problem, record["count"])
        return int(record["count"])
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)


def _image_codec(store: PoseStore) -> str:
    try:
        compressors = store.group["image"].compressors
    except (AttributeError, KeyError):
        return "unknown"
    if not compressors:
        return "none"
    parts = []
    for codec in compressors:
        name = type(codec).__name__.removesuffix("Codec").lower()
        if hasattr(codec, "cname"):  # Blosc: the compressor inside it
            name = f"{name} {getattr(codec.cname, 'value', codec.cname)}"
        level = getattr(codec, "level", getattr(codec, "clevel", None))
        parts.append(name + (f" level {level}" if level is not None else ""))
    return ", ".join(parts)


def summarize(store: PoseStore) -> dict:
    """A JSON-serialisable summary of a store (see `format_summary` for the printed form)."""
    n = len(store)
    joints = store.joint_set
    size = bytes_on_disk(store.path)
    canvas = store.canvas_size
    visible = np.asarray(store.visible) > 0 if n else np.zeros((0, joints.num_joints), bool)
    visibility = {name: (float(visible[:, k].mean()) if n else None) for k, name in enumerate(joints.joints)}
    return {
        "store": str(store.path),
        "samples": n,
        "dataset": store.attrs.get("dataset"),
        "split": store.attrs.get("split"),
        "format": store.attrs.get("format"),
        "joint_set": joints.name,
        "joints": list(joints.joints),
        "canvas_size": canvas,
        "context": store.context,
        "pixel_origin": store.pixel_origin,
        "shard_size": store.attrs.get("shard_size"),
        "image_codec": _image_codec(store),
        "bytes_on_disk": size,
        "bytes_per_sample": size / n if n else None,
        "uncompressed_bytes_per_sample": canvas * canvas * 3,
        "visibility": visibility,
        "mean_visible_joints": float(visible.sum(axis=1).mean()) if n else None,
        # labelled but hidden joints; None where the store does not record them (converted before)
        "mean_occluded_joints": float(np.asarray(store.occluded).sum(axis=1).mean())
        if n and store.has_occluded
        else None,
        "sources": [
            {"file": s.get("file"), "sha256": str(s.get("sha256", ""))[:SHA_PREFIX]}
            for s in store.attrs.get("sources", [])
        ],
        "converter": store.attrs.get("converter", {}),
        "bad_samples": bad_samples_count(store),
        "package_version": store.attrs.get("package_version"),
        "schema_version": store.attrs.get("schema_version"),
    }


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _flatten(params: dict, prefix: str = "") -> list[str]:
    items = []
    for key, value in params.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


def format_summary(summary: dict) -> str:
    s = summary
    lines = [
        f"store       {s['store']}",
        f"samples     {s['samples']}  (dataset {s['dataset']}, split {s['split']}, format {s['format']})"
        + (f"; {s['bad_samples']} skipped at conversion" if s["bad_samples"] is not None else ""),
        f"joint set   {s['joint_set']} ({len(s['joints'])} joints)",
        f"canvas      {s['canvas_size']} x {s['canvas_size']} px, context {s['context']:g}, "
        f"pixel origin {s['pixel_origin']:g}, shard size {s['shard_size']}, images: {s['image_codec']}",
    ]
    size = f"on disk     {_human_bytes(s['bytes_on_disk'])} ({s['bytes_on_disk']:,} bytes)"
    if s["bytes_per_sample"] is not None:
        size += (
            f", {s['bytes_per_sample']:,.0f} bytes/sample "
            f"({s['bytes_per_sample'] / s['uncompressed_bytes_per_sample']:.1%} of "
            f"{s['uncompressed_bytes_per_sample']:,} uncompressed)"
        )
    lines.append(size)
    if s["mean_visible_joints"] is not None:
        occluded = s.get("mean_occluded_joints")
        hidden = "" if occluded is None else f", {occluded:.1f} of them occluded"
        lines.append(
            f"visibility  {s['mean_visible_joints']:.1f} of {len(s['joints'])} joints labelled per sample{hidden}"
        )
    width = max(len(j) for j in s["joints"])
    for name, fraction in s["visibility"].items():
        value = "-" if fraction is None else f"{fraction:6.1%}"
        lines.append(f"  {name:<{width}}  {value}")
    lines.append("sources")
    for source in s["sources"]:
        lines.append(f"  {source['file']}  sha256 {source['sha256']}")
    lines.append("converter   " + (" ".join(_flatten(s["converter"])) or "-"))
    lines.append(f"written by  pose-pipeline {s['package_version']}, schema {s['schema_version']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------- contact sheet


def pick_samples(num_samples: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct random sample indices (all when fewer), in increasing order."""
    count = max(0, min(count, num_samples))
    return np.sort(np.random.default_rng(seed).choice(num_samples, size=count, replace=False))


def tile_scale(canvas_size: int) -> int:
    """Integer enlargement of each crop in the sheet."""
    return max(1, math.ceil(MIN_TILE / canvas_size))


def to_tile(points: np.ndarray, scale: int) -> np.ndarray:
    """Canvas pixel coordinates -> enlarged tile coordinates (pixel centres stay centres)."""
    return (np.asarray(points, np.float64) + 0.5) * scale - 0.5


def draw_skeleton(
    tile: np.ndarray, points: np.ndarray, visible: np.ndarray, joints, scale: int, thickness: int | None = None
) -> None:
    """Draw edges and joints of one sample onto an RGB tile in place (cv2, sub-pixel); lines
    `thickness` pixels wide (default `scale`), joints a little wider. `infer --draw` draws
    on whole images with it too (scale 1)."""
    import cv2

    shift = 4  # cv2 fixed-point bits
    fixed = np.round(to_tile(points, scale) * (1 << shift))
    ok = visible & np.isfinite(fixed).all(axis=1) & (np.abs(fixed) < 2**30).all(axis=1)
    fixed = np.nan_to_num(fixed).astype(np.int64)
    thickness = thickness or max(1, scale)
    for a, b in joints.edges:
        if ok[a] and ok[b]:
            cv2.line(
                tile,
                tuple(map(int, fixed[a])),
                tuple(map(int, fixed[b])),
                SIDE_COLOURS[joints.edge_side(a, b)],
                thickness,
                cv2.LINE_AA,
                shift,
            )
    radius = (2 + max(scale, thickness - 1)) << shift
    for k in np.flatnonzero(ok):
        cv2.circle(tile, tuple(map(int, fixed[k])), radius, SIDE_COLOURS[joints.side(int(k))], -1, cv2.LINE_AA, shift)


def contact_sheet(store: PoseStore, count: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB sheet, the sample indices shown, row-major): random crops with their skeletons."""
    import cv2

    n = len(store)
    if n == 0:
        raise UserError(f"{store.path}: the store has no samples to draw")
    check_value("--count", count, "inspect")
    indices = pick_samples(n, count, seed)
    canvas = store.canvas_size
    scale = tile_scale(canvas)
    side = canvas * scale
    cols = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / cols)
    gap = 2
    sheet = np.full((rows * (side + gap) - gap, cols * (side + gap) - gap, 3), 255, np.uint8)
    points = store.keypoints_in_canvas()
    visible = np.asarray(store.visible) > 0
    joints = store.joint_set
    for slot, index in enumerate(indices):
        crop = store.images(int(index), int(index) + 1)[0]
        tile = np.ascontiguousarray(
            cv2.resize(crop, (side, side), interpolation=cv2.INTER_NEAREST) if scale > 1 else crop
        )
        draw_skeleton(tile, points[index], visible[index], joints, scale)
        label = f"{index}"
        cv2.putText(tile, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, label, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        r, c = divmod(slot, cols)
        sheet[r * (side + gap) : r * (side + gap) + side, c * (side + gap) : c * (side + gap) + side] = tile
    return sheet, indices


def write_sheet(path, sheet: np.ndarray) -> None:
    """Write an RGB sheet as PNG, atomically."""
    import cv2

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UserError(f"{path}: the contact sheet is written as PNG; give a .png path")
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise UserError(f"{path}: could not write the contact sheet")


# -------------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="a converted store (.zarr folder)")
    p.add_argument("--sheet", help="write a contact sheet PNG of random samples with their keypoints")
    p.add_argument("--count", type=int, default=16, help="samples on the contact sheet")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of samples")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--verify",
        action="store_true",
        help="read every chunk of every array and report each missing or damaged one (exit 1 if any)",
    )


def report_verification(store: PoseStore) -> int:
    """Print each damaged or missing chunk of the store; 1 if there is any, else 0."""
    from pose_pipeline.data.store_check import has_checksums

    problems = store.verify()
    for problem in problems:
        print(problem)
    if problems:
        print(f"{store.path}: {len(problems)} damaged or missing files; convert again")
        return 1
    if not has_checksums(store.group["image"]):
        print(
            f"{store.path}: written without chunk checksums (an older pose-pipeline): only missing files "
            "and undecodable chunks can be found; convert again to protect it"
        )
    print(f"{store.path}: every chunk of the {len(store.array_names())} arrays read: no damage found")
    return 0


def run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    if args.verify:
        return report_verification(store)
    summary = summarize(store)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if args.sheet:
        sheet, indices = contact_sheet(store, args.count, args.seed)
        write_sheet(args.sheet, sheet)
        if not args.json:
            print(f"contact sheet {args.sheet}: samples {', '.join(map(str, indices))}")
    return 0
