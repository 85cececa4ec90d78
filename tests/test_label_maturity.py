"""Label maturity: a calibration decay caught on immature windows long before maturity, with the
false-alarm rate of the correction measured on null windows; a conversion-tracking delay caught
as a shift of the maturity curve.

The simulated world: scores p ~ Beta(2, 60) (about 3%), conversions y ~ Bernoulli(c * p) with
c = 1 when calibrated, arriving after a delay drawn from a mixture (40% within hours, 60% over
days, a few beyond the 7-day horizon) that differs between two device segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from checks.maturity import MaturityCurve, curve_shift, immature_calibration

HORIZON = 168.0
WINDOW_ROWS = 40_000
NULL_WINDOWS = 200


def delays(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    fast = rng.random(len(segment)) < np.where(segment == "mobile", 0.5, 0.3)
    return np.where(fast, rng.exponential(3.0, len(segment)), rng.lognormal(np.log(30.0), 0.8, len(segment)))


def world(rng, rows: int, decay: float = 1.0, extra_delay: float = 0.0):
    """(scores, segments, eventual labels, delays in hours) of `rows` impressions."""
    scores = rng.beta(2, 60, rows)
    segment = np.where(rng.random(rows) < 0.6, "mobile", "desktop").astype(object)
    labels = rng.random(rows) < decay * scores
    return scores, segment, labels, delays(rng, segment) + extra_delay


def observe(rng, age_after_window_end: float, decay: float = 1.0, extra_delay: float = 0.0):
    """A one-day window seen `age_after_window_end` hours after it closed."""
    scores, segment, labels, delay = world(rng, WINDOW_ROWS, decay, extra_delay)
    ages = age_after_window_end + rng.uniform(0, 24, WINDOW_ROWS)  # events spread over the day
    arrived = labels & (delay <= np.minimum(ages, HORIZON))
    return scores, segment, arrived, ages, delay


@pytest.fixture(scope="module")
def curve() -> MaturityCurve:
    rng = np.random.default_rng(1)
    _, segment, labels, delay = world(rng, 400_000)  # matured history
    return MaturityCurve.learn(delay[labels], segments=segment[labels])


def judge(curve, rng, age, decay=1.0, extra_delay=0.0):
    scores, segment, arrived, ages, _ = observe(rng, age, decay, extra_delay)
    return immature_calibration(scores, arrived, ages, curve, segments=segment)


def test_curve_learns_the_true_share_per_segment(curve):
    rng = np.random.default_rng(5)
    truth = delays(rng, np.array(["mobile"] * 200_000, dtype=object))
    for hours in (3.0, 24.0, 72.0):
        expected = np.mean(truth <= hours) / np.mean(truth <= HORIZON)
        assert curve.at([hours], np.array(["mobile"], dtype=object))[0] == pytest.approx(expected, abs=0.03)
    assert curve.at([HORIZON + 1])[0] == 1.0 and curve.at([0.0])[0] == 0.0
    assert curve.at([6.0], np.array(["mobile"], dtype=object))[0] > curve.at([6.0], np.array(["desktop"],
                                                                                               dtype=object))[0]
    again = MaturityCurve.from_dict(json.loads(json.dumps(curve.to_dict())))
    assert again == curve


def test_calibration_decay_is_caught_on_an_immature_window_before_maturity(curve):
    """A 20% calibration decay: the first age at which the correction alerts vs waiting a week."""
    rng = np.random.default_rng(11)
    first = None
    for age in (2.0, 6.0, 12.0, 24.0, 48.0, HORIZON):
        result = judge(curve, rng, age, decay=0.8)
        if result["status"] == "alert" and first is None:
            first = age
            caught = result
    print(f"decay caught {first}h after the window closed (maturity: {HORIZON:.0f}h); "
          f"maturity then {caught['maturity']:.2f}, ratio change {caught['relative_ratio']:.3f}")
    assert first is not None and first <= 12.0
    assert caught["relative_ratio"] == pytest.approx(1 / 0.8, rel=0.12)
    low, high = caught["eventual_ci"]
    assert caught["expected_eventual_positives"] >= caught["observed_so_far"] and low < high


def test_false_alarm_rate_of_the_correction_on_null_windows(curve):
    """Calibrated windows seen 12h after closing: how often does the correction warn or alert?
    Uncorrected (sum p vs positives so far) every one of them would alert."""
    rng = np.random.default_rng(21)
    statuses = [judge(curve, rng, 12.0)["status"] for _ in range(NULL_WINDOWS)]
    alert_rate = statuses.count("alert") / NULL_WINDOWS
    warn_rate = statuses.count("warn") / NULL_WINDOWS
    print(f"null windows at 12h: alert rate {alert_rate:.3f}, warn rate {warn_rate:.3f} ({NULL_WINDOWS} windows)")
    assert alert_rate <= 0.01 and warn_rate <= 0.05
    decayed = [judge(curve, rng, 12.0, decay=0.8)["status"] for _ in range(50)]
    power = decayed.count("alert") / len(decayed)
    print(f"20% decay at 12h: detected (alert) in {power:.2f} of 50 windows")
    assert power >= 0.9
    scores, _, arrived, _, _ = observe(rng, 12.0)
    assert arrived.sum() / scores.sum() < 0.8  # the uncorrected ratio: a 'decay' that is only immaturity


def test_expected_eventual_positives_cover_the_truth(curve):
    rng = np.random.default_rng(31)
    covered = 0
    for _ in range(100):
        scores, segment, labels, delay = world(rng, WINDOW_ROWS)
        ages = 12.0 + rng.uniform(0, 24, WINDOW_ROWS)
        arrived = labels & (delay <= ages)
        result = immature_calibration(scores, arrived, ages, curve, segments=segment)
        low, high = result["eventual_ci"]
        covered += low <= (labels & (delay <= HORIZON)).sum() <= high
    print(f"eventual-positives interval covered the truth in {covered} of 100 windows")
    assert covered >= 88


def test_conversion_tracking_delay_is_caught_as_a_curve_shift(curve):
    rng = np.random.default_rng(41)
    scores, segment, arrived, ages, delay = observe(rng, 36.0, extra_delay=24.0)
    shift = curve_shift(delay[arrived], ages[arrived], curve, segment[arrived])
    assert shift["status"] == "alert" and shift["direction"] == "later"
    # The same window read as calibration alone would blame the model: the shift says why.
    assert immature_calibration(scores, arrived, ages, curve, segments=segment)["status"] == "alert"
    quiet = []
    for _ in range(100):
        _, segment, arrived, ages, delay = observe(rng, 36.0)
        quiet.append(curve_shift(delay[arrived], ages[arrived], curve, segment[arrived])["status"])
    rate = quiet.count("alert") / len(quiet)
    print(f"curve-shift false alarms on 100 null windows: {rate:.2f}")
    assert rate <= 0.03


def test_too_few_positives_is_insufficient_data(curve):
    result = immature_calibration(np.full(100, 0.01), np.zeros(100), np.full(100, 12.0), curve)
    assert result["status"] == "insufficient_data"
    assert curve_shift(np.ones(3), np.full(3, 12.0), curve)["status"] == "insufficient_data"
    with pytest.raises(ValueError, match="no matured positives"):
        MaturityCurve.learn(np.array([]))


# ------------------------------------------------------------------ through the runner


@pytest.fixture(scope="module")
def maturity_runs(tmp_path_factory):
    """22 serving days (20k rows each; the judged days 19-21 60k) with conversion arrival times; day 20 decays 20%, day 21's
    conversions are tracked a day late. Windows are judged 12 hours after they close."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    from monitor.config import parse_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    root = tmp_path_factory.mktemp("maturity")
    serving = root / "serving"
    serving.mkdir()
    first = datetime(2024, 5, 1, tzinfo=timezone.utc)
    rng = np.random.default_rng(77)
    faults = {20: dict(decay=0.8), 21: dict(extra_delay=24.0)}
    for d in range(22):
        scores, segment, labels, delay = world(rng, 60_000 if d >= 19 else 20_000, **faults.get(d, {}))
        labels &= delay <= HORIZON
        base = np.datetime64(first.replace(tzinfo=None) + timedelta(days=d), "us")
        ts = base + np.sort(rng.integers(0, 86_399_000_000, len(scores))).astype("timedelta64[us]")
        arrival = ts + (delay * 3.6e9).astype("timedelta64[us]")
        utc = pa.timestamp("us", tz="UTC")
        pq.write_table(pa.table({
            "ts": pa.array(ts, utc), "score": scores, "conversion": labels.astype(np.int8),
            "device": segment.astype(str), "conversion_at": pa.array(arrival, utc, mask=~labels),
        }), serving / f"day-{d:02d}.parquet")
    # The scored reference (the calibration baseline): the first two weeks.
    pq.write_table(pa.concat_tables(pq.read_table(serving / f"day-{d:02d}.parquet") for d in range(14)),
                   root / "reference.parquet")
    raw = {"version": 1, "store": {"url": f"sqlite:///{root / 'store.db'}", "reports_dir": str(root / "r")},
           "models": [{"name": "conv", "reference": {"path": str(root / "reference.parquet")},
                       "serving": {"path": str(serving)},
                       "schema": {"timestamp": "ts", "features": [{"name": "score", "kind": "numeric"}],
                                  "predictions": ["score"], "labels": [{"name": "conversion", "delay": "7d"}]},
                       "checks": {"label_maturity": {"enabled": True, "arrival_column": "conversion_at",
                                                     "segment": "device"}}}]}
    config = parse_config(raw, "maturity", root)
    store = ResultsStore(config.store_url())
    results = {}
    for d in (19, 20, 21):
        start = first + timedelta(days=d)
        end = start + timedelta(days=1)
        runner = ModelRunner(config, config.models[0], store, clock=lambda end=end: end + timedelta(hours=12))
        results[d] = runner.run(start, end, ["label_maturity"])[0]
    store.close()
    return results


def test_runner_judges_immature_windows_instead_of_waiting(maturity_runs):
    clean, decayed = maturity_runs[19], maturity_runs[20]
    assert clean.status == "ok", clean.details
    calibration = decayed.details["calibration"]
    assert decayed.status == "alert"
    assert calibration["trusted"] and 0.3 < calibration["maturity"] < 0.9
    assert decayed.details["baseline"] == "reference"
    assert calibration["relative_ratio"] == pytest.approx(1.25, rel=0.12)
    names = {m.name for m in decayed.metrics}
    assert {"label_maturity_share", "label_expected_eventual_positives", "label_immature_ratio_change",
            "label_curve_ks_distance"} <= names


def test_runner_flags_a_tracking_delay_as_a_curve_shift(maturity_runs):
    delayed = maturity_runs[21]
    assert delayed.status == "alert"
    assert delayed.details["curve_shift"]["status"] == "alert"
    assert not delayed.details["calibration"]["trusted"]
    assert "tracking or attribution break" in delayed.details["reason"]
