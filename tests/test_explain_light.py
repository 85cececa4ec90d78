"""explain/ imports no heavy dependency at module level (DESIGN principle 6): the registry loads
explain.check for every run, and `driftline --help` loads monitor.commands.explain."""

import subprocess
import sys

HEAVY = ["torch", "shap", "lightgbm", "matplotlib", "sklearn", "evidently"]


def test_explain_modules_import_light():
    code = (
        "import sys, explain.check, explain.drift, explain.models, explain.tree, explain.permutation,"
        " explain.report, explain.oneoff, explain.deep, monitor.commands.explain\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
