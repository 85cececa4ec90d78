"""A bounded pipeline: a reader thread decodes items, worker threads reduce them, results come back in order.

The reader (Arrow decoding Parquet) runs in a thread of its own, the reductions (the profile
kernel) in worker threads, and the caller takes the results in order (and merges them). All
three release the GIL in their heavy calls, so decoding, profiling and merging overlap: with
the reader in the calling thread, decoding and merging took turns there and were the run's
critical path. What is decoded but not yet returned is bounded in bytes, not in items, so
memory does not depend on how wide a batch is.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Decoded bytes waiting for, in, or just out of the workers: with batches of ~16 MiB
# (core.sources) that is a batch per worker plus one queued, enough to keep two workers busy.
DEFAULT_INFLIGHT_BYTES = 24 << 20
_DONE = object()


class _Budget:
    """Bytes handed out and not yet returned; a taker waits while the budget is spent (one item always goes)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held, self.stopped = limit, 0, False
        self.changed = threading.Condition()

    def take(self, nbytes: int) -> bool:
        with self.changed:
            self.changed.wait_for(lambda: self.stopped or not self.held or self.held + nbytes <= self.limit)
            self.held += nbytes
            return not self.stopped

    def give(self, nbytes: int) -> None:
        with self.changed:
            self.held -= nbytes
            self.changed.notify_all()

    def stop(self) -> None:
        with self.changed:
            self.stopped = True
            self.changed.notify_all()


def map_bounded(items: Iterable[Item], reduce: Callable[[Item], Result], size: Callable[[Item], int],
                workers: int = 2, max_bytes: int = DEFAULT_INFLIGHT_BYTES) -> Iterator[Result]:
    """`reduce(item)` for every item, in order, on `workers` threads, the items read on a thread of
    their own; items read and not yet returned hold at most `max_bytes` (a larger item goes alone).
    An error raised while reading comes out here after the results of the items before it."""
    if workers <= 1:
        for item in items:
            yield reduce(item)
        return
    budget = _Budget(max_bytes)
    handed: queue.Queue = queue.Queue()  # (future, nbytes) in reading order; then _DONE or the reader's error

    def read(pool: ThreadPoolExecutor) -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                nbytes = size(item)
                if not budget.take(nbytes):
                    return
                handed.put((pool.submit(reduce, item), nbytes))
        except BaseException as error:  # noqa: BLE001  (handed to the caller, raised there)
            handed.put(error)
        else:
            handed.put(_DONE)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator stopped early closes its files in the thread that read them
                close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        reader = threading.Thread(target=read, args=(pool,), name="driftline-reader", daemon=True)
        reader.start()
        try:
            while True:
                entry = handed.get()
                if entry is _DONE:
                    return
                if isinstance(entry, BaseException):
                    raise entry
                future, nbytes = entry
                try:
                    result = future.result()
                finally:
                    budget.give(nbytes)
                yield result
        finally:
            budget.stop()  # the caller stopped early, or an error: the reader ends at its next item
            reader.join()
            while not handed.empty():
                entry = handed.get_nowait()
                if isinstance(entry, tuple):
                    entry[0].cancel()
