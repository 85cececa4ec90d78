"""The scheduled drift report agrees with the verdict it was drawn for, on the demo's clean day and
on its alerting day, and renders the same numbers when the window is run again."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from monitor.config import parse_config
from monitor.runner import ModelRunner
from monitor.store import ResultsStore

pytest.importorskip("evidently")


def _verdict(text: str) -> str:
    return text[text.index('<section id="driftline-verdict"'):text.index("</section>")]


def _data(text: str) -> str:
    """Evidently's embedded data with its random widget ids blanked out."""
    block = re.search(r"var metric_[0-9a-f]{32} = ([^\n]*);\n", text).group(1)
    return re.sub(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "ID", block)


@pytest.fixture()
def runner(small_world, demo_raw_config, tmp_path):
    demo_raw_config["models"][0]["checks"]["data_drift"].update(report=True, report_on="always")
    config = parse_config(demo_raw_config, "test", small_world.root.parent)
    store = ResultsStore(config.store_url())
    yield ModelRunner(config, config.models[0], store)
    store.close()


@pytest.mark.parametrize("day, expected", [(0, {"ok", "warn"}), (1, {"alert"})])  # clean day, device shift
def test_report_opens_with_the_verdict_and_repeats_exactly(runner, small_world, day, expected):
    start = small_world.serving_start + timedelta(days=day)
    first = runner.run(start, start + timedelta(days=1), ["data_drift"])[0]
    assert first.status in expected
    text = open(first.report_path, encoding="utf-8").read()
    verdict = _verdict(text)
    assert f"driftline verdict: {first.status.upper()}" in verdict
    for feature in first.features:
        row = re.search(rf"<tr><td>{re.escape(feature.feature)}</td>(.*?)</tr>", verdict).group(1)
        assert f"<td>{feature.status}</td>" in row
    assert "Dataset Drift is" not in text  # no Evidently headline of its own
    again = runner.run(start, start + timedelta(days=1), ["data_drift"])[0]
    text_again = open(again.report_path, encoding="utf-8").read()
    assert _verdict(text_again) == verdict
    assert _data(text_again) == _data(text)  # the same samples, the same numbers
