"""What the CLI sets for its process before any command loads numpy or pyarrow (monitor/cli.py)."""

import json
import os
import subprocess
import sys

_REPORT = (
    "import json, os, monitor.cli, numpy, pyarrow\n"
    "from threadpoolctl import threadpool_info\n"
    "print(json.dumps({'blas': sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}),\n"
    "                  'pool': pyarrow.default_memory_pool().backend_name}))\n"
)


def _process_defaults(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "ARROW_DEFAULT_MEMORY_POOL")}
    completed = subprocess.run([sys.executable, "-c", _REPORT], capture_output=True, text=True, env={**clean, **env})
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_numpy_blas_runs_on_one_thread_and_arrow_allocates_from_jemalloc():
    assert _process_defaults() == {"blas": [1], "pool": "jemalloc"}


def test_the_environment_overrides_both():
    assert _process_defaults(OPENBLAS_NUM_THREADS="2", ARROW_DEFAULT_MEMORY_POOL="system") == {
        "blas": [2], "pool": "system"}
