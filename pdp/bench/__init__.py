"""`pdp bench NAME`: benchmarks that print their figure and its ratio against a reference
measured in the same run (these machines are noisy: ratios, not absolute times).

Each benchmark is named here, so that `pdp bench all` and `make bench` find every one; the
older ones live with the part they measure, the newer ones in this package (one module each).
A benchmark whose function takes `persons` gets `pdp bench NAME --persons N`, one that takes
`split_bytes` gets `--split-bytes B` (the edge's split size, ``PDP_EDGE_SPLIT_BYTES``).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any, overload

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
    "scaling": "pdp.bench.scaling:bench_scaling",
    "psi": "pdp.bench.psi:bench_psi",
    "strata": "pdp.bench.strata:bench_strata",
    "synth": "pdp.synth.bench:bench_synth",
    "vault": "pdp.bench.vault:bench_vault",
}


class BenchSettingError(ValueError):
    """A benchmark's environment setting is not what it must be (one line: which, and why)."""


@overload
def setting(name: str, default: int, *, minimum: int = 1) -> int: ...
@overload
def setting(name: str, default: None, *, minimum: int = 1) -> int | None: ...
def setting(name: str, default: int | None, *, minimum: int = 1) -> int | None:
    """The whole number in environment variable `name` (``PDP_BENCH_GOLD_ROUNDS``...), `default` when
    unset or empty (None: the bench chooses); anything else than a whole number >= `minimum` is a
    :class:`BenchSettingError`.

    >>> setting("PDP_BENCH_NOT_SET", 2)
    2
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise BenchSettingError(f"{name} must be a whole number >= {minimum}, not {raw[:40]!r}")
    return value


def takes_persons(name: str) -> bool:
    return takes(name, "persons")


def takes(name: str, option: str) -> bool:
    """Whether benchmark `name` takes the keyword `option` (``persons``, ``split_bytes``)."""
    return option in inspect.signature(_function(name)).parameters


def _function(name: str) -> Callable[..., dict[str, Any]]:
    module_name, func_name = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def run_benchmark(name: str, *, persons: int | None = None, split_bytes: int | None = None) -> dict[str, Any]:
    func = _function(name)
    options = {k: v for k, v in (("persons", persons), ("split_bytes", split_bytes)) if v is not None}
    return {"name": name, **func(**options)}
