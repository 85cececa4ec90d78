"""The Spark session driftline runs on: one per process, created on first use.

pyspark is an extra (`pip install 'driftline[spark]'`) and needs Java 17 or newer; either
missing gives one line saying what to install. Defaults that matter for the kernel are set
unless the user's conf overrides them: UTC session time (window bounds are UTC), Arrow
batches of 128k rows (the kernel's cost per batch is fixed, so bigger batches are
cheaper), and a local master bound to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading

from core.errors import MissingDependencyError

DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "131072",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # Few, small aggregates: the default of 200 shuffle partitions only adds tasks.
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
}
LOCAL_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}

_LOCK = threading.Lock()
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_major() -> int | None:
    """The major version of the `java` Spark would start (JAVA_HOME first), or None if there is none."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    try:
        text = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    match = _JAVA_VERSION.search(text)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_spark():
    """pyspark and a Java it can run on, or a one-line error with the fix."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the spark engine needs pyspark: pip install 'driftline[spark]' (and Java 17+)") from exc
    major = java_major()
    if major is None:
        raise MissingDependencyError(
            "the spark engine needs Java 17 or newer: apt-get install openjdk-17-jre-headless, or set JAVA_HOME")
    if major < 17:
        raise MissingDependencyError(f"the spark engine needs Java 17 or newer, found Java {major}: "
                                     "install openjdk-17-jre-headless or point JAVA_HOME at a newer JDK")


def spark_session(master: str = "local[2]", app_name: str = "driftline", conf: dict[str, str] | None = None):
    """The active SparkSession, or a new one with driftline's defaults and `conf` on top."""
    require_spark()
    from pyspark.sql import SparkSession

    with _LOCK:
        active = SparkSession.getActiveSession()
        if active is not None:
            return active
        # Executors run the kernel in Python: the interpreter that has driftline installed.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = SparkSession.builder.appName(app_name)
        # Under spark-submit (the JVM started this Python and handed it a gateway), the
        # submitted --master and --conf win; driftline's defaults fill only what is unset.
        submitted = bool(os.environ.get("PYSPARK_GATEWAY_PORT"))
        if master and not submitted:
            builder = builder.master(master)
        settings = dict(DEFAULT_CONF)
        if master.startswith("local") and not submitted:
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            settings.update(LOCAL_CONF)
        settings.update(conf or {})
        if submitted:
            from pyspark import SparkConf, SparkContext

            SparkContext._ensure_initialized()  # attach to spark-submit's gateway, so SparkConf sees its settings
            given = dict(SparkConf().getAll())
            settings = {k: v for k, v in settings.items() if k not in given}
        for key, value in settings.items():
            builder = builder.config(key, str(value))
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        return session
