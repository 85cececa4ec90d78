"""A TF-Serving-style model registry on a filesystem: `<registry>/<model>/<version>/`.

- A version is written in a hidden staging directory and renamed into place in one step,
  so a directory named by a number is always complete; versions are never rewritten
  (their files are made read-only, and the API refuses to touch them).
- The production pointer `<model>/production.json` names the serving version and the stack
  of earlier ones (for rollback). It is replaced atomically: temp file, fsync, os.replace,
  fsync of the directory. A crash at any point leaves the old or the new pointer, never a
  torn one. Its read-modify-write (promote, rollback) holds an exclusive lock on
  `<model>/.lock`, so concurrent promotions keep every earlier version in the stack.
- Temp files and directories carry their writer's pid and host; what a killed writer left
  (`.staging-*`, pointer temp files, `.push-*`, candidate temp dirs) is removed by the next
  writer: at once when that pid is gone on this host, after a day otherwise.
- An optional push hook copies the promoted version to a serving directory (before the
  pointer moves: a failed copy changes nothing) and/or POSTs a notification to a URL
  (after: a failed notification is recorded, the promotion stands).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from core.errors import DriftlineError

FORMAT = 1
POINTER = "production.json"
EVENTS = "events.jsonl"
LOCK = ".lock"
STALE_AFTER_SECONDS = 86_400  # leftovers whose writer cannot be checked (another host)
_OWNER = re.compile(r"([0-9a-f]{32})-(\d+)-([A-Za-z0-9_]+)")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class RegistryError(DriftlineError):
    """A registry operation was refused (unknown version, failed gates, bad push target)."""


@dataclass(frozen=True)
class Push:
    directory: str | None = None  # copy promoted versions to <directory>/<model>/<version>/
    url: str | None = None        # POST {"event", "model", "version", "path"} here
    timeout_seconds: float = 10.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def owner_token() -> str:
    """A unique name part saying who writes: `<uuid>-<pid>-<host>` (see remove_stale)."""
    return f"{uuid.uuid4().hex}-{os.getpid()}-{_host()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale(directory: Path, prefixes: tuple[str, ...], now: float | None = None) -> list[Path]:
    """Remove entries of directory named with one of prefixes whose writer is dead: its pid
    is gone on this host, or (another host, no owner in the name) it is older than a day."""
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    host = _host()
    now = time.time() if now is None else now
    for path in entries:
        if not path.name.startswith(prefixes):
            continue
        owner = _OWNER.search(path.name)
        if owner and owner.group(3) == host:
            stale = not _alive(int(owner.group(2)))
        else:
            try:
                stale = now - path.lstat().st_mtime > STALE_AFTER_SECONDS
            except OSError:
                continue
        if not stale:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def write_atomic(path: Path, text: str) -> None:
    """Write text to path so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{owner_token()}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def _read_only(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


class ModelRegistry:
    def __init__(self, root: str | os.PathLike, push: Push | None = None) -> None:
        self.root = Path(root)
        self.push = push or Push()

    # -- reading ---------------------------------------------------------------------
    def _model_dir(self, model: str) -> Path:
        if not model or not set(model) <= _NAME_CHARS or model.startswith("."):
            raise RegistryError(f"model name {model!r}: use letters, digits, '_', '.', '-'")
        return self.root / model

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, model: str) -> list[int]:
        directory = self._model_dir(model)
        if not directory.is_dir():
            return []
        return sorted(int(p.name) for p in directory.iterdir()
                      if p.is_dir() and p.name.isdigit() and (p / "metadata.json").is_file())

    def path(self, model: str, version: int) -> Path:
        path = self._model_dir(model) / str(int(version))
        if not (path / "metadata.json").is_file():
            known = ", ".join(map(str, self.versions(model))) or "none"
            raise RegistryError(f"{model}: no version {version} in {self.root} (versions: {known})")
        return path

    def metadata(self, model: str, version: int) -> dict[str, Any]:
        return json.loads((self.path(model, version) / "metadata.json").read_text())

    def pointer(self, model: str) -> dict[str, Any] | None:
        path = self._model_dir(model) / POINTER
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:  # cannot happen with atomic writes; say so if it does
            raise RegistryError(f"{path}: unreadable production pointer ({exc})") from exc

    def production(self, model: str) -> int | None:
        pointer = self.pointer(model)
        return None if pointer is None else int(pointer["version"])

    def events(self, model: str) -> list[dict]:
        path = self._model_dir(model) / EVENTS
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a torn last line after a crash: the log is informational
                continue
        return out

    # -- writing ---------------------------------------------------------------------
    def create_version(self, model: str, write: Callable[[Path, int], None], metadata: dict[str, Any]) -> int:
        """Write a new immutable version: `write(directory, version)` puts the artifact files,
        the registry adds metadata.json and renames the staged directory into place."""
        directory = self._model_dir(model)
        directory.mkdir(parents=True, exist_ok=True)
        self._clean(model)
        for _ in range(100):
            version = max(self.versions(model), default=0) + 1
            staging = directory / f".staging-{owner_token()}"
            staging.mkdir()
            try:
                write(staging, version)
                data = dict(metadata, format=FORMAT, model=model, version=version,
                            created_at=metadata.get("created_at") or _now())
                (staging / "metadata.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
                _fsync_tree(staging)
                try:
                    os.rename(staging, directory / str(version))  # fails if another writer took the number
                except OSError:
                    continue
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            _fsync_dir(directory)
            _read_only(directory / str(version))
            self._event(model, "created", version, trainer=metadata.get("trainer"))
            return version
        raise RegistryError(f"{directory}: could not allocate a version number")

    def _event(self, model: str, event: str, version: int | None, **fields) -> None:
        line = json.dumps({"at": _now(), "event": event, "version": version, **fields}, default=str)
        with open(self._model_dir(model) / EVENTS, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _clean(self, model: str) -> None:
        """Remove what killed writers left in the model's directory (see remove_stale)."""
        remove_stale(self._model_dir(model), (".staging-", f".{POINTER}.", ".push-"))

    @contextlib.contextmanager
    def _pointer_lock(self, model: str):
        """An exclusive lock on the model's pointer for a read-modify-write (flock: released
        by the kernel when a holder dies, so a kill never leaves it taken)."""
        directory = self._model_dir(model)
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def promote(self, model: str, version: int, reason: str = "", force: bool = False) -> dict[str, Any]:
        """Point production at version. A version whose gates failed needs force=True."""
        meta = self.metadata(model, version)
        gates = meta.get("gates") or {}
        if gates and not gates.get("passed", True) and not force:
            why = "; ".join(gates.get("reasons", [])) or "gates failed"
            raise RegistryError(f"{model} v{version} did not pass its gates ({why}); use --force to promote anyway")
        with self._pointer_lock(model):
            current = self.pointer(model)
            if current is not None and int(current["version"]) == int(version):
                return current
            previous = [] if current is None else [*current.get("previous", []), int(current["version"])]
            return self._switch(model, int(version), previous, "promoted", reason)

    def rollback(self, model: str, reason: str = "") -> dict[str, Any]:
        """Point production back at the version before the current one."""
        with self._pointer_lock(model):
            current = self.pointer(model)
            if current is None or not current.get("previous"):
                raise RegistryError(f"{model}: nothing to roll back to (no earlier production version)")
            *rest, target = current["previous"]
            return self._switch(model, int(target), rest, "rolled_back",
                                reason or f"rollback from v{current['version']}")

    def _switch(self, model: str, version: int, previous: list[int], event: str, reason: str) -> dict[str, Any]:
        path = self.path(model, version)
        self._clean(model)
        if self.push.directory:
            self._copy_to_serving(model, version, path)
        pointer = {"format": FORMAT, "model": model, "version": version, "previous": previous,
                   "updated_at": _now(), "event": event, "reason": reason}
        write_atomic(self._model_dir(model) / POINTER, json.dumps(pointer, indent=2) + "\n")
        notified = self._notify(model, version, path, event) if self.push.url else None
        self._event(model, event, version, reason=reason, notification=notified)
        return dict(pointer, notification=notified) if notified else pointer

    def _copy_to_serving(self, model: str, version: int, source: Path) -> None:
        target_dir = Path(self.push.directory) / model
        target = target_dir / str(version)
        if target.exists():
            return
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(target_dir, (".push-",))
            tmp = target_dir / f".push-{owner_token()}"
            shutil.copytree(source, tmp)
            for path in tmp.rglob("*"):  # copies keep the read-only bits; the serving side owns them
                if path.is_file():
                    path.chmod(path.stat().st_mode | stat.S_IWUSR)
            os.rename(tmp, target)
        except OSError as exc:
            raise RegistryError(f"push to {target}: {exc.strerror or exc}") from exc

    def _notify(self, model: str, version: int, path: Path, event: str) -> str:
        import urllib.request

        url = self.push.url
        if not url.startswith(("http://", "https://")):
            return f"not sent: {url!r} is not an http(s) URL"
        body = json.dumps({"event": event, "model": model, "version": version, "path": str(path)}).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.push.timeout_seconds) as response:
                return f"sent: HTTP {response.status}"
        except OSError as exc:
            return f"failed: {exc}"
