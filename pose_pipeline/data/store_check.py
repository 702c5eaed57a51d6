"""Integrity of a store's chunks: every chunk must exist and decode with its checksum.

Stores written since checksums came carry a crc32c codec after the compressor on every chunk (and the
sharding codec checksums its index), and write every chunk, even an all-zero one. So a flipped
byte fails its checksum, and a missing file or an inner chunk its shard's index marks as not
written is damage, not the fill value zarr would read in its place. Each failure is reported as

    STORE: array NAME, shard|chunk KEY (samples i-j): what failed; convert again
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pose_pipeline.errors import UserError


class StoreDamage(UserError):
    """A chunk of a store is missing or does not decode: the store must be converted again."""


def chunk_rows(array) -> int:
    """Samples per stored file of `array`: the shard size of a sharded array, else the chunk's."""
    return int((array.shards or array.chunks)[0])


def chunk_key(array, index: int) -> str:
    """The file name (below the array's folder) of the index-th shard or chunk along samples."""
    return "c/" + "/".join([str(index)] + ["0"] * (array.ndim - 1))


def damage_message(store_path: Path, name: str, array, index: int, what: str) -> str:
    rows = chunk_rows(array)
    first, last = index * rows, min((index + 1) * rows, array.shape[0]) - 1
    kind = "shard" if array.shards else "chunk"
    return (
        f"{store_path}: array {name}, {kind} {name}/{chunk_key(array, index)} (samples {first}-{last}): "
        f"{what}; convert again"
    )


def missing_chunk_indices(store_path: Path, name: str, array, start: int, stop: int) -> list[int]:
    """The files covering samples [start, stop) that are not on disk, by index along samples."""
    rows = chunk_rows(array)
    folder = Path(store_path) / name
    return [i for i in range(start // rows, -(-stop // rows)) if not (folder / chunk_key(array, i)).is_file()]


ABSENT = 2**64 - 1  # a shard index's (offset, length) of an inner chunk that was not written


def absent_chunk_problem(store_path: Path, name: str, array, index: int) -> str:
    """Why the index-th shard of a checksummed array is damaged though it decodes: its index
    (whose own checksum zarr checks) marks the inner chunk of a sample as not written, which zarr
    reads as the fill value, black crops. '' where every sample's chunks are there."""
    if not array.shards or not has_checksums(array):  # older stores could leave all-zero chunks out
        return ""
    sharding = array.metadata.codecs[0]
    if getattr(sharding.index_location, "value", sharding.index_location) != "end":
        return ""
    entries = int(np.prod([s // c for s, c in zip(array.shards, array.chunks)]))
    index_bytes = entries * 16 + 4  # (offset, length) uint64 pairs, then the crc32c
    path = Path(store_path) / name / chunk_key(array, index)
    if path.stat().st_size < index_bytes:
        return ""  # too short to hold its index: the read itself reports the damage
    with open(path, "rb") as f:
        f.seek(-index_bytes, os.SEEK_END)
        table = np.frombuffer(f.read(entries * 16), "<u8").reshape(array.shards[0] // array.chunks[0], -1, 2)
    first = index * chunk_rows(array)
    present = min(chunk_rows(array), array.shape[0] - first)  # beyond the last sample: never written
    absent = np.flatnonzero((table[:present] == ABSENT).all(axis=2).any(axis=1))
    if not len(absent):
        return ""
    return f"the shard's index marks sample {first + absent[0]}'s chunk as not written (it would read as zeros)"


def checked_read(store_path: Path, name: str, array, start: int, stop: int):
    """array[start:stop], or StoreDamage naming the first missing or undecodable file."""
    if stop <= start:
        return array[start:stop]
    missing = missing_chunk_indices(store_path, name, array, start, stop)
    if missing:
        raise StoreDamage(damage_message(store_path, name, array, missing[0], "the file is missing"))
    rows = chunk_rows(array)
    for i in range(start // rows, -(-stop // rows)):
        problem = absent_chunk_problem(store_path, name, array, i)
        if problem:
            raise StoreDamage(damage_message(store_path, name, array, i, problem))
    try:
        return array[start:stop]
    except Exception as exc:  # zarr and zarrs raise ValueError/RuntimeError for checksum and codec errors
        rows = chunk_rows(array)
        for i in range(start // rows, -(-stop // rows)):
            problem = _read_problem(array, i)
            if problem:
                raise StoreDamage(damage_message(store_path, name, array, i, problem)) from exc
        raise StoreDamage(f"{store_path}: array {name} (samples {start}-{stop - 1}): {exc}; convert again") from exc


def _read_problem(array, index: int) -> str:
    rows = chunk_rows(array)
    try:
        array[index * rows : min((index + 1) * rows, array.shape[0])]
    except Exception as exc:
        if "checksum" in str(exc).lower():
            return "checksum mismatch, the file is damaged"
        return f"does not decode ({type(exc).__name__}: {exc})"
    return ""


def verify(store) -> list[str]:
    """Read every chunk of every array of an open PoseStore; one message per damaged file."""
    import zarr

    problems = []
    n = len(store)
    for name in store.array_names():
        try:
            array = zarr.open_array(str(store.path / name), mode="r")
        except Exception as exc:
            problems.append(f"{store.path}: array {name}: unreadable metadata ({exc}); convert again")
            continue
        if array.shape[0] != n:
            problems.append(f"{store.path}: array {name} holds {array.shape[0]} samples, the store {n}; convert again")
            continue
        missing = set(missing_chunk_indices(store.path, name, array, 0, n))
        for i in range(-(-n // chunk_rows(array))):
            problem = "the file is missing" if i in missing else _read_problem(array, i)
            problem = problem or absent_chunk_problem(store.path, name, array, i)
            if problem:
                problems.append(damage_message(store.path, name, array, i, problem))
    return problems


def has_checksums(array) -> bool:
    """Whether the chunks of `array` carry a crc32c checksum (stores written since it came)."""
    codecs = array.metadata.codecs
    if array.shards:  # the chunks' own codecs sit inside the sharding codec
        codecs = codecs[0].codecs
    return any(type(c).__name__ == "Crc32cCodec" for c in codecs)
