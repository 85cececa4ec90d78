"""The one check contract, and the registry every check (built-in or plug-in) is found in.

A check declares, once:
- its parameters: one pydantic model (`CheckParams` subclass) that holds the defaults, the
  validation and the docs; the config schema of `models.<name>.checks` is built from these;
- what it needs from a window (`needs`: the window's profile, rows of named columns, labels,
  a model), so the runner prepares only that;
- a factory `factory(model_config, params) -> Check`.

Then the runner, for every check alike: `check.fit(reference) -> FittedCheck` once per
reference, and `fitted.evaluate(window) -> CheckResult` per window. `reference` and `window`
are the runner's views (monitor.runner.ReferenceView / WindowContext); a check reads what it
declared it needs from them and keeps no module-level state: whatever it wants to keep between
windows goes into `window.state`, a bounded, locked cache owned by the runner.

Built-ins register with the `register_check` decorator; outside packages add checks under the
`driftline.checks` entry-point group, pointing at a `CheckSpec` (or at a factory decorated
with `register_check`). An outside check is configured, run and exported exactly like a
built-in one.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Hashable, Literal

from pydantic import BaseModel, ConfigDict

from core.errors import ConfigError
from core.results import CheckResult

ENTRY_POINT_GROUP = "driftline.checks"
Need = Literal["profile", "rows", "labels", "model"]


class CheckParams(BaseModel):
    """Base of every check's parameters. Unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False


class Check(ABC):
    """A configured check: parameters bound, nothing computed yet."""

    name: ClassVar[str] = "check"

    @abstractmethod
    def fit(self, reference) -> "FittedCheck":
        """What "normal" looks like, from the reference (a monitor.runner.ReferenceView)."""


class FittedCheck(ABC):
    """Fitted state is immutable: the same fitted check evaluates every window."""

    @abstractmethod
    def evaluate(self, window) -> CheckResult:
        """The result for one window (a monitor.runner.WindowContext)."""


class WindowCheck(Check, FittedCheck):
    """A check that reads its reference and window rows itself (labels, a model, ids).

    Fitting binds nothing; `run(window)` does the work and keeps what it reuses across
    windows in `window.state` (owned by the runner, bounded and locked).
    """

    name: ClassVar[str] = "window_check"

    def fit(self, reference) -> "WindowCheck":
        return self

    def evaluate(self, window) -> CheckResult:
        return self.run(window)

    @abstractmethod
    def run(self, window) -> CheckResult:
        """The result for one window."""


@dataclass(frozen=True)
class CheckSpec:
    """A registry entry: the name, the parameter model, the factory and what the check needs."""

    name: str
    params: type[CheckParams]
    factory: Callable[[Any, CheckParams], Check]
    needs: frozenset[str] = frozenset({"profile"})
    summary: str = ""
    # Heavy optional libraries the check imports while it runs. A long-running service imports
    # them once on its main thread before any worker starts, since two worker threads importing
    # the same large package at once can hit the import system's deadlock detection.
    preload: tuple[str, ...] = ()
    # Names of the metric points (core.results.MetricPoint) its results declare, beyond the
    # status, rows and per-feature scores every result exports; dashboards and alert rules may
    # query only declared names (tests/test_dashboards.py).
    exports: tuple[str, ...] = ()

    def build(self, model_config, params: CheckParams | None = None) -> Check:
        return self.factory(model_config, params if params is not None else self.params())


@dataclass
class CheckRegistry:
    """Built-ins register explicitly; entry points are loaded one by one on first use, and a
    plug-in that fails to load is remembered with its error instead of breaking every check."""

    specs: dict[str, CheckSpec] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    _entry_points_loaded: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, spec: CheckSpec) -> CheckSpec:
        known = self.specs.get(spec.name)
        if known is not None and known.factory is not spec.factory:
            raise ValueError(f"check {spec.name!r} is registered twice")
        self.specs[spec.name] = spec
        return spec

    def load_entry_points(self) -> None:
        with self._lock:
            if self._entry_points_loaded:
                return
            from importlib.metadata import entry_points

            for entry in entry_points(group=ENTRY_POINT_GROUP):
                if entry.name in self.specs:
                    continue
                try:
                    loaded = entry.load()
                    spec = loaded if isinstance(loaded, CheckSpec) else getattr(loaded, "check_spec", None)
                    if not isinstance(spec, CheckSpec):
                        raise TypeError(f"{entry.value} is not a CheckSpec nor a factory decorated with "
                                        "register_check")
                    if spec.name != entry.name:
                        spec = CheckSpec(entry.name, spec.params, spec.factory, spec.needs, spec.summary,
                                         spec.preload, spec.exports)
                    self.add(spec)
                except Exception as exc:  # a broken plug-in must not take the built-ins down with it
                    self.broken[entry.name] = f"{type(exc).__name__}: {exc}"
            self._entry_points_loaded = True

    def names(self) -> list[str]:
        return sorted(self.specs)

    def get(self, name: str) -> CheckSpec:
        spec = self.specs.get(name)
        if spec is not None:
            return spec
        if name in self.broken:
            raise ConfigError(f"check {name!r}: its plug-in failed to load ({self.broken[name]})")
        raise ConfigError(f"unknown check {name!r} (known: {', '.join(self.names())})")


REGISTRY = CheckRegistry()


def register_check(name: str, params: type[CheckParams], needs: tuple[Need, ...] = ("profile",),
                   summary: str = "", preload: tuple[str, ...] = (), exports: tuple[str, ...] = (),
                   registry: CheckRegistry | None = None):
    """Decorate a factory `factory(model_config, params) -> Check` to register it under `name`."""

    def decorator(factory: Callable) -> Callable:
        spec = CheckSpec(name, params, factory, frozenset(needs), summary, tuple(preload), tuple(exports))
        (registry or REGISTRY).add(spec)
        factory.check_spec = spec
        return factory

    return decorator


class StateCache:
    """A bounded, thread-safe LRU of values a check reuses across windows (a fitted reference,
    a derived suite). Owned by the runner of one model; never module-level."""

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._items: "OrderedDict[Hashable, Any]" = OrderedDict()
        self._lock = threading.RLock()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get_or_create(self, key: Hashable, create: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one thread builds a value; others wait for it instead of building it too
            with self._lock:
                if key in self._items:
                    return self._items[key]
            value = create()
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.max_entries:
                    self._items.popitem(last=False)
                self._key_locks.pop(key, None)
            return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
