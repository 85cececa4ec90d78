"""Label checks on the Spark engine: the embedded engine's results, from label profiles computed
on the executors; no serving row reaches the driver, and max_rows holds inside the job."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest
from labelsim import simulate, table
from test_label_profile import _close, _same

from core.engines import LocalEngine
from core.errors import LimitExceededError
from core.label_profile import LabelSpec
from core.sources import Limits, Source

LABEL_CHECKS = ["calibration", "performance", "concept_drift"]
SPEC = LabelSpec("score", "click", ("os", "offer_id"), (("offer_id", "os"),))


@pytest.fixture()
def serving_rows_to_driver(monkeypatch):
    """Counts rows of frames reading `watched` files that come back to the driver (collect,
    toArrow, toPandas); partial profiles (a `profile` column) are not rows."""
    try:  # pyspark 4: the classic (non-Connect) DataFrame defines these itself
        from pyspark.sql.classic.dataframe import DataFrame
    except ImportError:
        from pyspark.sql import DataFrame
    state = {"watched": "", "rows": 0, "partials": 0}

    def reads_watched(frame) -> bool:
        try:
            return any(state["watched"] in f for f in frame.inputFiles())
        except Exception:
            return False

    def guard(name):
        original = getattr(DataFrame, name)

        def wrapped(self, *args, **kwargs):
            out = original(self, *args, **kwargs)
            if state["watched"] and reads_watched(self):
                if "profile" in self.columns:
                    state["partials"] += len(out)
                else:
                    state["rows"] += out.num_rows if hasattr(out, "num_rows") else len(out)
            return out

        monkeypatch.setattr(DataFrame, name, wrapped)

    for name in ("collect", "toArrow", "toPandas"):
        guard(name)
    return state


def test_spark_label_profile_equals_the_local_one_without_rows_on_the_driver(spark_engine, tmp_path,
                                                                            serving_rows_to_driver):
    data = table(simulate(30_000, seed=5, ctr=0.03))
    folder = tmp_path / "serving"
    folder.mkdir()
    for i, start in enumerate(range(0, data.num_rows, 7_000)):  # several files: several partitions
        pq.write_table(data.slice(start, 7_000), folder / f"part-{i}.parquet")
    serving_rows_to_driver["watched"] = str(folder)
    remote = spark_engine.label_profile(spark_engine.source(str(folder)), SPEC)
    assert serving_rows_to_driver["rows"] == 0 and serving_rows_to_driver["partials"] >= 1
    local = LocalEngine().label_profile(Source(str(folder)), SPEC)
    _same(local, remote)
    # The guard sees rows when they do come back (as the label checks' row path brought them).
    list(spark_engine.source(str(folder)).batches(["score", "click"]))
    assert serving_rows_to_driver["rows"] == 30_000


def test_max_rows_is_enforced_inside_the_spark_job(spark_engine, tmp_path):
    data = table(simulate(2_000, seed=6))
    pq.write_table(data, tmp_path / "w.parquet")
    source = spark_engine.source(str(tmp_path / "w.parquet"), limits=Limits(max_rows=1_999))
    with pytest.raises(LimitExceededError, match="more than 1999 rows in the window"):
        spark_engine.label_profile(source, SPEC)


def test_label_checks_on_spark_match_the_embedded_engine(spark, demo_raw_config, small_world, tmp_path,
                                                        serving_rows_to_driver):
    from monitor.config import parse_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    raw = json.loads(json.dumps(demo_raw_config))
    raw["models"][0]["profile_granularity"] = None  # one Spark job per window
    start = small_world.serving_start + timedelta(days=2)
    end = start + timedelta(days=1)
    results = {}
    for engine in ("local", "spark"):
        config = parse_config(dict(raw, store={**raw["store"], "url": f"sqlite:///{tmp_path / engine}.db"}),
                              "test", small_world.root.parent)
        serving_rows_to_driver["watched"] = str(config.models[0].serving.resolved(config.base_dir)) \
            if engine == "spark" else ""
        store = ResultsStore(config.store_url())
        try:
            runner = ModelRunner(config, config.models[0], store, clock=lambda: end + timedelta(days=2),
                                 engine=engine)
            results[engine] = {r.check: r for r in runner.run(start, end, LABEL_CHECKS)}
        finally:
            store.close()
    assert serving_rows_to_driver["rows"] == 0 and serving_rows_to_driver["partials"] > 0
    for check in LABEL_CHECKS:
        mine, theirs = results["local"][check], results["spark"][check]
        assert mine.status == theirs.status and mine.status not in ("error", "pending"), mine.details
        assert mine.current_rows == theirs.current_rows > 0
        _close(mine.details, theirs.details)
    overall = results["spark"]["performance"].details["overall"]
    assert overall["auc_bound"] < 1e-3 and np.isfinite(overall["auc"])


def test_many_partitions_are_merged_on_the_executors_with_the_same_profile(spark_engine, tmp_path, monkeypatch):
    import core.engines.spark.label_profile as spark_labels

    data = table(simulate(9_000, seed=7, ctr=0.03))
    for i, start in enumerate(range(0, data.num_rows, 3_000)):
        pq.write_table(data.slice(start, 3_000), tmp_path / f"part-{i}.parquet")
    monkeypatch.setattr(spark_labels, "TREE_REDUCE_ABOVE", 0)  # every window goes through the tree reduce
    remote = spark_engine.label_profile(spark_engine.source(str(tmp_path)), SPEC)
    _same(LocalEngine().label_profile(Source(str(tmp_path)), SPEC), remote)
    with pytest.raises(LimitExceededError, match="more than 8999 rows"):
        spark_engine.label_profile(spark_engine.source(str(tmp_path), limits=Limits(max_rows=8_999)), SPEC)
