"""Stores verify what they hold: a flipped byte or a missing file is an error naming the chunk."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from helpers import make_random_store

from pose_pipeline import cli
from pose_pipeline.data.store import open_store
from pose_pipeline.data.store_check import StoreDamage
from pose_pipeline.errors import UserError

SHARD_INDEX_BYTES = 16 * 4 + 4  # 4 inner chunks x (offset, length) uint64 + crc32c


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_random_store(
        tmp_path_factory.mktemp("pristine") / "s.zarr", num_samples=10, canvas_size=32, shard_size=4
    )


@pytest.fixture
def store_copy(pristine, tmp_path):
    path = tmp_path / "s.zarr"
    shutil.copytree(pristine, path)
    return path


def flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def read_everything(path, fast_decode: bool) -> None:
    store = open_store(path, fast_decode=fast_decode)
    store.images(0, len(store))
    for name in store.array_names():
        if name != "image":
            getattr(store, name)


def probe_offsets(pristine) -> list[tuple[str, int]]:
    """21 offsets: image shard payloads, shard indexes, and the keypoints and visible chunks."""
    shard = pristine / "image" / "c" / "1" / "0" / "0" / "0"
    size = shard.stat().st_size
    image = [("image/c/1/0/0/0", int(o)) for o in np.linspace(0, size - SHARD_INDEX_BYTES - 1, 9)]
    index = [("image/c/1/0/0/0", size - SHARD_INDEX_BYTES + o) for o in (0, 9, 33, 60, SHARD_INDEX_BYTES - 1)]
    last = ("image/c/2/0/0/0", 5)  # the partial last shard
    keypoints = pristine / "keypoints" / "c" / "0" / "0" / "0"
    kp = [("keypoints/c/0/0/0", int(o)) for o in np.linspace(0, keypoints.stat().st_size - 1, 4)]
    visible = pristine / "visible" / "c" / "0" / "0"
    vis = [("visible/c/0/0", int(o)) for o in (0, visible.stat().st_size - 1)]
    return image + index + [last] + kp + vis


def test_every_flipped_byte_is_reported_by_verify_and_by_reads(pristine, tmp_path):
    offsets = probe_offsets(pristine)
    assert len(offsets) >= 20
    for n, (key, offset) in enumerate(offsets):
        path = tmp_path / f"s{n}.zarr"
        shutil.copytree(pristine, path)
        flip(path / key, offset)
        problems = open_store(path).verify()
        array = key.split("/")[0]
        assert len(problems) == 1 and f"array {array}, " in problems[0] and key in problems[0], (key, offset, problems)
        assert problems[0].endswith("convert again")
        for fast_decode in (True, False):  # zarrs (training reads) and zarr-python
            with pytest.raises(StoreDamage, match=f"array {array}, .*{key}"):
                read_everything(path, fast_decode)
        shutil.rmtree(path)


def test_a_missing_shard_is_an_error_not_black_crops(store_copy):
    os.remove(store_copy / "image" / "c" / "1" / "0" / "0" / "0")
    store = open_store(store_copy)
    assert store.images(0, 4).shape == (4, 32, 32, 3)  # the shards that are there still read
    with pytest.raises(StoreDamage, match=r"shard image/c/1/0/0/0 \(samples 4-7\): the file is missing"):
        store.images(0, 10)
    assert any("image/c/1/0/0/0" in p for p in store.verify())


def test_a_chunk_its_shard_index_marks_unwritten_is_an_error_not_a_black_crop(store_copy):
    """zarrs leaves an all-zero inner chunk out of its shard whatever write_empty_chunks says (why
    StoreWriter writes such blocks through zarr-python); the shard decodes, its index checksum
    holds, and zarr would read the sample as zeros. A store so written is damage."""
    import zarr

    with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
        zarr.open_array(str(store_copy / "image"), mode="r+")[5] = 0
    store = open_store(store_copy)
    assert store.images(0, 4).shape == (4, 32, 32, 3) and store.images(8, 10).shape == (2, 32, 32, 3)
    message = r"shard image/c/1/0/0/0 \(samples 4-7\): the shard's index marks sample 5's chunk as not written"
    with pytest.raises(StoreDamage, match=message):
        store.images(6, 7)  # a read of other samples of that shard too: zarr reads it whole
    problems = store.verify()
    assert len(problems) == 1 and "sample 5's chunk as not written" in problems[0], problems


def test_a_shard_cut_short_is_an_error_naming_it(store_copy):
    shard = store_copy / "image" / "c" / "1" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:10])  # shorter than its own index
    store = open_store(store_copy)
    with pytest.raises(StoreDamage, match=r"shard image/c/1/0/0/0 \(samples 4-7\)"):
        store.images(0, 10)
    problems = store.verify()
    assert len(problems) == 1 and "image/c/1/0/0/0" in problems[0], problems


def test_a_missing_array_is_named_when_the_store_opens(store_copy):
    shutil.rmtree(store_copy / "keypoints")
    with pytest.raises(StoreDamage, match="arrays missing: keypoints"):
        open_store(store_copy)


def test_a_truncated_root_metadata_file_names_it(store_copy):
    root = store_copy / "zarr.json"
    root.write_text(root.read_text()[:40])
    with pytest.raises(UserError, match="zarr.json: unreadable store metadata"):
        open_store(store_copy)


def test_inspect_verify_reports_all_damage_and_exits_1(store_copy, capsys):
    assert cli.main(["inspect", str(store_copy), "--verify"]) == 0
    assert "no damage found" in capsys.readouterr().out
    flip(store_copy / "image" / "c" / "0" / "0" / "0" / "0", 3)
    os.remove(store_copy / "head_size" / "c" / "0")
    assert cli.main(["inspect", str(store_copy), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "image/c/0/0/0/0 (samples 0-3): checksum mismatch" in out
    assert "head_size/c/0 (samples 0-9): the file is missing" in out
    assert "2 damaged or missing files" in out


def test_all_zero_chunks_are_written_so_that_missing_means_damaged(tmp_path):
    """zarr skips all-fill chunks by default; a store writes them, or a black crop (or a zero
    source index) would read as 'missing'."""
    from pose_pipeline.core.joints import MPII
    from pose_pipeline.data.store_writer import StoreWriter

    writer = StoreWriter(tmp_path / "black.zarr", 2, MPII, 16, 2, attrs={"pixel_origin": 1.0, "context": 1.5})
    writer.write_block(np.zeros((2, 16, 16, 3), np.uint8))
    writer.set_metadata(
        keypoints=np.zeros((2, 16, 2), np.float32),
        visible=np.ones((2, 16), np.uint8),
        affine=np.zeros((2, 2, 3)),
        center=np.zeros((2, 2)),
        scale=np.ones(2),
        head_size=np.ones(2),
        image_name=np.array(["a.jpg", "b.jpg"]),
        source_index=np.zeros((2, 2), np.int64),
    )
    path = writer.commit()
    assert (path / "image" / "c" / "0" / "0" / "0" / "0").is_file()
    assert (path / "source_index" / "c" / "0" / "0").is_file()
    store = open_store(path)
    assert store.verify() == []
    assert not store.images(0, 2).any() and not store.source_index.any()
    meta = json.loads((path / "image" / "zarr.json").read_text())
    assert any(c["name"] == "crc32c" for c in meta["codecs"][0]["configuration"]["codecs"])


def test_zarrs_writes_the_crops_and_a_block_with_a_black_crop_keeps_every_chunk(tmp_path, monkeypatch):
    """Crops are written through zarrs when installed (less CPU), which leaves out all-zero inner
    chunks: a block holding a black crop goes through zarr-python, so every chunk still exists."""
    pytest.importorskip("zarrs")
    from pose_pipeline.core.joints import MPII
    from pose_pipeline.data.store_writer import StoreWriter

    images = np.random.default_rng(1).integers(1, 256, (8, 16, 16, 3), dtype=np.uint8)
    images[6] = 0  # the second block's black crop
    stores = {}
    for zarrs in ("1", "0"):
        monkeypatch.setenv("POSE_PIPELINE_ZARRS", zarrs)
        writer = StoreWriter(tmp_path / f"{zarrs}.zarr", 8, MPII, 16, 4, attrs={"pixel_origin": 1.0, "context": 1.5})
        writer.write_block(images[:4])
        assert (writer._fast_image_array is not None) == (zarrs == "1")  # the first block: through zarrs
        writer.write_block(images[4:])
        writer.set_metadata(
            keypoints=np.zeros((8, 16, 2), np.float32),
            visible=np.ones((8, 16), np.uint8),
            affine=np.zeros((8, 2, 3)),
            center=np.zeros((8, 2)),
            scale=np.ones(8),
            head_size=np.ones(8),
            image_name=np.array(["a.jpg"] * 8),
            source_index=np.zeros((8, 2), np.int64),
        )
        stores[zarrs] = open_store(writer.commit())
    for store in stores.values():
        assert store.verify() == []
        assert np.array_equal(store.images(), images)
        for shard in ("0", "1"):
            data = (store.path / "image" / "c" / shard / "0" / "0" / "0").read_bytes()
            index = np.frombuffer(data[-SHARD_INDEX_BYTES:-4], "<u8").reshape(4, 2)
            assert (index != np.iinfo(np.uint64).max).all()  # no inner chunk left out
    assert (stores["1"].path / "image" / "zarr.json").read_text() == (
        stores["0"].path / "image" / "zarr.json"
    ).read_text()
