"""The core imports none of the heavy optional dependencies (DESIGN principle 6)."""

import subprocess
import sys

HEAVY = ["torch", "shap", "lightgbm", "evidently", "great_expectations", "pyspark"]


def test_core_packages_import_light():
    code = (
        "import sys, monitor, checks, skew, monitor.cli, monitor.runner, checks.drift, monitor.store\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
