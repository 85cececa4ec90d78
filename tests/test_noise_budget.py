"""The noise budget: windows with no change must (almost) never alert; planted shifts must.

A 200k-row reference with numeric features of different shapes and categoricals of
cardinality 5-50 is profiled once (through `monitor.runner.build_reference`, which also
gives the 10 row-order chunks that learned thresholds use). Then windows drawn from the
same distribution are profiled with `profile_table` and evaluated with static and
learned thresholds. DESIGN principle 3: the false-alarm rate is measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checks.drift import DEFAULT_THRESHOLDS, DriftCheck
from core.profile import DatasetProfile, profile_table
from core.reference import Reference, build_reference
from core.sources import Source

REFERENCE_ROWS = 200_000
BIG_WINDOW = 100_000
SMALL_WINDOW = 2_000
N_WINDOWS = 50
MAX_ALERTS = 1


def _zipf(k: int, a: float) -> np.ndarray:
    p = 1.0 / np.arange(1, k + 1) ** a
    return p / p.sum()


CATEGORICAL_P = {
    "device": np.array([0.35, 0.25, 0.2, 0.12, 0.08]),  # cardinality 5
    "partner": _zipf(20, 1.0),  # 20, top share ~0.28
    "offer": _zipf(50, 0.8),  # 50, top share ~0.15
}
NUMERIC = ("price", "basket", "items", "hour")
KINDS = {**{n: "numeric" for n in NUMERIC}, **{c: "categorical" for c in CATEGORICAL_P}}


def generate(n: int, seed: int, category_p: dict[str, np.ndarray] | None = None) -> pa.Table:
    """One window of the stationary world (optionally with some categorical shares replaced)."""
    rng = np.random.default_rng(seed)
    columns = {
        "price": rng.normal(50.0, 10.0, n),  # normal
        "basket": rng.lognormal(3.0, 0.8, n),  # heavy right tail
        "items": rng.poisson(4.0, n),  # integer-valued, few distinct values
        "hour": rng.integers(0, 24, n),  # integer-valued, uniform
    }
    for name, p in CATEGORICAL_P.items():
        p = (category_p or {}).get(name, p)
        dictionary = pa.array([f"{name}_{i:02d}" for i in range(len(p))])
        codes = rng.choice(len(p), n, p=p).astype(np.int32)
        columns[name] = pa.DictionaryArray.from_arrays(pa.array(codes), dictionary)
    return pa.table(columns)


@dataclass
class World:
    reference: Reference
    static: object
    learned: object


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    path = tmp_path_factory.mktemp("noise") / "reference.parquet"
    pq.write_table(generate(REFERENCE_ROWS, seed=0), path)
    reference = build_reference(Source(path), KINDS)
    assert reference.profile.rows == REFERENCE_ROWS
    assert len(reference.chunks) == 10
    return World(
        reference,
        DriftCheck().fit(reference.profile),
        DriftCheck(threshold_mode="learned").fit(reference.profile, reference.chunks),
    )


def _profiles(world: World, n: int, first_seed: int) -> list[DatasetProfile]:
    return [profile_table(generate(n, seed=first_seed + i), world.reference.spec) for i in range(N_WINDOWS)]


@pytest.fixture(scope="module")
def big_windows(world) -> list[DatasetProfile]:
    return _profiles(world, BIG_WINDOW, first_seed=1_000)


@pytest.fixture(scope="module")
def small_windows(world) -> list[DatasetProfile]:
    return _profiles(world, SMALL_WINDOW, first_seed=5_000)


def _tally(fitted, profiles: list[DatasetProfile]) -> dict[str, list[str]]:
    statuses: dict[str, list[str]] = {}
    for profile in profiles:
        for feature in fitted.evaluate(profile).features:
            statuses.setdefault(feature.status, []).append(feature.feature)
    return statuses


def _assert_budget(statuses: dict[str, list[str]], n_features: int) -> None:
    assert sum(len(v) for v in statuses.values()) == N_WINDOWS * n_features
    assert not statuses.get("error") and not statuses.get("insufficient_data"), statuses.keys()
    alerts = statuses.get("alert", [])
    assert len(alerts) <= MAX_ALERTS, f"{len(alerts)} false alarms on unchanged windows: {alerts}"


# --------------------------------------------------------------------------- no change: (almost) no alerts


def test_reference_profile_is_what_we_generated(world):
    profile = world.reference.profile
    assert profile.features["price"].mean == pytest.approx(50.0, abs=0.1)
    assert profile.features["price"].std == pytest.approx(10.0, rel=0.01)
    assert set(profile.features["device"].counts) == {f"device_{i:02d}" for i in range(5)}
    assert len(profile.features["offer"].counts) == 50
    assert sum(c.rows for c in world.reference.chunks) == REFERENCE_ROWS


def test_profiling_a_window_is_fast(world):
    import time

    table = generate(BIG_WINDOW, seed=1)
    start = time.perf_counter()
    profile_table(table, world.reference.spec)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("mode", ["static", "learned"])
def test_big_unchanged_windows_stay_within_the_noise_budget(world, big_windows, mode):
    statuses = _tally(getattr(world, mode), big_windows)
    _assert_budget(statuses, len(KINDS))
    # Far from the thresholds, not just under them: warnings are rare too.
    assert len(statuses.get("warn", [])) <= MAX_ALERTS


@pytest.mark.parametrize("mode", ["static", "learned"])
def test_small_unchanged_windows_stay_within_the_noise_budget(world, small_windows, mode):
    statuses = _tally(getattr(world, mode), small_windows)
    _assert_budget(statuses, len(KINDS))


def test_learned_mode_learns_a_noise_level_for_every_feature(world):
    learned = world.learned
    assert set(learned.noise) == set(KINDS)
    for name, noise in learned.noise.items():
        assert noise.chunk_rows == pytest.approx(REFERENCE_ROWS / 10)
        assert noise.mean > 0 and noise.std > 0
        # The noise between 20k-row chunks is far below the static alert thresholds.
        assert noise.mean + 5 * noise.std < DEFAULT_THRESHOLDS[noise.method][1]


def test_learned_thresholds_never_go_below_static_and_grow_for_small_windows(world):
    learned = world.learned
    for name, kind in KINDS.items():
        method = learned.check.method_for(name, kind)
        static_warn, static_alert = DEFAULT_THRESHOLDS[method]
        for n in (100, SMALL_WINDOW, BIG_WINDOW):
            warn, alert = learned.thresholds_for(name, method, n)
            assert warn >= static_warn and alert >= static_alert
            assert warn <= alert
    # Without static floors the learned thresholds alone scale with the noise of window vs reference.
    bare = DriftCheck(threshold_mode="learned", thresholds={"wasserstein": (0.0, 0.0), "linf": (0.0, 0.0)})
    fitted = bare.fit(world.reference.profile, world.reference.chunks)
    for name, kind in KINDS.items():
        method = bare.method_for(name, kind)
        small = fitted.thresholds_for(name, method, SMALL_WINDOW)[1]
        big = fitted.thresholds_for(name, method, BIG_WINDOW)[1]
        reference_n = world.reference.profile.features[name].count
        expected_ratio = ((1 / SMALL_WINDOW + 1 / reference_n) / (1 / BIG_WINDOW + 1 / reference_n)) ** 0.5
        assert small == pytest.approx(big * expected_ratio)
        assert 0 < big < small


# --------------------------------------------------------------------------- planted shifts must alert


def _shift_mean(table: pa.Table, name: str, amount: float) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, pa.array(table.column(name).to_numpy().astype(np.float64) + amount))


@pytest.mark.parametrize("feature", NUMERIC)
@pytest.mark.parametrize("rows", [BIG_WINDOW, SMALL_WINDOW])
def test_quarter_std_mean_shift_alerts(world, feature, rows):
    std = world.reference.profile.features[feature].std
    for seed in (21, 22, 23):
        table = _shift_mean(generate(rows, seed=seed), feature, 0.25 * std)
        profile = profile_table(table, world.reference.spec)
        for fitted in (world.static, world.learned):
            result = fitted.evaluate(profile)
            statuses = {f.feature: f.status for f in result.features}
            shifted = next(f for f in result.features if f.feature == feature)
            assert statuses[feature] == "alert", (fitted.check.threshold_mode, shifted)
            others = [name for name, status in statuses.items() if name != feature and status == "alert"]
            assert not others, others
            assert shifted.score == pytest.approx(0.25, abs=0.05)


def _moved(name: str, source: int, target: int, points: float = 0.10) -> dict[str, np.ndarray]:
    p = CATEGORICAL_P[name].copy()
    assert p[source] >= points
    p[source] -= points
    p[target] += points
    return {name: p}


@pytest.mark.parametrize(
    "feature, source, target",
    [("device", 0, 4), ("device", 1, 2), ("partner", 0, 19), ("partner", 1, 5), ("offer", 0, 49)],
)
@pytest.mark.parametrize("rows", [BIG_WINDOW, SMALL_WINDOW])
def test_ten_point_category_move_alerts(world, feature, source, target, rows):
    for seed in (31, 32, 33):
        table = generate(rows, seed=seed, category_p=_moved(feature, source, target))
        profile = profile_table(table, world.reference.spec)
        for fitted in (world.static, world.learned):
            result = fitted.evaluate(profile)
            statuses = {f.feature: f.status for f in result.features}
            moved = next(f for f in result.features if f.feature == feature)
            assert statuses[feature] == "alert", (fitted.check.threshold_mode, moved)
            others = [name for name, status in statuses.items() if name != feature and status == "alert"]
            assert not others, others
            assert moved.score == pytest.approx(0.10, abs=0.045 if rows == SMALL_WINDOW else 0.01)
            assert moved.unseen_share == 0.0


def test_a_five_point_move_is_not_an_alert_in_big_windows(world):
    """The other side of the threshold: a 5-point move warns (>= 0.04) but does not alert (< 0.075)."""
    table = generate(BIG_WINDOW, seed=41, category_p=_moved("device", 0, 4, points=0.05))
    result = world.static.evaluate(profile_table(table, world.reference.spec))
    device = next(f for f in result.features if f.feature == "device")
    assert device.status == "warn"
    assert device.score == pytest.approx(0.05, abs=0.01)


# --------------------------------------------------------------------------- learned thresholds alone


@pytest.mark.xfail(strict=True, reason="learned thresholds without static floors are not supported: even with "
                   "the (1/n + 1/N_ref) scaling, 50 x 7 unchanged 100k-row windows give ~11 alerts, because the "
                   "reference's own per-category offsets are shared by every window; the static thresholds are the "
                   "practical-effect floor")
def test_learned_thresholds_alone_keep_the_noise_budget_on_big_windows(world, big_windows):
    bare = DriftCheck(threshold_mode="learned", thresholds={"wasserstein": (0.0, 0.0), "linf": (0.0, 0.0)})
    fitted = bare.fit(world.reference.profile, world.reference.chunks)
    _assert_budget(_tally(fitted, big_windows), len(KINDS))
