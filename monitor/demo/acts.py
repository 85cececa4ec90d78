"""The demo's later acts, retraining and the ranking part, in a second process beside the week.

Neither reads what the monitoring week writes (its store, alerts and reports): the retraining
act reads the world's logs and its own registry, the ranking part builds and monitors its own
world. So `driftline demo` starts them in a fresh Python process (`python -m
monitor.demo.acts`) before the week and collects them after it: on two cores they take no
wall time of their own. The process writes (retrain section, ranking section, its progress
lines, or the error) as JSON to a file; the demo prints the lines after the week's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core import errors
from core.errors import DriftlineError

RESULT = "later-acts.json"


def later_acts(workdir: Path, seed: int, config_path: Path, previous_retrain: dict | None) -> dict:
    """Run both acts here: {"retrain": ..., "ranking": ..., "said": [progress lines]}."""
    from monitor.config import load_config
    from monitor.demo.ranking import run_ranking_demo  # rollouts, exploration and slots: a ranker's own logs
    from monitor.demo.retrain import retrain_demo
    from monitor.demo.world import load_world

    said: list[str] = []
    world = load_world(Path(workdir) / "world")
    retrain = retrain_demo(world, load_config(config_path), said.append, previous_retrain)
    ranking = run_ranking_demo(Path(workdir) / "ranking", seed=seed, progress=said.append)
    return {"retrain": retrain, "ranking": ranking, "said": said}


class Started:
    """The second process, running; `result()` waits for it and returns what it wrote."""

    def __init__(self, workdir: Path, seed: int, config_path: Path, previous_retrain: dict | None) -> None:
        self.path = Path(workdir) / RESULT
        self.path.unlink(missing_ok=True)
        request = json.dumps({"workdir": str(workdir), "seed": seed, "config": str(config_path),
                              "previous_retrain": previous_retrain})
        # stderr is shared: a warning or a crash's traceback shows where the demo's own would.
        self.process = subprocess.Popen([sys.executable, "-m", "monitor.demo.acts", request],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def result(self) -> dict:
        code = self.process.wait()
        try:
            done = json.loads(self.path.read_text())
        except (OSError, ValueError):
            raise RuntimeError(f"the demo's retraining and ranking process ended (exit {code}) without "
                               "its result; its error is printed above") from None
        finally:
            self.path.unlink(missing_ok=True)
        if "error" in done:
            kind = getattr(errors, done["error"]["type"], DriftlineError)
            raise (kind if isinstance(kind, type) and issubclass(kind, DriftlineError) else DriftlineError)(
                done["error"]["message"])
        return done

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.path.unlink(missing_ok=True)


def start(workdir: Path, seed: int, config_path: Path, previous_retrain: dict | None) -> Started:
    return Started(workdir, seed, config_path, previous_retrain)


def main(argv: list[str]) -> int:
    request = json.loads(argv[0])
    path = Path(request["workdir"]) / RESULT
    try:
        done = later_acts(Path(request["workdir"]), request["seed"], Path(request["config"]),
                          request["previous_retrain"])
    except DriftlineError as exc:  # a one-line error, raised again by the demo as the same kind
        done = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(done))
    temporary.replace(path)
    return 0


if __name__ == "__main__":  # pragma: no cover - the demo's second process
    sys.exit(main(sys.argv[1:]))
