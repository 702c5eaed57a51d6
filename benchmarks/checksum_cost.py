"""What chunk checksums cost a store read: the same crops stored three ways, read by zarrs.

    PYTHONPATH=. python benchmarks/checksum_cost.py [--samples 256] [--repeats 7]

256 crops of 384x384 cut from the real MPII sample images (../shared/data), sharded 64 per
file as `convert` writes them, zstd level 3 with (a) no checksum, (b) a crc32c codec after
zstd (what stores use), (c) zstd's own content checksum. Each is read whole shard by whole
shard through zarrs with one thread; the figure is samples per CPU-second of this process,
the median of --repeats reads, the three variants interleaved so that load affects each alike.
"""

from __future__ import annotations

import argparse
import glob
import resource
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpii_sample" / "images"
VARIANTS = {
    "no checksum": [ZstdCodec(level=3)],
    "crc32c after zstd (stores)": [ZstdCodec(level=3), Crc32cCodec()],
    "zstd content checksum": [ZstdCodec(level=3, checksum=True)],
}


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def crops(n: int) -> np.ndarray:
    images = [cv2.imread(f) for f in sorted(glob.glob(str(SAMPLE / "*.jpg")))]
    return np.stack(
        [cv2.resize(images[i % len(images)][(i * 7) % 50 :, (i * 13) % 80 :], (384, 384)) for i in range(n)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    data = crops(args.samples)
    work = Path(tempfile.mkdtemp(prefix="checksum_cost_"))
    try:
        for k, codecs in enumerate(VARIANTS.values()):
            zarr.create_array(
                work / f"{k}.zarr",
                shape=data.shape,
                dtype="uint8",
                chunks=(1, 384, 384, 3),
                shards=(64, 384, 384, 3),
                compressors=codecs,
            )[:] = data
        zarr.config.set({"threading.max_workers": 1})
        rates = {name: [] for name in VARIANTS}
        with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
            arrays = {name: zarr.open_array(work / f"{k}.zarr", mode="r") for k, name in enumerate(VARIANTS)}
            for _ in range(args.repeats):
                for name, array in arrays.items():
                    start = cpu_s()
                    for s in range(0, args.samples, 64):
                        array[s : s + 64]
                    rates[name].append(args.samples / (cpu_s() - start))
        base = float(np.median(rates["no checksum"]))
        print("| store chunks | samples per CPU-second (median) | vs no checksum |\n|---|---|---|")
        for name, values in rates.items():
            rate = float(np.median(values))
            print(f"| {name} | {rate:,.0f} | {rate / base - 1:+.1%} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
