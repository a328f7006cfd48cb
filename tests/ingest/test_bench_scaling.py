"""`pdp bench scaling`: the edge's efficiency from one to two executors on a local cluster.

The figures' rules (efficiency, best of the rounds, counts alike, the caveat) are checked here
without Spark; the whole bench runs once, at a tiny size, on a real local cluster in the
``cluster``-marked test (``make test-cluster``), which also checks that nothing is left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pdp.bench.scaling import GOAL, Run, _figures, caveat, efficiency
from pdp.lake.local_cluster import ClusterError, local_cluster, processes_working_in


def _run(executors: int, seconds: float, records: int = 100, per_executor: tuple[int, ...] = (4,)) -> Run:
    return Run(executors, seconds, {("gp", "a.ndjson"): SimpleNamespace(records_in=records)}, 4, per_executor, 3.0, 1.0)


def test_efficiency_is_the_speed_up_over_the_executors_it_took() -> None:
    assert efficiency(30.0, 15.0, 2) == 1.0
    assert efficiency(30.0, 20.0, 2) == 0.75
    assert efficiency(30.0, 30.0, 2) == 0.5


def test_the_caveat_is_given_when_the_driver_and_the_executors_share_the_cores() -> None:
    assert "2 cores for 2 executors and the driver" in caveat(2, 2)
    assert caveat(2, None) is not None
    assert caveat(2, 3) is None
    assert caveat(4, 4) is not None and caveat(4, 5) is None


def test_the_figure_is_the_best_run_of_each_and_every_round_is_shown() -> None:
    figures = _figures(300, 2 << 20, {1: [_run(1, 40.0), _run(1, 30.0)],
                                      2: [_run(2, 18.0, per_executor=(2, 2)), _run(2, 25.0, per_executor=(3, 1))]})
    assert figures["one_executor_seconds"] == 30.0 and figures["two_executors_seconds"] == 18.0
    assert figures["efficiency"] == round(30 / 36, 2) and figures["meets_goal"] and figures["goal"] == GOAL
    assert figures["efficiency_per_round"] == [round(40 / 36, 2), 0.6]
    assert figures["two_executors_tasks_per_executor"] == [2, 2]  # the best run's
    assert figures["records"] == 100 and figures["one_executor_records_per_s"] == round(100 / 30)
    assert figures["two_executors_cores_used"] == round(3.0 / 18.0, 2)  # the tasks' CPU over the wall time


def test_runs_that_count_differently_are_no_figure() -> None:
    with pytest.raises(RuntimeError, match="counted differently"):
        _figures(300, 2 << 20, {1: [_run(1, 30.0)], 2: [_run(2, 18.0, records=99)]})


def test_a_cluster_that_does_not_start_says_why_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ClusterError) as raised, local_cluster(tmp_path / "cluster", workers=0):
        pass
    assert str(raised.value).startswith(
        "the local Spark cluster did not start: start-local-cluster: PDP_CLUSTER_WORKERS must be")
    assert "\n" not in str(raised.value)


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_scaling_bench_runs_one_then_two_executors_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PDP_BENCH_SCALING_ROUNDS": "1",
           "PDP_SPARK_DRIVER_MEMORY": os.environ.get("PDP_SPARK_DRIVER_MEMORY", "2g")}
    done = subprocess.run([str(Path(sys.executable).parent / "pdp"), "bench", "scaling", "--persons", "100",
                           "--split-bytes", "262144", "--json"],
                          env=env, capture_output=True, text=True, timeout=540, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["records"] > 0 and figures["files"] > 0 and figures["tasks"] > figures["files"]  # files were split
    one, two = figures["one_executor_tasks_per_executor"], figures["two_executors_tasks_per_executor"]
    assert len(one) == 1 and sum(one) == figures["tasks"], one
    assert len(two) == 2 and min(two) > 0 and sum(two) == figures["tasks"], two  # two executors did work
    t1, t2 = figures["one_executor_seconds"], figures["two_executors_seconds"]
    assert abs(figures["efficiency"] - t1 / (2 * t2)) < 0.02  # from the printed (rounded) times
    assert isinstance(figures["meets_goal"], bool) and figures["goal"] == 0.8
    assert (figures["caveat"] is not None) == ((os.cpu_count() or 1) < 3)
    # nothing left: the bench's directory (cluster run dir included) gone, no process working in it
    # (executors, Python workers) or writing its log there (the master and the workers)
    assert not list(tmp_path.glob("pdp-bench-scaling-*"))
    assert not processes_working_in(tmp_path) and not _logging_into(tmp_path)


def _logging_into(directory: Path) -> list[int]:
    """Processes whose stdout is a file under `directory` (the cluster's daemons log to their run dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "fd" / "1").startswith(f"{directory}/"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
