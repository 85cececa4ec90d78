"""`slot_calibration`: a candidate that over-predicts one slot is named by slot and version in
one row, one series and an alert; a clean rollout (position bias predicted) stays quiet."""

from __future__ import annotations

import numpy as np
import pytest
from rankingsim import run_check, write_rollout_world

from checks.labelled import Segment
from checks.slots import cross


def run_day(path):
    return run_check(path, "slot_calibration", 0, 24)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    def world(name, **kwargs):
        return write_rollout_world(tmp_path_factory.mktemp(name), hours=24, per_hour=3000, **kwargs)

    return {"clean": world("clean", seed=21),
            "slot1": world("slot1", candidate_overprediction=1.3, overpredicted_slot="1", seed=22)}


def test_position_bias_that_the_model_predicts_is_quiet(worlds):
    result = run_day(worlds["clean"])
    assert result.status == "ok", [c for c in result.details["cells"] if c["status"] != "ok"]
    cells = {(c["slot"], c["version"]): c for c in result.details["cells"]}
    # The slots' CTRs differ (position bias), and each is predicted.
    assert cells[("1", "")]["observed_ctr"] > 2 * cells[("3", "")]["observed_ctr"]
    for c in cells.values():
        assert c["ci_low"] < 1 < c["ci_high"] or c["status"] == "ok"


def test_slot_one_over_predicted_by_the_candidate_is_one_alerting_row_and_series(worlds):
    result = run_day(worlds["slot1"])
    assert result.status == "alert"
    alerting = [(c["slot"], c["version"]) for c in result.details["cells"] if c["status"] == "alert"]
    assert ("1", "v7") in alerting
    assert all(slot == "1" for slot, _ in alerting) and ("1", "v6") not in alerting  # no other slot or version
    row = next(c for c in result.details["cells"] if (c["slot"], c["version"]) == ("1", "v7"))
    assert row["ci_low"] < 1.3 < row["ci_high"] and row["ci_low"] > 1.1  # beyond the alert band
    series = {(dict(p.labels)["slot"], dict(p.labels)["version"]): p.value for p in result.metrics
              if p.name == "slot_calibration_ratio"}
    assert series[("1", "v7")] == pytest.approx(row["calibration_ratio"])
    assert abs(series[("1", "v6")] - 1) < 0.1


def test_cross_of_two_columns_names_every_used_pair():
    a = Segment(np.array([0, 1, 1, 0]), ("1", "2"))
    b = Segment(np.array([1, 1, 0, 1]), ("v6", "v7"))
    c = cross(a, b)
    assert [c.categories[i] for i in c.codes] == ["1|v7", "2|v7", "2|v6", "1|v7"]
    assert len(c.categories) == 3
