"""A session on a standalone cluster counts every executor's cores, however soon it is asked.

Why: benchmarks divide their throughput by :func:`pdp.lake.session.compute_cores` and size their
inputs by it, and a cluster's executors register one by one after the session starts: a count read
at once printed a 300 000-person figure over 1 core of 2. The count is asked for here right after
the session starts, in a process of its own (a fresh driver), on the project's two-worker cluster.
Marked ``cluster`` (``make test-cluster``): a cluster's start-up is ~20 s of the 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pdp.lake.local_cluster import local_cluster

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(600)]

_ASK_AT_ONCE = """
from pdp.lake.session import compute_cores, get_spark
spark = get_spark()
print(compute_cores(spark))
spark.stop()
"""


def test_a_fresh_session_on_a_cluster_counts_the_cores_of_every_executor(tmp_path: Path) -> None:
    with local_cluster(tmp_path / "spark-cluster", workers=2, cores=1, memory="2g") as cluster:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDP_")}
        env.update(PDP_VAR_DIR=str(tmp_path / "var"), PDP_SPARK_MASTER=cluster.master, PDP_SPARK_DRIVER_MEMORY="1g")
        done = subprocess.run([sys.executable, "-c", _ASK_AT_ONCE], env=env, capture_output=True, text=True,
                              timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "2", done.stdout
