"""Run a command and write its own rusage (peak RSS, CPU) as JSON to a file.

    python -m bench._rusage OUT.json COMMAND [ARGS...]

Why a launcher: on Linux a child's ru_maxrss starts at the peak RSS of the process image it
replaced at exec, and a child started with vfork/posix_spawn (as subprocess does) replaces its
parent's. Measured straight from a benchmark that has generated data, every tool would report
the benchmark's own peak; from this small process it reports its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(argv: list[str]) -> int:
    out, command = argv[0], argv[1:]
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as handle:
        json.dump({"peak_rss_bytes": usage.ru_maxrss * 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
                   "returncode": code}, handle)  # Linux reports ru_maxrss in KiB
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
