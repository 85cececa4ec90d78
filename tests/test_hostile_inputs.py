"""A corpus of hostile configs and arguments, run through every CLI command that reads them.

Each must end in one line on stderr naming the file, key or argument, exit 2, and no
traceback: never a stack dump, never a hang, never exit 1 (which means "a --fail-on level
was met"). Add a case here whenever a hostile input is found.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from monitor.cli import app
from monitor.config import load_config, parse_duration
from core.errors import ConfigError

WINDOW = "2026-01-01/2026-01-02"


def minimal(store_url: str, **model) -> dict:
    base = {
        "name": "m",
        "reference": {"path": "ref.parquet"},
        "serving": {"path": "serving/"},
        "schema": {"timestamp": "ts", "features": [{"name": "a", "kind": "numeric"}]},
        "schedules": [{"check": "data_drift", "interval": "1h", "window": "1h"}],
        "alerts": [{"sink": "log", "name": "log"}],
    }
    base.update(model)
    return {"store": {"url": store_url}, "models": [base]}


def _yaml(data) -> bytes:
    return yaml.safe_dump(data).encode()


def _labels_delay(url):
    return _yaml(minimal(url, schema={"timestamp": "ts", "features": [{"name": "a", "kind": "numeric"}],
                                      "labels": [{"name": "y", "delay": "999999999999d"}]}))


def _schedule(url, **fields):
    return _yaml(minimal(url, schedules=[{"check": "data_drift", "interval": "1h", **fields}]))


# name -> (bytes of the config given a good store URL, text the one-line error must contain)
HOSTILE_CONFIGS = {
    "not_utf8": (lambda url: "models: [{name: 'caf\xe9'}]\n".encode("latin-1"), "not UTF-8"),
    "nested_20000": (lambda url: b"a: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested too deeply"),
    "delay_overflow": (_labels_delay, "labels.y.delay"),
    "timeout_inf": (lambda url: _schedule(url, timeout=math.inf), "schedules.0.timeout"),
    "timeout_nan": (lambda url: _schedule(url, timeout=math.nan), "schedules.0.timeout"),
    "timeout_negative": (lambda url: _schedule(url, timeout=-5), "schedules.0.timeout"),
    "window_over_max": (lambda url: _schedule(url, window="400d"), "max_window"),
    "max_window_overflow": (lambda url: _yaml(minimal(url, max_window="99999999999w")), "max_window"),
    "top_level_list": (lambda url: b"- 1\n- 2\n", "mapping"),
    "empty": (lambda url: b"", "mapping"),
    "binary": (lambda url: bytes(range(256)) * 4, "not UTF-8"),
}

# name -> (store URL given tmp_path, text the one-line error must contain)
HOSTILE_STORES = {
    "missing_folder": (lambda tmp: f"sqlite:///{tmp / 'no' / 'such' / 'dir' / 'x.db'}", "does not exist"),
    "folder_is_a_file": (lambda tmp: f"sqlite:///{tmp / 'plain.txt' / 'x.db'}", "does not exist"),
    "not_a_database": (lambda tmp: f"sqlite:///{tmp / 'garbage.db'}", "garbage.db"),
    "unknown_dialect": (lambda tmp: "foodb://user@host/x", "foodb"),
    "refused_postgres": (lambda tmp: "postgresql://driftline:s3cret@127.0.0.1:1/x", "127.0.0.1:1"),
}

# Every command that reads --config; the store ones open the results store.
STORE_COMMANDS = {
    "run": ["run", "--window", WINDOW],
    "serve": ["serve", "--port", "0"],
    "jobs list": ["jobs", "list"],
    "jobs history": ["jobs", "history"],
    "jobs run-now": ["jobs", "run-now", "--window", WINDOW],
    "alerts list": ["alerts", "list"],
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "db prune": ["db", "prune"],
    "retrain --when-due": ["retrain", "--when-due"],
}
CONFIG_COMMANDS = {
    **STORE_COMMANDS,
    "alerts test": ["alerts", "test", "log"],
    "retrain": ["retrain"],
    "models list": ["models", "list"],
}
CHEAP = ("run", "jobs list", "db upgrade")  # the deep config costs seconds per parse: a few commands suffice


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, needle: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def good_store(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.mark.parametrize("case, command", [
    (case, name) for case in HOSTILE_CONFIGS for name in CONFIG_COMMANDS
    if case != "nested_20000" or name in CHEAP
])
def test_hostile_config_is_one_line_naming_file_and_key(tmp_path, good_store, case, command):
    make, needle = HOSTILE_CONFIGS[case]
    path = tmp_path / "driftline.yaml"
    path.write_bytes(make(good_store))
    line = assert_one_line_error(cli(*CONFIG_COMMANDS[command], "--config", path), needle)
    assert str(path) in line


@pytest.mark.parametrize("case", sorted(HOSTILE_STORES))
@pytest.mark.parametrize("command", sorted(STORE_COMMANDS))
def test_unusable_store_is_one_line_naming_the_url(tmp_path, case, command):
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    (tmp_path / "garbage.db").write_bytes(b"this is not a SQLite database file, only bytes" * 100)
    url_of, needle = HOSTILE_STORES[case]
    path = tmp_path / "driftline.yaml"
    path.write_bytes(_yaml(minimal(url_of(tmp_path))))
    line = assert_one_line_error(cli(*STORE_COMMANDS[command], "--config", path), needle)
    assert "s3cret" not in line  # the password never reaches a message


# --------------------------------------------------------------------------- the loader itself


@pytest.mark.parametrize("value", ["999999999999d", "99999999999999999999s", math.inf, -math.inf, math.nan, -1,
                                   1e300, "1.5h", True, None, "", "6 hours"])
def test_parse_duration_refuses_with_value_error(value):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value, seconds", [("30m", 1800), (" 6h ", 21600), ("2w", 1209600), (90, 90), (0.5, 0.5)])
def test_parse_duration_still_reads_durations(value, seconds):
    assert parse_duration(value).total_seconds() == seconds


def test_config_that_is_a_directory_names_it(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_config(tmp_path)


# --------------------------------------------------------------------------- hostile arguments


def _window_config(tmp_path, **model) -> Path:
    path = tmp_path / "driftline.yaml"
    path.write_bytes(_yaml(minimal(f"sqlite:///{tmp_path / 'store.db'}", **{"profile_granularity": "1h", **model})))
    return path


@pytest.mark.parametrize("command", ["run", "jobs run-now"])
@pytest.mark.parametrize("window, needle", [
    ("0001-01-01/9999-12-31", "max_window"),
    ("2026-01-01/2026-04-02", "max_window"),  # 91 days: just over the 90-day default
    ("2026-01-02/2026-01-01", "END must be after START"),
    ("yesterday/today", "window 'yesterday/today'"),
    ("2026-01-01", "expected START/END"),
    ("2026-01-01/2026-01-02/2026-01-03", "expected START/END"),
])
def test_hostile_window_is_refused_before_any_work(tmp_path, command, window, needle):
    config = _window_config(tmp_path)
    args = [*STORE_COMMANDS[command][:-2]] if command == "jobs run-now" else ["run"]
    assert_one_line_error(cli(*args, "--config", config, "--window", window), needle)
    assert not (tmp_path / "serving").exists()


def test_max_window_is_configurable(tmp_path):
    config = load_config(_window_config(tmp_path, max_window="400d"))
    from core.sources import parse_window

    config.models[0].check_window(*parse_window("2025-01-01/2026-01-01"))  # 365 days: allowed now
    with pytest.raises(ConfigError, match=r"models\.m\.max_window \(400d\)"):
        config.models[0].check_window(*parse_window("2025-01-01/2026-03-01"))


def test_granularity_slices_are_bounded(tmp_path):
    config = load_config(_window_config(tmp_path, profile_granularity="1m"))
    from core.sources import parse_window

    with pytest.raises(ConfigError, match="profile_granularity"):
        config.models[0].check_window(*parse_window("2026-01-01/2026-02-01"))  # 44,640 one-minute profiles


def test_run_of_an_over_long_window_stores_nothing(tmp_path):
    from monitor.store import ResultsStore

    config = _window_config(tmp_path)
    assert_one_line_error(cli("run", "--config", config, "--window", "0001-01-01/9999-12-31"), "max_window")
    store = ResultsStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        assert store.count_runs() == 0
        from sqlalchemy import func, select

        from monitor.store import profiles

        with store.engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(profiles)).scalar() == 0
    finally:
        store.close()


ONE_OFF = {
    "check drift, missing reference": (["check", "drift", "--reference", "{tmp}/nope.parquet", "--current",
                                        "{tmp}/nope.parquet"], "nope.parquet"),
    "check drift, bad --method": (["check", "drift", "--reference", "{tmp}/d.csv", "--current", "{tmp}/d.csv",
                                   "--method", "x"], "--method 'x'"),
    "check quality, missing data": (["check", "quality", "--current", "{tmp}/nope.csv", "--reference",
                                     "{tmp}/d.csv"], "nope.csv"),
    "check quality, suite not JSON": (["check", "quality", "--current", "{tmp}/d.csv", "--suite", "{tmp}/d.csv"],
                                      "d.csv"),
    "check calibration, missing data": (["check", "calibration", "--data", "{tmp}/nope.csv", "--prediction", "p",
                                         "--label", "y"], "nope.csv"),
    "check skew, missing key": (["check", "skew", "--training", "{tmp}/d.csv", "--serving", "{tmp}/d.csv",
                                 "--key", "nope"], "'nope'"),
    "explain, missing model": (["explain", "--model", "{tmp}/nope.txt", "--data", "{tmp}/d.csv"], "nope.txt"),
    "dashboards export into a file": (["dashboards", "export", "{tmp}/d.csv"], "d.csv"),
    "init over a file": (["init", "{tmp}/d.csv"], "already exists"),
    "retrain, bad --param": (["retrain", "--config", "{tmp}/good.yaml", "--param", "novalue"], "--param 'novalue'"),
    "models show, empty registry": (["models", "show", "m", "--registry", "{tmp}"], "no production version"),
    "demo, workdir under a file": (["demo", "--workdir", "{tmp}/d.csv/demo"], "d.csv"),
}


@pytest.mark.parametrize("case", sorted(ONE_OFF))
def test_hostile_argument_is_one_line(tmp_path, case):
    (tmp_path / "d.csv").write_text("a,p,y\n1,0.5,1\n2,0.5,0\n")
    (tmp_path / "good.yaml").write_bytes(_yaml(minimal(f"sqlite:///{tmp_path / 'store.db'}")))
    args, needle = ONE_OFF[case]
    assert_one_line_error(cli(*[a.replace("{tmp}", str(tmp_path)) for a in args]), needle)


def test_backfill_from_year_one_is_bounded_work(tmp_path):
    """`start: 0001-01-01` on an hourly schedule walked and recorded 100,000 windows (minutes of inserts);
    now the newest windows are pending, a bounded number skipped one by one, the rest one event."""
    from datetime import datetime, timezone

    from monitor.config import parse_config
    from monitor.ledger import MAX_SKIPPED_ROWS, Ledger
    from monitor.scheduling import schedules_of
    from monitor.store import ResultsStore

    raw = minimal(f"sqlite:///{tmp_path / 'store.db'}",
                  schedules=[{"check": "data_drift", "interval": "1h", "window": "1h", "max_backfill_windows": 3,
                              "start": "0001-01-01T00:00:00Z"}])
    config = parse_config(raw)
    store = ResultsStore(config.store_url())
    try:
        ledger = Ledger(store.engine)
        schedule = schedules_of(config)[0]
        now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        plan = ledger.plan(schedule, now)
        assert len(plan.due) == 4 and len(plan.skipped) == MAX_SKIPPED_ROWS and plan.truncated
        assert len(ledger.rows(limit=10_000)) == 4 + MAX_SKIPPED_ROWS
        [event] = ledger.events()
        assert event["kind"] == "backfill_truncated" and "0001-01-01" in event["message"]
        later = ledger.plan(schedule, datetime(2026, 1, 1, 2, tzinfo=timezone.utc))  # walks only what is new
        assert not later.truncated and not later.skipped and len(later.due) == 6
    finally:
        store.close()
