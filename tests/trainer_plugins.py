"""Outside trainer plugins registered the way pip would (a `*.dist-info` with
`entry_points.txt` on sys.path), without installing anything: one good, one that fails to
import, one missing an abstract method, one that raises in `fit`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODULES = {
    "dl_test_good": '''
from retrain.base import Trainer

class Outside(Trainer):
    def fit(self, train, valid, params, progress=None, base=None):
        raise NotImplementedError

    def load(self, directory, header):
        raise NotImplementedError
''',
    "dl_test_broken": "import a_module_that_is_not_installed_anywhere\n",
    "dl_test_half": '''
from retrain.base import Trainer

class Half(Trainer):
    def fit(self, train, valid, params, progress=None, base=None):
        raise NotImplementedError
''',
    "dl_test_explodes": '''
from retrain.base import Trainer

class Explodes(Trainer):
    def fit(self, train, valid, params, progress=None, base=None):
        raise ZeroDivisionError("the plugin divided by zero")

    def load(self, directory, header):
        raise NotImplementedError
''',
}

ENTRY_POINTS = """[driftline.trainers]
outside = dl_test_good:Outside
broken = dl_test_broken:Trainer
halfdone = dl_test_half:Half
explodes = dl_test_explodes:Explodes
"""


def install(directory: Path) -> Path:
    """Write the plugins and their dist-info into directory (to be put on sys.path)."""
    for name, text in MODULES.items():
        (directory / f"{name}.py").write_text(text)
    info = directory / "driftline_test_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: driftline-test-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return directory


@pytest.fixture
def plugins(tmp_path_factory, monkeypatch):
    """The four plugins on sys.path (import this fixture into a test module); forgotten after."""
    from retrain import base

    monkeypatch.syspath_prepend(str(install(tmp_path_factory.mktemp("plugins"))))
    yield
    for name in ("outside", "broken", "halfdone", "explodes"):
        base._TRAINERS.pop(name, None)
    for module in MODULES:
        sys.modules.pop(module, None)
