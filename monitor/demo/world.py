"""A seeded "demo world": confirmation-page offer ranking with known ground truth.

Impressions are drawn from fixed feature distributions; clicks and conversions come
from a known logistic model with an offer x OS interaction. A LightGBM CTR model is
trained on the history, then serving days are logged as hourly hive partitions with
the model's score, and incidents are planted on known days (see ``INCIDENTS``).

Randomness is split into independent streams per (seed, purpose, day), so a clean
serving day is drawn from exactly the same distribution as any history day, and the
same seed always gives the same values.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CODE_VERSION = "demo-world/3"  # 2: training examples of the served events; 3: price rise on the last day, a smaller model
MODEL_VERSION = "lgbm-v1"
SERVING_START = datetime(2024, 6, 3, tzinfo=timezone.utc)  # a Monday
NUMERIC_FEATURES = ("cart_value", "offer_price", "hour_of_day", "user_tenure_days")
CATEGORICAL_FEATURES = ("device", "os", "partner", "vertical", "offer_id", "slot", "user_segment")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES  # column order of the model matrix

DEVICES = ("mobile", "desktop", "tablet")
DEVICE_P = np.array([0.45, 0.40, 0.15])
DEVICE_P_SHIFTED = np.array([0.80, 0.13, 0.07])
OSES = ("android", "ios", "windows", "macos", "linux")
OS_GIVEN_DEVICE = np.array([
    [0.60, 0.40, 0.00, 0.00, 0.00],  # mobile
    [0.00, 0.00, 0.65, 0.25, 0.10],  # desktop
    [0.40, 0.60, 0.00, 0.00, 0.00],  # tablet
])
PARTNERS = tuple(f"partner-{i:02d}" for i in range(1, 21))
PARTNER_P = 1.0 / np.arange(1, 21) ** 1.1
VERTICALS = ("travel", "fashion", "electronics", "home", "beauty", "sports", "groceries", "finance")
VERTICAL_PRICE = np.array([120.0, 40.0, 90.0, 50.0, 25.0, 45.0, 15.0, 10.0])  # median EUR
N_OFFERS = 40
OFFERS = tuple(f"offer-{i:02d}" for i in range(N_OFFERS))
SLOTS = ("1", "2", "3", "4")
SLOT_P = np.array([0.40, 0.30, 0.20, 0.10])
SEGMENTS = ("new", "returning", "loyal")
SEGMENT_P = np.array([0.35, 0.45, 0.20])
# Relative traffic per hour of day (UTC): quiet nights, a lunch bump, an evening peak.
TRAFFIC = np.array([0.35, 0.25, 0.20, 0.18, 0.18, 0.22, 0.35, 0.55, 0.75, 0.85, 0.90, 0.95,
                    1.00, 0.95, 0.90, 0.90, 0.95, 1.00, 1.10, 1.20, 1.25, 1.10, 0.80, 0.55])
TENURE_NULL_RATE = 0.03

# Ground-truth label model (logit scale).
BASE_LOGIT = float(np.log(0.021 / 0.979))
SLOT_EFFECT = np.array([0.5, 0.1, -0.3, -0.6])
DEVICE_EFFECT = np.array([0.1, 0.0, -0.1])
SEGMENT_EFFECT = np.array([-0.2, 0.0, 0.3])
OS_SIGN = np.array([-1.0, 1.0, 0.0, 0.0, 0.0])  # android -1, ios +1, desktop OSes neutral
INTERACTION = 0.9  # offers favoured on ios get +0.9 there and -0.9 on android (and v.v.)
N_INTERACTION_OFFERS = 8  # per direction
CONV_LOGIT = float(np.log(0.14 / 0.86))
CONV_SEGMENT_EFFECT = np.array([-0.2, 0.0, 0.4])
CALIBRATION_CTR_FACTOR = 0.6
PRICE_RISE_FACTOR = 1.3

INCIDENTS = (
    dict(name="device_mix_shift", kind="data_drift", day_index=1, features=["device", "os"],
         description="Mobile share jumps from 45% to 80%; os follows device."),
    dict(name="train_serve_skew", kind="skew", day_index=3,
         features=["cart_value", "user_tenure_days"],
         description="cart_value is served in cents (x100) and user_tenure_days is missing "
                     "(all null); the logged score is computed on the served values."),
    dict(name="concept_drift", kind="concept_drift", day_index=4, features=["offer_id", "os"],
         description="The offer x OS interaction flips sign in the true label model; "
                     "features and logged scores are distributed as before."),
    dict(name="calibration_decay", kind="calibration", day_index=5, features=[],
         description=f"True CTR falls to {CALIBRATION_CTR_FACTOR:g}x with features unchanged."),
    # The week ends on an incident still open, so the latest window of every schedule (what
    # /metrics and the dashboards show first) has something to show.
    dict(name="price_rise", kind="data_drift", day_index=6, features=["offer_price"],
         description=f"A catalogue repricing raises every offer's price {PRICE_RISE_FACTOR:g}x; clicks and "
                     "conversions respond to the new prices as the true label model says."),
)

# One thread: the same model as with two (deterministic), about as fast on this data, and
# OpenMP's busy-waiting makes two threads on a busy 2-core machine several times slower.
# 75 trees at rate 0.15 rank held-out days as well as 150 at 0.08 (AUC 0.667 both) and halve
# the time of training and of every prediction the demo's checks make (SHAP, permutations, skew).
_LGB_PARAMS = dict(objective="binary", learning_rate=0.15, num_leaves=31, min_data_in_leaf=200,
                   min_data_per_group=100, cat_smooth=10.0, lambda_l2=1.0, num_threads=1,
                   deterministic=True, force_row_wise=True, verbose=-1)
_NUM_TREES = 75
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR


@dataclass(frozen=True)
class World:
    root: Path
    reference_path: Path
    serving_path: Path
    model_path: Path
    ground_truth_path: Path
    serving_start: datetime
    serving_days: int
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    seed: int = 7
    training_examples_path: Path | None = None  # the served events as the offline pipeline computes them

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.root / "world.json").read_text())

    def ground_truth(self) -> dict[str, Any]:
        return json.loads(self.ground_truth_path.read_text())

    def incidents(self) -> list[dict]:
        return self.ground_truth()["incidents"]

    def clean_days(self) -> list[str]:
        return self.ground_truth()["clean_days"]

    def serving_day(self, day_index: int) -> str:
        return (self.serving_start + timedelta(days=day_index)).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class _Catalog:
    offer_vertical: np.ndarray  # vertical code per offer
    offer_price: np.ndarray     # list price per offer
    offer_p: np.ndarray         # impression share per offer
    offer_effect: np.ndarray    # main effect on the click logit
    offer_os: np.ndarray        # +1 favoured on ios, -1 on android, 0 neutral


def _rng(seed: int, stream: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, day])


def _catalog(seed: int) -> _Catalog:
    rng = _rng(seed, 0)
    vertical = np.arange(N_OFFERS) % len(VERTICALS)
    price = np.round(VERTICAL_PRICE[vertical] * rng.lognormal(0.0, 0.4, N_OFFERS), 2)
    share = rng.dirichlet(np.full(N_OFFERS, 3.0))
    effect = rng.normal(0.0, 0.25, N_OFFERS)
    offer_os = np.zeros(N_OFFERS)
    chosen = rng.permutation(N_OFFERS)[: 2 * N_INTERACTION_OFFERS]
    offer_os[chosen[:N_INTERACTION_OFFERS]] = 1.0
    offer_os[chosen[N_INTERACTION_OFFERS:]] = -1.0
    return _Catalog(vertical, price, share, effect, offer_os)


def _conditional_choice(rng: np.random.Generator, given: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Draw one category per row from ``table[given]`` (rows of probabilities)."""
    cdf = np.cumsum(table, axis=1)[given]
    u = rng.random(len(given))[:, None]
    return np.minimum((u >= cdf).sum(axis=1), table.shape[1] - 1)


def _simulate_day(seed: int, day: int, n: int, start_us: int, cat: _Catalog,
                  incident: str | None) -> dict[str, np.ndarray]:
    """One day of impressions and labels; ``day`` is the global day index of the world."""
    rng = _rng(seed, 1, day)
    dev_p = DEVICE_P_SHIFTED if incident == "device_mix_shift" else DEVICE_P
    device = rng.choice(len(DEVICES), n, p=dev_p)
    os_ = _conditional_choice(rng, device, OS_GIVEN_DEVICE)
    partner = rng.choice(len(PARTNERS), n, p=PARTNER_P / PARTNER_P.sum())
    offer = rng.choice(N_OFFERS, n, p=cat.offer_p)
    slot = rng.choice(len(SLOTS), n, p=SLOT_P)
    segment = rng.choice(len(SEGMENTS), n, p=SEGMENT_P)
    cart = np.round(rng.lognormal(np.log(60.0) + np.array([-0.15, 0.0, 0.2])[segment], 0.7), 2)
    list_price = cat.offer_price[offer] * (PRICE_RISE_FACTOR if incident == "price_rise" else 1.0)
    price = np.round(list_price * (1.0 + rng.normal(0.0, 0.02, n)), 2)
    hour = rng.choice(24, n, p=TRAFFIC / TRAFFIC.sum())
    tenure = np.floor(np.select(
        [segment == 0, segment == 1],
        [rng.exponential(10.0, n), rng.gamma(2.0, 120.0, n)],
        rng.gamma(3.0, 300.0, n)))
    tenure[rng.random(n) < TENURE_NULL_RATE] = np.nan
    ts = start_us + hour * _US_PER_HOUR + rng.integers(0, _US_PER_HOUR, n)

    # True labels use the true feature values, whatever is served later.
    lab = _rng(seed, 2, day)
    flip = -1.0 if incident == "concept_drift" else 1.0
    z = (BASE_LOGIT + SLOT_EFFECT[slot] + DEVICE_EFFECT[device] + SEGMENT_EFFECT[segment]
         + 0.25 * np.log(cart / 60.0) - 0.25 * np.log(price / 40.0)
         + 0.15 * np.cos(2 * np.pi * (hour - 21) / 24) + cat.offer_effect[offer]
         + flip * INTERACTION * cat.offer_os[offer] * OS_SIGN[os_])
    p_click = 1.0 / (1.0 + np.exp(-z))
    if incident == "calibration_decay":
        p_click *= CALIBRATION_CTR_FACTOR
    click = lab.random(n) < p_click
    zc = CONV_LOGIT + CONV_SEGMENT_EFFECT[segment] - 0.3 * np.log(price / 40.0)
    conversion = click & (lab.random(n) < 1.0 / (1.0 + np.exp(-zc)))
    label_delay = np.minimum(lab.lognormal(np.log(3.0), 0.5, n), 48.0) * _US_PER_HOUR

    order = np.argsort(ts, kind="stable")
    cols = dict(ts=ts, device=device, os=os_, partner=partner, vertical=cat.offer_vertical[offer],
                offer_id=offer, slot=slot, user_segment=segment, cart_value=cart,
                offer_price=price, hour_of_day=hour.astype(np.float64), user_tenure_days=tenure,
                click=click.astype(np.int8), conversion=conversion.astype(np.int8),
                label_ts=ts + label_delay.astype(np.int64))
    return {k: v[order] for k, v in cols.items()}


def _serve(cols: dict[str, np.ndarray], incident: str | None) -> dict[str, np.ndarray]:
    """Apply serving-time corruption (labels were already drawn from the true values)."""
    if incident == "train_serve_skew":
        cols = dict(cols, cart_value=cols["cart_value"] * 100.0,
                    user_tenure_days=np.full(len(cols["ts"]), np.nan))
    return cols


def _vocabulary() -> dict[str, list[str]]:
    return dict(device=list(DEVICES), os=list(OSES), partner=list(PARTNERS),
                vertical=list(VERTICALS), offer_id=list(OFFERS), slot=list(SLOTS),
                user_segment=list(SEGMENTS))


def _matrix(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Model input: numerics as is, categoricals as vocabulary codes (NaN if unknown)."""
    return np.column_stack([np.asarray(cols[f], dtype=np.float64) for f in FEATURES])


def _table(cols: dict[str, np.ndarray], day: int, vocab: dict[str, list[str]],
           extra: dict[str, pa.Array] | None = None) -> pa.Table:
    n = len(cols["ts"])
    idx = pc.utf8_lpad(pa.array(np.arange(n)).cast(pa.string()), width=7, padding="0")
    ids = pc.binary_join_element_wise(f"ex-{day:03d}-", idx, "")
    ts_type = pa.timestamp("us", tz="UTC")
    data: dict[str, pa.Array] = {"example_id": ids, "ts": pa.array(cols["ts"], ts_type)}
    for f in CATEGORICAL_FEATURES:
        dictionary = pa.array(vocab[f], pa.string())
        data[f] = dictionary.take(pa.array(cols[f], pa.int32()))
    for f in NUMERIC_FEATURES:
        data[f] = pa.array(cols[f], pa.float64(), from_pandas=True)  # NaN -> null
    data["click"] = pa.array(cols["click"], pa.int8())
    data["conversion"] = pa.array(cols["conversion"], pa.int8())
    if extra:
        data.update(extra)
        data["label_ts"] = pa.array(cols["label_ts"], ts_type)
    return pa.table(data)


def _train(cols: dict[str, np.ndarray], seed: int, model_path: Path) -> None:
    import lightgbm as lgb

    cat_idx = [FEATURES.index(f) for f in CATEGORICAL_FEATURES]
    ds = lgb.Dataset(_matrix(cols), label=cols["click"], feature_name=list(FEATURES),
                     categorical_feature=cat_idx, params=dict(verbose=-1))
    booster = lgb.train(dict(_LGB_PARAMS, seed=seed), ds, num_boost_round=_NUM_TREES)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_path))


_BOOSTERS: dict[tuple[str, int, int], Any] = {}  # one loaded model, keyed by file version


def _booster(model_path: Path):
    import lightgbm as lgb

    st = model_path.stat()
    key = (str(model_path), st.st_mtime_ns, st.st_size)
    if key not in _BOOSTERS:
        _BOOSTERS.clear()
        _BOOSTERS[key] = lgb.Booster(model_file=str(model_path))
    return _BOOSTERS[key]


def _predict(model_path: Path, cols: dict[str, np.ndarray]) -> np.ndarray:
    return _booster(model_path).predict(_matrix(cols), num_threads=2)


def score_frame(world: World, df) -> np.ndarray:
    """Score a frame exactly as the serving logs were scored (same codes, same model)."""
    import pandas as pd

    vocab = world.manifest()["vocabulary"]
    cols: dict[str, np.ndarray] = {f: df[f].to_numpy(dtype=np.float64, na_value=np.nan)
                                   for f in world.numeric_features}
    for f in world.categorical_features:
        codes = pd.Categorical(df[f].astype("string"), categories=vocab[f]).codes
        cols[f] = np.where(codes < 0, np.nan, codes.astype(np.float64))
    return _predict(world.model_path, cols)


def _paths(root: Path) -> dict[str, Path]:
    return dict(reference_path=root / "reference" / "history.parquet",
                serving_path=root / "serving", model_path=root / "model" / "model.txt",
                ground_truth_path=root / "ground_truth.json",
                training_examples_path=root / "training_examples")


def generate_world(root: Path, seed: int = 7, rows_per_day: int = 20_000,
                   history_days: int = 14, serving_days: int = 7) -> World:
    """Simulate history, train the model, write serving logs and ground truth under root."""
    root = Path(root)
    paths = _paths(root)
    (root / "world.json").unlink(missing_ok=True)  # written last: no manifest = incomplete
    for sub in ("reference", "serving", "model", "training_examples"):
        shutil.rmtree(root / sub, ignore_errors=True)
    paths["reference_path"].parent.mkdir(parents=True)
    cat = _catalog(seed)
    vocab = _vocabulary()
    start_us = int(SERVING_START.timestamp()) * 1_000_000

    days = [_simulate_day(seed, d, rows_per_day, start_us + (d - history_days) * _US_PER_DAY,
                          cat, None) for d in range(history_days)]
    pq.write_table(pa.concat_tables(_table(c, d, vocab) for d, c in enumerate(days)),
                   paths["reference_path"])
    history = {k: np.concatenate([c[k] for c in days]) for k in days[0]}
    del days
    _train(history, seed, paths["model_path"])

    by_day = {i["day_index"]: i["name"] for i in INCIDENTS}
    for s in range(serving_days):
        incident = by_day.get(s)
        true_cols = _simulate_day(seed, history_days + s, rows_per_day, start_us + s * _US_PER_DAY, cat, incident)
        cols = _serve(true_cols, incident)
        n = len(cols["ts"])
        table = _table(cols, history_days + s, vocab, extra=dict(
            score=pa.array(_predict(paths["model_path"], cols), pa.float64()),
            model_version=pa.array(np.full(n, MODEL_VERSION), pa.string())))
        bounds = np.searchsorted(cols["hour_of_day"], np.arange(25), side="left")
        dt = (SERVING_START + timedelta(days=s)).strftime("%Y-%m-%d")
        for h in range(24):
            part = paths["serving_path"] / f"dt={dt}" / f"hour={h:02d}"
            part.mkdir(parents=True)
            pq.write_table(table.slice(bounds[h], bounds[h + 1] - bounds[h]),
                           part / "part-0.parquet")
        # Training examples for the same events (same example ids and partitions), with the
        # feature values the offline pipeline computes: the true ones, whatever was served.
        examples = _table(true_cols, history_days + s, vocab)
        for h in range(24):
            part = paths["training_examples_path"] / f"dt={dt}" / f"hour={h:02d}"
            part.mkdir(parents=True)
            pq.write_table(examples.slice(bounds[h], bounds[h + 1] - bounds[h]), part / "part-0.parquet")

    def day_str(i: int) -> str:
        return (SERVING_START + timedelta(days=i)).strftime("%Y-%m-%d")

    incidents = [dict(name=i["name"], kind=i["kind"], day=day_str(i["day_index"]),
                      day_index=i["day_index"], features=list(i["features"]),
                      description=i["description"])
                 for i in INCIDENTS if i["day_index"] < serving_days]
    truth = dict(
        seed=seed, serving_start=SERVING_START.isoformat(), incidents=incidents,
        clean_days=[day_str(s) for s in range(serving_days) if s not in by_day],
        interaction_offers=dict(
            ios_favoured=[OFFERS[i] for i in np.flatnonzero(cat.offer_os > 0)],
            android_favoured=[OFFERS[i] for i in np.flatnonzero(cat.offer_os < 0)]),
        offer_prices={OFFERS[i]: float(cat.offer_price[i]) for i in range(N_OFFERS)})
    paths["ground_truth_path"].write_text(json.dumps(truth, indent=2))
    manifest = dict(code_version=CODE_VERSION, seed=seed,
                    params=dict(rows_per_day=rows_per_day, history_days=history_days,
                                serving_days=serving_days),
                    serving_start=SERVING_START.isoformat(), model_version=MODEL_VERSION,
                    numeric_features=list(NUMERIC_FEATURES),
                    categorical_features=list(CATEGORICAL_FEATURES), vocabulary=vocab)
    tmp = root / "world.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, root / "world.json")
    return load_world(root)


def load_world(root: Path) -> World:
    """Open a generated world; FileNotFoundError if root has no world.json manifest."""
    root = Path(root)
    m = json.loads((root / "world.json").read_text())
    return World(root=root, **_paths(root),
                 serving_start=datetime.fromisoformat(m["serving_start"]),
                 serving_days=m["params"]["serving_days"],
                 numeric_features=tuple(m["numeric_features"]),
                 categorical_features=tuple(m["categorical_features"]), seed=m["seed"])


def ensure_world(root: Path, seed: int = 7, **kw) -> World:
    """Reuse the world under root if it was generated with the same parameters."""
    params = dict(rows_per_day=20_000, history_days=14, serving_days=7)
    unknown = set(kw) - set(params)
    if unknown:
        raise TypeError(f"unknown parameters {sorted(unknown)}; known: {sorted(params)}")
    params.update(kw)
    try:
        world = load_world(root)
        m = world.manifest()
        if (m["code_version"] == CODE_VERSION and m["seed"] == seed and m["params"] == params
                and all(p.exists() for p in _paths(Path(root)).values())):
            return world
    except (FileNotFoundError, KeyError, ValueError):
        pass
    return generate_world(root, seed=seed, **params)
