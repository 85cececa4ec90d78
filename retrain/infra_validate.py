"""InfraValidator: load the saved artifact in a fresh process and score a sample of serving logs.

A model that trains and evaluates in memory can still fail where it is served: a file
missing from the artifact, a class that only exists in the training process, a
vocabulary that breaks on serving data. So the candidate's directory is loaded by a new
Python process (`python -m retrain.infra_validate DIR SAMPLE OUT`), which scores the
sample; the scores must be finite probabilities, one per row, and equal to the scores
the training process computed for the same rows.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = 1
INFRA_TMP = "driftline-infra-"


@dataclass(frozen=True)
class InfraResult:
    passed: bool
    rows: int
    seconds: float
    message: str = ""
    max_abs_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.__dict__}


def infra_validate(artifact: Path, sample: pd.DataFrame, expected: np.ndarray | None = None,
                   tolerance: float = 1e-9, timeout: float = 300.0) -> InfraResult:
    """Score `sample` with the artifact in a subprocess; compare with `expected` if given."""
    started = time.perf_counter()
    from retrain.registry import owner_token

    with tempfile.TemporaryDirectory(prefix=f"{INFRA_TMP}{owner_token()}-") as tmp:
        sample_path, out_path = Path(tmp) / "sample.parquet", Path(tmp) / "scores.npy"
        sample.reset_index(drop=True).to_parquet(sample_path, index=False)
        try:
            done = subprocess.run([sys.executable, "-m", "retrain.infra_validate", str(artifact), str(sample_path),
                                   str(out_path)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return InfraResult(False, len(sample), time.perf_counter() - started,
                               f"loading and scoring took longer than {timeout:g} s")
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return InfraResult(False, len(sample), seconds,
                               f"the artifact failed in a fresh process: {lines[-1] if lines else done.returncode}")
        scores = np.load(out_path, allow_pickle=False)
    if scores.shape != (len(sample),):
        return InfraResult(False, len(sample), seconds, f"{scores.shape[0]} scores for {len(sample)} rows")
    if not np.all(np.isfinite(scores)) or np.any(scores < 0) or np.any(scores > 1):
        return InfraResult(False, len(sample), seconds, "scores outside [0, 1] or not finite")
    diff = None
    if expected is not None and len(sample):
        diff = float(np.max(np.abs(scores - np.asarray(expected, dtype=np.float64))))
        if diff > tolerance:
            return InfraResult(False, len(sample), seconds,
                               f"scores differ from the training process by up to {diff:.3g}", diff)
    return InfraResult(True, len(sample), seconds, f"loaded and scored {len(sample)} rows in a fresh process", diff)


def main(argv: list[str]) -> int:
    from retrain.base import load_model

    artifact, sample, out = argv
    model = load_model(Path(artifact))
    scores = model.predict(pd.read_parquet(sample))
    np.save(out, np.asarray(scores, dtype=np.float64), allow_pickle=False)
    return 0


if __name__ == "__main__":  # pragma: no cover - runs in the subprocess
    sys.exit(main(sys.argv[1:]))
