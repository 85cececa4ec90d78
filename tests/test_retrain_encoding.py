"""The vectorised encoder equals the per-row text encoding it replaced: the old
implementation (as_text over every row, value_counts, pd.Categorical) is the oracle, on
columns of every kind a log can hold and on random ones (Hypothesis)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retrain.encoding import NumericScaler, Vocabulary, as_text, factorize


def old_values(frame: pd.DataFrame, feature: str, min_count: int = 1, max_size: int | None = None) -> tuple:
    counts = as_text(frame[feature]).value_counts(dropna=True)
    counts = counts[counts >= min_count]
    order = sorted(zip(counts.index.tolist(), counts.to_numpy().tolist()), key=lambda kv: (-kv[1], kv[0]))
    return tuple(v for v, _ in order[:max_size])


def old_codes(frame: pd.DataFrame, feature: str, values: tuple, hash_buckets: int = 0) -> np.ndarray:
    text = as_text(frame[feature])
    if hash_buckets:
        uniques, inverse = np.unique(text.fillna("\x00").to_numpy(dtype=object), return_inverse=True)
        hashed = np.array([zlib.crc32(str(u).encode()) % hash_buckets for u in uniques], dtype=np.int64)
        out = hashed[inverse]
        out[text.isna().to_numpy()] = -1
        return out
    return pd.Categorical(text, categories=list(values)).codes.astype(np.int64)


def _columns(n: int, seed: int) -> dict[str, pd.Series]:
    rng = np.random.default_rng(seed)
    small = (30 * rng.random(n) ** 3).astype(np.int64) - 5
    floats_int = small.astype(np.float64)
    floats_int[rng.random(n) < 0.2] = np.nan
    return {
        "int_small": pd.Series(small),
        "int_huge": pd.Series(rng.integers(-2 ** 62, 2 ** 62, n) // (1 + (rng.random(n) < 0.5) * 10 ** 15)),
        "uint8": pd.Series(small.clip(0).astype(np.uint8)),
        "float_integral_nan": pd.Series(floats_int),
        "float_fraction": pd.Series(np.round(rng.normal(0, 2, n), 1)),
        "float_all_nan": pd.Series(np.full(n, np.nan)),
        "string_none": pd.Series(np.where(rng.random(n) < 0.1, None, rng.choice(["a", "b", "cc", "ä"], n)),
                                 dtype=object),
        "mixed_object": pd.Series(rng.choice(np.array([3, "3", None, 3.0, "x", 4], dtype=object), n)),
        "categorical": pd.Series(pd.Categorical(rng.choice(["p", "q", "r"], n))),
        "nullable_int": pd.Series(pd.array(np.where(rng.random(n) < 0.3, None, small), dtype="Int64")),
        "bool": pd.Series(rng.random(n) < 0.3),
    }


@pytest.mark.parametrize("min_count, max_size", [(1, None), (3, None), (2, 4)])
def test_vocabulary_and_codes_equal_the_per_row_text_encoding(min_count, max_size):
    train = pd.DataFrame(_columns(3000, 1))
    serve = pd.DataFrame(_columns(1000, 2))  # unseen values, other rows
    vocab = Vocabulary.fit(train, tuple(train.columns), min_count, max_size)
    for feature in train.columns:
        expected = old_values(train, feature, min_count, max_size)
        assert vocab.values[feature] == expected, feature
        for frame in (train, serve):
            np.testing.assert_array_equal(vocab.codes(frame, feature), old_codes(frame, feature, expected),
                                          err_msg=feature)
    encoded = vocab.encode(serve, tuple(train.columns), offset=1, threads=2)
    assert encoded.dtype == np.int64 and encoded.shape == (1000, len(train.columns))
    np.testing.assert_array_equal(encoded[:, 3], old_codes(serve, "float_integral_nan",
                                                           vocab.values["float_integral_nan"]) + 1)


def test_int_in_training_and_float_with_nulls_at_serving_map_the_same():
    vocab = Vocabulary.fit(pd.DataFrame({"c": [3, 4, 4, 7]}), ("c",))
    served = pd.DataFrame({"c": [4.0, np.nan, 3.0, 5.0]})
    assert vocab.codes(served, "c").tolist() == old_codes(served, "c", vocab.values["c"]).tolist() == [0, -1, 1, -1]


def test_hashed_codes_equal_the_per_row_hashing():
    frame = pd.DataFrame(_columns(2000, 3))
    vocab = Vocabulary.fit(frame, tuple(frame.columns), hash_buckets=97)
    for feature in frame.columns:
        np.testing.assert_array_equal(vocab.codes(frame, feature), old_codes(frame, feature, (), 97), err_msg=feature)


def test_numeric_scaler_on_threads_equals_one_thread():
    frame = pd.DataFrame({f"n{i}": np.random.default_rng(i).lognormal(0, 2, 5000) for i in range(5)})
    one = NumericScaler.fit(frame, tuple(frame.columns), threads=1)
    assert NumericScaler.fit(frame, tuple(frame.columns), threads=3) == one
    np.testing.assert_array_equal(one.transform(frame, tuple(frame.columns), threads=1),
                                  one.transform(frame, tuple(frame.columns), threads=3))


def test_factorize_codes_index_the_distinct_values():
    codes, uniques = factorize(pd.Series([5.0, np.nan, 2.0, 5.0]))
    assert [None if c < 0 else uniques[c] for c in codes] == [5, None, 2, 5]


_values = st.one_of(st.integers(-3, 3), st.none(), st.floats(-3, 3).map(lambda x: round(x, 1)),
                    st.sampled_from(["a", "3", "b"]))


@settings(max_examples=60, deadline=None)
@given(train=st.lists(_values, min_size=1, max_size=40), serve=st.lists(_values, max_size=40),
       kind=st.sampled_from(["object", "int", "float"]), min_count=st.integers(1, 3))
def test_random_columns_encode_as_before(train, serve, kind, min_count):
    def column(values):
        if kind == "int":
            return pd.Series([v for v in values if isinstance(v, int)], dtype=np.int64)
        if kind == "float":
            return pd.Series([float(v) if isinstance(v, (int, float)) else np.nan for v in values], dtype=np.float64)
        return pd.Series(values, dtype=object)

    a, b = pd.DataFrame({"c": column(train)}), pd.DataFrame({"c": column(serve)})
    vocab = Vocabulary.fit(a, ("c",), min_count)
    assert vocab.values["c"] == old_values(a, "c", min_count)
    for frame in (a, b):
        assert vocab.codes(frame, "c").tolist() == old_codes(frame, "c", vocab.values["c"]).tolist()


def test_numeric_scaler_equals_the_plain_formula_bit_for_bit():
    rng = np.random.default_rng(9)
    x = np.concatenate([rng.lognormal(0, 3, 2000) * rng.choice([-1, 1], 2000), [np.nan, np.inf, -np.inf, 0.0, -0.0]])
    frame = pd.DataFrame({"v": x, "i": pd.array(np.arange(len(x)), dtype="Int64")})
    scaler = NumericScaler.fit(frame, ("v", "i"))
    t = np.sign(x) * np.log1p(np.abs(x))
    finite = t[np.isfinite(t)]
    assert scaler.mean["v"] == float(finite.mean()) and scaler.std["v"] == float(finite.std())
    expected = (t - scaler.mean["v"]) / scaler.std["v"]
    expected = np.where(np.isfinite(expected), expected, 0.0).astype(np.float32)
    np.testing.assert_array_equal(scaler.transform(frame, ("v", "i"))[:, 0], expected)


def test_rows_are_time_ordered_in_arrow_as_pandas_would():
    import pyarrow as pa

    from retrain.pipeline import time_ordered_frame

    rng = np.random.default_rng(4)
    times = pd.to_datetime(rng.integers(0, 50, 500), unit="h", utc=True).to_series(index=range(500))
    times[rng.random(500) < 0.05] = pd.NaT
    frame = pd.DataFrame({"ts": times, "row": np.arange(500), "c": rng.choice(["a", "b"], 500)})
    expected = frame.sort_values("ts", kind="mergesort").reset_index(drop=True)  # stable, NaT last
    got = time_ordered_frame(pa.Table.from_pandas(frame, preserve_index=False), "ts")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    ordered = expected.dropna(subset=["ts"])
    pd.testing.assert_frame_equal(time_ordered_frame(pa.Table.from_pandas(ordered, preserve_index=False), "ts"),
                                  ordered.reset_index(drop=True), check_dtype=False)
