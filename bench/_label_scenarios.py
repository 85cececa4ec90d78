"""Label-check scenarios for bench.detect: NannyML's synthetic binary classification and Elec2.

Each scenario gives a scored, labelled reference and a list of windows, each marked
`degraded` (True: the model really got worse there; False: stable; None: neither, not
counted). `judge` runs driftline's performance and calibration checks (the default, spread
mode, and the former default, static), NannyML's rule (the window's AUC below the mean
minus 3 std of the reference chunks' AUCs) and, when installed, Evidently's
ClassificationPreset with its auto-generated tests, and counts windows flagged (`alert`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

CHUNK = 5_000
NANNYML_FILES = ("synthetic_sample_reference.csv", "synthetic_sample_analysis.csv", "synthetic_sample_analysis_gt.csv")
# The planted world: a calibrated score sigmoid(BETA z) (AUC ~0.969, as NannyML's sample); degraded
# chunks draw labels from sigmoid(BETA (z + e)), e ~ N(0, LABEL_NOISE): the AUC drops by ~0.011.
BETA, LABEL_NOISE = 5.5, 0.21
NOTES = {  # what each scenario is, and what its last run showed (bench/RESULTS.md)
    "nannyml": (
        "NannyML 0.13.1's own CSVs (read from its wheel; nannyml itself is not installed): 50,000 reference "
        'rows, 10 analysis chunks of 5,000, the last 5 degraded as NannyML documents. The degraded chunk '
        'driftline only warns on has an AUC drop of 0.0079: 2.7 standard deviations (DeLong, window and '
        "reference), under the 3 of `spread_k`; NannyML's 3 population std of 10 chunk AUCs (0.0077) just "
        'includes it.'
    ),
    "planted": (
        "Generated like NannyML's sample (calibrated score, AUC 0.969, base rate 0.5, scores rounded to "
        '0.01): a 50,000-row reference, 50 null windows from the same world, 20 with labels drawn noisier '
        "(AUC drop ~0.011). NannyML's rule pays for its catch rate with 5 of 50 false alarms: 10 chunk AUCs "
        "estimate the std loosely, and the reference's own noise is ignored."
    ),
    "elec2": (
        "The truth is smoothed over the 4 weeks around a window: degraded when that block's AUC is below, or "
        'its log loss above, every 4-week block of the reference (weeks 4-19); clearly degraded by 0.1 AUC or'
        " 20% log loss more. Elec2's weekly AUC varies by ~0.12 inside the reference (labels come in long "
        "runs), so the spread mode's AUC band is ~0.36 wide and it flags mostly through log loss and "
        'calibration; the static tolerances catch more and cry wolf on 2 of the 8 stable weeks, Evidently on '
        '6.'
    ),
}


def planted_world(n: int, seed: int, label_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(scores, labels): scores rounded to 0.01 like NannyML's y_pred_proba; base rate 0.5."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, n)
    scores = np.round(1.0 / (1.0 + np.exp(-BETA * z)), 2)
    noise = rng.normal(0.0, label_noise, n) if label_noise else 0.0
    truth = 1.0 / (1.0 + np.exp(-BETA * (z + noise)))
    return scores, (rng.random(n) < truth).astype(np.float64)


def planted_scenario(null_windows: int = 50, degraded_windows: int = 20, seed: int = 0) -> dict:
    """A stable 50,000-row reference (10 chunks of 5,000), null and degraded 5,000-row windows."""
    reference = planted_world(10 * CHUNK, seed)
    windows = [(planted_world(CHUNK, seed + 1000 + i), False) for i in range(null_windows)]
    windows += [(planted_world(CHUNK, seed + 5000 + i, LABEL_NOISE), True) for i in range(degraded_windows)]
    return {"name": "NannyML-style, generated (AUC drop ~0.011)", "reference": reference, "windows": windows,
            "note": NOTES["planted"]}


def nannyml_scenario(data_dir: str | None = None) -> dict | None:
    """NannyML's own synthetic binary classification data (nannyml installed, or its CSVs in data_dir)."""
    import pandas as pd

    try:
        import nannyml

        reference, analysis, truth = nannyml.load_synthetic_binary_classification_dataset()
    except ImportError:
        if not data_dir or not all((Path(data_dir) / f).is_file() for f in NANNYML_FILES):
            return None
        reference, analysis, truth = (pd.read_csv(Path(data_dir) / f) for f in NANNYML_FILES)
    analysis = analysis.merge(truth, on="id")

    def pair(frame):
        return frame["y_pred_proba"].to_numpy(np.float64), frame["work_home_actual"].to_numpy(np.float64)

    # NannyML's documented outcome: the last 5 of the 10 analysis chunks are degraded.
    windows = [(pair(chunk), i >= 5) for i, chunk in enumerate(np.array_split(analysis, 10))]
    return {"name": "NannyML synthetic binary classification (its data)", "reference": pair(reference),
            "windows": windows, "note": NOTES["nannyml"]}


def elec2_scenario(path: Path) -> dict | None:
    """Elec2: LightGBM trained on weeks 0-3, reference weeks 4-19 (16 weekly chunks), then weekly windows.

    The truth is smoothed over the 4 weeks around a window (weeks w-1..w+2), so one noisy week
    does not define itself: `degraded` when that block's AUC is below, or its log loss above,
    every 4-week block of the reference (the model is worse than it ever was in the reference),
    `clear` when by 0.1 AUC or 20% log loss more; `stable` otherwise.
    """
    if not path.is_file():
        return None
    import lightgbm as lgb
    import pandas as pd

    from checks import metrics

    frame = pd.read_csv(path)
    features = ["period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
    week = np.arange(len(frame)) // (48 * 7)
    train = frame[week < 4]
    booster = lgb.train(dict(objective="binary", num_leaves=15, min_data_in_leaf=20, num_threads=2,
                             deterministic=True, force_row_wise=True, seed=0, verbose=-1),
                        lgb.Dataset(train[features], train["class"]), num_boost_round=100)
    scores = booster.predict(frame[features], num_threads=2)
    labels = frame["class"].to_numpy(np.float64)
    in_reference = (week >= 4) & (week < 20)

    def block(w):
        mask = (week >= w - 1) & (week <= w + 2)
        return metrics.auc(labels[mask], scores[mask]), metrics.log_loss(labels[mask], scores[mask])

    normal = [block(w) for w in range(5, 18)]  # the 4-week blocks inside the reference
    worst_auc, worst_loss = min(a for a, _ in normal), max(loss for _, loss in normal)
    windows = []
    for w in range(20, int(week.max()) - 2):  # whole weeks with a whole block around them
        auc, loss = block(w)
        mask = week == w
        clear = auc < worst_auc - 0.1 or loss > 1.2 * worst_loss
        windows.append(((scores[mask], labels[mask]), "clear" if clear else auc < worst_auc or loss > worst_loss))
    return {"name": "Elec2 weekly windows (LightGBM trained on weeks 0-3)",
            "reference": (scores[in_reference], labels[in_reference]), "windows": windows, "min_rows": 100,
            "note": NOTES["elec2"]}


def judge(scenario: dict, evidently: bool = True) -> dict:
    """Windows flagged per detector, among degraded and among stable windows."""
    from checks.calibration import CalibrationCheck
    from checks.labelled import Rows
    from checks.performance import PerformanceCheck

    ref_scores, ref_labels = scenario["reference"]
    reference = Rows(ref_scores, ref_labels)
    small = dict(min_rows=scenario.get("min_rows", 500), min_positives=10)
    checks = {
        "driftline default (spread)": [PerformanceCheck(**small).fit(reference),
                                       CalibrationCheck(**small).fit(reference)],
        "driftline static": [PerformanceCheck(threshold_mode="static", **small).fit(reference),
                             CalibrationCheck(threshold_mode="static", **small).fit(reference)],
    }
    n = int(np.median([len(s) for (s, _), _ in scenario["windows"]]))
    nanny = nannyml_rule(ref_scores, ref_labels, n)
    ev = _evidently(reference) if evidently else None
    counts = {}
    modes = set()
    for (scores, labels), degraded in scenario["windows"]:
        if degraded is None:
            continue
        window = Rows(scores, labels)
        flags = {}
        for name, fitted in checks.items():
            results = [f.evaluate(window) for f in fitted]
            flags[name] = any(r.status == "alert" for r in results)
            if name.endswith("(spread)"):
                modes.update(r.details.get("threshold_mode") for r in results)
        flags["NannyML rule (ref mean - 3 std)"] = nanny(scores, labels)
        if ev is not None:
            flags["Evidently ClassificationPreset"] = ev(window)
        keys = ["degraded", "clear"] if degraded == "clear" else ["degraded" if degraded else "stable"]
        for name, flagged in flags.items():
            for key in keys:
                caught = counts.setdefault(name, {"degraded": [0, 0], "clear": [0, 0], "stable": [0, 0]})[key]
                caught[0] += flagged
                caught[1] += 1
    return {"name": scenario["name"], "note": scenario.get("note", ""), "counts": counts, "window_rows": n,
            "modes": sorted(m for m in modes if m)}


def nannyml_rule(ref_scores: np.ndarray, ref_labels: np.ndarray, chunk: int):
    """NannyML's realized-performance threshold: AUC below mean - 3 std of reference chunk AUCs."""
    from checks import metrics

    parts = max(len(ref_scores) // chunk, 2)
    aucs = [metrics.auc(y, s) for s, y in zip(np.array_split(ref_scores, parts), np.array_split(ref_labels, parts))]
    aucs = [a for a in aucs if a is not None]
    lower = float(np.mean(aucs) - 3 * np.std(aucs))
    return lambda scores, labels: (metrics.auc(labels, scores) or 1.0) < lower


def _evidently(reference):
    try:
        from evidently import BinaryClassification, DataDefinition, Dataset, Report
        from evidently.presets import ClassificationPreset
    except ImportError:
        return None
    import pandas as pd

    definition = DataDefinition(classification=[BinaryClassification(target="label", prediction_probas="score")],
                                numerical_columns=["score"])

    def dataset(rows):
        frame = pd.DataFrame({"score": rows.scores, "label": rows.labels.astype(int)})
        return Dataset.from_pandas(frame, data_definition=definition)

    ref = dataset(reference)

    def run(window) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = Report([ClassificationPreset()], include_tests=True).run(dataset(window), ref)
        return any(str(t.get("status")).endswith("FAIL") for t in snapshot.dict().get("tests", []))

    return run


def markdown(results: list[dict]) -> str:
    lines = []
    for result in results:
        lines += [f"#### {result['name']}", "", result["note"], "",
                  f"Windows of ~{result['window_rows']:,} rows; driftline's default ran as: "
                  f"{'; '.join(result['modes']) or '-'}. Cells: windows alerted / windows.", "",
                  "| detector | degraded windows caught | of which clearly degraded | false alarms on stable windows |",
                  "|---|---|---|---|"]
        for name, c in result["counts"].items():
            (hit, deg), (clear_hit, clear), (fa, st) = c["degraded"], c["clear"], c["stable"]
            lines.append(f"| {name} | {hit}/{deg} | {f'{clear_hit}/{clear}' if clear else '-'} | {fa}/{st} |")
        lines.append("")
    return "\n".join(lines)
