"""One timed train/serve skew run for bench.skew; prints JSON.

    python -m bench._skew_runner TRAINING SERVING [--threads 2] [--memory-limit 1.5GB] [--full]

Default: the feature-value join alone (skew.feature_values). `--full` runs the whole
check (schema, distribution profiles of both sides, and the join), as `driftline check skew`.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.sources import Source
from skew.feature_values import JoinSettings, value_skew


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("training")
    parser.add_argument("serving")
    parser.add_argument("--key", default="example_id")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="1.5GB")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    training, serving = Source(args.training), Source(args.serving)
    settings = JoinSettings(memory_limit=args.memory_limit, threads=args.threads)
    if args.full:
        from skew.check import SkewCheck
        from skew.distribution import DistributionSettings

        report = SkewCheck(key=args.key, join=settings,
                           distribution=DistributionSettings(workers=args.threads)).run(training, serving)
        data = report.to_dict()
        out = {"join": data["join"], "passes": None,
               "features": [{"feature": f["feature"], "value_mismatch_rate": f["value_mismatch_rate"],
                             "null_mismatch_rate": f["null_mismatch_rate"], "status": f["status"]}
                            for f in data["features"]]}
    else:
        kinds = {f.name: ("categorical" if str(f.type) == "string" else "numeric")
                 for f in training.schema if f.name != args.key}
        result = value_skew(training, serving, args.key, kinds, settings)
        out = {"join": result.join.to_dict(), "passes": result.passes,
               "features": [{"feature": c.feature,
                             "value_mismatch_rate": c.value_mismatches / c.compared if c.compared else None,
                             "null_mismatch_rate": (c.serving_null + c.training_null) / c.compared
                             if c.compared else None} for c in result.features.values()]}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
