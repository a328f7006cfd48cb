"""`pdp bench NAME`: benchmarks that print their figure and its ratio against a reference
measured in the same run (these machines are noisy: ratios, not absolute times).

Each benchmark is named here, so that `pdp bench all` and `make bench` find every one; the
older ones live with the part they measure, the newer ones in this package (one module each).
A benchmark whose function takes `persons` gets `pdp bench NAME --persons N`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

BENCHMARKS: dict[str, str] = {
    "api": "pdp.bench.api:bench_api",
    "audit": "pdp.bench.audit:bench_audit",
    "authz": "pdp.bench.authz:bench_authz",
    "fhir": "pdp.bench.fhir:bench_fhir",
    "edge": "pdp.bench.edge:bench_edge",
    "gold": "pdp.bench.gold:bench_gold",
    "increment": "pdp.bench.increment:bench_increment",
    "ingest": "pdp.ingest.bench:bench_ingest",
    "labfeed": "pdp.ingest.labfeed_bench:bench_labfeed",
    "linkage": "pdp.pseudonym.linkage_bench:bench_linkage",
    "linkage-spark": "pdp.pseudonym.linkage_bench:bench_linkage_engines",
    "nlp": "pdp.bench.nlp:bench_nlp",
    "pseudonymise": "pdp.pseudonym.bench:bench_pseudonymise",
    "rotate": "pdp.bench.rotation:bench_rotation",
    "psi": "pdp.bench.psi:bench_psi",
    "strata": "pdp.bench.strata:bench_strata",
    "synth": "pdp.synth.bench:bench_synth",
    "vault": "pdp.bench.vault:bench_vault",
}


def takes_persons(name: str) -> bool:
    return "persons" in inspect.signature(_function(name)).parameters


def _function(name: str) -> Callable[..., dict[str, Any]]:
    module_name, func_name = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_benchmark(name: str, *, persons: int | None = None) -> dict[str, Any]:
    func = _function(name)
    return {"name": name, **(func(persons=persons) if persons is not None else func())}
