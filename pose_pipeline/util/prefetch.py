"""Batches prepared ahead, in a background thread, while the device works on the current one.

`Prefetcher(source, prepare, depth)` iterates `prepare(item)` for the items of `source`, in
their order, computed up to `depth` items ahead by one producer thread and handed over
through a bounded queue. One thread is enough: the store's zarrs decoding, OpenCV's warp and
torch's tensor operations all release the GIL, and the consumer mostly waits on the device
(BENCHMARKS.md, "Training throughput"; threads were measured before processes were considered).
One producer also keeps the order of everything it does, its random draws included, the
order of a serial loop: the batches are exactly those of `depth=0`, the serial loop run in the
caller's thread.

Errors and shutdown: an exception in the producer (a damaged shard, a bad sample) is raised
again in the consumer, the same exception object with its message, when the consumer reaches
the item that failed; leaving the loop early (an error in the consumer, Ctrl-C, `break`)
closes the prefetcher, which stops the producer at its next item and joins it. Use it as a
context manager so that this happens on every exit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


def depth_for(device, depth: int) -> int:
    """`depth` where the work it feeds runs on an accelerator and the host is idle meanwhile;
    0 (the serial loop, no thread) on the CPU, where that work already keeps every core busy:
    a loader thread beside torch's own halved the demo's CPU training (58 -> 30 images/s on
    2 cores, BENCHMARKS.md)."""
    return 0 if device.type == "cpu" else depth


_ITEM, _END, _ERROR = range(3)


class Prefetcher:
    """Iterate `prepare(item) for item in source`, up to `depth` items ahead in a thread
    (`depth=0`: no thread, each item prepared when asked for: the serial loop).

    `waited`: seconds the consumer spent waiting for items (for `depth=0` the time spent
    preparing them), i.e. how long the loop was starved of data."""

    JOIN_TIMEOUT_S = 30.0  # a producer stuck in a read past this is left behind (a daemon thread)

    def __init__(self, source: Iterable, prepare: Callable, depth: int = 2, name: str = "prefetch"):
        self.depth = depth
        self.waited = 0.0
        self._source, self._prepare = iter(source), prepare
        self._stop = threading.Event()
        self._thread = None
        if depth > 0:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
            self._thread.start()

    # -------------------------------------------------------------------- consumer side

    def __iter__(self):
        return self

    def __next__(self):
        if self._stop.is_set():
            raise StopIteration  # closed: nothing more will come
        started = time.perf_counter()
        try:
            if self._thread is None:
                return self._prepare(next(self._source))
            kind, value = self._queue.get()
        finally:
            self.waited += time.perf_counter() - started
        if kind == _ITEM:
            return value
        self.close()
        if kind == _ERROR:
            raise value  # the producer's own exception: its type and message reach the caller
        raise StopIteration

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item in hand first)."""
        self._stop.set()
        if self._thread is None:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            return
        deadline = time.perf_counter() + self.JOIN_TIMEOUT_S
        while self._thread.is_alive():
            self._drain()  # a producer blocked on a full queue sees the stop
            self._thread.join(timeout=0.05)
            if time.perf_counter() > deadline:
                log.warning(
                    "prefetch thread %s still busy after %.0f s; left behind", self._thread.name, self.JOIN_TIMEOUT_S
                )
                break
        self._drain()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------- producer side

    def _produce(self) -> None:
        try:
            for item in self._source:
                if self._stop.is_set():
                    return
                self._put((_ITEM, self._prepare(item)))
            self._put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._put((_ERROR, exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # the source generator's cleanup runs in the thread that ran it

    def _put(self, entry) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
