"""The ethics committee's sample: a reproducible random draw of pseudonymised records per stratum.

Why this shape (the seeds' "human guarantee"): a committee checks, on records it did not
choose, that a stratum or a due action was right and fair. The draw must therefore be

- reproducible: the same seed and parameters give the same persons, whatever the Spark
  partitioning — each candidate is ranked by SHA-256(seed, pseudonym) and the first `n` taken;
- pseudonymised: each record is the person's gold explanation (populations, strata, due
  actions, alerts, and the silver facts behind each), never an identity;
- free of opposed persons (the opposition registry is read at draw time);
- audited: the caller records the seed, the parameters and the pseudonyms drawn.

Territory: a lake serves one territory today (``pdp run --territory`` labels its gold run); the
label is checked against the gold runs and the draw covers that lake. A lake holding several
territories (the national scale-out) will filter on the territory's communes.

>>> sample = draw_sample(spark, engine, territory="Douaisis", pyramid="t2d", stratum="3", n=5, seed=7)  # doctest: +SKIP
>>> [r["person_pseudonym"] for r in sample.records]                                        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlalchemy import Engine

__all__ = ["EthicsSample", "SampleError", "draw_sample"]

MAX_SAMPLE = 200


class SampleError(ValueError):
    """The draw cannot be made as asked (one line)."""


@dataclass
class EthicsSample:
    territory: str
    pyramid: str
    stratum: str
    as_of: date
    n: int
    seed: int
    eligible: int
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pseudonyms(self) -> list[str]:
        return [r["person_pseudonym"] for r in self.records]

    def parameters(self) -> dict[str, Any]:
        return {"territory": self.territory, "pyramid": self.pyramid, "stratum": self.stratum,
                "as_of": self.as_of.isoformat(), "n": self.n, "seed": self.seed, "eligible": self.eligible}


def rank(seed: int, pseudonym: str) -> str:
    """The draw order: a keyless hash of the seed and the pseudonym (public, so anyone can re-check a draw)."""
    return hashlib.sha256(f"{seed}\x00{pseudonym}".encode()).hexdigest()


def draw_sample(
    spark: SparkSession, engine: Engine, *, territory: str, pyramid: str, stratum: str, n: int, seed: int,
    as_of: date | None = None, lake_root: str | None = None,
) -> EthicsSample:
    """Draw `n` persons of `pyramid`/`stratum` in `territory` (latest gold run unless `as_of`)."""
    from pyspark.sql import functions as F

    from pdp.algorithms.explain import explain_person
    from pdp.governance.opposition import OppositionRegistry
    from pdp.lake import LakeTable

    if not 1 <= n <= MAX_SAMPLE:
        raise SampleError(f"--n must be between 1 and {MAX_SAMPLE}")
    strata, indicators = (LakeTable(spark, t, lake_root=lake_root) for t in ("gold.stratum", "gold.indicator"))
    if not strata.exists() or not indicators.exists():
        raise SampleError("gold is empty: run `pdp run` first")
    runs = indicators.read().where(F.col("territory") == territory).select("as_of").distinct()
    days = sorted(r[0] for r in runs.collect())
    if not days:
        raise SampleError(f"no gold run for territory {territory!r} (see `pdp run --territory`)")
    day = as_of or days[-1]
    if day not in days:
        raise SampleError(f"no gold run for territory {territory!r} at {day.isoformat()}")
    rows = (strata.read().where((F.col("as_of") == F.lit(day)) & (F.col("pyramid") == pyramid)
                                & (F.col("stratum") == stratum))
            .select("person_pseudonym").distinct().collect())
    candidates = sorted({r[0] for r in rows})
    if not candidates:
        raise SampleError(f"no person in {pyramid} stratum {stratum!r} at {day.isoformat()}")
    opposed = OppositionRegistry(engine).opposed(candidates)
    eligible = [p for p in candidates if p not in opposed]
    drawn = sorted(eligible, key=lambda p: rank(seed, p))[:n]
    sample = EthicsSample(territory, pyramid, stratum, day, n, seed, len(eligible))
    sample.records = [explain_person(spark, p, as_of=day, lake_root=lake_root).as_json() for p in drawn]
    return sample
