"""Conversion speed, where its time goes, and store size on MPII-size sources.

    PYTHONPATH=. python benchmarks/convert_speed.py [--images 200] [--canvas 384] [--repeats 3] \
        [--baseline-checkout ../main] [--no-codec-table]

Builds ~200 1280x720 JPEGs from the five real MPII sample images (resized and cropped at
varying offsets, every other one mirrored) with a matching stacked-hourglass .h5 of one
person per image (a valid.h5 pose, moved and scaled into the image), all in a temporary
folder. Then, in one run, the repeats interleaved:

- plain decoding (read + cv2.imdecode) of the same files on one core: the floor, and decode
  + compression of each crop: the floor with the store's codec (LZ4 since session 10), with the
  Zstd-1 it used in sessions 8 and 9, and with the Zstd-3 it used before;
- the per-image breakdown of convert's work on one core: read, the libjpeg-warning capture
  (fd 2 redirected per image), JPEG decode (full, and reduced as convert picks it by default),
  warpAffine, the store's codec + CRC32C, the rest of the zarr write, fsync of the store; bookkeeping is
  convert's CPU less all of these;
- `convert` with workers=1 and workers=2, with its default reduced decodes and with
  --no-reduced-decode (wall time, and images per CPU-second counting the worker processes); with
  --baseline-checkout, the same `convert` of another checkout (e.g. main) with that checkout's
  defaults, in a subprocess, for a before/after in the same run; each row also on the first
  quarter of the images, which parts its CPU into a cost per store (paid once by a real dataset)
  and a cost per image; and `convert --image-codec zstd` (the other codec) at workers=1;
- the store's image bytes per sample for LZ4 (Blosc, the default), Zstd levels 1 / 3 / 9 and no
  compression, against uncompressed S*S*3, with write and whole-shard read speed (wall, and CPU
  per sample: the store's reader, zarrs where installed, decodes on several threads).

Prints markdown tables. Needs ../shared/data/mpii_sample (the real sample).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_model  # noqa: E402

from pose_pipeline.core import geometry  # noqa: E402
from pose_pipeline.core.joints import MPII  # noqa: E402
from pose_pipeline.data.convert import convert  # noqa: E402
from pose_pipeline.data.convert_options import ConvertOptions  # noqa: E402
from pose_pipeline.data.images import decode_flags, jpeg_reduction, libjpeg_warnings, read_image_file  # noqa: E402
from pose_pipeline.data.inspect import bytes_on_disk  # noqa: E402
from pose_pipeline.data.store import IMAGE_CODECS, IMAGE_ZSTD_LEVEL, fast_codec_pipeline, image_compressor, open_store  # noqa: E402
from pose_pipeline.data.store_writer import StoreWriter  # noqa: E402
from pose_pipeline.util.atomic import fsync_tree  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "mpii_sample"
WIDTH, HEIGHT = 1280, 720


def make_sources(folder: Path, count: int, seed: int = 0, mpii_scales: bool = False) -> Path:
    """`count` 1280x720 JPEGs + annotations.h5 (hourglass layout, one person per image); person
    box 300-700 px, or with `mpii_scales` the sizes of the real MPII validation people."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    originals = [cv2.imread(str(p)) for p in sorted((SAMPLE / "images").glob("*.jpg"))]
    for i in range(count):
        src = originals[i % len(originals)]
        zoom = max(WIDTH / src.shape[1], HEIGHT / src.shape[0]) * rng.uniform(1.0, 1.6)
        big = cv2.resize(src, (round(src.shape[1] * zoom), round(src.shape[0] * zoom)), interpolation=cv2.INTER_CUBIC)
        # tile when the zoomed image is still short of 1280x720 on a side (rounding)
        big = np.tile(big, (-(-HEIGHT // big.shape[0]), -(-WIDTH // big.shape[1]), 1))
        y = rng.integers(0, big.shape[0] - HEIGHT + 1)
        x = rng.integers(0, big.shape[1] - WIDTH + 1)
        frame = big[y : y + HEIGHT, x : x + WIDTH]
        if i % 2:
            frame = frame[:, ::-1]
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        (images / f"{i:05d}.jpg").write_bytes(data.tobytes())

    with h5py.File(SAMPLE / "valid.h5") as h5:
        part, visible = h5["part"][:count], h5["visible"][:count]
        center, scale, normalize = h5["center"][:count], h5["scale"][:count], h5["normalize"][:count]
    new_scale = rng.uniform(1.5, 3.5, count)  # person box 300-700 px, crop x1.5
    if mpii_scales:
        with h5py.File(SAMPLE / "valid.h5") as h5:
            scales = h5["scale"][()]
        new_scale = rng.choice(scales[scales <= 8], count)  # taller people would not fit 1280x720
    new_center = np.stack([rng.uniform(300, WIDTH - 300, count), rng.uniform(250, HEIGHT - 250, count)], 1)
    ratio = new_scale / scale
    annotated = (part != 0).any(axis=2, keepdims=True)
    new_part = np.where(annotated, new_center[:, None] + (part - center[:, None]) * ratio[:, None, None], 0.0)
    with h5py.File(folder / "annotations.h5", "w") as out:
        out["imgname"] = np.array([f"{i:05d}.jpg".encode() for i in range(count)], dtype="S13")
        out["center"] = new_center
        out["scale"] = new_scale
        out["part"] = new_part
        out["visible"] = visible
        out["normalize"] = normalize * ratio
        out["index"] = np.arange(count)
        out["person"] = np.zeros(count, np.int64)
    return folder / "annotations.h5"


def first_images(annotations: Path, count: int) -> Path:
    """A copy of `make_sources`' annotation file with its first `count` people only, beside it."""
    subset = annotations.with_name(f"annotations_first{count}.h5")
    with h5py.File(annotations) as full, h5py.File(subset, "w") as out:  # anew: the sources may be new
        for key in full:
            out[key] = full[key][:count]
    return subset


def convert_sources(
    work: Path, out: Path, canvas: int, shard_size: int, split: str = "train", image_codec: str = IMAGE_CODECS[0]
) -> None:
    """The benchmarks' store: `make_sources`' images in `work` converted by `convert` (one worker)."""
    convert(
        ConvertOptions(
            "mpii",
            work / "annotations.h5",
            work / "images",
            out,
            split=split,
            canvas_size=canvas,
            shard_size=shard_size,
            workers=1,
            progress=False,
            image_codec=image_codec,
        )
    )


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median wall seconds, median CPU seconds incl. finished children) over `repeats` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return statistics.median(walls), statistics.median(cpus)


def decode_all(files: list[Path]) -> None:
    for f in files:
        image = cv2.imdecode(np.frombuffer(f.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None


def numcodec(name: str, zstd_level: int = IMAGE_ZSTD_LEVEL):
    """The store's crop codec `name` (`store.image_compressor`, its parameters read from there) as
    numcodecs has it, which zarr's codecs call, to time it alone."""
    import numcodecs

    codec = image_compressor(name, zstd_level)
    if name == "zstd":
        return numcodecs.Zstd(level=codec.level)
    shuffles = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE}
    return numcodecs.Blosc(cname=codec.cname.value, clevel=codec.clevel, shuffle=shuffles[codec.shuffle.value])


# The store's codec and the two it used before, for the floors: (`--image-codec` name, Zstd level)
FLOOR_CODECS = {
    "LZ4 (Blosc, level 1; the store's since session 10)": ("lz4", IMAGE_ZSTD_LEVEL),
    f"Zstd-{IMAGE_ZSTD_LEVEL} (the store's in sessions 8-9)": ("zstd", IMAGE_ZSTD_LEVEL),
    "Zstd-3 (the store's before session 8)": ("zstd", 3),
}
OTHER_CODEC = IMAGE_CODECS[1]  # `convert --image-codec` of the codec not the default


def decode_and_compress(files: list[Path], crops: np.ndarray, codec_name: str) -> None:
    """A floor: plain decoding plus compressing each crop with a codec of FLOOR_CODECS."""
    codec = numcodec(*FLOOR_CODECS[codec_name])
    for f, crop in zip(files, crops):
        image = cv2.imdecode(np.frombuffer(f.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        codec.encode(crop)


WRITE = "zarr write of the shards (incl. the codec) through zarrs"
IN_CONVERT = (
    "read file",
    "libjpeg-warning capture (fd 2 to a temp file and back)",
    "warpAffine to the canvas",
    WRITE,
    "fsync of the store",
)  # besides the decode


def breakdown_stages(files, affines, canvas, crops, work: Path, shard_size: int) -> dict:
    """Per stage of convert's work, a function doing it for every image (one core)."""
    from numcodecs import CRC32C

    datas = [read_image_file(f)[0] for f in files]
    reductions = [jpeg_reduction(a) for a in affines]
    images = [cv2.imdecode(np.frombuffer(d, np.uint8), decode_flags(1)) for d in datas]
    codec, crc = numcodec(IMAGE_CODECS[0]), CRC32C()
    store = work / "breakdown.zarr"

    def capture():
        for _ in datas:
            with libjpeg_warnings():
                pass

    def write(zarrs: bool = True):
        shutil.rmtree(store, ignore_errors=True)
        os.environ["POSE_PIPELINE_ZARRS"] = "1" if zarrs else "0"
        try:
            writer = StoreWriter(store, len(crops), MPII, canvas, shard_size)
            for s in range(0, len(crops), shard_size):
                writer.write_block(crops[s : s + shard_size])
        finally:
            os.environ.pop("POSE_PIPELINE_ZARRS")
        os.replace(writer.tmp_path, store)

    def each(fn, *items):  # results dropped at once, as convert does: no fresh pages per image
        for item in zip(*items):
            fn(*item)

    return {
        "read file": lambda: each(read_image_file, files),
        "libjpeg-warning capture (fd 2 to a temp file and back)": capture,
        "JPEG decode, full size (RGB)": lambda: each(
            lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), decode_flags(1)), datas
        ),
        "JPEG decode, reduced as `convert` picks it": lambda: each(
            lambda d, r: cv2.imdecode(np.frombuffer(d, np.uint8), decode_flags(r)), datas, reductions
        ),
        "warpAffine to the canvas": lambda: each(lambda i, a: geometry.warp_image(i, a, canvas), images, affines),
        f"{IMAGE_CODECS[0]} + CRC32C of the crop (the store's codec)": lambda: each(
            lambda c: crc.encode(codec.encode(c)), crops
        ),
        "zarr write of the shards (incl. the codec) through zarr-python's pipeline (before)": lambda: write(False),
        WRITE: write,
        "fsync of the store": lambda: fsync_tree(store),
    }


# `convert` in a fresh process of a checkout, timed inside it around its second call (the first
# imports what convert imports on first use; the worker processes count once they have ended):
# this checkout and a baseline alike.
CONVERT_TIMED = """
import json, resource, sys, time
import pose_pipeline
from pose_pipeline.data.convert import convert
try:
    from pose_pipeline.data.convert_options import ConvertOptions
except ImportError:  # a baseline checkout older than ConvertOptions takes the positional call
    ConvertOptions = None

def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

def kernel():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_stime + kids.ru_stime

annotations, images, out, canvas, shard, workers, reduced, codec = sys.argv[1:]
options = {"reduced_decode": reduced == "1"} if reduced else {}  # "": the checkout's default
options.update({"image_codec": codec} if codec else {})
work = ("mpii", annotations, images, out)
options.update(split="val", canvas_size=int(canvas), shard_size=int(shard), workers=int(workers), progress=False)
for timing in (False, True):  # the first run imports what convert imports on first use
    c0, k0, t0 = cpu(), kernel(), time.perf_counter()
    convert(ConvertOptions(*work, **options)) if ConvertOptions else convert(*work, **options)
print(json.dumps([time.perf_counter() - t0, cpu() - c0, kernel() - k0, pose_pipeline.__file__]))
"""


def convert_in(
    checkout: Path,
    annotations: Path,
    images: Path,
    out: Path,
    canvas: int,
    shard: int,
    workers: int,
    reduced: bool | None = None,
    codec: str = "",
) -> tuple[float, float, float]:
    """(wall s, CPU s, of which kernel s) of `convert` of `checkout`; `reduced` None, `codec` "": the checkout's
    default decode and image codec."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            CONVERT_TIMED,
            str(annotations),
            str(images),
            str(out),
            str(canvas),
            str(shard),
            str(workers),
            "" if reduced is None else str(int(reduced)),
            codec,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        cwd=checkout,  # `python -c` puts the working directory first on sys.path, before PYTHONPATH
    )
    wall, cpu, kernel, imported = json.loads(result.stdout.strip().splitlines()[-1])
    if not Path(imported).resolve().is_relative_to(checkout.resolve()):  # else it compares a checkout with itself
        raise SystemExit(f"convert of {checkout} imported pose_pipeline from {imported}")
    return wall, cpu, kernel


def write_store(path: Path, images: np.ndarray, shard_size: int, level: int | None, codec: str) -> None:
    """Image array only, as StoreWriter writes it with `codec` (Zstd at `level`); level None = no compression."""
    if level is not None:
        size = images.shape[1]
        writer = StoreWriter(path, len(images), MPII, size, shard_size, compression_level=level, image_codec=codec)
        for s in range(0, len(images), shard_size):
            writer.write_block(images[s : s + shard_size])
        writer.group.attrs["num_samples"] = len(images)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(writer.tmp_path, path)
        return
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    shape = images.shape
    array = group.create_array(
        "image", shape=shape, dtype="uint8", chunks=(1,) + shape[1:], shards=(shard_size,) + shape[1:], compressors=None
    )
    for s in range(0, len(images), shard_size):
        array[s : s + shard_size] = images[s : s + shard_size]


def read_store(path: Path, shard_size: int) -> None:
    """Whole shards read through the codec pipeline the store's reads use (zarrs where installed)."""
    import zarr

    pipeline = fast_codec_pipeline()
    with zarr.config.set({"codec_pipeline.path": pipeline} if pipeline else {}):
        array = zarr.open_group(str(path), mode="r")["image"]
        for s in range(0, array.shape[0], shard_size):
            array[s : s + shard_size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--canvas", type=int, default=384)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="build the sources in this folder and keep them (reused when there)")
    parser.add_argument(
        "--baseline-checkout", type=Path, help="also time `convert` of this checkout (e.g. ../main), in the same run"
    )
    parser.add_argument("--no-codec-table", action="store_true", help="skip the codec comparison")
    parser.add_argument(
        "--mpii-scales",
        action="store_true",
        help="person sizes drawn from the real MPII validation people (median box 690 px; "
        "those up to 1,600 px) instead of 300-700 px",
    )
    args = parser.parse_args()
    if not SAMPLE.exists():
        sys.exit(f"{SAMPLE} is absent: the benchmark needs the real MPII sample")

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="convert_speed_"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    n, canvas = args.images, args.canvas
    annotations = work / "annotations.h5"
    if not annotations.exists():
        make_sources(work, n, mpii_scales=args.mpii_scales)
    files = sorted((work / "images").glob("*.jpg"))[:n]
    jpeg_bytes = sum(f.stat().st_size for f in files) / n
    decode_all(files)  # page cache warm
    cores = len(os.sched_getaffinity(0))
    print(
        f"# convert_speed: {n} JPEGs {WIDTH}x{HEIGHT} (mean {jpeg_bytes / 1e3:.0f} kB), canvas {canvas}, "
        f"shard {args.shard_size}, {cores} cores ({cpu_model()}), "
        f"cv2 {cv2.__version__} threads {cv2.getNumThreads()}, median of {args.repeats}, "
        f"load average before {os.getloadavg()[0]:.2f}\n"
    )

    with h5py.File(annotations) as h5:
        center, scale = h5["center"][:n], h5["scale"][:n]
    affines = geometry.crop_affine(center - 1.0, 200 * scale * 1.5, canvas)
    reductions = np.array([jpeg_reduction(a) for a in affines])
    print("reduced decode picks: " + ", ".join(f"1/{r} for {np.sum(reductions == r)}" for r in (1, 2, 4, 8)) + "\n")

    out = work / "out.zarr"
    convert_sources(work, out, canvas, args.shard_size, split="val")
    crops = open_store(out).images()
    assert len(crops) == n
    stages = breakdown_stages(files, affines, canvas, crops, work, args.shard_size)
    rows = measurements(args, stages, files, crops, annotations, work, out)
    runs: dict[str, list[tuple[float, float]]] = {}
    for repeat in range(args.repeats):  # interleaved, every other repeat backwards: load drifts hit all rows alike
        for name, measure in rows if repeat % 2 == 0 else rows[::-1]:
            runs.setdefault(name, []).append(measure())
    median = {name: tuple(statistics.median(x) for x in zip(*r)) for name, r in runs.items()}  # wall, CPU(, kernel)
    print(f"load average after {os.getloadavg()[0]:.2f}\n")
    print_speed(median, stages, n)
    if not args.no_codec_table:
        codec_table(args, work, crops, n, canvas)


QUARTER = ", first quarter of the images"  # the suffix of a `convert` row's run on n // 4 images


def measurements(
    args, stages: dict, files: list[Path], crops: np.ndarray, annotations: Path, work: Path, out: Path
) -> list[tuple[str, object]]:
    """(row name, function -> (wall s, CPU s), and kernel s for `convert`) for every row of the speed tables."""

    def one_core(fn) -> tuple[float, float]:  # the floors and the stages: one OpenCV thread
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            return timed(fn, 1)
        finally:
            cv2.setNumThreads(threads)

    def convert_of(checkout: Path, workers: int, reduced: bool | None, people: Path, codec: str = ""):
        images = work / "images"
        return lambda: convert_in(checkout, people, images, out, args.canvas, args.shard_size, workers, reduced, codec)

    # each `convert` row also on the first quarter of the images: the two sizes part the CPU per
    # store (sources hashed, arrays created, fsync, the rename) from the CPU per image
    quarter = first_images(annotations, len(files) // 4)

    rows = [("plain decode (read + cv2.imdecode), 1 core", lambda: one_core(lambda: decode_all(files)))]
    rows += [
        (
            f"decode + {name} of the crop, 1 core",
            lambda name=name: one_core(lambda: decode_and_compress(files, crops, name)),
        )
        for name in FLOOR_CODECS
    ]
    rows += [(stage, lambda fn=fn: one_core(fn)) for stage, fn in stages.items()]
    for workers in (1, 2):
        baseline = args.baseline_checkout
        checkouts = [(f"`convert` of {baseline.name}, workers={workers}", baseline, None)] if baseline else []
        checkouts += [(convert_row(reduced, workers), ROOT, reduced) for reduced in (False, True)]
        for name, checkout, reduced in checkouts:
            rows.append((name, convert_of(checkout, workers, reduced, annotations)))
            rows.append((f"{name}{QUARTER}", convert_of(checkout, workers, reduced, quarter)))
    other = f"`convert --image-codec {OTHER_CODEC}` workers=1"
    rows.append((other, convert_of(ROOT, 1, None, annotations, OTHER_CODEC)))
    rows.append((f"{other}{QUARTER}", convert_of(ROOT, 1, None, quarter, OTHER_CODEC)))
    return rows


def print_speed(median: dict, stages: dict, n: int) -> None:
    plain = n / median["plain decode (read + cv2.imdecode), 1 core"][1]
    print("| step | wall s | images/s | CPU s | images per CPU-second | per core vs plain decode ", end="")
    print("| of the CPU, kernel: ms per image |\n|---|---|---|---|---|---|---|")
    for name, (wall, cpu, *kernel) in median.items():  # kernel (system) CPU: the `convert` rows
        if name not in stages and not name.endswith(QUARTER):
            rate = n / cpu
            print(f"| {name} | {wall:.2f} | {n / wall:.0f} | {cpu:.2f} | {rate:.0f} | {rate / plain:.2f}x |", end="")
            print(f" {kernel[0] / n * 1e3:.2f} |" if kernel else " – |")
    print_per_store(median, n, plain)
    ms = {name: median[name][1] / n * 1000 for name in stages}
    print("\n| stage (one core) | ms CPU per image, `--no-reduced-decode` | `convert` (reduced decodes) |")
    print("|---|---|---|")
    decode = {False: "JPEG decode, full size (RGB)", True: "JPEG decode, reduced as `convert` picks it"}
    for name in stages:
        if name.startswith("JPEG decode"):
            full, reduced = (f"{ms[name]:.2f}", "") if name == decode[False] else ("", f"{ms[name]:.2f}")
            print(f"| {name} | {full} | {reduced} |")
        else:
            print(f"| {name} | {ms[name]:.2f} | {ms[name]:.2f} |")
    accounted = sum(ms[k] for k in IN_CONVERT)
    total = {reduced: median[convert_row(reduced)][1] / n * 1000 for reduced in (False, True)}
    rest = {reduced: total[reduced] - accounted - ms[decode[reduced]] for reduced in (False, True)}
    print(f"| bookkeeping: the rest of `convert` workers=1 | {rest[False]:.2f} | {rest[True]:.2f} |")
    print(f"| **`convert` workers=1, total** | **{total[False]:.2f}** | **{total[True]:.2f}** |")


def print_per_store(median: dict, n: int, plain: float) -> None:
    """Each `convert` row's CPU parted into a cost per store and a cost per image, from its runs
    on all n images and on the first n // 4: a real dataset (MPII: 25,000 people) pays the first
    once, so its rate is the per-image one."""
    quarter = n // 4
    print(f"\n| `convert` (CPU parted, from {n} and {quarter} images) | ms per store | ms per image |", end="")
    print(" images per CPU-second, per image | per core vs plain decode |\n|---|---|---|---|---|")
    for name, (_, cpu, *_) in median.items():
        if f"{name}{QUARTER}" in median:
            per_image = (cpu - median[f"{name}{QUARTER}"][1]) / (n - quarter)
            per_store = cpu - n * per_image
            print(f"| {name} | {per_store * 1e3:.0f} | {per_image * 1e3:.2f} | {1 / per_image:.0f} |", end="")
            print(f" {1 / per_image / plain:.2f}x |")


def convert_row(reduced: bool, workers: int = 1) -> str:
    return f"`convert{'' if reduced else ' --no-reduced-decode'}` workers={workers}"


def codec_table(args, work: Path, crops: np.ndarray, n: int, canvas: int) -> None:
    """The store's image bytes and write/read speed per codec, for the crops `convert` stores."""
    raw = canvas * canvas * 3
    print(
        f"\n| image codec | bytes/sample | vs uncompressed {raw:,} | write MB/s | write ms CPU/sample "
        f"| read (whole shards, store's reader) MB/s | read ms CPU/sample |"
    )
    print("|---|---|---|---|---|---|---|")
    for level, codec in ((None, "zstd"), (1, "lz4"), (1, "zstd"), (3, "zstd"), (9, "zstd")):
        path = work / f"codec-{codec}{level}.zarr"
        wall_w, cpu_w = timed(
            lambda p=path, lv=level, c=codec: write_store(p, crops, args.shard_size, lv, c), args.repeats
        )
        wall_r, cpu_r = timed(lambda p=path: read_store(p, args.shard_size), args.repeats)
        size = bytes_on_disk(path) / n
        name = "none" if level is None else "LZ4 (Blosc)" if codec == "lz4" else f"Zstd level {level}"
        name += " (default)" if level is not None and codec == IMAGE_CODECS[0] else ""
        mb = crops.nbytes / 1e6
        print(
            f"| {name} | {size:,.0f} | {size / raw:.1%} | {mb / wall_w:.0f} | {cpu_w / n * 1000:.2f} "
            f"| {mb / wall_r:.0f} | {cpu_r / n * 1000:.2f} |"
        )
        shutil.rmtree(path)


if __name__ == "__main__":
    main()
