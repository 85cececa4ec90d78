"""Page-Hinkley change detection on a per-window series (here: the standardised loss gap).

Own implementation rather than river's `drift.PageHinkley`: the detector runs over the
series of stored per-window results each time a window is judged, so it must be a pure
function of that series (re-running a window gives the same answer; no detector state
to persist or pickle), and the whole algorithm is the dozen lines below. river would add
a large dependency for it. The update follows river's (and Mouss et al. 2004): running
mean, cumulative deviation minus the allowed drift `delta`, alarm when the cumulative sum
rises more than `threshold` above its minimum; the detector restarts after an alarm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PageHinkleyResult:
    detections: tuple[int, ...]  # indices of the series at which a change was signalled
    statistic: float             # cumulative sum minus its minimum after the last value
    threshold: float
    delta: float
    length: int

    @property
    def detected_last(self) -> bool:
        return bool(self.detections) and self.detections[-1] == self.length - 1

    def to_dict(self) -> dict:
        return {"detections": list(self.detections), "statistic": self.statistic, "threshold": self.threshold,
                "delta": self.delta, "series_length": self.length, "detected": self.detected_last}


def page_hinkley(series, delta: float = 0.5, threshold: float = 8.0, min_instances: int = 1) -> PageHinkleyResult:
    """Detect increases of the series' mean; NaN values are skipped."""
    detections: list[int] = []
    count, mean, cumulative, minimum = 0, 0.0, 0.0, 0.0
    values = list(series)
    for index, value in enumerate(values):
        if value is None or not math.isfinite(value):
            continue
        count += 1
        mean += (value - mean) / count
        cumulative += value - mean - delta
        minimum = min(minimum, cumulative)
        if count >= min_instances and cumulative - minimum > threshold:
            detections.append(index)
            count, mean, cumulative, minimum = 0, 0.0, 0.0, 0.0
    return PageHinkleyResult(tuple(detections), cumulative - minimum, threshold, delta, len(values))
