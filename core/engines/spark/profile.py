"""The profile kernel on Spark: `mapInArrow` runs `core.profile.profile_batch` on every
partition's Arrow batches and emits one serialized partial profile per partition; the
partials are collected and merged on the driver (few partitions) or merged in a tree
reduce on the executors (many).

Profiles are bounded (bins, sketch buckets and the top categories per feature), so what
travels is O(bins × features) per partition, never rows. JSON carries floats exactly, so a
partial profile loses nothing on the way.

`max_rows` is enforced inside the job, for feature profiles as for label profiles: a partition
that alone reads more rows than the limit stops with an error, and the driver refuses the
partitions' total before it merges any of them.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.errors import LimitExceededError
from core.profile import DatasetProfile, ProfileSpec, empty_profile

# Above this many partitions the partial profiles are merged in a tree on the executors
# rather than streamed to the driver one by one.
TREE_REDUCE_ABOVE = 64
_OUTPUT_SCHEMA = "chunk int, rows long, profile binary"
TOO_MANY_ROWS = "driftline: partition over max_rows"  # the executor's error, recognised on the driver


@dataclass
class SparkTimings:
    """Seconds spent in each phase of the last profile job (for the benchmark)."""

    job: float = 0.0  # read + kernel on the executors (one pipelined stage)
    merge: float = 0.0  # deserializing and merging the partials on the driver
    partitions: int = 0
    extra: dict = field(default_factory=dict)


def _encode(profile: DatasetProfile) -> bytes:
    return json.dumps(profile.to_dict(), separators=(",", ":")).encode()


def _decode(payload: bytes) -> DatasetProfile:
    return DatasetProfile.from_dict(json.loads(payload))


def _kernel(spec_json: str, n_chunks: int, partitions: int, chunk_rows: int, max_rows: int | None = None):
    """The function mapInArrow runs on each partition (a closure over plain values only).

    With `n_chunks` > 1 (reference profiling) partition p owns a contiguous run of chunk
    indices and fills them in row order, `chunk_rows` rows each, so chunks are contiguous
    stretches of the data as in the embedded engine's row-order chunks. A partition that reads
    more than `max_rows` rows stops there.
    """

    def run(batches):
        import pyarrow as pa
        from pyspark import TaskContext

        from core.profile import ProfileSpec, empty_profile, profile_batch

        spec = ProfileSpec.from_dict(json.loads(spec_json))
        partition = TaskContext.get().partitionId() if n_chunks > 1 else 0
        first = partition * n_chunks // max(partitions, 1)
        last = max(first, (partition + 1) * n_chunks // max(partitions, 1) - 1)
        chunks: dict[int, DatasetProfile] = {}
        seen = 0
        for batch in batches:
            if max_rows is not None and seen + batch.num_rows > max_rows:
                raise RuntimeError(f"{TOO_MANY_ROWS} ({max_rows})")
            offset = 0
            while offset < batch.num_rows:
                index = min(first + seen // chunk_rows, last) if n_chunks > 1 else 0
                take = batch.num_rows - offset
                if n_chunks > 1 and index < last:
                    take = min(take, chunk_rows * (index - first + 1) - seen)
                piece = profile_batch(batch.slice(offset, take), spec)
                chunks[index] = chunks[index].merge(piece) if index in chunks else piece
                offset += take
                seen += take
        if not chunks:  # an empty partition still reports its (empty) profile
            chunks[first if n_chunks > 1 else 0] = empty_profile(spec)
        yield pa.RecordBatch.from_pydict({
            "chunk": pa.array(list(chunks), pa.int32()),
            "rows": pa.array([p.rows for p in chunks.values()], pa.int64()),
            "profile": pa.array([_encode(p) for p in chunks.values()], pa.binary()),
        })

    return run


@dataclass(frozen=True)
class _Partial:
    chunk: int
    rows: int
    profile: bytes


def _merge_payloads(left: bytes, right: bytes) -> bytes:
    return _encode(_decode(left).merge(_decode(right)))


def _merge_counted(left: tuple[int, bytes], right: tuple[int, bytes]) -> tuple[int, bytes]:
    return left[0] + right[0], _merge_payloads(left[1], right[1])


@contextmanager
def rows_within(max_rows: int | None, location: str):
    """Within: a partition's stop at `max_rows` (the executor's error) comes out as LimitExceededError."""
    try:
        yield
    except Exception as exc:
        if TOO_MANY_ROWS in str(exc):
            raise too_many_rows(max_rows, location) from exc
        raise


def check_rows(total: int, max_rows: int | None, location: str) -> None:
    if max_rows is not None and total > max_rows:
        raise too_many_rows(max_rows, location)


def too_many_rows(max_rows: int | None, location: str) -> LimitExceededError:
    return LimitExceededError(f"{location}: more than {max_rows} rows in the window (limit max_rows)")


def profile_frame(frame, spec: ProfileSpec, n_chunks: int = 1, chunk_rows: int = 1,
                  timings: SparkTimings | None = None, max_rows: int | None = None,
                  location: str = "") -> list[DatasetProfile]:
    """Profiles of a DataFrame's rows: one per chunk (`n_chunks` of them; one for a window).
    More than `max_rows` rows (if given) raise LimitExceededError naming `location`."""
    timings = timings if timings is not None else SparkTimings()
    merged = [empty_profile(spec) for _ in range(n_chunks)]
    if frame is None:
        return merged
    partitions = frame.rdd.getNumPartitions()
    timings.partitions = partitions
    spec_json = json.dumps(spec.to_dict())
    partials = frame.mapInArrow(_kernel(spec_json, n_chunks, partitions, max(chunk_rows, 1), max_rows),
                                _OUTPUT_SCHEMA)
    started = time.perf_counter()
    with rows_within(max_rows, location):
        if n_chunks == 1 and partitions > TREE_REDUCE_ABOVE:
            payload = partials.rdd.map(lambda row: bytes(row.profile)).treeReduce(_merge_payloads, depth=2)
            timings.job = time.perf_counter() - started
            started = time.perf_counter()
            merged[0] = merged[0].merge(_decode(payload))
            check_rows(merged[0].rows, max_rows, location)
            timings.merge = time.perf_counter() - started
            return merged
        if partitions > TREE_REDUCE_ABOVE:  # reference chunks: one reducer per chunk, on the executors
            rows = partials.rdd.map(lambda row: (row.chunk, (row.rows, bytes(row.profile)))) \
                .reduceByKey(_merge_counted, numPartitions=n_chunks).collect()
            rows = [_Partial(chunk, counted, payload) for chunk, (counted, payload) in rows]
        else:
            rows = partials.collect()  # at most TREE_REDUCE_ABOVE x a few chunks of small payloads
    timings.job = time.perf_counter() - started
    check_rows(sum(row.rows for row in rows), max_rows, location)  # before any partial is merged
    started = time.perf_counter()
    for row in rows:
        merged[row.chunk] = merged[row.chunk].merge(_decode(bytes(row.profile)))
    timings.merge = time.perf_counter() - started
    return merged
