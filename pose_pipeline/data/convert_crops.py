"""The crops of `convert`: each sample's canvas warped from its source image by the converter's
affine (`sample_affines`, `crop_sample`: `images.SourceImage.canvas`, infer's cut too; with
`reduced_decode`, the default, from a JPEG decoded at the reduced size the crop allows,
`images.jpeg_reduction`), cut in worker processes a block of samples at a time and written to the
store whole shards at a time (`write_crops`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pose_pipeline.core import geometry
from pose_pipeline.data.convert_options import ConvertOptions
from pose_pipeline.data.formats.readers import Samples
from pose_pipeline.data.images import SourceImage
from pose_pipeline.data.store_writer import StoreWriter


def sample_affines(samples: Samples, canvas_size: int, context: float) -> np.ndarray:
    center = geometry.annotated_to_array(samples.center, samples.pixel_origin)
    return geometry.person_canvas_affine(center, samples.scale, canvas_size, context)


def crop_block(args) -> tuple[np.ndarray, list[str]]:
    """Worker: crops for one block of samples -> (images (B,S,S,3), per-sample problem)."""
    image_dir, names, affines, extents, canvas_size, reduced_decode = args
    # not zeroed: the warp writes every pixel of a good crop, and a bad sample's crop is dropped
    crops = np.empty((len(names), canvas_size, canvas_size, 3), np.uint8)
    problems = []
    source, source_name = None, None  # MPII images often hold several people: read and decode once
    for i, (name, affine) in enumerate(zip(names, affines)):
        if name != source_name:
            source, source_name = SourceImage(Path(image_dir) / name), name
        problems.append(crop_sample(source, affine, extents[i], canvas_size, crops[i], reduced_decode))
    return crops, problems


def crop_sample(
    source: SourceImage, affine: np.ndarray, extent: np.ndarray, canvas_size: int, out: np.ndarray, reduced_decode: bool
) -> str:
    """Warp one sample's crop into `out` (`SourceImage.canvas`); returns its problem ("" for none)."""
    problem = source.canvas(affine, canvas_size, reduced_decode, out)[1]
    return problem or far_outside(extent, source.shape())


def far_outside(extent: np.ndarray, image_shape: tuple) -> str:
    """A problem if the annotated joints (extent x0, y0, x1, y1 in array pixels) lie more than an
    image size beyond the image: a unit or index error, not a truncated person."""
    height, width = image_shape[:2]
    x0, y0, x1, y1 = extent
    if x0 < -width or y0 < -height or x1 > 2 * width or y1 > 2 * height:
        return (
            f"annotated joints span x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}: far outside the {width}x{height} image"
        )
    return ""


def joint_extents(samples: Samples) -> np.ndarray:
    """(N,4) x0, y0, x1, y1 of each sample's annotated joints and centre, in array pixels."""
    points = geometry.annotated_to_array(samples.keypoints.astype(np.float64), samples.pixel_origin)
    center = geometry.annotated_to_array(samples.center, samples.pixel_origin)[:, None]
    visible = np.concatenate([samples.visible > 0, np.ones((len(samples), 1), bool)], axis=1)
    points = np.concatenate([points, center], axis=1)
    with np.errstate(invalid="ignore"):
        lo = np.where(visible[..., None], points, np.inf).min(axis=1)
        hi = np.where(visible[..., None], points, -np.inf).max(axis=1)
    return np.concatenate([lo, hi], axis=1)


WORKER_BLOCK = 16


def write_crops(
    writer: StoreWriter, samples: Samples, keep: np.ndarray, affines: np.ndarray, reject, options: ConvertOptions
) -> list[int]:
    """Crop the `keep` samples in worker processes and write the good crops, whole shards at a
    time; returns the sample indices in the order written (an unreadable image is `reject`ed).
    Of `options`: the images, shard size, workers, progress bar and reduced decode."""
    from tqdm import tqdm

    canvas_size, shard_size, reduced_decode = writer.canvas_size, options.shard_size, options.reduced_decode
    workers = options.workers or min(len(os.sched_getaffinity(0)), max(-(-len(keep) // WORKER_BLOCK), 1))
    # Jobs of at most WORKER_BLOCK samples keep several workers evenly busy; the writer regroups
    # them into whole shards.
    size = shard_size if workers == 1 else min(shard_size, WORKER_BLOCK)
    blocks = [keep[i : i + size] for i in range(0, len(keep), size)]
    extents = joint_extents(samples)
    jobs = [
        (str(options.images), [samples.image_names[i] for i in b], affines[b], extents[b], canvas_size, reduced_decode)
        for b in blocks
    ]
    pending: list[tuple[np.ndarray, np.ndarray]] = []  # buffered good crops, whole shards out
    written: list[int] = []

    def flush(final: bool = False) -> None:
        while pending and (final or sum(len(p[1]) for p in pending) >= shard_size):
            # (one block of a shard's size, as with one worker, is written without a copy)
            crops = pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending])
            index = pending[0][1] if len(pending) == 1 else np.concatenate([p[1] for p in pending])
            take = len(index) if final else shard_size
            writer.write_block(crops[:take])
            written.extend(index[:take].tolist())
            pending[:] = [(crops[take:], index[take:])] if take < len(index) else []

    parent = os.getpid()
    pool = ProcessPoolExecutor(workers, initializer=die_with_parent, initargs=(parent,)) if workers > 1 else _Serial()
    progress = dict(total=len(keep), desc=f"convert {writer.path.name}", unit="img", disable=not options.progress)
    with one_opencv_thread(), pool, tqdm(**progress) as bar:
        for block, (crops, problems) in zip(blocks, pool.map(crop_block, jobs)):
            ok = np.array([not p for p in problems], dtype=bool)
            for index, problem in zip(block[~ok], np.array(problems, dtype=object)[~ok]):
                reject(int(index), problem)
            pending.append((crops, block) if ok.all() else (crops[ok], block[ok]))
            flush()
            bar.update(len(block))
    flush(final=True)
    return written


@contextlib.contextmanager
def one_opencv_thread():
    """OpenCV's thread pool left idle meanwhile, here and in the workers forked from here: one
    crop's warp is too small to share out, and the cores are the workers' (the pool cost CPU
    per image in an in-process A/B; this file's git history has it). cv2 is imported and set
    before the fork, so
    each worker inherits it: cv2.setNumThreads in a child forked from a process that has used
    OpenCV's pool waits for ever on the parent's threads."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Worker initializer: the kernel kills this worker when the process that started it dies
    (Linux's PR_SET_PDEATHSIG), so a convert killed outright (SIGKILL, the OOM killer) leaves no
    worker behind, waiting for ever on a queue no one else will write to. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # it died before the prctl, which cannot take effect then
        os._exit(1)


class _Serial:
    """Stand-in for a process pool when one worker is enough."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, items):
        return map(fn, items)
