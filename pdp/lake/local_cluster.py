"""A one-machine Spark standalone cluster from the project's scripts, for a benchmark or a test.

`infra/spark/start-local-cluster.sh` starts it (one master, N workers from the venv's pyspark) on a
block of ports free now, with its run directory (pids, logs, the workers' work dirs) where the
caller says; leaving the block stops it with `stop-local-cluster.sh`, whatever happened, and checks
that no daemon, executor or Python worker of it is left:

    with local_cluster(tmp / "spark-cluster", workers=2) as cluster:
        ...  # a session with spark.master=cluster.master
        cluster.finished_tasks()  # {executor dir: tasks finished}, from the executors' logs

A cluster that does not start raises :class:`ClusterError` with the script's one-line reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCRIPTS = Path(__file__).resolve().parents[2] / "infra" / "spark"
_HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The local cluster did not start, or did not stop cleanly (one line: why)."""


def free_port_block(size: int) -> int:
    """A port P with P..P+size-1 free on 127.0.0.1 now (the master's RPC port, then its UI and one
    UI per worker), so parallel runs and other people's Spark on this machine never collide."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((_HOST, 0))
            base = probe.getsockname()[1]
        if base + size >= 65000:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind((_HOST, port))
        except OSError:
            continue
        return base
    raise ClusterError(f"no block of {size} free ports on {_HOST}")


def processes_working_in(directory: Path) -> list[int]:
    """Our processes whose cwd is under `directory` (executors and their Python workers run in a
    worker's work dir): what must be gone once the cluster is stopped."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(f"{directory}/"):
            found.append(int(entry.name))
    return found


def daemon_pids(run_dir: Path) -> list[int]:
    """The master's and workers' JVM pids recorded by the start script (those still alive)."""
    pids = []
    for pid_file in run_dir.glob("*.pid"):
        pid = int(pid_file.read_text().strip() or 0)
        if pid and Path(f"/proc/{pid}").exists():
            pids.append(pid)
    return pids


@dataclass(frozen=True)
class LocalCluster:
    master: str  # spark://127.0.0.1:PORT
    run_dir: Path

    def finished_tasks(self, app_id: str | None = None) -> Counter[str]:
        """Tasks finished per executor (``work-<worker>/<app>/<executor>``), read from the executors'
        logs in the workers' work dirs; `app_id`: one application's executors only."""
        counts: Counter[str] = Counter()
        for log in self.run_dir.glob(f"work-*/{app_id or 'app-*'}/*/stderr"):
            finished = log.read_text(errors="replace").count("Finished task")
            if finished:
                counts[log.parent.relative_to(self.run_dir).as_posix()] = finished
        return counts

    def workers_that_ran_tasks(self) -> list[str]:
        """The workers whose executors finished at least one task."""
        return sorted({executor.split("/")[0] for executor in self.finished_tasks()})


@contextmanager
def local_cluster(run_dir: Path, *, workers: int = 2, cores: int = 1, memory: str = "2g",
                  timeout: int = 300) -> Iterator[LocalCluster]:
    """A cluster of `workers` workers of `cores` cores and `memory` each, run from `run_dir`; stopped
    (and checked gone) on leaving, whether the block succeeded or not."""
    base = free_port_block(2 + workers)
    env = {
        **os.environ,
        "PDP_CLUSTER_DIR": str(run_dir),
        "PDP_CLUSTER_HOST": _HOST,
        "PDP_CLUSTER_MASTER_PORT": str(base),
        "PDP_CLUSTER_UI_PORT": str(base + 1),
        "PDP_CLUSTER_WORKERS": str(workers),
        "PDP_CLUSTER_WORKER_CORES": str(cores),
        "PDP_CLUSTER_WORKER_MEMORY": memory,
    }
    failure: BaseException | None = None
    try:
        yield LocalCluster(_start(env, timeout), run_dir)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        daemons = daemon_pids(run_dir)
        stopped = subprocess.run(["bash", str(_SCRIPTS / "stop-local-cluster.sh")], env=env, capture_output=True,
                                 text=True, timeout=120, check=False)
        left = [pid for pid in daemons if Path(f"/proc/{pid}").exists()] + processes_working_in(run_dir)
        if stopped.returncode != 0 or left:
            problem = (f"the local Spark cluster in {run_dir} did not stop: "
                       f"{stopped.stderr.strip() or f'processes left: {left}'}")
            if failure is None:
                raise ClusterError(problem)
            failure.add_note(problem)  # the first failure stays the one raised


def _start(env: dict[str, str], timeout: int) -> str:
    """The master's URL once every worker is registered; ClusterError (one line) otherwise."""
    try:
        started = subprocess.run(["bash", str(_SCRIPTS / "start-local-cluster.sh")], env=env, capture_output=True,
                                 text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"the local Spark cluster did not start within {timeout}s") from exc
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or [f"exit {started.returncode}"])[-1]
        raise ClusterError(f"the local Spark cluster did not start: {reason}")
    master = started.stdout.strip().splitlines()[-1]
    expected = f"spark://{_HOST}:{env['PDP_CLUSTER_MASTER_PORT']}"
    if master != expected:
        raise ClusterError(f"the local Spark cluster answered {master!r}, not {expected}")
    return master
