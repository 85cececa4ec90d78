"""The ranking demo: every planted incident is caught by its check, and no check alerts on a
day without an incident of its own."""

from __future__ import annotations

from monitor.demo.ranking import INCIDENTS, run_ranking_demo


def test_every_planted_ranking_incident_is_caught_with_no_false_alarm(tmp_path, capsys):
    summary = run_ranking_demo(tmp_path / "ranking", seed=3)
    found = {i["name"]: i for i in summary["incidents"]}
    assert set(found) == {i["name"] for i in INCIDENTS}
    assert all(i["detected"] for i in found.values()), summary
    assert summary["false_alarms"] == [], summary["false_alarms"]
    assert found["exploration_collapse"]["what"] == "collapsed: partner=p3"
    assert found["rollout_ctr_drop"]["what"].startswith("stop v6 -> v7: harmful ")
    assert "ctr" in found["rollout_ctr_drop"]["what"]
    assert found["slot1_overpredicted_by_v7"]["what"].startswith("slot 1 v7 ratio 1.")
    assert found["rollout_ctr_drop"]["first_detected"] == "2026-03-05"  # the day the rollout started

    from monitor.cli import _print_ranking_demo

    _print_ranking_demo(summary)
    printed = capsys.readouterr().out
    assert "partner=p3" in printed and "ranking false alarms: 0" in printed
