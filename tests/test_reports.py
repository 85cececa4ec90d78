"""The Evidently drill-down report: written, complete, robust to bad windows, light to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import MissingDependencyError, SchemaError
from checks.drift_report import REPORT_SAMPLE_SIZE, render_drift_report, sample_for_report

pytest.importorskip("evidently")

REPO = Path(__file__).resolve().parents[1]

# The page embeds Evidently's JS bundle (~3.6 MB); a broken render is far smaller.
MIN_HTML_BYTES = 500_000

NUMERIC = ["price", "hour", "score"]
CATEGORICAL = ["device", "offer_type"]


def _frames(n_ref: int = 400, n_cur: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)

    def frame(n, shift, devices):
        return pd.DataFrame(
            {
                "price": rng.lognormal(3 + shift, 0.5, n),
                "hour": rng.integers(0, 24, n),
                "score": rng.normal(shift, 1.0, n),
                "device": rng.choice(devices, n),
                "offer_type": rng.choice(["upsell", "payment", "ad"], n),
            }
        )

    return frame(n_ref, 0.0, ["ios", "android", "web"]), frame(n_cur, 0.3, ["ios", "android", "web"])


def _render(tmp_path, reference, current, numeric=NUMERIC, categorical=CATEGORICAL, **kwargs) -> str:
    out = render_drift_report(reference, current, tmp_path / "nested" / "dir" / "report.html", numeric, categorical, **kwargs)
    assert out == tmp_path / "nested" / "dir" / "report.html"
    assert out.stat().st_size > MIN_HTML_BYTES
    return out.read_text(encoding="utf-8")


def _column_entry(page: str, column: str, kind: str) -> str:
    """The drift table's record for one column (name, kind and the stattest that ran)."""
    marker = f'"column_name": "{column}", "column_type": "{kind}", "stattest_name": "'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def test_report_is_written_with_every_feature(tmp_path):
    reference, current = _frames()
    page = _render(tmp_path, reference, current)
    for column in NUMERIC:
        assert _column_entry(page, column, "num")
    for column in CATEGORICAL:
        assert _column_entry(page, column, "cat")
    # Nothing half-written is left next to the report.
    assert [p.name for p in (tmp_path / "nested" / "dir").iterdir()] == ["report.html"]


def test_column_kinds_follow_our_definition(tmp_path):
    """An integer column we call categorical is tested as categorical, not re-inferred."""
    reference, current = _frames()
    page = _render(tmp_path, reference, current, numeric=["price", "score"], categorical=["hour", *CATEGORICAL])
    assert _column_entry(page, "hour", "cat")
    assert _column_entry(page, "price", "num")


def test_our_methods_are_used_where_evidently_has_them(tmp_path):
    reference, current = _frames(n_ref=2_000, n_cur=1_500)
    page = _render(
        tmp_path,
        reference,
        current,
        methods={"price": "psi", "device": "jensenshannon", "offer_type": "linf"},
        thresholds={"price": 0.25},
    )
    assert _column_entry(page, "price", "num") == "PSI"
    assert _column_entry(page, "device", "cat") == "Jensen-Shannon distance"
    # No L-infinity in Evidently: its own default for >1000 rows applies.
    assert _column_entry(page, "offer_type", "cat") == "Jensen-Shannon distance"


@pytest.mark.parametrize(
    "null_value",
    [np.nan, None],
    ids=["float-nan", "object-none"],
)
def test_column_entirely_null_in_current(tmp_path, null_value):
    reference, current = _frames()
    current["score"] = null_value
    current["device"] = None
    page = _render(tmp_path, reference, current)
    # Still in the report (as missing-value counters), while the rest is tested for drift.
    assert "Column 'score' missing values" in page
    assert "Column 'device' missing values" in page
    assert _column_entry(page, "price", "num")


def test_column_entirely_null_in_reference(tmp_path):
    reference, current = _frames()
    reference["price"] = np.nan
    page = _render(tmp_path, reference, current)
    assert "Column 'price' missing values" in page


def test_only_infinite_values_count_as_empty(tmp_path):
    reference, current = _frames()
    current["score"] = np.inf
    page = _render(tmp_path, reference, current)
    assert "Column 'score' missing values" in page


def test_unseen_categories_in_current(tmp_path):
    reference, current = _frames()
    current.loc[: len(current) // 2, "device"] = "smart_tv"
    current["offer_type"] = pd.Categorical(current["offer_type"].replace("ad", "new_partner"))
    reference["offer_type"] = pd.Categorical(reference["offer_type"])
    page = _render(tmp_path, reference, current)
    assert "smart_tv" in page
    assert "new_partner" in page


@pytest.mark.parametrize("n_rows", [30, 200])
def test_small_windows(tmp_path, n_rows):
    reference, current = _frames(n_ref=n_rows, n_cur=n_rows)
    page = _render(tmp_path, reference, current)
    assert _column_entry(page, "price", "num")


def test_empty_current_window(tmp_path):
    reference, current = _frames()
    page = _render(tmp_path, reference, current.iloc[0:0])
    assert "Column 'price' missing values" in page


def test_nullable_dtypes(tmp_path):
    reference, current = _frames()
    current["hour"] = pd.array([None, *current["hour"].iloc[1:]], dtype="Int64")
    current["offer_type"] = current["offer_type"].astype("string")
    page = _render(tmp_path, reference, current)
    assert _column_entry(page, "hour", "num")
    assert _column_entry(page, "offer_type", "cat")


def test_title_is_escaped_into_the_page(tmp_path):
    reference, current = _frames()
    page = _render(tmp_path, reference, current, title="ctr-model <v3> & friends")
    assert "<title>ctr-model &lt;v3&gt; &amp; friends</title>" in page


def test_missing_column_is_a_schema_error(tmp_path):
    reference, current = _frames()
    with pytest.raises(SchemaError, match="current.*device"):
        render_drift_report(reference, current.drop(columns="device"), tmp_path / "r.html", NUMERIC, CATEGORICAL)
    assert not (tmp_path / "r.html").exists()


def test_column_in_both_kinds_is_a_schema_error(tmp_path):
    reference, current = _frames()
    with pytest.raises(SchemaError, match="price"):
        render_drift_report(reference, current, tmp_path / "r.html", NUMERIC, ["price"])


def test_text_in_a_numeric_column_is_a_schema_error(tmp_path):
    reference, current = _frames()
    current["price"] = "12.5"
    with pytest.raises(SchemaError, match="price"):
        render_drift_report(reference, current, tmp_path / "r.html", NUMERIC, CATEGORICAL)


def test_missing_evidently_raises_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "evidently", None)
    reference, current = _frames()
    with pytest.raises(MissingDependencyError, match="pip install"):
        render_drift_report(reference, current, tmp_path / "r.html", NUMERIC, CATEGORICAL)


def test_sample_for_report_is_bounded_and_reproducible():
    frame = pd.DataFrame({"x": np.arange(REPORT_SAMPLE_SIZE + 5_000)})
    first = sample_for_report(frame)
    assert len(first) == REPORT_SAMPLE_SIZE == 20_000
    assert first.index.equals(sample_for_report(frame).index)
    small = frame.iloc[:10]
    assert sample_for_report(small) is small


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_importing_the_module_does_not_load_evidently():
    done = _run_python("import checks.drift_report, sys; assert 'evidently' not in sys.modules")
    assert done.returncode == 0, done.stderr


def test_rendering_opens_no_network_connection(tmp_path):
    """Every socket connect is refused and recorded; the report must not need one."""
    done = _run_python(
        f"""
        import os, socket
        attempts = []
        def refuse(self, address, *args, **kwargs):
            attempts.append(address)
            raise OSError("network disabled in test")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        os.environ.pop("DO_NOT_TRACK", None)

        import numpy as np, pandas as pd
        from pathlib import Path
        from checks.drift_report import render_drift_report
        rng = np.random.default_rng(0)
        ref = pd.DataFrame({{"x": rng.normal(size=300), "c": rng.choice(list("ab"), 300)}})
        cur = pd.DataFrame({{"x": rng.normal(1, size=300), "c": rng.choice(list("bc"), 300)}})
        out = render_drift_report(ref, cur, Path({str(tmp_path / "r.html")!r}), ["x"], ["c"])
        assert out.stat().st_size > 0
        assert attempts == [], attempts
        assert os.environ["DO_NOT_TRACK"] == "1"
        """
    )
    assert done.returncode == 0, done.stderr
