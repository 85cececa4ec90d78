"""Detection benchmark: which check catches which planted incident, how often, how fast, and
how often it cries wolf on windows with no change — driftline next to Evidently's presets.

    python -m bench.detect --rows 100000 --null-windows 100 --replicates 3
    python -m bench.detect --rows 1000000 --null-windows 40 --replicates 1 --evidently-windows 0
    python -m bench.detect --label-scenarios [--nannyml-data DIR] --write

A simulated offer-ranking CTR stream (offers x OS with a known interaction, slots, cart
value, a context signal the model sees; the model's score is the true click probability of
the reference world) gives a reference the size of a window, null windows drawn from the
same world, and incidents of graded size, each lasting `--incident-windows` windows from its
onset: covariate shift (Android share), a flipped offer x OS interaction with unchanged
marginals, calibration decay (5/10/20/40%), and data-quality faults. One grade per family
is the size of the corresponding `driftline demo` incident.

Per check: false-alarm rate on null windows; per incident, detected replicates (alert in
any window) and the mean delay in windows (0 = caught in its first window). A check
"alerts" when its status is `alert`. Evidently runs its default presets (DataDriftPreset,
DataSummaryPreset, ClassificationPreset, each with its auto-generated tests against the
reference) on the same windows; it "alerts" when any test fails. Evidently is slow at 1M
rows, so `--evidently-windows` bounds how many null windows it sees and `--evidently-incidents
demo` shows it only the demo-size incidents (the first window of one replicate each).

`--label-scenarios` instead runs the label checks' scenarios (bench/_label_scenarios.py):
NannyML's synthetic binary classification (nannyml installed, or its CSVs under
`--nannyml-data`) and a generated equivalent (stable reference, 5,000-row windows, AUC drop
~0.011), and Elec2 (a model trained on the first weeks, weekly windows): windows caught and
false alarms for driftline's default (spread mode), its former static default, NannyML's
rule and Evidently's ClassificationPreset, written to its own block of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
OFFERS = tuple(f"offer-{i:02d}" for i in range(20))
OSES = ("android", "ios", "windows")
SLOTS = ("1", "2", "3", "4")
OS_SIGN = np.array([-1.0, 1.0, 0.0])
SLOT_EFFECT = np.array([0.4, 0.1, -0.2, -0.5])
BASE_OS = np.array([0.45, 0.35, 0.20])
INTERACTION = 0.9
CTR = 0.03

# (family, grade label, parameters); "demo" marks the size of the demo's incident.
SCENARIOS = [
    ("covariate_shift", "android 45%->50%", {"android": 0.50}),
    ("covariate_shift", "android 45%->55%", {"android": 0.55}),
    ("covariate_shift", "android 45%->70% (demo)", {"android": 0.70}),
    ("concept_flip", "offer x OS flipped for 1 offer", {"flip": 1}),
    ("concept_flip", "... for 3 offers", {"flip": 3}),
    ("concept_flip", "... for all 10 (demo)", {"flip": 10}),
    ("calibration_decay", "CTR x0.95", {"factor": 0.95}),
    ("calibration_decay", "CTR x0.90", {"factor": 0.90}),
    ("calibration_decay", "CTR x0.80", {"factor": 0.80}),
    ("calibration_decay", "CTR x0.60 (demo)", {"factor": 0.60}),
    ("quality", "10% nulls in cart_value", {"nulls": 0.10}),
    ("quality", "1% of cart_value x100", {"scale": 0.01}),
    ("quality", "all cart_value x100 (demo)", {"scale": 1.0}),
    ("quality", "2% unseen offer ids", {"unseen": 0.02}),
    ("quality", "1% duplicated rows", {"duplicates": 0.01}),
]
INTENDED = {"covariate_shift": "data_drift", "concept_flip": "concept_drift", "calibration_decay": "calibration",
            "quality": "data_quality"}
DRIFTLINE = ("data_drift", "prediction_drift", "data_quality", "calibration", "performance", "concept_drift")
EVIDENTLY = ("ev_data_drift", "ev_data_summary", "ev_classification")


# ------------------------------------------------------------------ the simulated stream


def _catalog():
    rng = np.random.default_rng(2024)
    effect = rng.normal(0.0, 0.3, len(OFFERS))
    favoured = np.zeros(len(OFFERS))
    favoured[:5], favoured[5:10] = 1.0, -1.0
    return np.log(CTR / (1 - CTR)) - 0.35, effect, favoured


def simulate(n: int, seed: int, id_offset: int, android: float = 0.45, flip: int = 0, factor: float = 1.0,
             nulls: float = 0.0, scale: float = 0.0, unseen: float = 0.0, duplicates: float = 0.0) -> dict:
    rng = np.random.default_rng(seed)
    base, effect, favoured = _catalog()
    os_p = np.r_[android, (1 - android) * BASE_OS[1:] / BASE_OS[1:].sum()]
    offer = rng.integers(0, len(OFFERS), n)
    os_ = rng.choice(3, n, p=os_p)
    slot = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    cart = rng.lognormal(np.log(60.0), 0.7, n)
    context = rng.normal(0.0, 0.8, n)
    interaction = INTERACTION * favoured[offer] * OS_SIGN[os_]
    logit = base + effect[offer] + SLOT_EFFECT[slot] + 0.3 * np.log(cart / 60.0) + context + interaction
    score = 1.0 / (1.0 + np.exp(-logit))
    flipped = np.isin(offer, _flip_order()[:flip]) if flip else False
    truth = factor / (1.0 + np.exp(-(logit - 2 * interaction * flipped)))
    click = (rng.random(n) < truth).astype(np.int8)
    ids = np.arange(id_offset, id_offset + n, dtype=np.int64)
    cart_served = cart.copy()
    if scale:
        cart_served[rng.random(n) < scale] *= 100.0
    if nulls:
        cart_served[rng.random(n) < nulls] = np.nan
    offer_codes = offer.copy()
    if unseen:
        offer_codes[rng.random(n) < unseen] = len(OFFERS)  # "offer-new"
    data = {"example_id": ids, "offer_id": offer_codes, "os": os_, "slot": slot, "cart_value": cart_served,
            "context": context, "score": score, "click": click}
    if duplicates:
        copy = rng.random(n) < duplicates
        target = np.flatnonzero(copy)
        source = rng.integers(0, n, len(target))
        for key in data:
            data[key][target] = data[key][source]
    return data


def _flip_order() -> np.ndarray:
    # Flip offers alternately from the iOS- and Android-favoured groups.
    return np.array([0, 5, 1, 6, 2, 7, 3, 8, 4, 9])


def _strings(codes: np.ndarray, names) -> pa.Array:
    return pc.cast(pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(list(names))), pa.string())


def to_table(data: dict) -> pa.Table:
    return pa.table({
        "example_id": pa.array(data["example_id"]),
        "offer_id": _strings(data["offer_id"], OFFERS + ("offer-new",)),
        "os": _strings(data["os"], OSES),
        "slot": _strings(data["slot"], SLOTS),
        "cart_value": pa.array(data["cart_value"], from_pandas=True),
        "context": pa.array(data["context"]),
        "score": pa.array(data["score"]),
        "click": pa.array(data["click"]),
    })


def to_rows(data: dict):
    from checks.labelled import Rows, Segment

    return Rows(data["score"].astype(np.float64), data["click"].astype(np.float64), {
        "offer_id": Segment(data["offer_id"].astype(np.int64), OFFERS + ("offer-new",)),
        "os": Segment(data["os"].astype(np.int64), OSES),
        "slot": Segment(data["slot"].astype(np.int64), SLOTS),
    })


# ------------------------------------------------------------------ the checks


FEATURES = {"offer_id": "categorical", "os": "categorical", "slot": "categorical", "cart_value": "numeric",
            "context": "numeric"}
SEGMENTS = ("offer_id", "os", "slot")


class Driftline:
    """Every driftline check fitted once on the reference, evaluated per window."""

    def __init__(self, reference: dict) -> None:
        from checks.calibration import CalibrationCheck
        from checks.concept import ConceptCheck
        from checks.drift import DriftCheck
        from checks.performance import PerformanceCheck
        from checks.quality import derive_suite
        from core.profile import build_spec, empty_profile, profile_table

        table = to_table(reference)
        kinds = dict(FEATURES, score="numeric")
        self.spec = build_spec(table.slice(0, 200_000), kinds)
        chunks = [profile_table(piece, self.spec) for piece in _slices(table, 10)]
        profile = empty_profile(self.spec)
        for chunk in chunks:
            profile = profile.merge(chunk)
        self.drift = DriftCheck(features=tuple(FEATURES), threshold_mode="learned").fit(profile, chunks)
        self.prediction = DriftCheck(name="prediction_drift", features=("score",),
                                     threshold_mode="learned").fit(profile, chunks)
        self.suite = derive_suite(table.slice(0, 200_000), FEATURES, "example_id", ["score"], ["click"])
        rows = to_rows(reference)
        learned = dict(segments=SEGMENTS, threshold_mode="learned")
        self.calibration = CalibrationCheck(**learned).fit(rows)
        self.performance = PerformanceCheck(**learned).fit(rows)
        self.concept = ConceptCheck(**learned).fit(rows)
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def run(self, data: dict, history: list) -> dict[str, str]:
        from checks.quality import validate_table
        from core.profile import profile_table

        out = {}
        table = to_table(data)
        began = time.perf_counter()
        profile = profile_table(table, self.spec)
        profiled = time.perf_counter() - began
        for name, check in (("data_drift", self.drift), ("prediction_drift", self.prediction)):
            began = time.perf_counter()
            out[name] = check.evaluate(profile).status
            self.seconds[name].append(time.perf_counter() - began + profiled / 2)
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["data_quality"] = validate_table(self.suite, table).status
        self.seconds["data_quality"].append(time.perf_counter() - began)
        rows = to_rows(data)
        for name, check in (("calibration", self.calibration), ("performance", self.performance)):
            began = time.perf_counter()
            out[name] = check.evaluate(rows).status
            self.seconds[name].append(time.perf_counter() - began)
        began = time.perf_counter()
        result = self.concept.evaluate(rows, history=history)
        history.append(result.details["loss_z"])
        out["concept_drift"] = result.status
        self.seconds["concept_drift"].append(time.perf_counter() - began)
        return out


def _slices(table: pa.Table, n: int):
    bounds = np.linspace(0, table.num_rows, n + 1).astype(int)
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


class Evidently:
    """Evidently's default presets with their auto-generated tests; alarm = any failed test."""

    def __init__(self, reference: dict) -> None:
        from evidently import BinaryClassification, DataDefinition, Dataset

        self.definition = DataDefinition(
            id_column="example_id", numerical_columns=["cart_value", "context", "score"],
            categorical_columns=["offer_id", "os", "slot"],
            classification=[BinaryClassification(target="click", prediction_probas="score")])
        self.reference = Dataset.from_pandas(to_table(reference).to_pandas(), data_definition=self.definition)
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def run(self, data: dict) -> dict[str, str]:
        from evidently import Dataset, Report
        from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset

        current = Dataset.from_pandas(to_table(data).to_pandas(), data_definition=self.definition)
        out = {}
        for name, preset in (("ev_data_drift", DataDriftPreset()), ("ev_data_summary", DataSummaryPreset()),
                             ("ev_classification", ClassificationPreset())):
            began = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                snapshot = Report([preset], include_tests=True).run(current, self.reference)
            failed = [t for t in snapshot.dict().get("tests", []) if str(t.get("status")).endswith("FAIL")]
            out[name] = "alert" if failed else "ok"
            self.seconds[name].append(time.perf_counter() - began)
        return out


# ------------------------------------------------------------------ the benchmark


def run(rows: int, null_windows: int, replicates: int, incident_windows: int, evidently_windows: int,
        evidently_incidents: str = "all", progress=print) -> dict:
    reference = simulate(rows, seed=1, id_offset=0)
    began = time.perf_counter()
    driftline = Driftline(reference)
    fit_seconds = time.perf_counter() - began
    evidently = Evidently(reference) if evidently_windows else None
    offset = rows
    counts: dict = {"null": defaultdict(int), "null_n": defaultdict(int)}
    history: list = []  # the concept check's loss series runs through the null windows first
    for w in range(null_windows):
        data = simulate(rows, seed=1000 + w, id_offset=offset)
        offset += rows
        for name, status in driftline.run(data, history).items():
            counts["null"][name] += status == "alert"
            counts["null_n"][name] += 1
        if evidently is not None and w < evidently_windows:
            for name, status in evidently.run(data).items():
                counts["null"][name] += status == "alert"
                counts["null_n"][name] += 1
        progress(f"{rows} rows: null window {w + 1}/{null_windows}")
    incidents = []
    for index, (family, grade, params) in enumerate(SCENARIOS):
        found: dict[str, list] = defaultdict(list)
        warns: dict[str, int] = defaultdict(int)  # replicates that warned but never alerted
        for r in range(replicates):
            series = list(history[-10:])
            first: dict[str, int | None] = {}
            warned: set[str] = set()
            for k in range(incident_windows):
                data = simulate(rows, seed=10_000 + 100 * index + 10 * r + k, id_offset=offset, **params)
                offset += rows
                statuses = driftline.run(data, series)
                if evidently is not None and r == 0 and k == 0 and (evidently_incidents == "all" or "(demo)" in grade):
                    statuses.update(evidently.run(data))
                for name, status in statuses.items():
                    first.setdefault(name, None)
                    if status == "alert" and first[name] is None:
                        first[name] = k
                    if status == "warn":
                        warned.add(name)
            for name, delay in first.items():
                found[name].append(delay)
                warns[name] += delay is None and name in warned
        incidents.append({"family": family, "grade": grade, "found": dict(found), "warned": dict(warns)})
        progress(f"{rows} rows: {family} {grade}")
    seconds = {**driftline.seconds, **(evidently.seconds if evidently else {})}
    return {"rows": rows, "null": counts, "incidents": incidents, "fit_seconds": fit_seconds,
            "seconds": {k: float(np.mean(v)) for k, v in seconds.items()}, "replicates": replicates,
            "incident_windows": incident_windows, "null_windows": null_windows}


def gx_cost(rows: int, samples=(100_000, 200_000)) -> list[dict]:
    """Great Expectations on a full window versus bounded samples: seconds, and whether a 0.5%
    out-of-range fault and 0.1% duplicated ids are still found."""
    from checks.quality import derive_suite, read_for_suite, validate_table

    reference = to_table(simulate(200_000, seed=1, id_offset=0))
    suite = derive_suite(reference, FEATURES, "example_id", ["score"], ["click"])
    out = []
    for fault, params in (("0.5% cart_value x100", {"scale": 0.005}), ("0.1% duplicated rows", {"duplicates": 0.001})):
        window = to_table(simulate(rows, seed=77, id_offset=10**9, **params))
        for bound in (rows, *samples):
            began = time.perf_counter()
            sample, total = read_for_suite(window.to_batches(max_chunksize=262_144), suite, bound, window.schema)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = validate_table(suite, sample, total)
            out.append({"fault": fault, "validated_rows": sample.num_rows, "seconds": time.perf_counter() - began,
                        "status": result.status})
    return out


def markdown(result: dict, evidently_windows: int, evidently_incidents: str = "all") -> str:
    rows = result["rows"]
    checks = [c for c in DRIFTLINE + EVIDENTLY if result["null"]["null_n"].get(c)]
    lines = [f"### {rows:,} rows per window", ""]
    seen = min(evidently_windows, result["null_windows"])
    lines.append(f"Null windows: {result['null_windows']} (Evidently: {seen}); "
                 f"incidents: {result['replicates']} replicate(s) x {result['incident_windows']} windows from onset "
                 f"(Evidently: the first window of one replicate, {evidently_incidents} incidents). "
                 "Cells: replicates alerted/replicates, mean delay in windows (0 = its first window), "
                 "(warn n): replicates that only warned; `-` not run; **bold**: the check meant for that incident.")
    lines.append("")
    lines.append("| incident | " + " | ".join(checks) + " |")
    lines.append("|---|" + "---|" * len(checks))
    null = result["null"]
    lines.append("| **false alarms on null windows** | " + " | ".join(
        f"{null['null'][c]}/{null['null_n'][c]} ({null['null'][c] / null['null_n'][c]:.1%})" for c in checks) + " |")
    for incident in result["incidents"]:
        cells = []
        for check in checks:
            delays = incident["found"].get(check)
            if not delays:
                cells.append("-")
                continue
            hits = [d for d in delays if d is not None]
            text = f"{len(hits)}/{len(delays)}"
            if hits:
                text += f", {np.mean(hits):.1f}"
            if incident["warned"].get(check):
                text += f" (warn {incident['warned'][check]})"
            if check == INTENDED[incident["family"]]:
                text = f"**{text}**"
            cells.append(text)
        lines.append(f"| {incident['family']}: {incident['grade']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Mean seconds per window: " + ", ".join(f"{k} {v:.2f}" for k, v in result["seconds"].items())
                 + f"; fitting every driftline check on the reference: {result['fit_seconds']:.1f} s.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--null-windows", type=int, default=50)
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--incident-windows", type=int, default=2)
    parser.add_argument("--evidently-windows", type=int, default=10, help="null windows Evidently sees (0: skip it)")
    parser.add_argument("--evidently-incidents", choices=("all", "demo"), default="all",
                        help="incidents Evidently sees (first window of the first replicate): all, or demo-size only")
    parser.add_argument("--gx-cost", action="store_true", help="also time GX on a full window vs samples")
    parser.add_argument("--write", action="store_true", help="append the tables to bench/RESULTS.md")
    parser.add_argument("--label-scenarios", action="store_true",
                        help="run the NannyML-style and Elec2 label scenarios instead of the simulated stream")
    parser.add_argument("--nannyml-data", default=None, help="folder with NannyML's synthetic_sample_*.csv files")
    args = parser.parse_args(argv)
    if args.label_scenarios:
        return label_scenarios(args.nannyml_data, args.write)
    sections = [f"## Detection benchmark (bench/detect.py) — {datetime.now(timezone.utc):%Y-%m-%d}", "",
                f"Machine: {platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'}), "
                f"Python {platform.python_version()}; command: `python -m bench.detect "
                f"{' '.join(argv if argv is not None else __import__('sys').argv[1:])}`.", ""]
    for rows in args.rows:
        result = run(rows, args.null_windows, args.replicates, args.incident_windows, args.evidently_windows,
                     args.evidently_incidents, progress=lambda m: print(m, flush=True))
        sections += [markdown(result, args.evidently_windows, args.evidently_incidents), ""]
        print(sections[-2], flush=True)
    if args.gx_cost:
        cost = gx_cost(max(args.rows))
        sections += ["### Great Expectations: full window or a bounded sample", "",
                     "| fault | validated rows | seconds | status |", "|---|---|---|---|"]
        sections += [f"| {c['fault']} | {c['validated_rows']:,} | {c['seconds']:.2f} | {c['status']} |" for c in cost]
        sections.append("")
        print("\n".join(sections[-len(cost) - 4:]), flush=True)
    if args.write:
        with RESULTS.open("a") as handle:
            handle.write("\n" + "\n".join(sections) + "\n")
    return 0


def label_scenarios(nannyml_data: str | None, write: bool) -> int:
    import subprocess

    from bench import _label_scenarios as scenarios
    from bench._results import read_block, write_block

    elec2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "elec2" / "elec_skmultiflow.csv"
    chosen = [scenarios.nannyml_scenario(nannyml_data), scenarios.planted_scenario(), scenarios.elec2_scenario(elec2)]
    missing = ["NannyML's data (nannyml not installed, no --nannyml-data)" if chosen[0] is None else None,
               f"Elec2 ({elec2} not found)" if chosen[2] is None else None]
    results = []
    for scenario in chosen:
        if scenario is not None:
            results.append(scenarios.judge(scenario))
            print(scenarios.markdown(results[-1:]), flush=True)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    body = "\n".join([
        f"## Label checks vs NannyML and Evidently: `python -m bench.detect --label-scenarios` — "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "",
        f"Machine: 2-core shared dev VM ({platform.machine()}, {os.cpu_count()} cores); `uptime` before the "
        f"write: {load}.", "",
        "A window counts as flagged when the check's status is `alert` (driftline: performance or calibration; "
        "Evidently: any failed test of ClassificationPreset). Not run: " + ("; ".join(m for m in missing if m) or "-")
        + ".", "", scenarios.markdown(results)])
    if write:
        start, end = "<!-- bench.detect labels: start -->", "<!-- bench.detect labels: end -->"
        before, _, after = read_block(start, end)
        write_block(start, end, before, body + "\n", after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
