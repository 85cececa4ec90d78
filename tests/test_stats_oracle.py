"""Our distance kernel against Evidently 0.7's own stattests, on bins built the way Evidently builds them.

What Evidently 0.7.23 does (evidently/legacy/calculations/stattests/):
- NaN and +-inf rows are dropped before a stattest runs (legacy/calculations/data_drift.py).
- get_binned_data: a numerical column whose *reference* has more than 20 distinct values is
  cut by np.histogram_bin_edges(concat(reference, current), bins="sturges"); otherwise (and
  for categoricals) there is one bin per value seen in either sample. The `n_bins=30`
  argument of psi/jensenshannon is ignored. Shares are count / len(sample).
- PSI: sum((r - c) * ln(r / c)) after replacing zero shares, per sample, by
  min_nonzero / 1e6 when min_nonzero <= 1e-4, else by 1e-4.
- Jensen-Shannon: scipy.spatial.distance.jensenshannon(r, c) with base=None, i.e. the
  *distance* (square root of the divergence) in nats, no smoothing.
- Wasserstein: scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001),
  population std (ddof=0).
- Default thresholds are 0.1 for all three; drift is score >= threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from checks import stats

pytest.importorskip("evidently")
from evidently.legacy.calculations.stattests import (  # noqa: E402
    jensenshannon_stat_test,
    psi_stat_test,
    wasserstein_stat_test,
)
from evidently.legacy.core import ColumnType  # noqa: E402

# Both sides sum the same terms in different orders; nothing else may differ.
REL_TOL = 1e-9
ABS_TOL = 1e-12

SEEDS = [0, 1, 2, 3, 4]

# Evidently's cut-off: numerics with at most this many distinct reference values are discrete.
DISCRETE_MAX_UNIQUE = 20


def evidently_counts(reference: pd.Series, current: pd.Series, kind: str):
    """Counts over exactly the bins Evidently's get_binned_data uses."""
    if kind == "num" and reference.nunique() > DISCRETE_MAX_UNIQUE:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        return np.histogram(reference, edges)[0], np.histogram(current, edges)[0]
    keys = sorted(set(reference.unique()) | set(current.unique()))
    ref_counts = reference.value_counts().reindex(keys, fill_value=0).to_numpy()
    cur_counts = current.value_counts().reindex(keys, fill_value=0).to_numpy()
    return ref_counts, cur_counts


def _continuous(rng, n_ref=20_000, n_cur=8_000):
    ref = rng.normal(0.0, 1.0, n_ref)
    cur = rng.normal(rng.uniform(-0.5, 0.5), rng.uniform(0.7, 1.5), n_cur)
    return pd.Series(ref), pd.Series(cur)


def _heavy_tailed(rng, n_ref=20_000, n_cur=5_000):
    # Sparse extreme bins: tail shares fall below 1e-4, which exercises the zero-bin floor.
    ref = rng.lognormal(0.0, 1.0, n_ref)
    cur = rng.lognormal(0.3, 1.2, n_cur)
    return pd.Series(ref), pd.Series(cur)


def _few_values(rng, n_ref=20_000, n_cur=8_000):
    values = np.arange(8, dtype=float)
    ref = rng.choice(values[:6], n_ref, p=rng.dirichlet(np.ones(6)))
    cur = rng.choice(values, n_cur, p=rng.dirichlet(np.ones(8)))
    return pd.Series(ref), pd.Series(cur)


def _categorical(rng, n_ref=20_000, n_cur=8_000):
    cats = np.array([f"c{i}" for i in range(12)])
    ref_p = rng.dirichlet(np.ones(10))
    ref = rng.choice(cats[:10], n_ref, p=ref_p)
    # Two categories vanish and two unseen ones appear.
    cur = rng.choice(cats[2:], n_cur, p=rng.dirichlet(np.ones(10)))
    return pd.Series(ref), pd.Series(cur)


def _rare_categories(rng, n_ref=50_000, n_cur=10_000):
    # A category seen once in 50k rows: its share (2e-5) sets the floor for the empty ones.
    ref = np.concatenate([rng.choice(["a", "b", "c"], n_ref - 1), ["rare"]])
    cur = np.concatenate([rng.choice(["a", "b", "d"], n_cur - 1), ["e"]])
    return pd.Series(ref), pd.Series(cur)


CASES = {
    "continuous": (_continuous, "num"),
    "heavy_tailed": (_heavy_tailed, "num"),
    "few_values": (_few_values, "num"),
    "categorical": (_categorical, "cat"),
    "rare_categories": (_rare_categories, "cat"),
}

COLUMN_TYPE = {"num": ColumnType.Numerical, "cat": ColumnType.Categorical}


def _case(name: str, seed: int):
    make, kind = CASES[name]
    ref, cur = make(np.random.default_rng(seed))
    return ref, cur, kind


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", list(CASES))
def test_psi_matches_evidently(case, seed):
    ref, cur, kind = _case(case, seed)
    expected = psi_stat_test(ref, cur, COLUMN_TYPE[kind], None).drift_score
    ours = stats.psi(*evidently_counts(ref, cur, kind))
    assert ours == pytest.approx(expected, rel=REL_TOL, abs=ABS_TOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", list(CASES))
def test_jensen_shannon_matches_evidently(case, seed):
    ref, cur, kind = _case(case, seed)
    expected = jensenshannon_stat_test(ref, cur, COLUMN_TYPE[kind], None).drift_score
    ours = stats.jensen_shannon(*evidently_counts(ref, cur, kind))
    assert ours == pytest.approx(expected, rel=REL_TOL, abs=ABS_TOL)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", ["continuous", "heavy_tailed", "few_values"])
def test_wasserstein_matches_evidently_on_rows(case, seed):
    ref, cur, _ = _case(case, seed)
    expected = wasserstein_stat_test(ref, cur, ColumnType.Numerical, None).drift_score
    # One point per row with weight 1, and Evidently's population std (ddof=0).
    ours = stats.wasserstein_normalized(
        ref.to_numpy(), np.ones(len(ref)), cur.to_numpy(), np.ones(len(cur)), float(np.std(ref.to_numpy()))
    )
    assert ours == pytest.approx(expected, rel=REL_TOL, abs=ABS_TOL)


def test_wasserstein_weights_equal_repeated_rows():
    """Integer weights are the same as repeating the rows, which is what a histogram feeds in."""
    ref = pd.Series([0.0, 0.0, 1.0, 2.0, 2.0, 2.0])
    cur = pd.Series([1.0, 1.0, 3.0])
    expected = wasserstein_stat_test(ref, cur, ColumnType.Numerical, None).drift_score
    ours = stats.wasserstein_normalized([0.0, 1.0, 2.0], [2, 1, 3], [1.0, 3.0], [2, 1], float(np.std(ref)))
    assert ours == pytest.approx(expected, rel=REL_TOL)


def test_wasserstein_constant_reference_matches_evidently():
    ref = pd.Series(np.full(100, 5.0))
    cur = pd.Series(np.full(50, 5.5))
    expected = wasserstein_stat_test(ref, cur, ColumnType.Numerical, None).drift_score
    ours = stats.wasserstein_normalized([5.0], [100], [5.5], [50], 0.0)
    assert ours == pytest.approx(expected, rel=REL_TOL)


def test_evidently_defaults_are_what_we_document():
    for test in (psi_stat_test, jensenshannon_stat_test, wasserstein_stat_test):
        assert test.default_threshold == 0.1
    # Drift is score >= threshold, not >.
    same = pd.Series(np.arange(30, dtype=float))
    assert wasserstein_stat_test(same, same, ColumnType.Numerical, 0.0).drifted


def test_psi_empty_bin_floor_follows_evidently():
    """Zero shares become min_nonzero/1e6 when the smallest non-zero share is <= 1e-4, else 1e-4."""
    ref = pd.Series(["a"] * 19_999 + ["b"])  # smallest share 5e-5 -> floor 5e-11
    cur = pd.Series(["a"] * 50 + ["c"] * 50)  # smallest share 0.5 -> floor 1e-4
    expected = psi_stat_test(ref, cur, ColumnType.Categorical, None).drift_score
    ours = stats.psi(*evidently_counts(ref, cur, "cat"))
    assert ours == pytest.approx(expected, rel=REL_TOL)
