"""Any exception in one check becomes that check's stored `error` result and the other checks of
the window still run; a transient failure (store, filesystem) is raised for the ledger to retry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.checks import REGISTRY, CheckParams, WindowCheck, register_check
from monitor.catalog import load_checks
from monitor.config import parse_config
from monitor.runner import ModelRunner


class Boom(WindowCheck):
    name = "boom"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self, window):
        raise self.error


@pytest.fixture()
def runner_with(demo_raw_config, small_world, monkeypatch):
    load_checks()
    monkeypatch.setattr(REGISTRY, "specs", dict(REGISTRY.specs))

    def make(error: BaseException) -> ModelRunner:
        register_check("boom", params=CheckParams)(lambda model, params: Boom(error))
        config = parse_config(demo_raw_config, "test", small_world.root.parent)
        from monitor.store import ResultsStore

        store = ResultsStore(config.store_url())
        return ModelRunner(config, config.models[0], store)

    return make


def test_a_bug_in_one_check_costs_only_that_check(runner_with, small_world):
    runner = runner_with(ZeroDivisionError("division by zero in a plug-in"))
    start = small_world.serving_start
    results = {r.check: r for r in runner.run(start, start + timedelta(days=1), ["boom", "data_drift"])}
    assert results["boom"].status == "error"
    assert results["boom"].details["error"] == "ZeroDivisionError: division by zero in a plug-in"
    assert results["data_drift"].status in ("ok", "warn")
    stored = {r.check: r.status for r in runner.store.results("offer-ctr", "boom")}
    assert stored == {"boom": "error"}
    runner.store.close()


def test_a_transient_failure_is_raised_for_the_ledger_to_retry(runner_with, small_world):
    runner = runner_with(OSError("disk went away"))
    start = small_world.serving_start
    with pytest.raises(OSError, match="disk went away"):
        runner.run(start, start + timedelta(days=1), ["boom"])
    runner.store.close()
