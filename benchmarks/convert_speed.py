"""Conversion speed and store size on MPII-size sources.

    PYTHONPATH=. python benchmarks/convert_speed.py [--images 200] [--canvas 384] [--repeats 3]

Builds ~200 1280x720 JPEGs from the five real MPII sample images (resized and cropped at
varying offsets, every other one mirrored) with a matching stacked-hourglass .h5 of one
person per image (a valid.h5 pose, moved and scaled into the image), all in a temporary
folder. Then, in one run:

- plain decoding (read + cv2.imdecode) of the same files on one core: the floor;
- decode + warpAffine (the crop) on one core: the converter's image work without the store;
- `convert` with workers=1 and workers=2 (wall time, and images per CPU-second counting the
  worker processes);
- the store's image bytes per sample for Zstd levels 1 / 3 (the default) / 9 and no
  compression, against uncompressed S*S*3, with write and whole-shard read speed.

Prints markdown tables. Needs ../shared/data/mpii_sample (the real sample).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pose_pipeline import geometry  # noqa: E402
from pose_pipeline.convert import convert  # noqa: E402
from pose_pipeline.images import load_image  # noqa: E402
from pose_pipeline.inspect import bytes_on_disk  # noqa: E402
from pose_pipeline.joints import MPII  # noqa: E402
from pose_pipeline.store import StoreWriter, open_store  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "data" / "mpii_sample"
WIDTH, HEIGHT = 1280, 720


def make_sources(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` 1280x720 JPEGs + annotations.h5 (hourglass layout, one person per image)."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    originals = [cv2.imread(str(p)) for p in sorted((SAMPLE / "images").glob("*.jpg"))]
    for i in range(count):
        src = originals[i % len(originals)]
        zoom = max(WIDTH / src.shape[1], HEIGHT / src.shape[0]) * rng.uniform(1.0, 1.6)
        big = cv2.resize(src, (round(src.shape[1] * zoom), round(src.shape[0] * zoom)),
                         interpolation=cv2.INTER_CUBIC)
        # tile when the zoomed image is still short of 1280x720 on a side (rounding)
        big = np.tile(big, (-(-HEIGHT // big.shape[0]), -(-WIDTH // big.shape[1]), 1))
        y = rng.integers(0, big.shape[0] - HEIGHT + 1)
        x = rng.integers(0, big.shape[1] - WIDTH + 1)
        frame = big[y:y + HEIGHT, x:x + WIDTH]
        if i % 2:
            frame = frame[:, ::-1]
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        (images / f"{i:05d}.jpg").write_bytes(data.tobytes())

    with h5py.File(SAMPLE / "valid.h5") as h5:
        part, visible = h5["part"][:count], h5["visible"][:count]
        center, scale, normalize = h5["center"][:count], h5["scale"][:count], h5["normalize"][:count]
    new_scale = rng.uniform(1.5, 3.5, count)  # person box 300-700 px, crop x1.5
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


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def decode_and_warp(files: list[Path], affines: np.ndarray, canvas: int) -> None:
    for f, affine in zip(files, affines):
        image, problem = load_image(f)  # read, end-marker check, decode, BGR->RGB
        geometry.warp_image(image, affine, canvas)


def write_store(path: Path, images: np.ndarray, shard_size: int, level: int | None) -> None:
    """Image array only, as StoreWriter writes it; level None = no compression."""
    if level is not None:
        writer = StoreWriter(path, len(images), MPII, images.shape[1], shard_size, compression_level=level)
        for s in range(0, len(images), shard_size):
            writer.write_block(images[s:s + shard_size])
        writer.group.attrs["num_samples"] = len(images)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(writer.tmp_path, path)
        return
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    shape = images.shape
    array = group.create_array("image", shape=shape, dtype="uint8", chunks=(1,) + shape[1:],
                               shards=(shard_size,) + shape[1:], compressors=None)
    for s in range(0, len(images), shard_size):
        array[s:s + shard_size] = images[s:s + shard_size]


def read_store(path: Path, shard_size: int) -> None:
    import zarr

    array = zarr.open_group(str(path), mode="r")["image"]
    for s in range(0, array.shape[0], shard_size):
        array[s:s + shard_size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--canvas", type=int, default=384)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", help="build the sources in this folder and keep them")
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
    annotations = make_sources(work, n)
    files = sorted((work / "images").glob("*.jpg"))
    jpeg_bytes = sum(f.stat().st_size for f in files) / n
    decode_all(files)  # page cache warm
    cores = len(os.sched_getaffinity(0))
    print(f"# convert_speed: {n} JPEGs {WIDTH}x{HEIGHT} (mean {jpeg_bytes / 1e3:.0f} kB), canvas {canvas}, "
          f"shard {args.shard_size}, {cores} cores ({cpu_name()}), "
          f"cv2 {cv2.__version__} threads {cv2.getNumThreads()}, median of {args.repeats}\n")

    with h5py.File(annotations) as h5:
        center, scale = h5["center"][()], h5["scale"][()]
    affines = geometry.crop_affine(center - 1.0, 200 * scale * 1.5, canvas)

    rows = []
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one core for the plain baselines
    wall, cpu = timed(lambda: decode_all(files), args.repeats)
    rows.append(("plain decode (read + cv2.imdecode), 1 core", wall, cpu))
    wall, cpu = timed(lambda: decode_and_warp(files, affines, canvas), args.repeats)
    rows.append(("decode + warpAffine crop, 1 core (no store)", wall, cpu))
    cv2.setNumThreads(cv2_threads)

    out = work / "out.zarr"
    for workers in (1, 2):
        wall, cpu = timed(lambda: convert("mpii", annotations, work / "images", out, split="val",
                                          canvas_size=canvas, shard_size=args.shard_size,
                                          workers=workers, progress=False), args.repeats)
        rows.append((f"`convert` workers={workers} (decode, crop, Zstd-3 shards, metadata)", wall, cpu))
    assert len(open_store(out)) == n

    print("| step | wall s | images/s | CPU s | images per CPU-second |")
    print("|---|---|---|---|---|")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.2f} | {n / wall:.0f} | {cpu:.2f} | {n / cpu:.0f} |")

    # ------------------------------------------------------------------ codec choice
    crops = open_store(out).images()
    raw = canvas * canvas * 3
    print(f"\n| image codec | bytes/sample | vs uncompressed {raw:,} | write MB/s | write s/1000 samples "
          f"| read (whole shards) MB/s |")
    print("|---|---|---|---|---|---|")
    for level in (None, 1, 3, 9):
        path = work / f"codec-{level}.zarr"
        wall_w, _ = timed(lambda: write_store(path, crops, args.shard_size, level), args.repeats)
        wall_r, _ = timed(lambda: read_store(path, args.shard_size), args.repeats)
        size = bytes_on_disk(path) / n
        name = "none" if level is None else f"Zstd level {level}" + (" (default)" if level == 3 else "")
        mb = crops.nbytes / 1e6
        print(f"| {name} | {size:,.0f} | {size / raw:.1%} | {mb / wall_w:.0f} | {wall_w / n * 1000:.2f} "
              f"| {mb / wall_r:.0f} |")
        shutil.rmtree(path)


if __name__ == "__main__":
    main()
