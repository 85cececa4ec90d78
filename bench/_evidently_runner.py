"""One timed Evidently run for bench.drift: read both Parquet files with pandas, DataDriftPreset, print JSON.

    python -m bench._evidently_runner REFERENCE CURRENT

Normalised Wasserstein for numerics and Jensen-Shannon for categoricals, as the
driftline side uses, so per-feature scores can be compared.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pyarrow.parquet as pq
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

NUMERIC_METHOD = "wasserstein"
CATEGORICAL_METHOD = "jensenshannon"


def main(argv: list[str]) -> int:
    reference_path, current_path = argv
    schema = pq.read_schema(reference_path)
    numeric = [f.name for f in schema if f.type.num_fields == 0 and (
        str(f.type).startswith(("int", "uint", "float", "double", "decimal")))]
    categorical = [f.name for f in schema if f.name not in numeric]
    reference = pd.read_parquet(reference_path)
    current = pd.read_parquet(current_path)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(num_method=NUMERIC_METHOD, cat_method=CATEGORICAL_METHOD)])
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    scores: dict[str, float] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = float(metric["value"])
    features = [
        {
            "feature": name,
            "kind": "numeric" if name in numeric else "categorical",
            "method": NUMERIC_METHOD if name in numeric else CATEGORICAL_METHOD,
            "score": scores.get(name),
        }
        for name in numeric + categorical
    ]
    drifted = sum(1 for f in features if f["score"] is not None and f["score"] >= 0.1)
    json.dump({"check": "data_drift", "status": "alert" if drifted else "ok", "features": features}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
