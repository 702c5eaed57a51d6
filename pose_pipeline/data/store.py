"""The converted-sample store: one Zarr v3 group per dataset split.

Schema (N samples, J joints, S canvas pixels); arrays use the sharding codec, one sample
per inner chunk, `shard_size` samples per shard file:

  image            (N,S,S,3) uint8    RGB crop: the person box enlarged by `context`
  keypoints        (N,J,2)   float32  original-image pixels, as annotated (dataset origin)
  visible          (N,J)     uint8    1 = labelled: the joint has a position (seen, or hidden and
                                      placed by the annotator), usable for loss and scoring;
                                      0 = missing (not annotated, or a placeholder position)
  occluded         (N,J)     uint8    1 = labelled but not visible (hidden, its position placed
                                      by the annotator); optional: a store converted before it
                                      existed has none and reads as all 0 (`has_occluded`)
  affine           (N,2,3)   float64  original-image array coords -> crop pixels
                                      (crop == cv2.warpAffine(image, affine, (S, S)); with the
                                      converter's reduced_decode (the default), of the JPEG
                                      decoded at 1/f where the crop shrinks the person f times)
  center           (N,2)     float64  person centre, as annotated
  scale            (N,)      float64  person box side / 200 (box = 200 * scale pixels)
  head_size        (N,)      float64  PCKh unit (0.6 x head-box diagonal); NaN if none
  image_name       (N,)      str      source image, relative to the image folder
  source_index     (N,2)     int64    (image, person) index in the annotation file

What each format's flags mean, and so which joints are labelled, occluded or missing, is
written down in its reader (`pose_pipeline.data.formats`) and in README's datasets section.

Group attributes: schema_version, dataset, split, joint_set, joints, flip_pairs, edges,
pixel_origin (annotated = array + origin), canvas_size, context, converter parameters,
sources ({file, sha256, path}: the annotation file first; path, absolute, in stores written
since it was recorded), package version, num_samples, and from convert bad_samples ({count,
sha256}: the samples it left out, and the digest of their list `<store>.bad_samples.csv`, none
when it left none out; in stores written since it was recorded).

Writers (`store_writer.StoreWriter`) build the store under a temporary name and swap it into
place when complete; they replace only a folder that is a store (`is_store`: the root zarr.json
that only a store writer writes is its mark), never anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from pose_pipeline.core import geometry
from pose_pipeline.core.joints import JointSet
from pose_pipeline.data import store_check
from pose_pipeline.data.store_check import StoreDamage, checked_read
from pose_pipeline.errors import UserError
from pose_pipeline.util.atomic import check_replaceable, exclusive_lock

SCHEMA_VERSION = 1

# zarrs (Rust, the `zarrs` package) decodes a shard's inner chunks at less CPU per sample than
# zarr-python's own codec pipeline (BENCHMARKS.md, "Training loader"); training
# reads crops through it when it is installed, unless POSE_PIPELINE_ZARRS=0. Same bytes, same
# arrays: it only replaces how zarr decodes them.
FAST_CODEC_PIPELINE = "zarrs.ZarrsCodecPipeline"

# Zstd level of the metadata arrays, and of the crops with `--image-codec zstd`. Level 1, not 3:
# on natural-image crops it compresses much faster for a few percent more bytes and reads as
# fast (BENCHMARKS.md, "The image codec").
IMAGE_ZSTD_LEVEL = 1

# The crops' compressor by name (`convert --image-codec`), the first the default (the config
# schema's too). lz4 (through Blosc, a standard Zarr v3 codec), not Zstd-1: less CPU to write and
# to read a crop for somewhat more bytes (BENCHMARKS.md, "Conversion", "The image codec").
IMAGE_CODECS = ("lz4", "zstd")


def image_compressor(name: str, zstd_level: int = IMAGE_ZSTD_LEVEL):
    """The zarr codec compressing the crops for IMAGE_CODECS' `name`."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if name == "zstd":
        return ZstdCodec(level=zstd_level)
    if name == "lz4":
        return BloscCodec(cname="lz4", clevel=1, shuffle="noshuffle")  # crops are bytes: no shuffle
    raise ValueError(f"image codec {name!r}: one of {', '.join(IMAGE_CODECS)}")


def fast_codec_pipeline() -> str | None:
    """The codec pipeline crop reads use: zarrs' when importable and not switched off."""
    if os.environ.get("POSE_PIPELINE_ZARRS", "1") == "0":
        return None
    try:
        import zarrs  # noqa: F401
    except ImportError:
        return None
    return FAST_CODEC_PIPELINE


# name -> (trailing shape given (J, S), dtype)
PER_SAMPLE_ARRAYS = {
    "image": (lambda j, s: (s, s, 3), "uint8"),
    "keypoints": (lambda j, s: (j, 2), "float32"),
    "visible": (lambda j, s: (j,), "uint8"),
    "affine": (lambda j, s: (2, 3), "float64"),
    "center": (lambda j, s: (2,), "float64"),
    "scale": (lambda j, s: (), "float64"),
    "head_size": (lambda j, s: (), "float64"),
    "image_name": (lambda j, s: (), str),
    "source_index": (lambda j, s: (2,), "int64"),
    "occluded": (lambda j, s: (j,), "uint8"),
}
# Per-sample arrays a store may lack: added after stores were first converted, so that those
# stay readable (the default each reads as when absent is the store's).
OPTIONAL_ARRAYS = ("occluded",)


# the numeric arrays of a store's fingerprint (`PoseStore.fingerprint`), each in a fixed byte order
FINGERPRINTED_ARRAYS = {"source_index": "<i8", "keypoints": "<f4", "visible": "u1", "head_size": "<f8"}


def is_store(path) -> bool:
    """True for a folder holding a pose-pipeline store (of any schema version)."""
    try:
        meta = json.loads((Path(path) / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    return (
        meta.get("node_type") == "group"
        and isinstance(attrs, dict)
        and "schema_version" in attrs
        and "joint_set" in attrs
    )


def check_store_replaceable(path) -> None:
    """Refuse a store output at `path` unless it is new, an empty folder or a store."""
    check_replaceable(path, "convert", is_store, "no zarr.json with a store's schema_version and joint_set")


def lock_store(path, what: str):
    """Hold the lock on writing the store at `path` (`atomic.exclusive_lock`), by a file beside
    it: the store folder itself is swapped whole, a lock inside would go with it."""
    path = Path(path)
    return exclusive_lock(path, what, lock_file=path.with_name(f".{path.name}.lock"))


def sha256_of(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class PoseStore:
    """Read access to a converted store; metadata arrays are read once, images on demand."""

    def __init__(self, path, fast_decode: bool = True):
        import zarr

        self.path = Path(path)
        if not (self.path / "zarr.json").exists():
            raise UserError(f"{self.path}: not a converted store (no zarr.json); run `pose-pipeline convert` first")
        try:
            self.group = zarr.open_group(str(self.path), mode="r")
            self.attrs = dict(self.group.attrs)
        except Exception as exc:  # a truncated or edited zarr.json
            raise StoreDamage(f"{self.path}/zarr.json: unreadable store metadata ({exc}); convert again") from exc
        if self.attrs.get("schema_version") != SCHEMA_VERSION:
            raise UserError(
                f"{self.path}: store schema version {self.attrs.get('schema_version')!r}, "
                f"this pose-pipeline reads version {SCHEMA_VERSION}; convert again"
            )
        missing = [name for name in self.required_arrays() if not (self.path / name / "zarr.json").is_file()]
        if missing:
            raise StoreDamage(f"{self.path}: arrays missing: {', '.join(missing)}; convert again")
        self._cache: dict[str, np.ndarray] = {}
        self._images = None  # the `image` array, opened on first read
        self.fast_decode = fast_decode  # through zarrs when installed (fast_codec_pipeline)

    def __len__(self) -> int:
        return int(self.attrs["num_samples"])

    def __getattr__(self, name: str) -> np.ndarray:
        if name in PER_SAMPLE_ARRAYS and name != "image":
            if name not in self._cache:
                if name in OPTIONAL_ARRAYS and not self._has_array(name):
                    self._cache[name] = self._absent_default(name)
                else:
                    array = self._open_array(name)
                    self._cache[name] = checked_read(self.path, name, array, 0, array.shape[0])
            return self._cache[name]
        raise AttributeError(name)

    def _has_array(self, name: str) -> bool:
        return (self.path / name / "zarr.json").is_file()

    def _absent_default(self, name: str) -> np.ndarray:
        """What an optional array absent from this store reads as: `occluded` all 0, since a
        store converted before it kept no joint both labelled and hidden apart."""
        trailing, dtype = PER_SAMPLE_ARRAYS[name]
        return np.zeros((len(self),) + trailing(self.joint_set.num_joints, self.canvas_size), dtype)

    @property
    def has_occluded(self) -> bool:
        """Whether the store records which labelled joints are occluded (`occluded`): stores
        converted before that array was added do not."""
        return self._has_array("occluded")

    @staticmethod
    def required_arrays() -> list[str]:
        return [name for name in PER_SAMPLE_ARRAYS if name not in OPTIONAL_ARRAYS]

    def array_names(self) -> list[str]:
        """The arrays this store holds: the required ones and the optional ones present."""
        return [name for name in PER_SAMPLE_ARRAYS if name not in OPTIONAL_ARRAYS or self._has_array(name)]

    def _open_array(self, name: str):
        try:
            return self.group[name]
        except Exception as exc:
            raise StoreDamage(
                f"{self.path}/{name}/zarr.json: unreadable array metadata ({exc}); convert again"
            ) from exc

    @property
    def joint_set(self) -> JointSet:
        return JointSet.from_dict(self.attrs)

    @property
    def canvas_size(self) -> int:
        return int(self.attrs["canvas_size"])

    @property
    def context(self) -> float:
        return float(self.attrs["context"])

    @property
    def pixel_origin(self) -> float:
        return float(self.attrs["pixel_origin"])

    def images(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """A contiguous block of crops (whole-shard reads amortise zarr's per-read cost)."""
        if self._images is None:
            import zarr

            # zarr binds the codec pipeline when it opens an array: open `image` once, with it
            pipeline = fast_codec_pipeline() if self.fast_decode else None
            if pipeline is None:
                self._images = self._open_array("image")
            else:
                with zarr.config.set({"codec_pipeline.path": pipeline}):
                    self._images = zarr.open_array(str(self.path / "image"), mode="r")
        stop = len(self) if stop is None else min(stop, len(self))
        return checked_read(self.path, "image", self._images, start, stop)

    def verify(self) -> list[str]:
        """Read every chunk of every array: one message per missing or damaged file."""
        return store_check.verify(self)

    def fingerprint(self) -> str:
        """The sha256 of the store's people as scoring sees them, in order: image names, source
        indices and ground truth (keypoints, visible, head sizes). `predict` records it in its
        prediction file, and `score` refuses the file against a store with another fingerprint:
        other people, or other annotations of them, whatever their count and joints."""
        digest = hashlib.sha256(json.dumps([str(name) for name in self.image_name]).encode())
        for name, dtype in FINGERPRINTED_ARRAYS.items():
            digest.update(np.ascontiguousarray(getattr(self, name), dtype=dtype).tobytes())
        return digest.hexdigest()

    def keypoints_in_canvas(self) -> np.ndarray:
        """(N,J,2) keypoints projected into the stored crops."""
        return geometry.apply(self.affine, geometry.annotated_to_array(self.keypoints, self.pixel_origin))


def open_store(path, fast_decode: bool = True) -> PoseStore:
    return PoseStore(path, fast_decode)
