"""`StoreWriter`: writes a converted-sample store (`store`'s schema).

Writers build the store under a temporary name and swap it into place when complete, so
a killed conversion never leaves a store that looks finished, nor loses the store it was
replacing; they replace only a folder that is a store (`store.is_store`: the root zarr.json
that only a store writer writes is its mark), never anything else.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pose_pipeline import __version__
from pose_pipeline.config.schema import schema_defaults
from pose_pipeline.core.joints import JointSet
from pose_pipeline.data.store import (
    IMAGE_CODECS,
    IMAGE_ZSTD_LEVEL,
    OPTIONAL_ARRAYS,
    PER_SAMPLE_ARRAYS,
    SCHEMA_VERSION,
    check_store_replaceable,
    fast_codec_pipeline,
    image_compressor,
)
from pose_pipeline.util.atomic import partial_path, remove_stale_partials, replace_folder


class StoreWriter:
    """Build a store at a temporary path: image shards as they come, metadata at the end,
    then `commit()` renames it into place. `abort()` removes the partial store.
    """

    def __init__(
        self,
        path,
        max_samples: int,
        joints: JointSet,
        canvas_size: int,
        shard_size: int = schema_defaults("dataset")["shard_size"],  # one home: the schema
        attrs: dict | None = None,
        compression_level: int = IMAGE_ZSTD_LEVEL,
        image_codec: str = IMAGE_CODECS[0],
    ):
        """`compression_level`: Zstd's, of the metadata arrays and of zstd crops; `image_codec`:
        the crops' compressor (IMAGE_CODECS)."""
        self.path = Path(path)
        self.compression_level = compression_level
        compressor = image_compressor(image_codec, compression_level)  # a bad name fails before any write
        check_store_replaceable(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path)
        self.tmp_path = partial_path(self.path)
        shutil.rmtree(self.tmp_path, ignore_errors=True)
        self.joints = joints
        self.canvas_size = canvas_size
        self.num_samples = 0
        self._fast_image_array = None  # the image array opened through zarrs, on the first write
        try:
            self._create(max_samples, shard_size, compressor, attrs or {})
        except BaseException:  # e.g. a full disk: no half-made store left beside the target
            self.abort()
            raise

    def _create(self, max_samples: int, shard_size: int, compressor, attrs: dict) -> None:
        """The group at the temporary path, its image array and its attributes."""
        import zarr

        self.group = zarr.open_group(str(self.tmp_path), mode="w", zarr_format=3)
        canvas_size = self.canvas_size
        shape = (max_samples, canvas_size, canvas_size, 3)
        self.image_array = self.group.create_array(  # kept: its config (write_empty_chunks) is not stored
            "image",
            shape=shape,
            dtype="uint8",
            chunks=(1,) + shape[1:],
            shards=(max(1, min(shard_size, max_samples)),) + shape[1:],
            **self._codecs(compressor),
        )
        self.group.update_attributes(  # one write of zarr.json (attrs.update writes it once per key)
            {
                "schema_version": SCHEMA_VERSION,
                **self.joints.to_dict(),
                "canvas_size": canvas_size,
                "shard_size": shard_size,
                "package_version": __version__,
                **attrs,
            }
        )

    def _codecs(self, compressor=None) -> dict:
        """Checksummed chunks, each written even when all zero: a damaged or missing file is then
        an error on read (store_check), never silently the fill value. Compressed by
        `compressor`, by default Zstd at `compression_level`."""
        from zarr.codecs import Crc32cCodec

        return {
            "compressors": [compressor or image_compressor("zstd", self.compression_level), Crc32cCodec()],
            "config": {"write_empty_chunks": True},
        }

    def write_block(self, images: np.ndarray) -> None:
        """Append crops; blocks of `shard_size` starting on a shard boundary write whole
        shards (a partial shard write re-reads and rewrites the shard)."""
        start, stop = self.num_samples, self.num_samples + len(images)
        self._writer_for(images)[start:stop] = images
        self.num_samples = stop

    def _writer_for(self, images: np.ndarray):
        """zarrs (1.4-1.6x less CPU per crop than zarr-python's pipeline, BENCHMARKS.md) for a
        block without an all-zero crop: it leaves out a shard's inner chunks that hold only the
        fill value, whatever write_empty_chunks says, and every chunk must exist (`_codecs`).
        The same codecs and arrays either way; only the compressor library's bytes may differ."""
        pipeline = fast_codec_pipeline()
        if pipeline is None or not all(crop.max() for crop in images):  # max: no cast to bool, unlike any
            return self.image_array
        if self._fast_image_array is None:
            import zarr

            with zarr.config.set({"codec_pipeline.path": pipeline}):
                self._fast_image_array = zarr.open_array(str(self.tmp_path / "image"), mode="r+")
        return self._fast_image_array

    def truncate(self, num_samples: int) -> None:
        """Shrink the image array to the samples actually written (after skips)."""
        self._fast_image_array = None  # its metadata would be stale
        self.image_array.resize((num_samples,) + self.image_array.shape[1:])
        self.num_samples = num_samples

    def set_metadata(self, **fields: np.ndarray) -> None:
        """All per-sample arrays but `image`, in one go (they are small and read whole); an
        optional one (OPTIONAL_ARRAYS) left out is not written, so it reads as its default."""
        missing = set(PER_SAMPLE_ARRAYS) - {"image"} - set(OPTIONAL_ARRAYS) - set(fields)
        if missing:
            raise ValueError(f"store {self.path}: metadata arrays missing: {sorted(missing)}")
        n, j, s = self.num_samples, self.joints.num_joints, self.canvas_size
        for name, values in fields.items():
            trailing, dtype = PER_SAMPLE_ARRAYS[name]
            shape = (n,) + trailing(j, s)
            values = np.asarray(values)
            if values.shape != shape:
                raise ValueError(f"store {self.path}: {name} has shape {values.shape}, expected {shape}")
            array = self.group.create_array(
                name, shape=shape, dtype=dtype, chunks=(max(n, 1),) + shape[1:], **self._codecs()
            )
            if n:
                array[...] = values

    def commit(self) -> Path:
        self.group.attrs["num_samples"] = self.num_samples
        check_store_replaceable(self.path)  # again: it may have changed meanwhile
        replace_folder(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        shutil.rmtree(self.tmp_path, ignore_errors=True)
