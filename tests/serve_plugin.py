"""`driftline` with one extra check, `probe`, for the service process tests (run as a script).

`probe` marks that it started (a file per window), waits until a `release` file exists,
then reports an alert on feature x: a run the test can catch in the middle and kill -9.
"""

import os
import sys
import time
from pathlib import Path


def main() -> None:
    from core.checks import CheckParams, WindowCheck, register_check
    from core.results import CheckResult, FeatureDrift
    from monitor.cli import app

    class Probe(WindowCheck):
        name = "probe"

        def run(self, context) -> CheckResult:
            folder = Path(os.environ["DRIFTLINE_PROBE_DIR"])
            (folder / f"entered-{os.getpid()}-{context.start:%Y%m%dT%H%M}").touch()
            deadline = time.monotonic() + 120
            while not (folder / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            feature = FeatureDrift("x", "numeric", "wasserstein", 0.9, 0.2, "alert", 100, 100)
            return CheckResult(check="probe", status="alert", features=(feature,), **context.result_context)

    register_check("probe", params=CheckParams)(lambda model_config, params: Probe())
    sys.argv[0] = "driftline"
    app()


if __name__ == "__main__":  # guarded: nothing runs on import (spawned children import their parent's main)
    main()
