"""`id_drift` through the runner on a small ID world: planted faults caught, clean windows quiet.

The world: offers with Zipf popularity over 20k IDs and users over 20k IDs (hashed by the model
into 2**16 buckets), ten reference days and serving days drawn from the same law. Planted: a
cold-start surge (a quarter of the traffic on brand-new offers), a cold (not unseen) surge
(traffic on offers the reference holds only a few times) and a hash-collision blow-up (the user
ID turns into a per-request ID for most rows)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checks.id_drift import IdDriftParams, excesses, fit_column, measure
from core.errors import ConfigError
from monitor.config import parse_config
from monitor.runner import ModelRunner
from monitor.store import ResultsStore

START = datetime(2024, 6, 1, tzinfo=timezone.utc)
REFERENCE_DAYS, ROWS_PER_DAY, CLEAN_DAYS = 10, 20_000, 20
N_OFFERS, N_USERS, BUCKETS = 20_000, 20_000, 1 << 16
OFFER_P = 1.0 / np.arange(1, N_OFFERS + 1) ** 1.1
OFFER_P /= OFFER_P.sum()
USER_P = 1.0 / np.arange(1, N_USERS + 1) ** 0.6
USER_P /= USER_P.sum()
FAULTS = {"cold_start_surge": CLEAN_DAYS, "cold_not_unseen": CLEAN_DAYS + 1, "collision_blowup": CLEAN_DAYS + 2}


def _day(seed: int, day: datetime, fault: str | None = None, rare_offers: np.ndarray | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = ROWS_PER_DAY
    offers = np.array([f"offer-{i}" for i in rng.choice(N_OFFERS, n, p=OFFER_P)], dtype=object)
    users = np.array([f"u{i}" for i in rng.choice(N_USERS, n, p=USER_P)], dtype=object)
    moved = rng.random(n) < 0.25
    if fault == "cold_start_surge":
        offers[moved] = [f"offer-new-{i}" for i in rng.integers(0, 500, moved.sum())]
    elif fault == "cold_not_unseen":
        offers[moved] = rng.choice(rare_offers, moved.sum())
    elif fault == "collision_blowup":
        fresh = rng.random(n) < 0.8
        users[fresh] = [f"req-{seed}-{i}" for i in range(fresh.sum())]
    base = np.datetime64(day.replace(tzinfo=None), "us") + np.timedelta64(1, "s")
    ts = base + np.sort(rng.integers(0, 86_000, n)).astype("timedelta64[s]")
    return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                     "price": rng.gamma(2.0, 20.0, n), "offer_id": offers, "user_id": users})


@pytest.fixture(scope="module")
def id_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("idworld")
    reference = pa.concat_tables([_day(d, START + timedelta(days=d)) for d in range(REFERENCE_DAYS)])
    pq.write_table(reference, root / "reference.parquet")
    held = dict(zip(*np.unique(reference.column("offer_id").to_numpy(zero_copy_only=False), return_counts=True)))
    rare = np.array(sorted(k for k, c in held.items() if c <= 3), dtype=object)  # seen 1-3 times: cold
    serving = root / "serving"
    serving.mkdir()
    first = START + timedelta(days=REFERENCE_DAYS)
    by_day = {d: name for name, d in FAULTS.items()}
    for d in range(CLEAN_DAYS + len(FAULTS)):
        table = _day(1000 + d, first + timedelta(days=d), by_day.get(d), rare)
        pq.write_table(table, serving / f"day-{d:02d}.parquet")
    raw = {
        "version": 1,
        "store": {"url": f"sqlite:///{root / 'store.db'}", "reports_dir": str(root / "reports")},
        "models": [{
            "name": "ids", "reference": {"path": str(root / "reference.parquet")},
            "serving": {"path": str(serving)},
            "schema": {"timestamp": "ts", "features": [{"name": "price", "kind": "numeric"}]},
            "checks": {"data_drift": {"enabled": False}, "prediction_drift": {"enabled": False},
                       "id_drift": {"enabled": True, "columns": ["offer_id", "user_id"], "top_k": 50,
                                    "cold_start_min_count": 5, "hashed_buckets": {"user_id": BUCKETS},
                                    "count_width": 1 << 18}},
        }],
    }
    config = parse_config(raw, "idworld", root)
    store = ResultsStore(config.store_url())
    runner = ModelRunner(config, config.models[0], store)
    results = {}
    for d in range(CLEAN_DAYS + len(FAULTS)):
        start = first + timedelta(days=d)
        results[d] = runner.run(start, start + timedelta(days=1), ["id_drift"])[0]
    store.close()
    return results, rare


def _signals(result, status=("alert",)) -> set[tuple[str, str]]:
    return {(column, signal) for column, block in result.details["columns"].items()
            for signal, judged in block["signals"].items() if judged["status"] in status}


def test_clean_windows_are_quiet_and_the_rate_is_measured(id_world):
    results, _ = id_world
    decisions = [judged["status"] for d in range(CLEAN_DAYS) for block in results[d].details["columns"].values()
                 for judged in block["signals"].values()]
    alerts = sum(s == "alert" for s in decisions) / len(decisions)
    warns = sum(s == "warn" for s in decisions) / len(decisions)
    print(f"id_drift on {CLEAN_DAYS} clean windows: {len(decisions)} decisions, "
          f"alert rate {alerts:.3f}, warn rate {warns:.3f}")
    assert alerts == 0
    assert warns <= 0.05
    assert all(results[d].status in ("ok", "warn") for d in range(CLEAN_DAYS))


def test_cold_start_surge_on_new_offers_is_caught(id_world):
    results, _ = id_world
    result = results[FAULTS["cold_start_surge"]]
    assert result.status == "alert"
    assert {("offer_id", "unseen_traffic"), ("offer_id", "cold_start")} <= _signals(result)
    assert not any(f == "user_id" for f, _ in _signals(result, ("alert", "warn")))
    window = result.details["columns"]["offer_id"]["window"]
    assert window["unseen_traffic_rate"] == pytest.approx(0.25, abs=0.02)


def test_surge_on_rarely_trained_offers_is_cold_start_but_not_unseen(id_world):
    results, rare = id_world
    assert len(rare) > 100
    result = results[FAULTS["cold_not_unseen"]]
    assert ("offer_id", "cold_start") in _signals(result)
    assert ("offer_id", "unseen_traffic") not in _signals(result, ("alert", "warn"))


def test_hash_collision_blowup_is_caught(id_world):
    results, _ = id_world
    result = results[FAULTS["collision_blowup"]]
    assert ("user_id", "collision_rate") in _signals(result)
    user_row = next(f for f in result.features if f.feature == "user_id")
    assert user_row.status == "alert" and "collision_rate" in user_row.reasons
    assert not any(f == "offer_id" for f, _ in _signals(result, ("alert", "warn")))
    user = result.details["columns"]["user_id"]["window"]
    assert user["collision_rate"] > user["reference_collision_rate"] + 0.05
    exported = {(m.name, dict(m.labels)["feature"]) for m in result.metrics}
    assert {("id_collision_rate", "user_id"), ("id_cold_start_exposure", "offer_id"),
            ("id_topk_jaccard", "offer_id"), ("id_unseen_traffic_rate", "user_id"),
            ("id_signal_excess", "user_id")} <= exported


def test_measure_agrees_with_exact_computation():
    """The sketched signals against exact set arithmetic on a small case."""
    rng = np.random.default_rng(3)
    reference = rng.zipf(1.3, 50_000) % 3000
    window = np.concatenate([rng.zipf(1.3, 8_000) % 3000, np.arange(10_000, 12_000)])
    params = IdDriftParams(columns=["x"], top_k=20, cold_start_min_count=4, count_width=1 << 16)
    fitted = fit_column(lambda: iter([pa.array(reference[:30_000]), pa.array(reference[30_000:])]), "x", params, 4096)
    stats = measure(fitted.sketch, [pa.array(window)], params, 4096)
    keys, counts = np.unique(reference, return_counts=True)
    held = dict(zip(keys.tolist(), counts.tolist()))
    unseen = np.array([v not in held for v in window.tolist()])
    cold = np.array([held.get(v, 0) < 4 for v in window.tolist()])
    assert stats.unseen_traffic_rate == pytest.approx(unseen.mean(), abs=0.002)  # a lower bound, nearly exact
    assert stats.cold_start_exposure == pytest.approx(cold.mean(), abs=0.002)
    top = set(keys[np.argsort(-counts, kind="stable")[:20]].tolist())
    assert stats.topk_coverage == pytest.approx(np.isin(window, list(top)).mean(), abs=1e-9)
    distinct_window = np.unique(window)
    assert stats.distinct == pytest.approx(len(distinct_window), rel=0.03)
    assert stats.unseen_value_rate == pytest.approx(np.mean([v not in held for v in distinct_window]), abs=0.03)
    assert fitted.baseline is not None and set(excesses(stats, fitted.baseline)) == {
        "unseen_traffic", "cold_start", "topk_coverage", "topk_churn", "collision_rate"}


def test_bad_configuration_names_the_key():
    from types import SimpleNamespace

    from checks.id_drift import IdDriftCheck

    model = SimpleNamespace(name="m")
    with pytest.raises(ConfigError, match="id_drift.columns"):
        IdDriftCheck(model, IdDriftParams(enabled=True))
    with pytest.raises(ConfigError, match="hashed_buckets: 'u'"):
        IdDriftCheck(model, IdDriftParams(enabled=True, columns=["x"], hashed_buckets={"u": 10}))
    with pytest.raises(ValueError, match="heavy_hitters"):
        IdDriftParams(top_k=5000)

