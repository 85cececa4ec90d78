"""Schedules, windows and DST: the trigger may fire twice or skip an hour; windows must not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from monitor.config import ScheduleConfig
from core.errors import ConfigError
from monitor.ledger import Ledger
from monitor.scheduling import Schedule, schedules_of
from monitor.store import ResultsStore
from service_helpers import make_config, model_dict

UTC = timezone.utc


@pytest.fixture()
def ledger(tmp_path):
    store = ResultsStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield Ledger(store.engine)
    store.close()


def simulate(ledger: Ledger, schedule: Schedule, start: datetime, stop: datetime) -> tuple[list, list]:
    """Fire the real CronTrigger from `start` to `stop`; at each fire run what the ledger says is due."""
    trigger = schedule.trigger()
    fires, ran = [], []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < stop:
        fires.append(fire)
        now = fire.astimezone(UTC) + timedelta(seconds=1)
        for window_start, window_end in ledger.plan(schedule, now).due:
            claim = ledger.claim(schedule.model, schedule.check, window_start, window_end,
                                 lease=timedelta(minutes=5), now=now, grid=schedule.grid)
            assert claim is not None
            assert ledger.finish(claim, "succeeded", now=now)
            ran.append((window_start, window_end))
        fire = trigger.get_next_fire_time(fire, now)
    return fires, ran


def local_midnight(day: datetime, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


@pytest.mark.parametrize("tz_name, cron, transition", [
    ("Europe/London", "30 1 * * *", datetime(2026, 3, 29)),    # 01:30 does not exist that night
    ("Europe/London", "30 1 * * *", datetime(2026, 10, 25)),   # 01:30 happens twice
    ("America/New_York", "30 2 * * *", datetime(2026, 3, 8)),  # 02:30 does not exist
    ("America/New_York", "30 1 * * *", datetime(2026, 11, 1)),  # 01:30 happens twice
])
def test_daily_cron_gives_one_run_per_local_day_across_dst(ledger, tz_name, cron, transition):
    tz = ZoneInfo(tz_name)
    schedule = Schedule("m", "data_drift", ScheduleConfig(check="data_drift", cron=cron, window="1d",
                                                          timezone=tz_name, max_backfill_windows=0))
    begin = datetime(transition.year, transition.month, transition.day, tzinfo=tz) - timedelta(days=4)
    fires, ran = simulate(ledger, schedule, begin.astimezone(UTC), (begin + timedelta(days=9)).astimezone(UTC))
    assert len(ran) == len(set(ran)), "a window ran twice"
    days = [(begin + timedelta(days=i)).date() for i in range(-1, 8)]
    expected = [(local_midnight(d, tz), local_midnight(d + timedelta(days=1), tz)) for d in days]
    assert ran == expected  # every local day exactly once, in order, no gap
    lengths = {end - start for start, end in ran}
    assert lengths == {timedelta(hours=24), timedelta(hours=23 if transition.month in (3,) else 25)}
    assert len(fires) >= len(ran) - 1  # the trigger may fire twice on a fall-back night; the ledger keeps one run


@pytest.mark.parametrize("transition", [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)])
def test_hourly_cron_in_new_york_covers_every_utc_hour_once(ledger, transition):
    schedule = Schedule("m", "data_drift", ScheduleConfig(check="data_drift", cron="0 * * * *", window="1h",
                                                          timezone="America/New_York", max_backfill_windows=3))
    start = transition
    _, ran = simulate(ledger, schedule, start, start + timedelta(days=1))
    assert len(ran) == len(set(ran))
    assert all(end - begin == timedelta(hours=1) for begin, end in ran)
    assert all(b[0] == a[1] for a, b in zip(ran, ran[1:])), "hours must tile"
    assert ran[-1][1] - ran[0][0] >= timedelta(hours=23)


def test_interval_windows_are_aligned_to_the_epoch_or_start():
    every6h = Schedule("m", "c", ScheduleConfig(check="c", interval="6h", window="6h"))
    now = datetime(2026, 5, 4, 13, 17, tzinfo=UTC)
    assert every6h.closed_ends(now, limit=3) == [datetime(2026, 5, 4, 12, tzinfo=UTC), datetime(2026, 5, 4, 6, tzinfo=UTC),
                                                 datetime(2026, 5, 4, 0, tzinfo=UTC)]
    anchored = Schedule("m", "c", ScheduleConfig(check="c", interval="1h", window="1h",
                                                 start=datetime(2026, 5, 4, 10, 30, tzinfo=UTC)))
    assert anchored.closed_ends(now, limit=10) == [datetime(2026, 5, 4, h, 30, tzinfo=UTC) for h in (12, 11)]


def test_start_and_end_bound_the_windows():
    schedule = Schedule("m", "c", ScheduleConfig(check="c", cron="5 0 * * *", window="1d",
                                                 start=datetime(2024, 6, 3, tzinfo=UTC),
                                                 end=datetime(2024, 6, 10, tzinfo=UTC)))
    ends = schedule.closed_ends(datetime(2026, 1, 1, tzinfo=UTC), limit=100)
    assert ends[0] == datetime(2024, 6, 10, tzinfo=UTC) and ends[-1] == datetime(2024, 6, 4, tzinfo=UTC)
    assert len(ends) == 7
    # Before the cron fires at 00:05 the day's window is not closed yet.
    early = schedule.closed_ends(datetime(2024, 6, 5, 0, 3, tzinfo=UTC), limit=100)
    assert early == [datetime(2024, 6, 4, tzinfo=UTC)]


def test_bad_schedules_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="timezone"):
        schedules_of(make_config(tmp_path, [model_dict(schedules=[{"check": "c", "cron": "0 * * * *",
                                                                    "timezone": "Mars/Olympus"}])]))
    with pytest.raises(ConfigError, match="cron"):
        schedules_of(make_config(tmp_path, [model_dict(schedules=[{"check": "c", "cron": "0 25 * * *"}])]))
    with pytest.raises(ConfigError, match="exactly one of cron or interval"):
        make_config(tmp_path, [model_dict(schedules=[{"check": "c"}])])


def test_job_ids_are_stable_and_change_with_the_schedule():
    a = Schedule("m", "c", ScheduleConfig(check="c", cron="5 0 * * *"))
    b = Schedule("m", "c", ScheduleConfig(check="c", cron="5 0 * * *"))
    c = Schedule("m", "c", ScheduleConfig(check="c", cron="10 0 * * *"))
    assert a.job_id == b.job_id != c.job_id
    assert a.grid == c.grid  # same windows: the ledger history carries over
