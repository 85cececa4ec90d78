"""Start `driftline serve` N times in a row with five schedules that use data quality and drift
(issue: worker threads importing great_expectations and evidently at once deadlocked on some
starts). Each start runs until every due window has left pending/running, then gets SIGTERM.
Each schedule is due for 3 hourly windows (the newest plus 2 backfilled).

    python -m bench.serve_starts --starts 10

Prints one line per start (seconds to settle, windows by state, deadlock errors in the log) and
exits 1 when any window failed or any start did not settle.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (model, check): five schedules over three models, so up to five windows (the service's
# default is four workers) import great_expectations and evidently at the same moment.
SCHEDULES = [("m1", "data_quality"), ("m1", "data_drift"), ("m2", "data_quality"), ("m2", "data_drift"),
             ("m3", "data_quality")]
EXPECTED_WINDOWS = 3 * len(SCHEDULES)


def _world(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    times = [now - timedelta(hours=12) + timedelta(minutes=2 * i) for i in range(360)]
    table = pa.table({"ts": pa.array(times, pa.timestamp("us", tz="UTC")),
                      "x": [float(i % 17) for i in range(360)],
                      "device": [("mobile", "desktop")[i % 2] for i in range(360)]})
    pq.write_table(table, folder / "reference.parquet")
    pq.write_table(table, folder / "serving.parquet")


def write_config(folder: Path, backfill: int = 2) -> Path:
    import yaml

    _world(folder)
    models = [{
        "name": name, "reference": {"path": "reference.parquet"}, "serving": {"path": "serving.parquet"},
        "schema": {"timestamp": "ts", "features": [{"name": "x", "kind": "numeric"},
                                                  {"name": "device", "kind": "categorical"}]},
        "checks": {"data_drift": {"report_on": "always"}, "prediction_drift": {"enabled": False},
                   "data_quality": {"enabled": True}},
        "schedules": [{"check": check, "interval": "1h", "window": "1h", "max_backfill_windows": backfill}
                      for model, check in SCHEDULES if model == name],
    } for name in sorted({model for model, _ in SCHEDULES})]
    path = folder / "driftline.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "store": {"url": "sqlite:///store.db"}, "models": models}))
    return path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _states(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from monitor.ledger import ledger
    from monitor.store import ResultsStore

    store = ResultsStore(url)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(select(ledger.c.state, func.count()).group_by(ledger.c.state)).all()
    finally:
        store.close()
    return {state: count for state, count in rows}


def start_once(config: Path, expected: int, timeout: float = 240.0) -> dict:
    """One serve start: seconds until `expected` windows are settled, states, deadlocks in the log."""
    url = f"sqlite:///{config.parent / 'store.db'}"
    log = config.parent / f"serve-{time.time_ns()}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("DRIFTLINE_STORE_URL", None)
    began = time.monotonic()
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "serve", "--config", str(config),
                                    "--port", str(_port())], stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=config.parent)
    states: dict[str, int] = {}
    settled = None
    try:
        while time.monotonic() - began < timeout and process.poll() is None:
            time.sleep(0.5)
            try:
                states = _states(url)
            except Exception:  # the store is created by serve's first start
                continue
            done = states.get("succeeded", 0) + states.get("failed", 0)
            if done >= expected and not states.get("pending") and not states.get("running"):
                settled = time.monotonic() - began
                break
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
    text = log.read_text(errors="replace")
    return {"settled_s": settled, "states": states, "deadlocks": text.count("_DeadlockError"),
            "exit": process.returncode, "log_tail": text[-1500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    args = parser.parse_args(argv)
    from monitor.store import ResultsStore

    bad = 0
    for i in range(args.starts):
        with tempfile.TemporaryDirectory() as folder:
            config = write_config(Path(folder))
            ResultsStore(f"sqlite:///{Path(folder) / 'store.db'}").close()  # db upgrade
            outcome = start_once(config, expected=EXPECTED_WINDOWS)
        failed = outcome["states"].get("failed", 0)
        bad += bool(failed or outcome["deadlocks"] or outcome["settled_s"] is None)
        print(f"start {i + 1}: settled in {outcome['settled_s'] and round(outcome['settled_s'], 1)} s, "
              f"windows {outcome['states']}, deadlock errors {outcome['deadlocks']}, exit {outcome['exit']}",
              flush=True)
        if failed or outcome["deadlocks"] or outcome["settled_s"] is None:
            print(outcome["log_tail"], flush=True)
    print(f"{args.starts - bad}/{args.starts} starts clean")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
