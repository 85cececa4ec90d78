"""The label-profile kernel on Spark: `mapInArrow` runs `core.label_profile.profile_label_batch`
on every partition and emits one serialized partial label profile; the partials (per-group
sums and sparse fine histograms, never rows) are merged on the driver, or in a tree reduce
on the executors when there are many partitions.

`max_rows` is enforced inside the job: a partition that alone reads more rows than the limit
stops with an error, and the driver refuses the partitions' total (partial profiles are
bounded: per-group sums and at most values x bins histogram cells, whatever the rows).
"""

from __future__ import annotations

import json

from core.engines.spark.profile import TOO_MANY_ROWS, TREE_REDUCE_ABOVE, check_rows, rows_within
from core.label_profile import LabelProfile, LabelSpec, empty_label_profile

_OUTPUT_SCHEMA = "rows long, profile binary"


def _encode(profile: LabelProfile) -> bytes:
    return json.dumps(profile.to_dict(), separators=(",", ":")).encode()


def _decode(payload: bytes) -> LabelProfile:
    return LabelProfile.from_dict(json.loads(payload))


def _kernel(spec_json: str, max_rows: int | None, where: str):
    def run(batches):
        import pyarrow as pa

        from core.label_profile import LabelSpec, empty_label_profile, profile_label_batch

        spec = LabelSpec.from_dict(json.loads(spec_json))
        profile = empty_label_profile(spec)
        for batch in batches:
            profile = profile.merge(profile_label_batch(batch, spec, where))
            if max_rows is not None and profile.rows > max_rows:
                raise RuntimeError(f"{TOO_MANY_ROWS} ({max_rows})")
        yield pa.RecordBatch.from_pydict({"rows": pa.array([profile.rows], pa.int64()),
                                          "profile": pa.array([_encode(profile)], pa.binary())})

    return run


def _merge_payloads(left: bytes, right: bytes) -> bytes:
    return _encode(_decode(left).merge(_decode(right)))


def label_profile_frame(frame, spec: LabelSpec, max_rows: int | None = None, where: str = "data",
                        location: str = "") -> LabelProfile:
    """The merged label profile of a DataFrame's rows (the window's, projected and filtered)."""
    merged = empty_label_profile(spec)
    if frame is None:
        return merged
    partitions = frame.rdd.getNumPartitions()
    partials = frame.mapInArrow(_kernel(json.dumps(spec.to_dict()), max_rows, where), _OUTPUT_SCHEMA)
    with rows_within(max_rows, location):
        if partitions > TREE_REDUCE_ABOVE:  # merged on the executors; one profile comes back
            payload = partials.rdd.map(lambda row: bytes(row.profile)).treeReduce(_merge_payloads, depth=2)
            merged = merged.merge(_decode(payload))
            check_rows(merged.rows, max_rows, location)
            return merged
        rows = partials.collect()  # one small payload per partition (at most TREE_REDUCE_ABOVE)
    check_rows(sum(r.rows for r in rows), max_rows, location)
    for row in rows:
        merged = merged.merge(_decode(bytes(row.profile)))
    return merged
