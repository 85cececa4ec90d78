"""One Spark session for the whole test run, in local[2] mode bound to 127.0.0.1.

pyspark is installed by `make test` (the `spark` extra) and Java 17 is a system
dependency, so a missing one fails the Spark tests instead of skipping them.
"""

from __future__ import annotations

import os

import pytest

TEST_CONF = {
    # Small test data: few partitions keep each job short on 2 cores.
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.memory": "1g",
    "spark.python.worker.reuse": "true",
}


@pytest.fixture(scope="session")
def spark():
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from core.engines.spark.session import spark_session

    session = spark_session("local[2]", "driftline-tests", TEST_CONF)
    yield session
    session.stop()


@pytest.fixture()
def spark_engine(spark):
    from core.engines import SparkSettings, get_engine

    return get_engine("spark", SparkSettings("local[2]", "driftline-tests", TEST_CONF))
