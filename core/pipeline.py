"""A bounded pipeline: batches come from a reader, worker threads reduce them, results come back in order.

The reader (Arrow decoding Parquet) runs in the calling thread and the reductions (the profile
kernel) in worker threads; both release the GIL in their heavy calls, so decoding the next batch
overlaps with profiling the previous ones. What is decoded but not yet reduced is bounded in
bytes, not in batches, so memory does not depend on how wide a batch is.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Decoded bytes waiting for, or in, the workers: with batches of ~16 MiB (core.sources) that
# is a batch per worker plus one queued, enough to keep two workers busy.
DEFAULT_INFLIGHT_BYTES = 48 << 20


def map_bounded(items: Iterable[Item], reduce: Callable[[Item], Result], size: Callable[[Item], int],
                workers: int = 2, max_bytes: int = DEFAULT_INFLIGHT_BYTES) -> Iterator[Result]:
    """`reduce(item)` for every item, in order, on `workers` threads; items handed out but not
    yet returned hold at most `max_bytes` (a single larger item goes alone)."""
    if workers <= 1:
        for item in items:
            yield reduce(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        held = 0
        for item in items:
            nbytes = size(item)
            while pending and held + nbytes > max_bytes:
                future, done = pending.popleft()
                held -= done
                yield future.result()
            pending.append((pool.submit(reduce, item), nbytes))
            held += nbytes
        while pending:
            yield pending.popleft()[0].result()
