"""When to retrain: by hand (the CLI), on a schedule, or after a sustained alert.

- Schedule: `retrain.schedule` is a cron expression (UTC); retraining is due when a fire
  time has passed since the last retrain (or there never was one).
- Alert policy (`retrain.on_sustained_alert`, off by default): due when one of
  `retrain.alert_checks` alerted on the last `sustained_windows` stored windows in a row,
  and no retrain happened within `cooldown` (one bad week must not retrain every hour).

The last retrain is the newest registry version not imported from elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from retrain.registry import ModelRegistry

if TYPE_CHECKING:  # annotations only: the application passes its config in
    from monitor.config import ModelConfig


@dataclass(frozen=True)
class TriggerDecision:
    due: bool
    trigger: str   # "schedule", "alert" or "" when not due
    reason: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def last_retrain(registry: ModelRegistry, model: str) -> datetime | None:
    for version in reversed(registry.versions(model)):
        meta = registry.metadata(model, version)
        if meta.get("trigger") != "import":
            return _utc(datetime.fromisoformat(meta["created_at"]))
    return None


def schedule_due(cron: str, last: datetime | None, now: datetime) -> bool:
    from apscheduler.triggers.cron import CronTrigger

    if last is None:
        return True
    # The first fire time strictly after the last retrain (apscheduler returns one >= its `now`).
    fire = CronTrigger.from_crontab(cron, timezone="UTC").get_next_fire_time(None, _utc(last) + timedelta(seconds=1))
    return fire is not None and fire <= _utc(now)


def sustained_alert(results_by_check: dict[str, list], windows: int) -> str | None:
    """results_by_check: check -> CheckResults in window order. The reason if one check
    alerted on each of its last `windows` windows."""
    for check, results in results_by_check.items():
        recent = results[-windows:]
        if len(recent) == windows and all(r.status == "alert" for r in recent):
            return f"{check} alerted on {windows} consecutive windows up to {recent[-1].window_end}"
    return None


def decide(model: ModelConfig, registry: ModelRegistry, store=None, now: datetime | None = None) -> TriggerDecision:
    """Is a retrain due for this model now, and why."""
    now = _utc(now or datetime.now(timezone.utc))
    policy = model.retrain
    last = last_retrain(registry, model.name)
    if policy.schedule and schedule_due(policy.schedule, last, now):
        return TriggerDecision(True, "schedule",
                               f"schedule '{policy.schedule}' is due (last retrain: {last or 'never'})")
    if policy.on_sustained_alert and store is not None:
        by_check = {c: list(store.results(model.name, c)) for c in policy.alert_checks}
        reason = sustained_alert(by_check, policy.sustained_windows)
        if reason:
            if last is not None and now - last < policy.cooldown:
                return TriggerDecision(False, "", f"{reason}, but the last retrain ({last:%Y-%m-%d %H:%M}) "
                                                  f"is within the cooldown of {policy.cooldown}")
            return TriggerDecision(True, "alert", reason)
    if not policy.schedule and not policy.on_sustained_alert:
        return TriggerDecision(False, "", "no schedule and the alert policy is off")
    parts = []
    if policy.schedule:
        upcoming = next_due(policy.schedule, last, now)
        parts.append(f"schedule '{policy.schedule}' next due {upcoming:%Y-%m-%d %H:%M} UTC" if upcoming
                     else f"schedule '{policy.schedule}' has no next fire time")
    if policy.on_sustained_alert:
        parts.append(f"no check of {', '.join(policy.alert_checks)} alerted on {policy.sustained_windows} "
                     "consecutive windows")
    return TriggerDecision(False, "", "not due: " + "; ".join(parts) + f" (last retrain: "
                           f"{f'{last:%Y-%m-%d %H:%M} UTC' if last else 'never'})")


def next_due(cron: str, last: datetime | None, now: datetime) -> datetime | None:
    """The schedule's first fire time after the last retrain (and after now, when that one passed)."""
    from apscheduler.triggers.cron import CronTrigger

    after = max(_utc(now), _utc(last) + timedelta(seconds=1)) if last else _utc(now)
    return CronTrigger.from_crontab(cron, timezone="UTC").get_next_fire_time(None, after)
