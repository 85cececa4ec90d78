"""The compiled numeric pass gives the definitions' answers: searchsorted bins, bincount sums, `_log_keys` keys."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from core.numeric_kernel import GRID, SEARCH, Binner, numeric_state
from core.profile import edges_from_sample
from core.sketch import _SKETCH_MIN_MAGNITUDE, QuantileSketch, _log_keys

MAX = np.finfo(np.float64).max
TINY = np.finfo(np.float64).smallest_subnormal


def _plain_sketch(finite: np.ndarray) -> QuantileSketch:
    """The sketch by its definition: key = ceil(log|x| / log gamma) with numpy's logarithm."""
    parts = []
    for magnitudes in (finite[finite >= _SKETCH_MIN_MAGNITUDE], -finite[finite <= -_SKETCH_MIN_MAGNITUDE]):
        keys, counts = np.unique(_log_keys(magnitudes).copy(), return_counts=True)
        parts.append({int(k): int(c) for k, c in zip(keys, counts)})
    zero = int(np.count_nonzero(np.abs(finite) < _SKETCH_MIN_MAGNITUDE))
    return QuantileSketch(parts[0], parts[1], zero)


def _check(values: np.ndarray, edges: tuple[float, ...]) -> None:
    state = numeric_state(values, edges)
    finite = values[np.isfinite(values)]
    assert state.count == finite.size
    assert state.nan_count == np.count_nonzero(np.isnan(values))
    assert state.inf_count == np.count_nonzero(np.isinf(values))
    bins = np.searchsorted(np.asarray(edges, np.float64), finite, side="right")
    assert np.array_equal(state.bin_counts, np.bincount(bins, minlength=len(edges) + 1))
    assert np.array_equal(state.bin_sums, np.bincount(bins, weights=finite, minlength=len(edges) + 1))
    assert state.sketch == _plain_sketch(finite)
    if finite.size:
        assert state.min == finite.min() and state.max == finite.max()
        with np.errstate(over="ignore"):
            mean = finite.mean()
        assert state.mean == pytest.approx(mean, rel=1e-12, abs=1e-300)
        if np.isfinite(mean):
            with np.errstate(over="ignore"):
                m2 = float(((finite - mean) ** 2).sum())
            assert state.m2 == pytest.approx(m2, rel=1e-9, abs=1e-12 * max(1.0, mean * mean) * finite.size)


def _near(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values, np.nextafter(values, np.inf), np.nextafter(values, -np.inf)])


RNG = np.random.default_rng(7)
CASES = {
    "normal": RNG.normal(10, 3, 50_000),
    "lognormal tail": RNG.lognormal(0, 4, 50_000),
    "both signs and zeros": np.concatenate([RNG.standard_cauchy(30_000), np.zeros(500), [-0.0] * 10,
                                            RNG.uniform(-1e-12, 1e-12, 100)]),
    "discrete on edges": RNG.integers(0, 20, 40_000).astype(np.float64),
    "nan and inf": np.where(RNG.random(40_000) < 0.02, np.nan,
                            np.where(RNG.random(40_000) < 0.01, np.inf, RNG.exponential(2, 40_000))),
    "extremes": np.concatenate([RNG.lognormal(0, 1, 10_000), [TINY, -TINY, MAX, -MAX, 1e-300, -1e300]]),
    "short column": RNG.normal(0, 1, 300),
    "all nan": np.full(5000, np.nan),
    "one value": np.full(10_000, 3.25),
    "sum overflows": np.concatenate([np.full(5000, 1e308), RNG.normal(0, 1, 5000)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_state_equals_the_definitions(name):
    values = CASES[name]
    sample = np.random.default_rng(1).choice(values, 2000)
    for edges in (edges_from_sample(sample), (), (0.5,), tuple(np.linspace(-5, 5, 40)),
                  tuple(np.linspace(10, 10.001, 60))):  # reference edges, none, one, the grid, crowded edges
        _check(values, edges)


def test_values_next_to_edges_and_bucket_boundaries():
    edges = edges_from_sample(RNG.lognormal(0, 2, 5000))
    boundaries = np.exp(np.arange(-500, 500) * np.log((1 + 0.005) / (1 - 0.005)))  # sketch bucket boundaries
    values = np.concatenate([_near(np.asarray(edges)), _near(boundaries), -_near(boundaries),
                             RNG.lognormal(0, 2, 10_000)])
    _check(values, edges)
    _check(values[:4000], edges)  # below the table threshold: binary search


def test_grid_and_search_binners_equal_searchsorted():
    for edges, mode in (((-3.0, -1.0, 0.0, 0.5, 2.0), GRID), (tuple(np.linspace(-1, 1, 101)), GRID),
                        ((-1.0,), SEARCH), ((0.0, 0.0 + 1e-300, 1.0), GRID)):
        binner = Binner(edges)
        assert binner.mode == mode
        values = np.concatenate([_near(np.asarray(edges)), RNG.uniform(-5, 5, 10_000), [MAX, -MAX, 0.0, -0.0]])
        assert np.array_equal(binner(values), np.searchsorted(np.asarray(edges), values, side="right"))


def test_threads_give_the_same_states():
    values = RNG.lognormal(0, 3, 200_000)
    edges = edges_from_sample(values[:5000])
    alone = numeric_state(values, edges)
    with ThreadPoolExecutor(4) as pool:
        states = list(pool.map(lambda _: numeric_state(values, edges), range(8)))
    for state in states:
        assert state.sketch == alone.sketch and np.array_equal(state.bin_sums, alone.bin_sums)
        assert (state.mean, state.m2) == (alone.mean, alone.m2)


def _passes_outputs(passes, values: np.ndarray, edges: tuple[float, ...]) -> list:
    """Every output of every pass over `values`, through the given build of core.kernel_passes."""
    from core.sketch import _CELL_SHIFT, _UNSAFE, _table_for

    bits = values.view(np.int64)
    outputs = [passes.scan(values), passes.scan_finite(values), passes.squared_deviations(values, 1.5, False)]
    bins = np.empty(values.size, np.int64)
    passes.bin_indices(values, bits, *Binner(edges).kernel_args, bins)
    cell = lambda x: int(np.float64(x).view(np.int64)) >> _CELL_SHIFT  # noqa: E731
    key_start, key_table = _table_for(cell(1e-12), cell(1e12))  # keys within +-2,800; beyond, values are pending
    histogram = [np.zeros(len(edges) + 1, np.int64), np.zeros(len(edges) + 1)]
    passes.histogram(values, bins, *histogram)
    counts = [np.zeros(6000, np.int64), np.zeros(6000, np.int64), np.zeros(values.size), np.zeros(values.size)]
    result = passes.sketch_counts(values, bits, key_start, key_table, _UNSAFE, _SKETCH_MIN_MAGNITUDE,
                                  -3000, -3000, *counts)
    counts = histogram + counts
    validity = np.packbits(np.arange(values.size + 3) % 3 != 0, bitorder="little")  # every third one null
    valid = [np.zeros(values.size + 1), np.zeros(values.size + 1, np.int64)]
    kept = [passes.valid_floats(values, validity, 3, valid[0]),
            passes.valid_integers(values.view(np.int64), validity, 3, valid[1])]
    return [*outputs, bins, result, *counts, kept, *valid]


def test_the_ahead_of_time_build_computes_what_the_jit_does(tmp_path):
    """One source, two builds: `python -m core.kernel_build` and numba's JIT give identical outputs."""
    import importlib.util

    from core import kernel_build, kernel_passes

    built = kernel_build.build("core.kernel_passes", tmp_path)
    spec = importlib.util.spec_from_file_location("_kernel_passes_aot", built)
    ahead = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ahead)
    assert ahead.source_digest() == kernel_build.source_digest("core.kernel_passes")
    assert _releases_the_gil(built)
    for name in ("lognormal tail", "both signs and zeros", "nan and inf", "extremes"):
        values = CASES[name]
        for edges in (edges_from_sample(values[np.isfinite(values)][:3000]), tuple(np.linspace(-5, 5, 40)), (0.5,)):
            for jit, aot in zip(_passes_outputs(kernel_passes, values, edges), _passes_outputs(ahead, values, edges)):
                np.testing.assert_array_equal(np.asarray(jit), np.asarray(aot))


def test_a_build_from_other_source_is_not_used(monkeypatch):
    from core import kernel_build, kernel_passes

    monkeypatch.setattr(kernel_build, "source_digest", lambda module: -1)
    assert kernel_build.load() == (kernel_passes, "jit")


def test_make_installed_the_ahead_of_time_build():
    """`make test` builds it (`make kernel`): without it every run pays numba's start-up and memory."""
    from core import kernel_build, numeric_kernel

    assert numeric_kernel.PASSES_BUILD == "aot", "core/_kernel_passes_aot is missing or stale: run `make kernel`"
    cdf = kernel_build.ahead_of_time("checks._cdf_kernels")
    assert cdf is not None, "run `make kernel`"
    assert _releases_the_gil(numeric_kernel.PASSES.__file__) and _releases_the_gil(cdf.__file__)


def _releases_the_gil(extension) -> bool:
    """Whether a built kernel's wrappers let other threads run while it computes: they call
    PyEval_SaveThread (and PyEval_RestoreThread after), which numba's ahead-of-time compiler
    emits only when asked (core.kernel_build); without, the profile kernel's two workers took
    turns on the GIL."""
    from pathlib import Path

    binary = Path(extension).read_bytes()
    return b"PyEval_SaveThread" in binary and b"PyEval_RestoreThread" in binary


@pytest.mark.parametrize("nulls", [False, True])
def test_categorical_counts_equal_value_counts(nulls):
    """Counting dictionary indices (nulls skipped through the bitmap, slices at odd offsets) = pc.value_counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from core.profile import CategoricalProfile

    rng = np.random.default_rng(3)
    names = [f"v{k}" for k in range(300)]
    indices = pa.array(rng.integers(0, 300, 50_001).astype(np.int32), mask=(rng.random(50_001) < 0.1) if nulls else None)
    array = pa.DictionaryArray.from_arrays(indices, pa.array(names))
    for part in (array, array.slice(13, 40_000), array.slice(7, 0)):
        profile = CategoricalProfile.from_array(part, 10_000)
        counted = pc.value_counts(part.dictionary_decode().drop_null())
        expected = dict(zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()))
        assert profile.counts == expected and profile.null_count == part.null_count


def test_a_dictionary_with_repeated_values_adds_their_counts():
    import pyarrow as pa

    from core.profile import CategoricalProfile

    array = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 1, 0], pa.int32()), pa.array(["a", "b", "a"]))
    assert CategoricalProfile.from_array(array, 10).counts == {"a": 3, "b": 2}


@pytest.mark.parametrize("kept", [True, False])
def test_dictionaries_of_the_same_size_are_told_apart(kept, monkeypatch):
    """Dictionary strings are reused across batches only for an equal dictionary, not one of the same size;
    a dictionary too large to keep gives the same counts (absent and repeated values too)."""
    import pyarrow as pa

    import core.profile
    from core.profile import CategoricalProfile

    if not kept:
        monkeypatch.setattr(core.profile, "_KEPT_DICTIONARY_MAX", 0)
    indices = pa.array([0, 1, 1, 2], pa.int32())
    seen = []
    for values in (["ab", "cd", "ef"], ["ba", "dc", "fe"], ["ab", "cd", "ef"], ["ab", "cd", "ab"], ["ab", "cd", "ef", "x"]):
        array = pa.DictionaryArray.from_arrays(indices, pa.array(values))
        seen.append(CategoricalProfile.from_array(array, 10).counts)
    assert seen == [{"ab": 1, "cd": 2, "ef": 1}, {"ba": 1, "dc": 2, "fe": 1}, {"ab": 1, "cd": 2, "ef": 1},
                    {"ab": 2, "cd": 2}, {"ab": 1, "cd": 2, "ef": 1}]


@pytest.mark.parametrize("kind", ["float64", "int64", "int32", "float32"])
def test_a_column_with_nulls_profiles_as_its_non_null_values(kind):
    """Non-null values compacted by the kernel (float64, int64) or by Arrow (others), at odd slice offsets:
    the profile of the values alone, with the nulls counted."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from core.profile import NumericProfile, _non_null_values

    rng = np.random.default_rng(11)
    raw = rng.lognormal(1, 1, 60_001) if kind.startswith("float") else rng.integers(-5, 20_000, 60_001)
    array = pa.array(raw.astype(kind), mask=rng.random(60_001) < 0.07)
    edges = edges_from_sample(raw[:5000].astype(np.float64))
    for part in (array, array.slice(13, 40_000), array.slice(9, 3)):
        expected = pc.drop_null(part).to_numpy(zero_copy_only=False)
        assert np.array_equal(_non_null_values(part), expected)
        with_nulls, alone = NumericProfile.from_array(part, edges), NumericProfile.from_array(pc.drop_null(part), edges)
        assert (with_nulls.rows, with_nulls.null_count) == (len(part), part.null_count)
        assert (with_nulls.count, with_nulls.mean, with_nulls.m2, with_nulls.min, with_nulls.max) == (
            alone.count, alone.mean, alone.m2, alone.min, alone.max)
        assert with_nulls.sketch == alone.sketch and np.array_equal(with_nulls.bin_sums, alone.bin_sums)


def test_a_null_count_that_disagrees_with_the_bitmap_is_named_not_trusted():
    """The compaction writes within its buffer whatever the bitmap says, and the mismatch is an error."""
    import pyarrow as pa

    from core.errors import SchemaError
    from core.profile import _non_null_values

    values = np.arange(1000, dtype=np.float64)
    every_one_valid = pa.py_buffer(np.packbits(np.ones(1000, bool), bitorder="little").tobytes())
    lying = pa.Array.from_buffers(pa.float64(), 1000, [every_one_valid, pa.py_buffer(values.tobytes())], null_count=900)
    with pytest.raises(SchemaError, match="validity bitmap holds 1000 values where its null count leaves 100"):
        _non_null_values(lying)
