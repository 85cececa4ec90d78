"""Evaluation metrics against scikit-learn, gates on planted better / worse candidates
(overall and on one protected segment), and the HTML + JSON report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from retrain.evaluate import (Gates, Metrics, apply_gates, auc, calibration_ratio, evaluate, evaluate_heads,
                              gate_heads, head_targets, log_loss, normalized_entropy)
from retrain.report import reliability_points, roc_points, write_report


def _holdout(n: int = 40_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    os_ = rng.choice(["android", "ios", "windows"], n, p=[0.4, 0.4, 0.2])
    z = rng.normal(-3.0, 1.0, n)
    p = 1 / (1 + np.exp(-z))
    return pd.DataFrame({"os": os_, "true_p": p, "click": (rng.random(n) < p).astype(np.int8)})


def test_metrics_match_scikit_learn():
    frame = _holdout(5000)
    y, p = frame["click"].to_numpy(), np.round(frame["true_p"].to_numpy(), 3)  # with ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    rate = y.mean()
    assert normalized_entropy(y, p) == pytest.approx(
        sk_log_loss(y, p) / sk_log_loss(y, np.full(len(y), rate)), rel=1e-9)
    assert calibration_ratio(y, p) == pytest.approx(p.sum() / y.sum())
    assert auc(np.zeros(10), np.arange(10)) is None and calibration_ratio(np.zeros(3), np.ones(3)) is None
    assert normalized_entropy(np.ones(4), np.full(4, 0.5)) is None


def test_per_segment_metrics_and_minimum_rows():
    frame = _holdout(3000)
    result = evaluate(frame, "click", frame["true_p"].to_numpy(), ["os", "missing_column"], min_segment_rows=700)
    assert set(result.segments) == {"os"}
    assert set(result.segments["os"]) == {"android", "ios"}  # windows has ~600 rows, fewer than 700
    android = frame["os"] == "android"
    m = result.segments["os"]["android"]
    assert m.rows == int(android.sum())
    assert m.auc == pytest.approx(roc_auc_score(frame["click"][android], frame["true_p"][android]))
    json.dumps(result.to_dict())


GATES = Gates(max_auc_drop=0.005, max_log_loss_increase=0.005, protected_segments=("os",),
              segment_max_auc_drop=0.02, segment_max_log_loss_increase=0.02, min_segment_rows=1000)


@pytest.fixture(scope="module")
def holdout():
    frame = _holdout()
    rng = np.random.default_rng(1)
    logit = np.log(frame["true_p"] / (1 - frame["true_p"])).to_numpy()
    # Production: the truth seen through noise. Better: less noise. Worse: more noise.
    noisy = lambda scale: 1 / (1 + np.exp(-(logit + rng.normal(0, scale, len(frame))))) # noqa: E731
    return frame, {"production": noisy(0.8), "better": noisy(0.3), "worse": noisy(1.6)}


def _decide(frame, candidate, production, gates=GATES):
    return apply_gates(evaluate(frame, "click", candidate, ["os"], gates.min_segment_rows),
                       evaluate(frame, "click", production, ["os"], gates.min_segment_rows) if production is not None
                       else None, gates)


def test_a_better_candidate_passes(holdout):
    frame, s = holdout
    decision = _decide(frame, s["better"], s["production"])
    assert decision.passed, decision.reasons
    assert {c.scope for c in decision.checks} >= {"overall", "os=android", "os=ios", "os=windows"}


def test_a_worse_candidate_is_rejected_overall_with_reasons(holdout):
    frame, s = holdout
    decision = _decide(frame, s["worse"], s["production"])
    assert not decision.passed
    assert any(r.startswith("auc (overall)") and "< production" in r for r in decision.reasons)
    assert any(r.startswith("log_loss (overall)") for r in decision.reasons)


def _worse_on_windows(frame, s):
    """Better than production everywhere but on os=windows (20% of rows), where its
    ranking is destroyed (scores permuted within the segment)."""
    candidate = s["better"].copy()
    windows = (frame["os"] == "windows").to_numpy()
    candidate[windows] = np.random.default_rng(2).permutation(candidate[windows])
    return candidate


SEGMENT_TEST = dict(max_auc_drop=0.02, max_log_loss_increase=0.02, min_segment_rows=1000)


def test_worse_on_one_protected_segment_only_is_rejected(holdout):
    frame, s = holdout
    candidate = _worse_on_windows(frame, s)
    decision = _decide(frame, candidate, s["production"], Gates(protected_segments=("os",), **SEGMENT_TEST))
    assert not decision.passed
    failing = {c.scope for c in decision.checks if not c.passed}
    assert failing == {"os=windows"}, decision.reasons
    assert any(r.startswith("auc (os=windows)") for r in decision.reasons)
    # Without protecting os the same candidate is judged overall only, and passes there.
    assert _decide(frame, candidate, s["production"], Gates(**SEGMENT_TEST)).passed


def test_protecting_one_value_only(holdout):
    frame, s = holdout
    candidate = _worse_on_windows(frame, s)
    only_android = Gates(protected_segments=("os=android",), **SEGMENT_TEST)
    decision = _decide(frame, candidate, s["production"], only_android)
    assert decision.passed and {c.scope for c in decision.checks} == {"overall", "os=android"}
    only_windows = Gates(protected_segments=("os=windows",), **SEGMENT_TEST)
    assert not _decide(frame, candidate, s["production"], only_windows).passed


def test_calibration_gate_and_absolute_floor_without_production(holdout):
    frame, s = holdout
    over = np.clip(s["better"] * 1.5, 0, 1)
    decision = _decide(frame, over, None, Gates(max_calibration_error=0.1))
    assert not decision.passed and any("calibration_ratio" in r for r in decision.reasons)
    # A miscalibrated candidate still passes when production is worse calibrated.
    assert _decide(frame, over, np.clip(s["production"] * 2.0, 0, 1), Gates(max_calibration_error=0.1,
                                                                        max_auc_drop=1, max_log_loss_increase=1)).passed
    coin = np.random.default_rng(3).random(len(frame))
    floor = _decide(frame, coin, None, Gates(min_auc=0.55, max_calibration_error=100))
    assert not floor.passed and any("below the floor" in r for r in floor.reasons)


def test_report_html_and_json(holdout, tmp_path):
    frame, s = holdout
    y = frame["click"].to_numpy()
    cand = evaluate(frame, "click", s["worse"], ["os"], 1000)
    prod = evaluate(frame, "click", s["production"], ["os"], 1000)
    decision = apply_gates(cand, prod, GATES)
    report = {"format": 1, "model": "m", "version": 7, "trainer": "lightgbm",
              "window": {"start": "a", "end": "b", "train_rows": 1, "holdout_rows": len(frame), "holdout_start": "c"},
              "production_version": 6, "candidate": cand.to_dict(), "production": prod.to_dict(),
              "gates": decision.to_dict(), "infra": {"passed": True, "message": "ok"}}
    curves = {"roc": {"candidate": roc_points(y, s["worse"]), "production": roc_points(y, s["production"])},
              "reliability": {"candidate": reliability_points(y, s["worse"])}}
    json_path, html_path = write_report(tmp_path, report, curves)
    assert json.loads(json_path.read_text())["gates"]["passed"] is False
    page = html_path.read_text()
    assert page.count("<svg") == 2 and "REJECTED" in page and "os=ios" in page
    assert "auc (overall)" in page and "<script" not in page
    roc = roc_points(y, s["production"])
    assert roc[0] == (0.0, 0.0) and roc[-1] == (1.0, 1.0) and len(roc) <= 200
    # Reliability bins: mean prediction and observed rate per decile, summing back to the totals.
    bins = reliability_points(y, s["production"])
    assert len(bins) == 10 and np.mean([b[1] for b in bins]) == pytest.approx(y.mean(), rel=1e-3)


def test_metrics_record_is_plain_json():
    record = Metrics.of(np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6]))
    assert record.auc == 1.0 and json.loads(json.dumps(record.to_dict()))["rows"] == 4


# -- every head of a multi-task model --------------------------------------------------------

def _click_conversion(n: int = 60_000, seed: int = 4):
    rng = np.random.default_rng(seed)
    os_ = rng.choice(["android", "ios"], n)
    p_ctr = 1 / (1 + np.exp(-rng.normal(-2.5, 1.0, n)))
    p_cvr = 1 / (1 + np.exp(-rng.normal(-1.5, 1.0, n)))
    click = rng.random(n) < p_ctr
    conversion = click & (rng.random(n) < p_cvr)
    frame = pd.DataFrame({"os": os_, "click": click.astype(np.int8), "conversion": conversion.astype(np.int8)})
    return frame, {"ctr": p_ctr, "cvr": p_cvr, "ctcvr": p_ctr * p_cvr}


def test_head_targets_cvr_on_clicks_ctcvr_on_all_rows():
    frame = pd.DataFrame({"click": [1, 1, 0, 0], "conversion": [1, 0, 0, 0], "y2": [0, 1, 1, 0]})
    labels = ("click", "conversion")
    mask, y = head_targets(frame, labels, "cvr")
    assert mask.tolist() == [True, True, False, False] and y[mask].tolist() == [1, 0]
    mask, y = head_targets(frame, labels, "ctcvr")
    assert mask.all() and y.tolist() == [1, 0, 0, 0]
    assert head_targets(frame, labels, "ctr")[1].tolist() == [1, 1, 0, 0]
    assert head_targets(frame, ("click", "y2"), "y2")[1].tolist() == [0, 1, 1, 0]  # an independent task
    assert head_targets(frame, labels, "unknown") is None


def test_a_candidate_broken_on_one_head_is_rejected_naming_it():
    frame, truth = _click_conversion()
    labels = ("click", "conversion")
    production = evaluate_heads(frame, labels, truth, ["os"], 1000)
    assert set(production) == {"click", "cvr", "ctcvr"}
    assert production["cvr"].overall.rows == int(frame["click"].sum())  # CVR only where defined
    same = gate_heads(evaluate_heads(frame, labels, truth, ["os"], 1000), production, Gates())
    assert same.passed, same.reasons
    # The conversion head learnt nothing (shuffled conversions): CTR as good as production.
    rng = np.random.default_rng(5)
    broken = dict(truth, cvr=rng.permutation(truth["cvr"]) * 0.02)
    broken["ctcvr"] = truth["ctr"] * broken["cvr"]
    decision = gate_heads(evaluate_heads(frame, labels, broken, ["os"], 1000), production,
                          Gates(protected_segments=("os",)))
    assert not decision.passed
    failing = {c.head for c in decision.checks if not c.passed}
    assert failing == {"cvr", "ctcvr"}, decision.reasons
    assert any(r.startswith("ctcvr: log_loss (overall)") for r in decision.reasons)
    assert any(r.startswith("ctcvr: calibration_ratio (overall)") for r in decision.reasons)
    assert any(r.startswith("cvr: auc (os=") for r in decision.reasons)
    # A head production serves and the candidate lacks is a reason too.
    single = gate_heads(evaluate_heads(frame, labels, {"ctr": truth["ctr"]}), production, Gates())
    assert not single.passed and any(r.startswith("ctcvr: production predicts this head") for r in single.reasons)


def test_calibration_tolerance_widens_with_few_positives():
    frame, truth = _click_conversion(n=4000, seed=6)
    y = frame["click"].to_numpy() * frame["conversion"].to_numpy()
    positives = int(y.sum())
    assert 10 < positives < 100
    off = truth["ctcvr"] / calibration_ratio(y, truth["ctcvr"]) * 1.15  # 15% over: noise at this size
    ev = evaluate(frame, y, off)
    assert apply_gates(ev, None, Gates(max_calibration_error=0.1)).passed
    assert not apply_gates(ev, None, Gates(max_calibration_error=0.1, calibration_noise_z=0)).passed
