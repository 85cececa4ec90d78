"""One timed driftline run for bench.drift: read both Parquet files, profile, score, print JSON.

    python -m bench._driftline_runner REFERENCE CURRENT

The kernel on its own, next to the CLI: no CLI imports, no reference chunks for
learned thresholds, string columns read dictionary-encoded. Same output contract as
`driftline check drift --format json`; methods are normalised Wasserstein for numerics
and Jensen-Shannon for categoricals, so the scores compare with Evidently's.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")  # as the CLI does (monitor/cli.py), before pyarrow loads

from checks.drift import DriftCheck
from core.profile import build_spec, infer_kind, profile_batches
from core.sources import Source

REFERENCE_SAMPLE_ROWS = 100_000
METHODS = {"numeric": "wasserstein", "categorical": "jensenshannon"}


def main(argv: list[str]) -> int:
    reference_path, current_path = argv
    workers = int(os.environ.get("DRIFTLINE_WORKERS", "2"))
    reference, current = Source(reference_path), Source(current_path)
    kinds = {f.name: infer_kind(f.type) for f in reference.schema}
    names = list(kinds)
    spec = build_spec(reference.sample(REFERENCE_SAMPLE_ROWS, names), kinds)
    # String columns come dictionary-encoded (as Parquet stores them): the kernel counts indices.
    reference_profile = profile_batches(reference.batches(names, dictionary_strings=True), spec, workers=workers)
    current_profile = profile_batches(current.batches(names, dictionary_strings=True), spec, workers=workers)
    check = DriftCheck(methods={name: METHODS[kind] for name, kind in kinds.items()})
    result = check.fit(reference_profile).evaluate(current_profile)
    features = [
        {
            "feature": f.feature,
            "kind": f.kind,
            "method": f.method,
            "score": f.score,
            "threshold": f.threshold,
            "status": f.status,
            "reference_count": f.reference_count,
            "current_count": f.current_count,
        }
        for f in result.features
    ]
    json.dump({"check": result.check, "status": result.status, "features": features}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
