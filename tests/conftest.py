"""Shared fixtures: a small demo world built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_fixture import backend_url, postgres_server  # noqa: F401  (a real PostgreSQL, on demand)
from spark_fixture import spark, spark_engine  # noqa: F401  (one local[2] Spark session, on demand)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    from monitor.demo.world import generate_world

    return generate_world(tmp_path_factory.mktemp("world") / "world", seed=11, rows_per_day=4000)


@pytest.fixture()
def demo_raw_config(small_world, tmp_path):
    """The demo's config (a dict) over the small world, with its store and reports in tmp_path."""
    from monitor.demo.run import demo_config, write_scored_reference

    write_scored_reference(small_world)
    raw = demo_config(small_world, small_world.root.parent)
    raw["store"]["url"] = f"sqlite:///{tmp_path / 'store.db'}"
    raw["store"]["reports_dir"] = str(tmp_path / "reports")
    raw["models"][0]["checks"]["data_drift"]["report"] = False
    return raw


@pytest.fixture()
def demo_store(small_world, demo_raw_config):
    """(config, store) for the demo config over the small world; the store is closed afterwards."""
    from monitor.config import parse_config
    from monitor.store import ResultsStore

    config = parse_config(demo_raw_config, "test", small_world.root.parent)
    store = ResultsStore(config.store_url())
    yield config, store
    store.close()
