"""The Makefile's two installs and its Debian step, dry-run: `make demo` installs no extras and
no Debian packages; `make test`'s system-deps installs only the packages of missing binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")
TOOLS = ("sh", "ls", "env", "true", "cat", "cksum", "cut", "id", "echo", "test")


def _make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=path) if path else None
    return subprocess.run([MAKE, "-s", "-C", str(ROOT), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def _bin_dir(tmp_path: Path, present: list[str]) -> str:
    """A PATH holding the shell tools and fake binaries for `present` only."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    for name in present:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return str(folder)


def test_system_deps_installs_only_the_packages_of_missing_binaries(tmp_path):
    path = _bin_dir(tmp_path, ["prometheus", "promtool", "amtool", "java", "chromium", "gcc"])
    done = _make("system-deps", "APT_GET=echo APT", "INITDB_GLOB=/nonexistent/initdb", path=path)
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if line.startswith("APT install")]
    assert len(installs) == 1
    packages = installs[0].split("--no-upgrade", 1)[1].split()
    # alertmanager's daemon is missing (amtool is there), docker-compose and initdb are missing.
    assert sorted(packages) == ["docker-compose", "postgresql", "prometheus-alertmanager"]
    assert "(missing: prometheus-alertmanager docker-compose initdb)" in done.stdout


def test_system_deps_does_nothing_when_every_binary_is_there(tmp_path):
    path = _bin_dir(tmp_path, ["prometheus", "promtool", "prometheus-alertmanager", "amtool", "docker-compose",
                               "java", "initdb", "chromium", "gcc"])
    done = _make("system-deps", "APT_GET=echo APT", f"INITDB_GLOB={tmp_path}/bin/initdb", path=path)
    assert done.returncode == 0, done.stderr
    assert "APT" not in done.stdout


def test_demo_installs_no_extras_and_test_installs_them(tmp_path):
    venv = tmp_path / "venv"
    demo = _make("-n", "demo", f"VENV={venv}").stdout
    assert "pip install" in demo and "-e ." in demo
    assert "deep" not in demo.replace("no torch", "") and "spark]" not in demo
    assert "--quiet -e" not in demo  # the long install shows its progress
    assert "system-deps" not in demo and "apt-get" not in demo
    test = _make("-n", "test", f"VENV={venv}").stdout
    assert "-e '.[dev,deep,spark]'" in test


def test_demo_uses_the_full_install_when_make_test_made_it(tmp_path):
    venv = tmp_path / "venv"
    full = _make("-n", "-p", "demo", f"VENV={venv}").stdout
    stamp = next(line.split(":=", 1)[1].strip() for line in full.splitlines() if line.startswith("STAMP :="))
    stamp_path = Path(stamp.replace(str(venv), str(venv)))
    stamp_path.parent.mkdir(parents=True)
    stamp_path.touch()
    demo = _make("-n", "demo", f"VENV={venv}").stdout
    assert "pip install" not in demo
    assert "driftline demo" in demo
