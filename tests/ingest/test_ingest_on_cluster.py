"""The demo pipeline on a real Spark standalone cluster gives the lake local mode gives.

Why: local mode is the default and what every other test runs; a cluster master changes where
the work runs (executor JVMs in other processes, with their own classpath, Python and working
directory), and what breaks there — Delta jars only on the driver's classpath, executors running
another Python, a lake path relative to the driver's cwd — breaks silently in local mode. So the
same synthetic territory goes through `pdp ingest` and `pdp run` twice, in subprocesses on their
own var/: once in local mode, once against a one-master, two-worker cluster started by the
project's own `infra/spark/start-local-cluster.sh`, and every silver and gold table must hold the
same rows. Both runs share one key store (copied before the ingests), or every pseudonym and
keyed hash would differ by design.

Run-specific columns are left out of the comparison: ``batch_id`` (the `pdp ingest` run that
landed a record: a timestamped id per run), the only one in silver and gold. Run ids, times and
commit metadata live in the ops tables (ingestion and run logs) and in Delta's log, which are not
compared.

Measured on the shared 2-core machine (300 persons, cluster 2 workers x 1 core x 2g): 14.6 min at a
load average of ~9 from other runs (ingest 146 s local / 134 s cluster, run 112 s / 271 s), 23.5 min
at ~14. Most of it is JVM start-ups and Delta commits on 2 contended cores, not data — which is
why it is marked ``cluster`` and runs with ``make test-cluster``, not in ``make test`` (whose whole
suite must stay under 40 min on such a machine).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import pdp_env, pdp_process

from pdp.lake.local_cluster import LocalCluster
from pdp.lake.local_cluster import local_cluster as start_local_cluster

pytestmark = [pytest.mark.spark, pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(2400)]

RUN_SPECIFIC = frozenset({"batch_id"})
_PERSONS, _SEED, _TERRITORY = 300, 11, "haute-saone"
_STEP_TIMEOUT = 1200


@pytest.fixture()
def local_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A two-worker standalone cluster from the project's script, on free ports; stopped (and checked
    gone: no daemon, executor or Python worker left) after the test, whether it passed or not."""
    with start_local_cluster(tmp_path / "spark-cluster", workers=2, cores=1, memory="2g") as cluster:
        yield cluster


def _pdp(args: list[str], env: dict[str, str]) -> float:
    """`pdp ARGS` to the end; its wall time in seconds. A failure shows the CLI's own lines."""
    start = time.monotonic()
    process = pdp_process(args, env)
    try:
        _, err = process.communicate(timeout=_STEP_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    elapsed = time.monotonic() - start
    lines = err.decode(errors="replace").splitlines()
    heads = [line for line in lines if line.startswith(("error", "pdp")) or "Exception" in line][:12]
    assert process.returncode == 0, f"pdp {' '.join(args)} exit {process.returncode}:\n" + "\n".join(
        [*heads, "...", *lines[-5:]])
    return elapsed


def _pipeline(sources: Path, var: Path, keys: Path, master_key: str, spark_master: str, as_of: str) -> dict[str, float]:
    """ingest + run on `var` (its own lake, store and logs) with the shared key store."""
    env = pdp_env(var, master_key)
    env["PDP_SPARK_MASTER"] = spark_master
    # The driver binds where the workers listen: one machine, loopback only.
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    var.mkdir(parents=True)
    # On a cluster the edge runs as Spark tasks (PDP_EDGE_ENGINE=auto): the executors, started by the
    # workers and not by `pdp`, open the key store from a file every node can read, as a deployment would.
    key_file = var / "master.key"
    key_file.write_text(env.pop("PDP_MASTER_KEY"))
    key_file.chmod(0o600)
    env["PDP_MASTER_KEY_FILE"] = str(key_file)
    shutil.copytree(keys, var / "keys")
    return {
        "ingest": _pdp(["ingest", str(sources)], env),
        "run": _pdp(["run", "--as-of", as_of, "--territory", "test"], env),
    }


def _table_names(lake: Path) -> set[str]:
    return {f"{zone.name}.{table.name}" for zone in lake.iterdir() if zone.name in {"silver", "gold"}
            for table in zone.iterdir() if (table / "_delta_log").is_dir()}


def test_demo_pipeline_on_a_standalone_cluster_matches_local_mode(
    tmp_path: Path, local_cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    sources = tmp_path / "sources"
    master_key = base64.b64encode(os.urandom(32)).decode("ascii")
    synth_env = pdp_env(tmp_path / "var-synth", master_key)
    _pdp(["synth", "--persons", str(_PERSONS), "--seed", str(_SEED), "--territory", _TERRITORY,
          "--out", str(sources)], synth_env)
    as_of = json.loads((sources / "ground_truth" / "summary.json").read_text())["reference_date"]
    keys = tmp_path / "var-keys"
    _pdp(["keys", "init"], pdp_env(keys, master_key))

    timings = {
        "local": _pipeline(sources, tmp_path / "var-local", keys / "keys", master_key, "local[2]", as_of),
        "cluster": _pipeline(sources, tmp_path / "var-cluster", keys / "keys", master_key, local_cluster.master, as_of),
    }
    assert local_cluster.workers_that_ran_tasks() == ["work-1", "work-2"], "both workers' executors did work"
    print(f"\nwall times (s): {json.dumps({m: {k: round(v, 1) for k, v in t.items()} for m, t in timings.items()})}")

    from pdp.lake import LakeTable

    spark = request.getfixturevalue("spark")  # the test's own session, started once both runs are over
    local_lake, cluster_lake = tmp_path / "var-local" / "lake", tmp_path / "var-cluster" / "lake"
    names = _table_names(local_lake)
    assert names == _table_names(cluster_lake)
    assert {"silver.person", "silver.condition_occurrence", "gold.population", "gold.stratum"} <= names
    differences, empty = {}, set()
    for name in sorted(names):
        local, cluster = (LakeTable(spark, name, lake_root=str(lake)).read() for lake in (local_lake, cluster_lake))
        assert local.schema == cluster.schema, name
        kept = [c for c in local.columns if c not in RUN_SPECIFIC]
        local, cluster = local.select(*kept), cluster.select(*kept)
        only_local, only_cluster = local.exceptAll(cluster).count(), cluster.exceptAll(local).count()
        if only_local or only_cluster:
            differences[name] = {"rows": local.count(), "only_local": only_local, "only_cluster": only_cluster}
        if local.limit(1).count() == 0:
            empty.add(name)
    assert not differences, f"silver/gold differ between local mode and the cluster: {differences}"
    # Empty tables compare equal and prove nothing: the ones every territory fills must have rows.
    assert not empty & {"silver.person", "silver.condition_occurrence", "silver.drug_exposure",
                        "silver.measurement", "gold.population", "gold.stratum", "gold.care_action"}, sorted(empty)
