"""Shared fixtures: a small demo world built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_fixture import backend_url, postgres_server  # noqa: F401  (a real PostgreSQL, on demand)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    from monitor.demo.world import generate_world

    return generate_world(tmp_path_factory.mktemp("world") / "world", seed=11, rows_per_day=4000)
