"""Bad input gets a clear error and loses nothing (DESIGN principle 10).

A missing or retyped column marks that feature `error` and the rest of the run
completes; an empty window is `insufficient_data`; a corrupt file is recorded and the
window marked partial; a path that cannot be read at all exits 2 naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from checks.drift import DriftCheck
from monitor.cli import app
from core.errors import DataSourceError
from monitor.oneoff import drift_between
from core.profile import NumericProfile, build_spec, profile_table

N = 5_000
CATEGORIES = ["a", "b", "c", "d", "e"]
CATEGORY_P = [0.3, 0.25, 0.2, 0.15, 0.1]


def make_table(n: int = N, seed: int = 0, with_nulls: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    k = rng.integers(0, 20, n)
    columns = {
        "x": pa.array(x, mask=(rng.random(n) < 0.01) if with_nulls else None),
        "k": pa.array(k),
        "c": pa.array(rng.choice(CATEGORIES, n, p=CATEGORY_P)),
    }
    return pa.table(columns)


def write_jsonl(table: pa.Table, path: Path) -> Path:
    with path.open("w") as fh:
        for row in table.to_pylist():
            fh.write(json.dumps(row) + "\n")
    return path


def write(table: pa.Table, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".parquet":
        pq.write_table(table, path)
    elif suffix == ".csv":
        pacsv.write_csv(table, path)
    elif suffix == ".tsv":
        pacsv.write_csv(table, path, pacsv.WriteOptions(delimiter="\t"))
    elif suffix == ".jsonl":
        write_jsonl(table, path)
    else:  # pragma: no cover
        raise ValueError(suffix)
    return path


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    return write(make_table(seed=0), tmp_path_factory.mktemp("ref") / "ref.parquet")


def by_feature(result) -> dict:
    return {f.feature: f for f in result.features}


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- missing / retyped columns


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_missing_column_is_an_error_for_that_feature_only(tmp_path, ref, suffix):
    current = write(make_table(seed=1).drop_columns(["k"]), tmp_path / f"cur{suffix}")
    result = drift_between(str(ref), str(current))
    features = by_feature(result)
    assert list(features) == ["x", "k", "c"]
    missing = features["k"]
    assert missing.status == "error"
    assert missing.score is None
    assert missing.current_count == 0
    assert "'k'" in missing.message and "missing" in missing.message
    for name in ("x", "c"):
        assert features[name].status == "ok"
        assert features[name].score is not None and math.isfinite(features[name].score)
        assert features[name].current_count == N
    assert result.current_rows == N
    assert result.status in ("alert", "error")  # the error is not hidden by the ok features
    assert "k" in result.alerting_features


def test_missing_column_through_cli_completes_with_exit_0_and_fail_on(tmp_path, ref):
    current = write(make_table(seed=1).drop_columns(["c"]), tmp_path / "cur.parquet")
    result = cli("check", "drift", "--reference", ref, "--current", current, "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    features = {f["feature"]: f for f in payload["features"]}
    assert features["c"]["status"] == "error"
    assert "'c'" in features["c"]["message"]
    assert features["x"]["status"] == "ok" and features["k"]["status"] == "ok"
    failing = cli("check", "drift", "--reference", ref, "--current", current, "--format", "json",
                  "--fail-on", "alert")
    assert failing.exit_code == 1


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_retyped_column_is_an_error_naming_it(tmp_path, ref, suffix):
    table = make_table(seed=1)
    retyped = pa.array([f"v{v}" for v in table["k"].to_pylist()])  # numeric in reference, string now
    current = write(table.set_column(1, "k", retyped), tmp_path / f"cur{suffix}")
    features = by_feature(drift_between(str(ref), str(current)))
    assert features["k"].status == "error"
    assert "'k'" in features["k"].message and "retyped" in features["k"].message
    assert features["k"].score is None
    assert features["x"].status == "ok" and features["c"].status == "ok"


def test_categorical_turned_numeric_is_an_error(tmp_path, ref):
    table = make_table(seed=1)
    current = write(table.set_column(2, "c", pa.array(np.arange(N, dtype=np.float64))), tmp_path / "cur.parquet")
    features = by_feature(drift_between(str(ref), str(current)))
    assert features["c"].status == "error"
    assert "'c'" in features["c"].message
    assert features["x"].status == "ok"


def test_int_to_float_is_not_a_retyping(tmp_path, ref):
    table = make_table(seed=1)
    current = write(table.set_column(1, "k", pa.array(table["k"].to_numpy().astype(np.float64))),
                    tmp_path / "cur.parquet")
    features = by_feature(drift_between(str(ref), str(current)))
    assert features["k"].status == "ok"


# --------------------------------------------------------------------------- empty windows


@pytest.mark.parametrize("kind", ["parquet", "csv_header_only"])
def test_empty_current_window_is_insufficient_data(tmp_path, ref, kind):
    if kind == "parquet":
        current = write(make_table(seed=1).slice(0, 0), tmp_path / "cur.parquet")
    else:
        current = tmp_path / "cur.csv"
        current.write_text("x,k,c\n")
    result = drift_between(str(ref), str(current))
    assert result.current_rows == 0
    assert [f.status for f in result.features] == ["insufficient_data"] * 3
    assert all(f.score is None and f.current_count == 0 for f in result.features)
    assert result.status == "insufficient_data"
    assert not result.partial
    # Through the CLI: the check ran, so exit 0, and insufficient_data does not meet --fail-on.
    run = cli("check", "drift", "--reference", ref, "--current", current, "--format", "json", "--fail-on", "warn")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "insufficient_data"


def test_empty_jsonl_window_is_insufficient_data(tmp_path, ref):
    current = tmp_path / "cur.jsonl"
    current.write_text("")
    result = drift_between(str(ref), str(current))
    assert result.status == "insufficient_data"


def test_small_window_is_insufficient_data_per_feature(tmp_path, ref):
    current = write(make_table(n=200, seed=1), tmp_path / "cur.parquet")
    result = drift_between(str(ref), str(current))
    assert {f.status for f in result.features} == {"insufficient_data"}
    assert all(f.current_count == 200 for f in result.features)
    assert all(any("fewer than" in r for r in f.reasons) for f in result.features)


# --------------------------------------------------------------------------- nulls, NaN, inf


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_all_null_column_raises_that_feature_to_alert(tmp_path, ref, suffix):
    table = make_table(seed=1)
    current = write(table.set_column(0, "x", pa.nulls(N, pa.float64())), tmp_path / f"cur{suffix}")
    features = by_feature(drift_between(str(ref), str(current)))
    x = features["x"]
    assert x.status == "alert"
    assert x.null_rate_reference == 0.0
    assert x.null_rate_current == 1.0
    assert any("null rate" in r for r in x.reasons)
    assert features["k"].status == "ok" and features["c"].status == "ok"


def test_all_null_categorical_raises_to_alert(tmp_path, ref):
    table = make_table(seed=1)
    current = write(table.set_column(2, "c", pa.nulls(N, pa.string())), tmp_path / "cur.parquet")
    c = by_feature(drift_between(str(ref), str(current)))["c"]
    assert c.status == "alert"
    assert c.null_rate_current == 1.0


def test_partial_null_rate_change_alerts_even_when_the_rest_looks_the_same(tmp_path, ref):
    table = make_table(seed=1)
    rng = np.random.default_rng(3)
    x = pa.array(table["x"].to_numpy(), mask=rng.random(N) < 0.2)  # 20% nulls; the values left are unchanged
    features = by_feature(drift_between(str(ref), str(write(table.set_column(0, "x", x), tmp_path / "c.parquet"))))
    assert features["x"].status == "alert"
    assert features["x"].score is not None and features["x"].score < 0.1  # the distance alone is fine
    assert features["x"].null_rate_current == pytest.approx(0.2, abs=0.02)


def test_nan_and_inf_are_counted_in_the_profile():
    values = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, np.nan, 3.0, np.nan])
    table = pa.table({"v": pa.array(values, mask=np.array([False] * 7 + [True]))})
    spec = build_spec(pa.table({"v": np.arange(10.0)}), ["v"])
    profile = profile_table(table, spec).features["v"]
    assert isinstance(profile, NumericProfile)
    assert profile.rows == 8
    assert profile.null_count == 1
    assert profile.nan_count == 2
    assert profile.inf_count == 2
    assert profile.count == 3
    assert profile.mean == pytest.approx(2.0)
    assert (profile.min, profile.max) == (1.0, 3.0)
    assert int(profile.bin_counts.sum()) == 3
    assert profile.to_dict()["nan_count"] == 2 and profile.to_dict()["inf_count"] == 2


def test_nan_and_inf_do_not_crash_and_scores_stay_finite(tmp_path):
    ref_table = make_table(seed=0)
    x = ref_table["x"].to_numpy().copy()
    x[:40], x[40:60], x[60:70] = np.nan, np.inf, -np.inf
    reference = write(ref_table.set_column(0, "x", pa.array(x)), tmp_path / "ref.parquet")
    cur_table = make_table(seed=1)
    y = cur_table["x"].to_numpy().copy()
    y[:75], y[75:100] = np.nan, np.inf
    current = write(cur_table.set_column(0, "x", pa.array(y)), tmp_path / "cur.parquet")
    result = cli("check", "drift", "--reference", reference, "--current", current, "--format", "json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)  # strict JSON: no NaN / Infinity tokens
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    x_result = {f["feature"]: f for f in payload["features"]}["x"]
    assert x_result["status"] == "ok"
    assert math.isfinite(x_result["score"])
    assert x_result["current_count"] == N - 100
    assert x_result["reference_count"] == N - 70
    # NaN counts as missing in the null rate (inf may too: see test_column_turned_all_inf_is_flagged).
    assert 75 / N - 1e-12 <= x_result["null_rate_current"] <= 100 / N + 1e-12


def test_column_turned_all_inf_is_flagged(tmp_path, ref):
    table = make_table(seed=1)
    current = write(table.set_column(0, "x", pa.array(np.full(N, np.inf))), tmp_path / "cur.parquet")
    result = drift_between(str(ref), str(current))
    assert by_feature(result)["x"].status in ("warn", "alert")
    assert result.status != "ok"


# --------------------------------------------------------------------------- unseen categories


def _exact_categorical(counts: dict[str, int]) -> pa.Table:
    values = [key for key, n in counts.items() for _ in range(n)]
    order = np.random.default_rng(0).permutation(len(values))
    return pa.table({"c": pa.array([values[i] for i in order])})


@pytest.mark.parametrize("unseen_per_mille, expected", [(30, "warn"), (60, "alert"), (10, "ok")])
def test_unseen_categories_raise_status_above_their_threshold(tmp_path, unseen_per_mille, expected):
    """New categories spread thinly enough that L-infinity alone stays ok; the unseen share decides."""
    total = 20_000
    reference = write(_exact_categorical({k: int(p * total) for k, p in zip(CATEGORIES, CATEGORY_P)}),
                      tmp_path / "ref.parquet")
    unseen = total * unseen_per_mille // 1000
    counts = {k: int(p * (total - unseen)) for k, p in zip(CATEGORIES, CATEGORY_P)}
    n_new = unseen // 20  # 20 rows (0.1%) for each new category
    counts.update({f"new{i}": 20 for i in range(n_new)})
    current = write(_exact_categorical(counts), tmp_path / "cur.parquet")
    c = by_feature(drift_between(str(reference), str(current)))["c"]
    assert c.unseen_share == pytest.approx(unseen / total)
    assert c.score < c.warn_threshold  # the distance alone would be ok
    assert c.status == expected
    if expected != "ok":
        assert any("unseen" in r for r in c.reasons)


def test_unseen_share_is_zero_for_known_categories(tmp_path, ref):
    current = write(make_table(seed=1), tmp_path / "cur.parquet")
    c = by_feature(drift_between(str(ref), str(current)))["c"]
    assert c.unseen_share == 0.0
    assert by_feature(drift_between(str(ref), str(current)))["x"].unseen_share is None


# --------------------------------------------------------------------------- corrupt files


def _folder_with_a_bad_file(root: Path, bad_bytes: bytes) -> tuple[Path, Path]:
    folder = root / "serving"
    folder.mkdir()
    write(make_table(n=3_000, seed=1), folder / "part-0.parquet")
    write(make_table(n=3_000, seed=2), folder / "part-1.parquet")
    bad = folder / "part-2.parquet"
    bad.write_bytes(bad_bytes)
    return folder, bad


def _truncated_parquet(tmp_path: Path) -> bytes:
    whole = write(make_table(n=3_000, seed=9), tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "whole.parquet").unlink()
    return whole[: len(whole) // 2]


@pytest.mark.parametrize("corruption", ["garbage", "truncated"])
def test_corrupt_file_in_a_directory_marks_the_window_partial(tmp_path, ref, corruption):
    bad_bytes = b"PAR1 this is garbage PAR1" if corruption == "garbage" else _truncated_parquet(tmp_path)
    folder, bad = _folder_with_a_bad_file(tmp_path, bad_bytes)
    result = drift_between(str(ref), str(folder))
    assert result.partial is True
    assert len(result.bad_files) == 1
    assert str(bad) in result.bad_files[0]
    assert "part-0" not in result.bad_files[0] and "part-1" not in result.bad_files[0]
    assert result.current_rows == 6_000  # the two good files are all read
    assert all(f.status == "ok" and f.current_count == 6_000 for f in result.features)
    assert result.status == "ok"
    # Through the CLI: exit 0, and the JSON says partial and names the file.
    run = cli("check", "drift", "--reference", ref, "--current", folder, "--format", "json")
    assert run.exit_code == 0, run.stderr
    payload = json.loads(run.stdout)
    assert payload["partial"] is True
    assert any(str(bad) in entry for entry in payload["bad_files"])


def test_corrupt_file_matched_by_a_glob_marks_partial(tmp_path, ref):
    folder, bad = _folder_with_a_bad_file(tmp_path, b"not parquet")
    result = drift_between(str(ref), str(folder / "part-*.parquet"))
    assert result.partial and str(bad) in result.bad_files[0]
    assert result.current_rows == 6_000


@pytest.mark.parametrize("role", ["current", "reference"])
def test_single_corrupt_file_exits_2_naming_it(tmp_path, ref, role):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"\x00garbage\x00" * 10)
    with pytest.raises(DataSourceError, match="broken.parquet"):
        drift_between(str(bad if role == "reference" else ref), str(ref if role == "reference" else bad))
    args = ("--reference", bad, "--current", ref) if role == "reference" else ("--reference", ref, "--current", bad)
    assert_one_line_error(cli("check", "drift", *args, "--format", "json"), str(bad))


def test_directory_of_only_corrupt_files_exits_2(tmp_path, ref):
    folder = tmp_path / "serving"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"junk")
    (folder / "b.parquet").write_bytes(b"more junk")
    with pytest.raises(DataSourceError, match="serving"):
        drift_between(str(ref), str(folder))
    assert_one_line_error(cli("check", "drift", "--reference", ref, "--current", folder), str(folder))


# --------------------------------------------------------------------------- unreadable paths


@pytest.mark.parametrize("name", ["missing.parquet", "no/such/dir", "nothing-*.parquet"])
def test_nonexistent_path_exits_2_naming_it(tmp_path, ref, name):
    path = tmp_path / name
    with pytest.raises(DataSourceError) as excinfo:
        drift_between(str(ref), str(path))
    assert str(path) in str(excinfo.value)
    assert_one_line_error(cli("check", "drift", "--reference", ref, "--current", path), str(path))


def test_directory_without_data_files_exits_2(tmp_path, ref):
    folder = tmp_path / "empty-dir"
    folder.mkdir()
    (folder / "_SUCCESS").write_text("")
    (folder / "notes.md").write_text("hello")
    assert_one_line_error(cli("check", "drift", "--reference", ref, "--current", folder), str(folder))


def test_unknown_extension_exits_2(tmp_path, ref):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK")
    assert_one_line_error(cli("check", "drift", "--reference", ref, "--current", path), str(path))


def test_csv_value_that_breaks_the_inferred_type_marks_the_file_bad(tmp_path):
    """A CSV whose types are inferred from the first block and broken later: recorded, not a crash."""
    rng = np.random.default_rng(4)
    n = 60_000  # more than one 1 MiB CSV block, so inference does not see the bad value
    table = pa.table({"x": rng.normal(0, 1, n), "k": rng.integers(0, 20, n)})
    reference = write(table, tmp_path / "ref.parquet")
    current = write(table, tmp_path / "cur.csv")
    with current.open("a") as fh:
        fh.write("oops,3\n")
    result = drift_between(str(reference), str(current))
    assert result.partial is True
    assert str(current) in result.bad_files[0] and "oops" in result.bad_files[0]
    run = cli("check", "drift", "--reference", reference, "--current", current, "--format", "json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["partial"] is True


# --------------------------------------------------------------------------- formats and globs


FORMATS = [".parquet", ".csv", ".tsv", ".jsonl"]


def _scores(result) -> list[tuple]:
    return [(f.feature, f.kind, f.method, f.status, f.reference_count, f.current_count, f.score,
             f.null_rate_current) for f in result.features]


def _assert_same(a, b) -> None:
    for left, right in zip(_scores(a), _scores(b), strict=True):
        assert left[:6] == right[:6]
        assert left[6] == pytest.approx(right[6], abs=1e-9, rel=0)
        assert left[7] == pytest.approx(right[7], abs=1e-12)


@pytest.fixture(scope="module")
def format_files(tmp_path_factory) -> dict[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("formats")
    reference = make_table(seed=20, with_nulls=True)
    current = make_table(seed=21, with_nulls=True)
    return {
        suffix: {"ref": write(reference, root / f"ref{suffix}"), "cur": write(current, root / f"cur{suffix}")}
        for suffix in FORMATS
    }


@pytest.mark.parametrize("suffix", FORMATS[1:])
def test_csv_tsv_jsonl_current_give_the_same_scores_as_parquet(format_files, suffix):
    reference = str(format_files[".parquet"]["ref"])
    expected = drift_between(reference, str(format_files[".parquet"]["cur"]))
    got = drift_between(reference, str(format_files[suffix]["cur"]))
    assert [f.kind for f in got.features] == ["numeric", "numeric", "categorical"]
    assert got.features[0].null_rate_current > 0  # the numeric nulls survived the round trip
    _assert_same(expected, got)


@pytest.mark.parametrize("suffix", FORMATS[1:])
def test_csv_tsv_jsonl_reference_give_the_same_scores_as_parquet(format_files, suffix):
    expected = drift_between(str(format_files[".parquet"]["ref"]), str(format_files[".parquet"]["cur"]))
    got = drift_between(str(format_files[suffix]["ref"]), str(format_files[suffix]["cur"]))
    _assert_same(expected, got)


def test_csv_empty_categorical_cells_are_missing(tmp_path, ref):
    table = make_table(seed=1)
    mask = np.zeros(N, dtype=bool)
    mask[: N // 5] = True  # 20% missing
    table = table.set_column(2, "c", pa.array(table["c"].to_pylist(), mask=mask))
    parquet = drift_between(str(ref), str(write(table, tmp_path / "cur.parquet")))
    csv = drift_between(str(ref), str(write(table, tmp_path / "cur.csv")))
    assert by_feature(parquet)["c"].null_rate_current == pytest.approx(0.2)
    assert by_feature(csv)["c"].null_rate_current == pytest.approx(0.2)
    _assert_same(parquet, csv)


def test_glob_path_equals_the_concatenated_data(tmp_path, ref):
    folder = tmp_path / "hours"
    folder.mkdir()
    parts = [make_table(n=2_000, seed=30 + i) for i in range(3)]
    for i, part in enumerate(parts):
        write(part, folder / f"hour={i:02d}.parquet")
    write(make_table(n=2_000, seed=99), folder / "other.parquet")  # not matched by the glob
    whole = write(pa.concat_tables(parts), tmp_path / "whole.parquet")
    globbed = drift_between(str(ref), str(folder / "hour=*.parquet"))
    assert globbed.current_rows == 6_000
    assert not globbed.partial
    _assert_same(drift_between(str(ref), str(whole)), globbed)
    everything = drift_between(str(ref), str(folder))
    assert everything.current_rows == 8_000


def test_recursive_glob_over_hive_partitions(tmp_path, ref):
    for d, day in enumerate(("2026-01-01", "2026-01-02")):
        for h, hour in enumerate(("00", "01")):
            part = tmp_path / "logs" / f"dt={day}" / f"hour={hour}"
            part.mkdir(parents=True)
            write(make_table(n=1_000, seed=40 + 2 * d + h), part / "data.parquet")
    result = drift_between(str(ref), str(tmp_path / "logs" / "**" / "*.parquet"))
    assert result.current_rows == 4_000
    assert [f.feature for f in result.features] == ["x", "k", "c"]
    assert all(f.status == "ok" for f in result.features)


def test_drift_check_evaluate_with_profiles_directly():
    """The Python API: a retyped column in one batch does not stop the others."""
    reference = make_table(seed=0)
    spec = build_spec(reference, ["x", "k", "c"])
    fitted = DriftCheck().fit(profile_table(reference, spec))
    current = make_table(seed=1)
    current = current.set_column(2, "c", pa.array(np.ones(N)))
    result = fitted.evaluate(profile_table(current, spec))
    features = by_feature(result)
    assert features["c"].status == "error" and "'c'" in features["c"].message
    assert features["x"].status == "ok" and features["k"].status == "ok"
