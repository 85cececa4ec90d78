"""One timed profile of a window for bench.spark, on one engine; prints JSON.

    python -m bench._spark_runner local|spark[-rows] REFERENCE CURRENT PROFILE_OUT MASTER LABEL_REF LABEL_CUR

Both engines use the same spec (fixed here from a reference sample, as the runner does)
and write the merged profile to PROFILE_OUT so the parent can check they agree. The
Spark run also times its phases: session start, two read-only passes (`noop` sink: scan and
decode, no kernel; the first warms the JVM up), the profile job (read + kernel, pipelined)
and the driver merge. Then the three label checks on the labelled window (bench/_spark_labels.py):
from the window's label profile, or (`-rows`) from its rows brought to the driver, as before.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    engine_name, reference_path, current_path, out = argv[:4]
    master = argv[4] if len(argv) > 4 else "local[2]"
    label_paths = argv[5:7]
    engine_name, mode = (engine_name.split("-", 1) + ["profile"])[:2]
    from core.profile import build_spec, infer_kind
    from core.sources import Source

    reference = Source(reference_path)
    kinds = {f.name: infer_kind(f.type) for f in reference.schema}
    spec = build_spec(reference.sample(100_000, list(kinds)), kinds)
    phases: dict[str, float] = {}
    started = time.perf_counter()
    if engine_name == "local":
        from core.engines import LocalEngine

        engine = LocalEngine()
        profile = engine.profile(Source(current_path), list(kinds), spec)
        phases["profile (read + kernel + merge)"] = time.perf_counter() - started
    else:
        from core.engines import SparkSettings, get_engine

        engine = get_engine("spark", SparkSettings(master=master))
        source = engine.source(current_path)
        phases["session start + listing"] = time.perf_counter() - started
        for phase in ("first read (noop sink; JVM warm-up)", "read only (noop sink, warm)"):
            begun = time.perf_counter()
            source.run(lambda frame: frame.write.format("noop").mode("overwrite").save(), list(kinds))
            phases[phase] = time.perf_counter() - begun
        begun = time.perf_counter()
        profile = engine.profile(source, list(kinds), spec)
        phases["profile job (read + kernel)"] = engine.timings.job
        phases["merge on the driver"] = engine.timings.merge
        phases["partitions"] = engine.timings.partitions
        phases["profile total"] = time.perf_counter() - begun
    labels = {}
    if label_paths:
        from bench._spark_labels import run_label_checks

        labels = run_label_checks(engine, engine_name, label_paths[0], label_paths[1], mode)
        phases.update(labels.pop("phases"))
    with open(out, "w") as handle:
        json.dump(profile.to_dict(), handle)
    name = engine_name if mode == "profile" else f"{engine_name}-rows"
    json.dump({"engine": name, "rows": profile.rows, "phases": phases, "labels": labels}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
