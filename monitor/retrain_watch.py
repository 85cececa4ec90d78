"""Retraining from `driftline serve`: the schedule and the sustained-alert policy, checked
every `RETRAIN_CHECK_EVERY` for each model that has either configured.

`retrain --when-due` makes the same decision from cron; here the service makes it. One
retrain runs at a time in the process (training takes cores and minutes); a retrain that
fails is not tried again for the model's `retrain.cooldown`, so a broken data source does
not start a training every quarter of an hour. Outcomes are logged; the registry records
the version with its trigger, gates and metrics as for any retrain.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from monitor.config import Config

log = logging.getLogger("driftline.retrain")
RETRAIN_CHECK_EVERY = timedelta(minutes=15)


def watched_models(config: Config) -> list[str]:
    return [m.name for m in config.models if m.retrain.schedule or m.retrain.on_sustained_alert]


class RetrainWatcher:
    def __init__(self, config: Config, store) -> None:
        self.config = config
        self.store = store
        self._lock = threading.Lock()
        self._failed_at: dict[str, datetime] = {}

    def check(self, model_name: str, now: datetime | None = None):
        """Retrain `model_name` if its policy says so now; the RetrainResult, or None when nothing ran."""
        from retrain.pipeline import registry_for, run_retrain
        from retrain.triggers import decide

        now = now or datetime.now(timezone.utc)
        model = self.config.model(model_name)
        failed = self._failed_at.get(model.name)
        if failed is not None and now - failed < model.retrain.cooldown:
            return None
        with self._lock:
            decision = decide(model, registry_for(self.config, model), self.store, now)
            if not decision.due:
                return None
            log.info("retraining %s (%s: %s)", model.name, decision.trigger, decision.reason)
            try:
                result = run_retrain(self.config, model.name, trigger=f"{decision.trigger}: {decision.reason}",
                                     now=now)
            except Exception as exc:  # a training that fails must not stop the service
                self._failed_at[model.name] = now
                log.error("retrain of %s failed (next try after %s): %s", model.name, model.retrain.cooldown,
                          (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300])
                return None
            self._failed_at.pop(model.name, None)
            log.info("retrain of %s: version %s %s", model.name, result.version,
                     "promoted" if result.promoted else "rejected")
            return result
