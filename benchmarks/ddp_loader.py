"""Per-rank read time of one epoch with the DDP loader partition (`data.ShardBatches`).

Every rank walks the same global batches and reads only its slice: whole shards where it
needs much of one, single samples otherwise. Baselines in the same run: every rank reading
every shard whole (a naive 'same batches on all ranks, then slice' loader), and 1/W of
that (ranks owning disjoint shards: the cheapest read, but then W ranks of batch B do not
see the batches of one process with batch W*B).

    PYTHONPATH=. python benchmarks/ddp_loader.py STORE.zarr [--batch 16] [--worlds 1 2 4 8]
"""

from __future__ import annotations

import argparse
import time

from pose_pipeline.data.batches import ShardBatches
from pose_pipeline.data.store import open_store


def epoch_seconds(store, batch: int, rank: int, world: int) -> tuple[float, int]:
    started = time.perf_counter()
    loader = ShardBatches(store, batch, rank=rank, world_size=world)
    samples = sum(len(index) for _, index in loader.epoch(0, read_ahead=False))
    return time.perf_counter() - started, samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    store = open_store(args.store)
    started = time.perf_counter()
    for start in range(0, len(store), int(store.attrs["shard_size"])):
        store.images(start, start + int(store.attrs["shard_size"]))
    read_all = time.perf_counter() - started
    print(
        f"{len(store)} samples, canvas {store.canvas_size}, shard {store.attrs['shard_size']}: "
        f"all shards read whole {read_all:.2f} s ({read_all / len(store) * 1e3:.2f} ms/sample)"
    )
    print("world  rank-0 epoch s  samples/rank  ms/sample  vs all shards  vs 1/W of the shards")
    for world in args.worlds:
        seconds, samples = epoch_seconds(store, args.batch, 0, world)
        print(
            f"{world:5d}  {seconds:14.2f}  {samples:12d}  {seconds / samples * 1e3:9.2f}  "
            f"{seconds / read_all:12.2f}x  {seconds / (read_all / world):18.2f}x"
        )


if __name__ == "__main__":
    main()
