"""The layer contract (.importlinter): monitor on explain|skew on checks|retrain|dashboards on core.

Imports under `if TYPE_CHECKING:` do not count; every other import of a higher layer, at module
level or inside a function, breaks the contract and this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contract_is_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_core_imports_no_higher_layer_even_lazily():
    """grimp sees function-level imports too; this guards the contract file itself from being loosened."""
    text = (ROOT / ".importlinter").read_text()
    layers = text.split("layers =")[1].split("\n\n")[0].split()
    assert layers[-1] == "core" and layers[0] == "monitor"
