"""The model registry: immutable numbered versions, the atomic production pointer,
rollback, the push hook, and a process killed (SIGKILL) at each step of a promotion."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from retrain.registry import ModelRegistry, Push, RegistryError, owner_token, remove_stale


def _artifact(text: str):
    def write(directory: Path, version: int) -> None:
        (directory / "weights.txt").write_text(text)
        (directory / "nested").mkdir()
        (directory / "nested" / "vocab.json").write_text("{}")

    return write


def _registry(tmp_path: Path, **push) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry", Push(**push))
    for i, passed in ((1, True), (2, True), (3, False)):
        gates = {"passed": passed, "reasons": [] if passed else ["auc (overall) 0.5 < production 0.7 - 0.005"]}
        assert registry.create_version("ctr", _artifact(f"w{i}"), {"trainer": "t", "gates": gates}) == i
    return registry


def test_versions_are_numbered_complete_and_read_only(tmp_path):
    registry = _registry(tmp_path)
    assert registry.versions("ctr") == [1, 2, 3] and registry.models() == ["ctr"]
    meta = registry.metadata("ctr", 2)
    assert meta["version"] == 2 and meta["model"] == "ctr" and meta["trainer"] == "t" and meta["created_at"]
    weights = registry.path("ctr", 2) / "weights.txt"
    assert weights.read_text() == "w2" and not weights.stat().st_mode & stat.S_IWUSR
    assert [e["event"] for e in registry.events("ctr")] == ["created"] * 3
    with pytest.raises(RegistryError, match=r"no version 9 .*versions: 1, 2, 3"):
        registry.path("ctr", 9)
    with pytest.raises(RegistryError, match="model name"):
        registry.versions("../etc")


def test_a_failed_write_leaves_no_version(tmp_path):
    registry = _registry(tmp_path)

    def broken(directory: Path, version: int) -> None:
        (directory / "half").write_text("x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.create_version("ctr", broken, {"trainer": "t"})
    assert registry.versions("ctr") == [1, 2, 3]
    assert not [p for p in (registry.root / "ctr").iterdir() if p.name.startswith(".staging")]


def test_promote_rollback_and_the_pointer_stack(tmp_path):
    registry = _registry(tmp_path)
    assert registry.production("ctr") is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("ctr")
    registry.promote("ctr", 1)
    registry.promote("ctr", 2, reason="better")
    assert registry.pointer("ctr")["previous"] == [1]
    with pytest.raises(RegistryError, match=r"v3 did not pass its gates \(auc \(overall\) 0.5 < production"):
        registry.promote("ctr", 3)
    assert registry.production("ctr") == 2
    registry.promote("ctr", 3, force=True)
    assert registry.pointer("ctr")["previous"] == [1, 2]
    assert registry.rollback("ctr")["version"] == 2
    assert registry.rollback("ctr")["version"] == 1
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("ctr")
    events = [(e["event"], e["version"]) for e in registry.events("ctr") if e["event"] != "created"]
    assert events == [("promoted", 1), ("promoted", 2), ("promoted", 3), ("rolled_back", 2), ("rolled_back", 1)]
    assert not [p for p in (registry.root / "ctr").iterdir() if p.name.endswith(".tmp")]


def test_push_copies_to_the_serving_directory_before_the_pointer_moves(tmp_path):
    serving = tmp_path / "serving"
    registry = _registry(tmp_path, directory=str(serving))
    registry.promote("ctr", 2)
    assert (serving / "ctr" / "2" / "weights.txt").read_text() == "w2"
    assert (serving / "ctr" / "2" / "metadata.json").exists()
    # A push target that cannot be written: refused, and production does not move.
    blocked = ModelRegistry(registry.root, Push(directory=str(tmp_path / "afile")))
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(RegistryError, match="push to"):
        blocked.promote("ctr", 1)
    assert registry.production("ctr") == 2


def test_push_notification_is_posted_and_a_failure_does_not_undo_the_promotion(tmp_path):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        registry = _registry(tmp_path, url=url)
        pointer = registry.promote("ctr", 2)
        assert pointer["notification"] == "sent: HTTP 204"
        assert received == [{"event": "promoted", "model": "ctr", "version": 2,
                             "path": str(registry.path("ctr", 2))}]
    finally:
        server.shutdown()
        server.server_close()
    dead = ModelRegistry(registry.root, Push(url=url, timeout_seconds=2))  # the server is gone
    pointer = dead.promote("ctr", 1)
    assert pointer["notification"].startswith("failed:") and dead.production("ctr") == 1


# -- a kill at each step of a promotion leaves the registry consistent --------------------------

KILLER = r"""
import os, signal, sys, shutil
from pathlib import Path
import retrain.registry as reg

step, root, serving = sys.argv[1], sys.argv[2], sys.argv[3]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
real_replace, real_fsync, real_copytree = os.replace, os.fsync, shutil.copytree

if step == "staging":            # in the middle of writing a new version
    def write(directory, version):
        (directory / "weights.txt").write_text("half")
        die()
    reg.ModelRegistry(root).create_version("ctr", write, {"trainer": "t"})
if step == "tmp_written":        # the new pointer is in its temp file, not yet fsynced/renamed
    reg.os.fsync = lambda fd: die()
if step == "before_replace":     # fsynced, about to be renamed over the old pointer
    reg.os.replace = lambda a, b: die()
if step == "after_replace":      # renamed, before the directory fsync and the event log
    def replace(a, b):
        real_replace(a, b)
        die()
    reg.os.replace = replace
if step == "push_copy":          # halfway through copying to the serving directory
    def copytree(src, dst, **kw):
        os.makedirs(dst)
        Path(dst, "weights.txt").write_text("partial")
        die()
    reg.shutil.copytree = copytree
reg.ModelRegistry(root, reg.Push(directory=serving)).promote("ctr", 2)
"""


@pytest.mark.parametrize("step, expected", [
    ("staging", 1), ("tmp_written", 1), ("before_replace", 1), ("after_replace", 2), ("push_copy", 1),
])
def test_a_kill_during_promotion_leaves_the_registry_consistent(tmp_path, step, expected):
    serving = tmp_path / "serving"
    registry = _registry(tmp_path, directory=str(serving))
    registry.promote("ctr", 1)
    done = subprocess.run([sys.executable, "-c", KILLER, step, str(registry.root), str(serving)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    # The pointer is whole and names a complete version: the old one, or the new one.
    pointer = json.loads((registry.root / "ctr" / "production.json").read_text())
    assert pointer["version"] == expected == registry.production("ctr")
    assert (registry.path("ctr", expected) / "weights.txt").read_text() == f"w{expected}"
    assert registry.versions("ctr") == [1, 2, 3]  # a half-written version is never listed
    if step == "push_copy":
        assert not (serving / "ctr" / "2").exists()  # the half copy lies in a hidden temp dir
    # And the registry keeps working.
    registry.promote("ctr", 2)
    assert registry.production("ctr") == 2 and (serving / "ctr" / "2" / "weights.txt").read_text() == "w2"
    assert registry.rollback("ctr")["version"] == 1
    assert os.listdir(registry.path("ctr", 2))
    # What the killed writer left (staging dir, pointer temp file, half push) is gone.
    leftovers = [p.name for d in (registry.root / "ctr", serving / "ctr") if d.exists() for p in d.iterdir()
                 if p.name.startswith((".staging-", ".production.json.", ".push-"))]
    assert leftovers == []


PROMOTER = r"""
import sys
from retrain.registry import ModelRegistry
root, first = sys.argv[1], int(sys.argv[2])
registry = ModelRegistry(root)
for version in range(first, 81, 2):
    registry.promote("ctr", version)
"""


def test_concurrent_promotions_keep_the_whole_rollback_history(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    for i in range(1, 81):
        registry.create_version("ctr", _artifact(f"w{i}"), {"trainer": "t"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(registry.root), str(first)], env=env,
                              stderr=subprocess.PIPE, text=True) for first in (1, 2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    pointer = registry.pointer("ctr")
    # 80 promotions of 80 distinct versions: the current one and 79 earlier ones, none lost.
    assert len(pointer["previous"]) == 79
    assert sorted([*pointer["previous"], pointer["version"]]) == list(range(1, 81))
    assert len([e for e in registry.events("ctr") if e["event"] == "promoted"]) == 80


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    token = owner_token()
    _, _, host = token.split("-", 2)
    made = {
        "dead": tmp_path / f".staging-{'a' * 32}-{dead_pid}-{host}",
        "alive": tmp_path / f".staging-{'b' * 32}-{os.getpid()}-{host}",
        "other_host_new": tmp_path / f".staging-{'c' * 32}-{dead_pid}-elsewhere",
        "other_host_old": tmp_path / f".staging-{'d' * 32}-{dead_pid}-elsewhere",
        "unrelated": tmp_path / "keep-me",
    }
    for path in made.values():
        path.mkdir()
    (made["dead"] / "weights.txt").write_text("half")
    os.utime(made["other_host_old"], (0, 0))
    removed = remove_stale(tmp_path, (".staging-",))
    assert sorted(p.name for p in removed) == sorted([made["dead"].name, made["other_host_old"].name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [made["alive"].name, made["other_host_new"].name, "keep-me"])
