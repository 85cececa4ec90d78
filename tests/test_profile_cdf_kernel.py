"""The numba CDF/Wasserstein kernel (checks/_cdf_kernels.py) against the numpy reference it replaces.

`profile_wasserstein` and `fast_profile_cdf` must give what `stats.wasserstein_between_cdfs` on
`profile_cdf` knots gives (the reference, kept as the oracle and the fallback) to 1e-12 relative,
on profiles built to be awkward: discrete features (every bin a point mass), point masses inside
continuous data, heavy tails over hundreds of orders of magnitude, negative values, exact zeros
and values around the sketch's zero threshold, a single value, empty bins, data outside the
reference's edges, merged profiles, and hand-made sketches whose buckets disagree with the bins.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("numba")

from checks import profile_cdf as cdf  # noqa: E402
from checks.stats import wasserstein_between_cdfs  # noqa: E402
from core.profile import NumericProfile, edges_from_sample  # noqa: E402
from core.sketch import QuantileSketch  # noqa: E402

REL = 1e-12


@pytest.fixture(autouse=True)
def _kernel_started():
    """profile_wasserstein takes the kernel once started (a check starts it for enough scores)."""
    cdf._kernels()


def _profile(values, edges) -> NumericProfile:
    return NumericProfile.from_array(pa.array(np.asarray(values, np.float64)), edges)


def _reference_w1(ref, cur, std=1.0) -> float:
    return wasserstein_between_cdfs(*cdf.profile_cdf(ref), *cdf.profile_cdf(cur), std)


def _assert_same(ref: NumericProfile, cur: NumericProfile) -> None:
    for profile in (ref, cur):
        want_x, want_f = cdf.profile_cdf(profile)
        x, f = cdf.fast_profile_cdf(profile)
        assert x.shape == want_x.shape
        np.testing.assert_allclose(x, want_x, rtol=REL, atol=0)
        np.testing.assert_allclose(f, want_f, rtol=REL, atol=0)
    for a, b in ((ref, cur), (cur, ref), (ref, ref)):
        want = _reference_w1(a, b)
        got = cdf.profile_wasserstein(a, b, 1.0)
        assert got == pytest.approx(want, rel=REL, abs=0), (got, want)


def _pairs(rng) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    normal = rng.normal(0, 1, 3000)
    return {
        "normal shifted": (normal, rng.normal(0.1, 1, 2500)),
        "discrete with negatives and zero": (rng.integers(-5, 6, 4000), rng.integers(-4, 8, 3000)),
        "few distinct values": (rng.choice([-2.5, 0.0, 1e-3, 7.0], 2000), rng.choice([-2.5, 0.0, 7.0, 9.0], 2000)),
        "point mass inside continuous data": (np.r_[normal, np.full(1500, 0.25)],
                                              np.r_[rng.normal(0, 1, 2000), np.full(400, 0.25)]),
        "zeros in a heavy tail": (np.r_[rng.pareto(1.1, 3000), np.zeros(800)],
                                  np.r_[rng.pareto(0.9, 3000), np.zeros(50)]),
        "cauchy": (rng.standard_cauchy(3000), 2 * rng.standard_cauchy(2000) - 1),
        "hundreds of orders of magnitude": (np.exp(rng.uniform(-600, 600, 3000)) * rng.choice([-1, 1], 3000),
                                            np.exp(rng.uniform(-700, 700, 3000))),
        "near the zero threshold": (rng.choice([-1e-11, -1e-12, -9e-13, 0.0, 5e-13, 1e-12, 2e-12], 3000)
                                    * rng.uniform(0.5, 1.5, 3000), rng.uniform(-3e-12, 3e-12, 3000)),
        "all negative": (-rng.lognormal(0, 2, 3000), -rng.lognormal(0.3, 2, 3000)),
        "single value": (np.full(2000, -3.5), np.full(1000, -3.5)),
        "single value against another": (np.full(2000, 4.0), np.full(1000, 0.0)),
        "one row": (np.array([1.5]), np.array([-1.5])),
        "current outside the reference's range": (normal, rng.normal(50, 3, 2000)),
        "bimodal with empty bins between": (np.r_[rng.normal(-100, 1, 1500), rng.normal(100, 1, 1500)],
                                            np.r_[rng.normal(-100, 1, 500), rng.normal(100, 1, 2500)]),
        "huge values": (rng.uniform(-1e300, 1e300, 2000), rng.uniform(-1e299, 1e300, 2000)),
    }


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the profile's m2 of 1e300s
@pytest.mark.parametrize("name", list(_pairs(np.random.default_rng(0))))
@pytest.mark.parametrize("n_bins", [100, 7])
def test_kernel_equals_the_numpy_reference_on_adversarial_profiles(name, n_bins):
    reference, current = _pairs(np.random.default_rng(0))[name]
    edges = edges_from_sample(np.asarray(reference, np.float64), n_bins)
    _assert_same(_profile(reference, edges), _profile(current, edges))


def test_kernel_equals_the_reference_on_merged_profiles_and_random_mixtures():
    rng = np.random.default_rng(7)
    for _ in range(60):
        parts = [rng.normal(rng.normal(0, 5), rng.uniform(1e-3, 10), rng.integers(1, 800)),
                 np.full(rng.integers(0, 300), rng.choice([0.0, -1.0, 3.0])),
                 rng.standard_cauchy(rng.integers(0, 200)),
                 rng.integers(-3, 4, rng.integers(0, 300)).astype(np.float64)]
        values = rng.permutation(np.concatenate(parts))
        edges = edges_from_sample(values[: max(1, values.size // 2)], int(rng.choice([3, 20, 100])))
        halves = np.array_split(values, 2)
        merged = _profile(halves[0], edges).merge(_profile(halves[1], edges))
        _assert_same(merged, _profile(rng.permutation(values)[: rng.integers(1, values.size + 1)] * 1.1, edges))


def test_kernel_equals_the_reference_when_the_sketch_disagrees_with_the_bins():
    """Hand-made profiles: sketch buckets on both sides of zero, in empty bins, past min and max
    (stored profiles are read back as they were written, so the kernel takes what it is given)."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        edges = tuple(np.sort(rng.uniform(-5, 5, rng.integers(0, 12))).tolist())
        bin_counts = rng.integers(0, 5, len(edges) + 1) * rng.integers(0, 2, len(edges) + 1)
        bin_counts[rng.integers(0, len(bin_counts))] += 1 + trial  # never empty
        low = (edges[0] if edges else 0.0) - rng.uniform(0, 3)
        high = (edges[-1] if edges else 0.0) + rng.uniform(0, 3)
        if trial % 3 == 0:  # min and max inside the edges, filled bins outside them (bins with low > high)
            low, high = np.sort(rng.uniform(-5, 5, 2))
        bounds = np.r_[low, edges, high]
        sums = bin_counts * (bounds[:-1] + (bounds[1:] - bounds[:-1]) * rng.uniform(-0.2, 1.2, len(bin_counts)))
        keys = lambda: {int(k): int(rng.integers(1, 9)) for k in rng.integers(-2900, 250, rng.integers(0, 60))}
        sketch = QuantileSketch(positive=keys(), negative=keys(), zero=int(rng.integers(0, 3)))
        profile = NumericProfile(edges, rows=int(bin_counts.sum()), count=int(bin_counts.sum()), min=float(low),
                                 max=float(high), bin_counts=bin_counts.astype(np.int64),
                                 bin_sums=sums.astype(np.float64), sketch=sketch)
        other = _profile(rng.normal(0, 2, 500), edges)
        _assert_same(profile, other)


def test_an_empty_profile_is_refused_by_both_paths():
    empty = NumericProfile((0.0, 1.0))
    with pytest.raises(ValueError, match="empty profile"):
        cdf.profile_cdf(empty)
    with pytest.raises(ValueError, match="empty profile"):
        cdf.fast_profile_cdf(empty)


def test_without_numba_the_reference_scores(monkeypatch):
    rng = np.random.default_rng(5)
    edges = edges_from_sample(rng.normal(0, 1, 1000))
    ref, cur = _profile(rng.normal(0, 1, 1000), edges), _profile(rng.normal(0.3, 1, 1000), edges)
    monkeypatch.setattr(cdf, "_KERNELS", (None, None, None))
    assert cdf.profile_wasserstein(ref, cur, 0.5) == _reference_w1(ref, cur, 0.5)


def test_pairwise_sum_is_numpys_sum():
    from checks import _cdf_kernels as kernels  # the source (the ahead-of-time build exports the entry points)

    rng = np.random.default_rng(2)
    for n in [0, 1, 7, 8, 9, 15, 16, 127, 128, 129, 136, 255, 256, 1000, 4097, 100_003]:
        values = rng.standard_cauchy(n) * 10.0 ** rng.integers(-8, 8, n)
        assert kernels._pairwise_sum(values) == np.sum(values), n


def test_merged_grid_is_numpys_unique():
    from checks import _cdf_kernels as kernels

    rng = np.random.default_rng(4)
    for _ in range(50):
        a = np.sort(rng.integers(-5, 5, rng.integers(0, 20)).astype(np.float64))
        b = np.sort(rng.integers(-5, 5, rng.integers(0, 20)).astype(np.float64))
        assert np.array_equal(kernels._merged_grid(a, b), np.unique(np.concatenate([a, b])))


def test_kernel_equals_the_reference_where_sketch_knots_come_out_of_order_around_zero():
    """The smallest buckets overlap the zero bucket [-1e-12, 1e-12] (the bucket of 1e-12 starts just
    below it), so the sketch's knots go back in x twice. With bin edges between them the knots
    change bins backwards, which the kernel's walking bin pointer and its sort must follow."""
    from core.sketch import _SKETCH_GAMMA, _SKETCH_MIN_MAGNITUDE

    k0 = int(np.ceil(np.log(_SKETCH_MIN_MAGNITUDE) / np.log(_SKETCH_GAMMA)))
    inner = float(_SKETCH_GAMMA ** np.float64(k0 - 1))  # < 1e-12 <= gamma**k0
    assert inner < _SKETCH_MIN_MAGNITUDE
    for edges in [(-(inner + _SKETCH_MIN_MAGNITUDE) / 2, (inner + _SKETCH_MIN_MAGNITUDE) / 2),
                  (-3e-12, -(inner + _SKETCH_MIN_MAGNITUDE) / 2, 0.0, (inner + _SKETCH_MIN_MAGNITUDE) / 2, 3e-12)]:
        n_bins = len(edges) + 1
        bin_counts = np.full(n_bins, 4, np.int64)
        bounds = np.r_[-5e-12, edges, 5e-12]
        sketch = QuantileSketch(positive={k0: 5, k0 + 1: 3}, negative={k0: 6, k0 + 2: 2}, zero=4)
        profile = NumericProfile(edges, rows=4 * n_bins, count=4 * n_bins, min=-5e-12, max=5e-12,
                                 bin_counts=bin_counts, bin_sums=4 * (bounds[:-1] + bounds[1:]) / 2, sketch=sketch)
        other = _profile(np.random.default_rng(1).uniform(-4e-12, 4e-12, 200), edges)
        _assert_same(profile, other)


def test_a_check_starts_the_kernel_for_enough_scores_only_and_scores_the_same(monkeypatch):
    from checks.drift import compare_tables

    rng = np.random.default_rng(9)
    reference = pa.table({f"x{i}": rng.normal(0, 1, 1500) for i in range(3)})
    current = pa.table({f"x{i}": rng.normal(0.2 * i, 1, 1500) for i in range(3)})
    monkeypatch.setattr(cdf, "_KERNELS", None)
    monkeypatch.setattr(cdf, "KERNEL_MIN_SCORES", 4)
    on_numpy = compare_tables(reference, current)
    assert cdf._KERNELS is None  # 3 scores: not worth starting numba
    monkeypatch.setattr(cdf, "KERNEL_MIN_SCORES", 3)
    on_kernel = compare_tables(reference, current)
    assert cdf._KERNELS is not None and cdf._KERNELS[0] is not None
    assert [f.score for f in on_kernel.features] == pytest.approx([f.score for f in on_numpy.features], rel=REL, abs=0)
    assert on_numpy.features[2].score > 0.3  # scored, and drifted where planted


def test_a_narrow_drift_check_does_not_start_the_kernel():
    """Starting numba for it (~0.7 s, ~160 MiB) would cost a 30-column check more than it saves."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, pyarrow as pa\n"
        "from checks.drift import compare_tables\n"
        "rng = np.random.default_rng(0)\n"
        "t = lambda s: pa.table({f'x{i}': rng.normal(s, 1, 2000) for i in range(30)})\n"
        "result = compare_tables(t(0.0), t(0.5))\n"
        "assert result.status == 'alert', result.status\n"
        "assert 'checks._cdf_kernels' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_ahead_of_time_build_equals_the_jit(tmp_path):
    """`make kernel` builds checks/_cdf_kernels ahead of time: its knots and W1 equal numba's JIT ones."""
    import importlib.util

    from checks import _cdf_kernels
    from core import kernel_build

    built = kernel_build.build("checks._cdf_kernels", tmp_path)
    spec = importlib.util.spec_from_file_location("_cdf_kernels_aot", built)
    ahead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ahead)
    _, powers, offset = cdf._kernels()
    for reference_values, current_values in _pairs(np.random.default_rng(3)).values():
        edges = edges_from_sample(np.asarray(reference_values, np.float64))
        knots = []
        for values in (reference_values, current_values):
            profile = _profile(values, edges)
            sketch = profile.sketch
            arguments = (np.asarray(profile.edges, np.float64), profile.bin_counts, profile.bin_sums,
                         float(profile.min), float(profile.max), sketch.negative_keys, sketch.negative_counts,
                         int(sketch.zero), sketch.positive_keys, sketch.positive_counts,
                         cdf._SKETCH_MIN_MAGNITUDE, powers, offset, cdf._SKETCH_GAMMA)
            jit, aot = _cdf_kernels.profile_knots(*arguments), ahead.profile_knots(*arguments)
            for a, b in zip(jit, aot):
                np.testing.assert_array_equal(a, b)
            knots.extend(aot)
        assert _cdf_kernels.w1_between(*knots) == ahead.w1_between(*knots)
