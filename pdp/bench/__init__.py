"""`pdp bench NAME`: benchmarks that print their figure and its ratio against a reference
measured in the same run (these machines are noisy: ratios, not absolute times).

Each benchmark lives with the part it measures; this module only names them, so that
`pdp bench all` and `make bench` find every one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

BENCHMARKS: dict[str, str] = {
    "ingest": "pdp.ingest.bench:bench_ingest",
    "labfeed": "pdp.ingest.labfeed_bench:bench_labfeed",
    "linkage": "pdp.pseudonym.linkage_bench:bench_linkage",
    "pseudonymise": "pdp.pseudonym.bench:bench_pseudonymise",
    "synth": "pdp.synth.bench:bench_synth",
}


def run_benchmark(name: str) -> dict[str, Any]:
    module_name, func_name = BENCHMARKS[name].split(":")
    func: Callable[[], dict[str, Any]] = getattr(importlib.import_module(module_name), func_name)
    return {"name": name, **func()}
