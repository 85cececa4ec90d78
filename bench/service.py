"""Service benchmark: /metrics scrape time and ledger planning on a store with months of history.

    .venv/bin/python -m bench.service --models 5 --checks 6 --windows 2000 --features 30

Builds a SQLite store with models x checks x windows results (each with `features`
drift scores and calibration-style details) and as many ledger rows, then times a full
scrape (the exporter's collect + text exposition) and a ledger plan over a 2000-window gap.

With `--scrapers N` it then serves /metrics through the service's HTTP server and has N
scrapers (threads of another process, a new connection per scrape, as the server speaks
HTTP/1.0) scrape it `--scrapes` times each, and reports latency percentiles. `--backlog 5`
reproduces the listen backlog the server had before it was raised:

    .venv/bin/python -m bench.service --models 1 --checks 2 --windows 50 --scrapers 20 --scrapes 50
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import insert


def build(url: str, models: int, checks: int, windows: int, features: int) -> None:
    from monitor.ledger import ledger
    from monitor.store import ResultsStore, runs

    store = ResultsStore(url)
    start = datetime(2025, 1, 1)
    now = datetime(2026, 1, 1)
    feature_rows = [{"feature": f"f{i}", "kind": "numeric", "method": "wasserstein", "score": 0.01 * i,
                     "threshold": 0.2, "status": "ok", "reference_count": 1000, "current_count": 1000}
                    for i in range(features)]
    details = {"prediction": "score", "overall": {"calibration_ratio": 1.01, "ece": 0.01, "auc": 0.7, "ne": 0.95},
               "segments": [{"segment": "os", "value": f"v{i}", "calibration_ratio": 1.0, "auc": 0.7}
                            for i in range(10)]}
    with store.engine.begin() as connection:
        for m in range(models):
            for c in range(checks):
                run_rows, ledger_rows = [], []
                for w in range(windows):
                    ws, we = start + timedelta(hours=w), start + timedelta(hours=w + 1)
                    result = {"schema_version": 1, "check": f"check{c}", "status": "ok", "features": feature_rows,
                              "details": details}
                    run_rows.append(dict(model=f"model{m}", check_name=f"check{c}", window_start=ws, window_end=we,
                                         status="ok", partial=False, result_json=json.dumps(result),
                                         finished_at=now))
                    ledger_rows.append(dict(model=f"model{m}", check_name=f"check{c}", window_start=ws,
                                            window_end=we, grid="every 3600s|3600s|UTC", state="succeeded",
                                            attempts=1, failures=0, duration_seconds=1.0 + w % 50,
                                            finished_at=now, updated_at=now, revision=0))
                connection.execute(insert(runs), run_rows)
                connection.execute(insert(ledger), ledger_rows)
    store.close()


def _scrape_many(port: int, scrapers: int, scrapes: int) -> list[float]:
    """Latencies (s) of scrapers x scrapes GET /metrics, each on a new connection."""
    import threading

    latencies: list[float] = []
    start = threading.Barrier(scrapers)

    def scraper() -> None:
        start.wait()
        for _ in range(scrapes):
            began = time.perf_counter()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request("GET", "/metrics")
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status
            finally:
                connection.close()
            latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=scraper) for _ in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def parallel_scrapes(registry, scrapers: int, scrapes: int, backlog: int | None) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    from monitor import http as service_http

    default = service_http._Server.request_queue_size
    if backlog is not None:
        service_http._Server.request_queue_size = backlog
    try:
        server = service_http.HttpServer("127.0.0.1", 0, registry)
    finally:
        service_http._Server.request_queue_size = default
    server.start()
    try:
        with ProcessPoolExecutor(1) as clients:  # the scrapers do not share the server's GIL
            clients.submit(time.sleep, 0).result()  # the client process is up before the clock starts
            began = time.perf_counter()
            latencies = sorted(clients.submit(_scrape_many, server.port, scrapers, scrapes).result())
            wall = time.perf_counter() - began
    finally:
        server.stop()

    def pick(q: float) -> float:
        return round(latencies[min(int(q * len(latencies)), len(latencies) - 1)] * 1000, 1)

    return {"scrapers": scrapers, "scrapes": len(latencies), "backlog": backlog or default,
            "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(latencies[-1] * 1000, 1),
            "wall_s": round(wall, 2), "scrapes_per_s": round(len(latencies) / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=5)
    parser.add_argument("--checks", type=int, default=6)
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--scrapers", type=int, default=0, help="parallel scrapers of /metrics over HTTP (0: none)")
    parser.add_argument("--scrapes", type=int, default=50, help="scrapes per scraper")
    parser.add_argument("--backlog", type=int, default=None, help="listen backlog (default: the server's own)")
    args = parser.parse_args()

    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.config import ScheduleConfig
    from monitor.exporter import DriftlineCollector
    from monitor.ledger import Ledger
    from monitor.scheduling import Schedule
    from monitor.store import ResultsStore

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        began = time.perf_counter()
        build(url, args.models, args.checks, args.windows, args.features)
        built = time.perf_counter() - began
        store = ResultsStore(url)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DriftlineCollector(store.engine))
        timings = []
        for _ in range(5):
            began = time.perf_counter()
            text = generate_latest(registry)
            timings.append(time.perf_counter() - began)
        schedule = Schedule("model0", "check0", ScheduleConfig(check="check0", interval="1h", window="1h",
                                                               max_backfill_windows=24))
        ledger = Ledger(store.engine)
        began = time.perf_counter()
        plan = ledger.plan(schedule, datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(hours=2 * args.windows))
        planned = time.perf_counter() - began
        parallel = parallel_scrapes(registry, args.scrapers, args.scrapes, args.backlog) if args.scrapers else None
        store.close()
    series = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
    print(json.dumps({
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "results_rows": args.models * args.checks * args.windows, "series": series,
        "build_s": round(built, 2), "scrape_s_median": round(sorted(timings)[2], 3), "scrape_bytes": len(text),
        "plan_gap_windows": args.windows, "plan_s": round(planned, 3), "skipped": len(plan.skipped),
        "due": len(plan.due), "parallel": parallel}, indent=2))


if __name__ == "__main__":
    main()
