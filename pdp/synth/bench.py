"""`pdp bench synth`: generator throughput with every core, against one process (same run)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from pdp.synth.generator import generate

PERSONS = 20_000


def _timed(persons: int, workers: int) -> float:
    with tempfile.TemporaryDirectory(prefix="pdp-bench-synth-") as tmp:
        start = time.perf_counter()
        generate(Path(tmp) / "out", persons=persons, seed=1, territory="douaisis", workers=workers)
        return time.perf_counter() - start


def bench_synth() -> dict[str, Any]:
    """Persons/s on all cores; reference: the same generation in a single process."""
    cores = os.cpu_count() or 1
    single = _timed(PERSONS, 1)
    parallel = _timed(PERSONS, cores)
    return {
        "persons": PERSONS,
        "cores": cores,
        "persons_per_s": round(PERSONS / parallel),
        "persons_per_s_single_process": round(PERSONS / single),
        "ratio_vs_single_process": round(single / parallel, 2),
    }
