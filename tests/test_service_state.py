"""State owned by the service: one long-lived runner per model, heavy libraries imported once on
the main thread before any worker, and checks that reuse state safely across threads."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

from core.checks import StateCache
from monitor.service import default_executor


def test_state_cache_builds_each_value_once_under_concurrency():
    cache = StateCache(max_entries=4)
    calls = []
    gate = threading.Barrier(8)

    def build():
        calls.append(1)
        return object()

    seen = []

    def worker():
        gate.wait()
        seen.append(cache.get_or_create("key", build))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(v) for v in seen}) == 1
    for i in range(10):
        cache.get_or_create(i, lambda: i)
    assert len(cache) == 4  # bounded


def test_the_executor_keeps_one_runner_per_model_across_windows(demo_store, small_world):
    config, store = demo_store
    execute = default_executor(config, store)
    day = small_world.serving_start
    first = execute("offer-ctr", "data_drift", day, day + timedelta(days=1))
    cells = execute.__closure__
    runners = next(c.cell_contents for c in cells if isinstance(c.cell_contents, dict))
    runner = runners["offer-ctr"]
    fitted_before = len(runner.state)
    second = execute("offer-ctr", "data_drift", day + timedelta(days=1), day + timedelta(days=2))
    assert runners["offer-ctr"] is runner  # the same runner: reference and fitted checks reused
    assert len(runner.state) == fitted_before
    assert first[0].status != "error" and second[0].status != "error"


def test_preload_imports_the_configured_checks_libraries_on_the_calling_thread(demo_raw_config, small_world,
                                                                                tmp_path):
    """In a fresh interpreter: nothing heavy on import, then exactly what the enabled checks need."""
    import yaml

    path = tmp_path / "driftline.yaml"
    path.write_text(yaml.safe_dump(demo_raw_config))
    code = (
        "import sys\n"
        "from monitor.config import load_config\n"
        "from monitor.service import preload_libraries\n"
        f"config = load_config({str(path)!r})\n"
        "assert 'great_expectations' not in sys.modules and 'evidently' not in sys.modules\n"
        "loaded = preload_libraries(config)\n"
        "assert {'great_expectations', 'evidently', 'numba', 'matplotlib'} <= set(loaded), loaded\n"
        "assert 'great_expectations' in sys.modules and 'evidently' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=small_world.root.parent, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
