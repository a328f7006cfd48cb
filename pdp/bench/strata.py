"""`pdp bench strata [--persons N]`: gold's strata, populations and due actions against the ground truth.

A territory of N persons (default 20 000, the demo's) is generated, ingested through the edge
into a private lake, and `pdp run` is applied at the generator's reference date; then
`pdp.bench.evaluate` scores gold against the three truths (real state, coded sources only, all
sources). The goal of the algorithms issue: agreement ≥ 0.98 per pyramid against the coded
truth, and ≥ 0.98 for person × action statuses. These are floors, not proofs: the generator's
coded truth re-implements the same rules document over the same synthetic noise.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from pdp.bench import setting


def bench_strata(persons: int | None = None) -> dict[str, Any]:
    from pdp.algorithms import build_gold
    from pdp.bench.evaluate import evaluate
    from pdp.bench.scratch import throwaway_keys
    from pdp.ingest.pipeline import ingest_directory
    from pdp.lake import get_spark
    from pdp.pseudonym.keys import KeyStore
    from pdp.synth import generate

    persons = persons or setting("PDP_BENCH_STRATA_PERSONS", 20_000)
    with tempfile.TemporaryDirectory(prefix="pdp-bench-strata-") as tmp:
        var = Path(tmp)
        settings = throwaway_keys(var_dir=var, lake_uri=str(var / "lake"),
                                  db_url=f"sqlite:///{var / 'pdp.db'}", key_store=var / "keys")
        KeyStore.from_settings(settings).init()
        sources = var / "sources"
        summary = generate(sources, persons=persons, seed=7, territory="douaisis")
        as_of = date.fromisoformat(summary["reference_date"])
        spark = get_spark(app_name="pdp-bench-strata")
        start = time.perf_counter()
        ingest_directory(sources, spark=spark, settings=settings)
        ingest_seconds = time.perf_counter() - start
        start = time.perf_counter()
        build_gold(spark, as_of=as_of, lake_root=settings.lake_uri)
        gold_seconds = time.perf_counter() - start
        result = evaluate(spark, sources, as_of=as_of, lake_root=settings.lake_uri,
                          store=KeyStore.from_settings(settings))
    out: dict[str, Any] = {"persons": persons, "ingest_seconds": round(ingest_seconds, 1),
                           "gold_seconds": round(gold_seconds, 1), "split_extra_pseudonyms": result.extra_pseudonyms}
    for score in result.pyramids:
        key = f"{score.pyramid}.{score.truth}"
        out[f"{key}.agreement"] = round(score.agreement, 4)
        out[f"{key}.recall"] = {s: round(r, 4) for s, r in score.recall.items()}
        if score.truth == "coded":
            out[f"{key}.confusion"] = score.confusion
    for name, figures in result.populations.items():
        out[f"population.{name}"] = {k: round(v, 4) for k, v in figures.items()}
    out["actions.coded.agreement"] = round(result.actions["agreement"], 4)
    out["actions.coded.rows"] = int(result.actions["rows"])
    out["actions.coded.by_action"] = {k: round(v, 4) for k, v in result.actions.items()
                                      if k not in {"agreement", "rows", "missing", "extra"}}
    out["goal_agreement"] = 0.98
    return out
