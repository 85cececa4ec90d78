"""Prediction skew on Spark: the replay of `skew.prediction`, on the executors.

The model adapters are broadcast once (Spark ships them pickled, as it ships every Python
function it runs; the artifacts on disk stay LightGBM text / trainer directories), each
partition replays its rows through `tally_batches` in an Arrow UDF (`mapInArrow`), and
only the per-version tallies (counts, sums and the few largest differences) come back to
be merged and summarised exactly as the embedded path summarises its own.
"""

from __future__ import annotations

import heapq
import json
import pickle
import uuid
from datetime import datetime

from core.engines.spark.source import SparkSource
from core.errors import SchemaError
from skew.prediction import Tally, _plain, summarise, tally_batches
from skew.results import PredictionSkew

_ADAPTERS: dict[str, dict] = {}  # broadcast token -> adapters, loaded once per Python worker


def _kernel(broadcast, token: str, score_column, version_column, key_column, tolerance, max_examples):
    def run(batches):
        import pyarrow as pa
        from pyspark import TaskContext

        if token not in _ADAPTERS:
            _ADAPTERS[token] = pickle.loads(broadcast.value)
        tallies: dict = {}
        # Unique tie-breakers across partitions, so merged examples never compare two dicts.
        counter = TaskContext.get().partitionId() * 1_000_000_000
        tally_batches(batches, _ADAPTERS[token], score_column, version_column, key_column, tolerance,
                      max_examples, tallies, counter)
        payload = [[_plain(version), t.rows, t.compared, t.mismatches, t.abs_sum, t.abs_max, t.message, t.top,
                    t.not_compared] for version, t in tallies.items()]
        yield pa.RecordBatch.from_pydict({"payload": [json.dumps(payload, default=str).encode()]})

    return run


def spark_prediction_skew(serving: SparkSource, columns: list[str], adapters, score_column: str,
                          version_column: str | None, key_column: str | None, tolerance: float,
                          thresholds: tuple[float, float], max_examples: int, start: datetime | None = None,
                          end: datetime | None = None, min_samples: int = 1) -> PredictionSkew:
    from pyspark import cloudpickle

    if score_column not in serving.schema.names:  # checked here: inside a task it would be a Java stack trace
        raise SchemaError(f"score column '{score_column}' is missing in the serving data")
    token = uuid.uuid4().hex
    broadcast = serving.spark.sparkContext.broadcast(cloudpickle.dumps(dict(adapters)))
    try:
        def job(frame):
            if frame is None:
                return []
            kernel = _kernel(broadcast, token, score_column, version_column, key_column, tolerance, max_examples)
            return frame.mapInArrow(kernel, "payload binary").collect()

        rows = serving.run(job, columns, start, end)
    finally:
        broadcast.unpersist()
    tallies: dict = {}
    for row in rows:
        for version, n, compared, mismatches, abs_sum, abs_max, message, top, not_compared in \
                json.loads(bytes(row.payload)):
            tally = tallies.setdefault(version, Tally())
            tally.rows += n
            tally.compared += compared
            tally.not_compared += not_compared
            tally.mismatches += mismatches
            tally.abs_sum += abs_sum
            tally.abs_max = max(tally.abs_max, abs_max)
            tally.message = tally.message or message
            for item in top:
                item = (item[0], item[1], item[2])
                if len(tally.top) < max_examples:
                    heapq.heappush(tally.top, item)
                elif max_examples:
                    heapq.heappushpop(tally.top, item)
    return summarise(tallies, score_column, tolerance, thresholds, max_examples, min_samples)
