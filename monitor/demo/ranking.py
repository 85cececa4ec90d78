"""The ranking demo: a ranker's serving logs with slots, two model versions and epsilon-greedy
exploration, with planted incidents that the ranking checks must catch (and no alarm elsewhere).

Every decision shows one offer in one of three slots (CTR x 1, 0.6, 0.4: position bias, which the
models predict), explores with probability epsilon (a uniform offer of the catalogue, else the
context's greedy offer) and logs the exploration flag and the shown offer's propensity.

Timeline (daily windows):
- day 0 and day 2: clean (v6 serves everything);
- day 1: partner p3 stops exploring (`exploration_collapse`, for the exploration check);
- days 3-5: v7 is rolled out to 50% (`started` = day 3). It loses 20% of the clicks
  (`rollout_ctr_drop`, for the rollout check) and over-predicts slot 1 by 30%
  (`slot1_overpredicted_by_v7`, for slot_calibration).
An alert by a check on a day with no incident of its own kind is a false alarm.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np

PRICES = np.array([5.0, 20.0, 40.0, 120.0])
PRICE_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
PARTNERS = np.array(["p1", "p2", "p3"])
SLOTS = np.array(["1", "2", "3"])
MODEL = "ranker"
START = datetime(2026, 3, 2, tzinfo=timezone.utc)
DAYS = 6
ROLLOUT_DAY = 3
INCIDENTS = (
    dict(name="exploration_collapse", check="exploration", days=[1],
         description="Partner p3 stops exploring (epsilon 0.1 configured)."),
    dict(name="rollout_ctr_drop", check="rollout", days=[3, 4, 5],
         description="v7, rolled out to 50% on day 3, loses 20% of the clicks."),
    dict(name="slot1_overpredicted_by_v7", check="slot_calibration", days=[3, 4, 5],
         description="v7 over-predicts slot 1 by 30%."),
)


def simulate_logs(rng: np.random.Generator, start: datetime, hours: float, rows: int, candidate_share: float = 0.0,
                  candidate_lift: float = 1.0, candidate_overprediction: float = 1.0,
                  overpredicted_slot: str | None = None, epsilon: float = 0.1, collapsed_partner: str | None = None,
                  bad_propensity_share: float = 0.0, catalogue: int = 200):
    """`rows` impressions spread over [start, start + hours): v6 (control) and, on
    `candidate_share` of them, v7, whose true CTR is `candidate_lift` x v6's and whose prediction
    is `candidate_overprediction` x its truth (in `overpredicted_slot` only, when set)."""
    import pyarrow as pa

    ts = [start + timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, hours * 3600, rows))]
    x = rng.normal(0, 1, rows)
    slot = rng.choice(SLOTS, rows, p=[0.4, 0.35, 0.25])
    base = np.select([slot == "1", slot == "2"], [1.0, 0.6], 0.4) / (1 + np.exp(-(-2.6 + 0.4 * x)))
    candidate = rng.random(rows) < candidate_share
    truth = np.where(candidate, np.clip(base * candidate_lift, 0, 1), base)
    over = candidate & ((slot == overpredicted_slot) if overpredicted_slot else True)
    score = np.where(over, np.clip(truth * candidate_overprediction, 0, 1), truth)
    price = rng.choice(PRICES, rows, p=PRICE_WEIGHTS)
    click = (rng.random(rows) < truth).astype(np.int8)
    partner = rng.choice(PARTNERS, rows, p=[0.5, 0.3, 0.2])
    explore = (rng.random(rows) < epsilon) & (partner != collapsed_partner)
    greedy = np.minimum((np.abs(x) * 10).astype(int), 29)  # 30 popular offers chosen by context
    offer = np.where(explore, rng.integers(0, catalogue, rows), greedy)
    propensity = epsilon / catalogue + (1 - epsilon) * (offer == greedy)
    propensity = np.where(partner == collapsed_partner, 1.0, propensity)
    propensity = np.where(rng.random(rows) < bad_propensity_share, np.nan, propensity)
    return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "x": x, "score": score, "click": click,
                     "price": price, "model_version": np.where(candidate, "v7", "v6"), "partner": partner,
                     "explored": explore, "propensity": pa.array(propensity, from_pandas=True),
                     "offer_id": np.char.add("o", offer.astype(str)), "slot": slot})


def write_reference(rng: np.random.Generator, path: Path, catalogue: int = 200, rows: int = 20_000) -> None:
    """Clean v6 logs whose offers cover the whole catalogue (the exploration check's catalogue)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = simulate_logs(rng, START - timedelta(days=1), 24, rows, catalogue=catalogue).drop(["ts", "model_version"])
    table = table.set_column(table.schema.get_field_index("offer_id"), "offer_id",
                             pa.array([f"o{i}" for i in rng.integers(0, catalogue, rows)]))
    pq.write_table(table, path)


def ranking_config(root: Path, checks: dict) -> dict:
    return {
        "version": 1,
        "store": {"url": f"sqlite:///{root / 'store.db'}", "reports_dir": str(root / "reports")},
        "models": [{
            "name": MODEL,
            "reference": {"path": str(root / "reference.parquet")},
            "serving": {"path": str(root / "serving.parquet")},
            "schema": {"timestamp": "ts", "model_version": "model_version",
                       "features": [{"name": "x", "kind": "numeric"}],
                       "predictions": ["score"], "labels": [{"name": "click", "delay": "1h"}]},
            "checks": checks,
        }],
    }


def demo_checks(started: datetime) -> dict:
    return {"rollout": {"enabled": True, "control": "v6", "candidate": "v7", "stage": "50%",
                        "started": started.isoformat(), "price_column": "price"},
            "exploration": {"enabled": True, "epsilon": 0.1, "segments": ["partner"]},
            "slot_calibration": {"enabled": True}}


def build_world(root: Path, seed: int = 7, rows_per_day: int = 48_000) -> Path:
    """Write the ranking demo's logs, reference and config under root; return the config's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    days = []
    for day in range(DAYS):
        rolled_out = day >= ROLLOUT_DAY
        days.append(simulate_logs(rng, START + timedelta(days=day), 24, rows_per_day,
                                  candidate_share=0.5 if rolled_out else 0.0,
                                  candidate_lift=0.8 if rolled_out else 1.0,
                                  candidate_overprediction=1.3 if rolled_out else 1.0,
                                  overpredicted_slot="1", collapsed_partner="p3" if day == 1 else None))
    pq.write_table(pa.concat_tables(days), root / "serving.parquet")
    write_reference(rng, root / "reference.parquet")
    path = root / "driftline.yaml"
    path.write_text("# Generated by `driftline demo` (the ranking part).\n" + yaml.safe_dump(
        ranking_config(root, demo_checks(START + timedelta(days=ROLLOUT_DAY))), sort_keys=False))
    return path


def run_ranking_demo(root: Path, seed: int = 7, rows_per_day: int = 48_000,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Build the world, run the three ranking checks per day, and score the detection."""
    from monitor.config import load_config
    from monitor.runner import ModelRunner
    from monitor.store import ResultsStore

    progress = progress or (lambda message: None)
    progress(f"ranking demo world in {root}")
    config = load_config(build_world(Path(root), seed, rows_per_day))
    store = ResultsStore(config.store_url())
    by_day = {}
    try:
        runner = ModelRunner(config, config.models[0], store, progress,
                             clock=lambda: START + timedelta(days=DAYS + 1))
        for day in range(DAYS):
            start = START + timedelta(days=day)
            by_day[day] = runner.run(start, start + timedelta(days=1), report=False)
    finally:
        store.close()
    return summarise(by_day)


def summarise(by_day: dict[int, list]) -> dict:
    """Each incident: caught when its check alerts on one of its days; an alert by a check on a
    day without an incident of its own is a false alarm."""
    day_name = {d: (START + timedelta(days=d)).strftime("%Y-%m-%d") for d in by_day}
    incidents, false_alarms = [], []
    for incident in INCIDENTS:
        alerting = [d for d in incident["days"] if any(r.check == incident["check"] and r.status == "alert"
                                                        for r in by_day.get(d, []))]
        incidents.append({"name": incident["name"], "check": incident["check"],
                          "days": [day_name[d] for d in incident["days"] if d in day_name],
                          "detected": bool(alerting), "first_detected": day_name[alerting[0]] if alerting else None,
                          "what": _what(incident["check"], by_day, alerting)})
    for day, results in by_day.items():
        for result in results:
            planted = any(i["check"] == result.check and day in i["days"] for i in INCIDENTS)
            if result.status == "alert" and not planted:
                false_alarms.append({"day": day_name[day], "check": result.check})
    return {"model": MODEL, "incidents": incidents, "false_alarms": false_alarms}


def _what(check: str, by_day: dict[int, list], alerting: list[int]) -> str:
    """One line naming what the first alert found (the partner, the slot x version, the decision)."""
    if not alerting:
        return ""
    result = next(r for r in by_day[alerting[0]] if r.check == check)
    d = result.details
    if check == "exploration":
        return "collapsed: " + ", ".join(d.get("collapsed", []))
    if check == "rollout":
        return f"{d['decision']} {d['control']} -> {d['candidate']}: harmful {', '.join(d['harmful'])}"
    cells = [f"slot {c['slot']} {c['version']} ratio {c['calibration_ratio']:.2f}" for c in d.get("cells", [])
             if c["status"] == "alert" and c["version"]]
    return "; ".join(cells)
