"""`pdp explain PERSON`: one person's populations, strata, due actions and alerts, with the rule
that fired and the silver facts behind each (pseudonymised: no identity is read or printed).

Why from gold, not by re-running the rules: an explanation must describe what was decided and
published, at that as-of date, by those definition versions; gold.evidence holds exactly that.

>>> explain_person(spark, "v1:Ab...", as_of=None)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from pdp.algorithms.gold import GOLD_OUTPUTS
from pdp.algorithms.model import Definitions, load_definitions
from pdp.lake import LakeTable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class PersonNotFound(LookupError):
    """No gold row for that pseudonym or person id (at that date)."""


@dataclass
class Explanation:
    person_id: int
    person_pseudonym: str
    as_of: date
    definitions: str
    populations: list[dict[str, Any]] = field(default_factory=list)
    strata: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def facts(self, kind: str, subject: str) -> list[dict[str, Any]]:
        return self.evidence.get((kind, subject), [])

    def as_json(self) -> dict[str, Any]:
        def with_facts(kind: str, rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
            return [{**r, "facts": self.facts(kind, key.format(**r))} for r in rows]

        return {
            "person_id": self.person_id,
            "person_pseudonym": self.person_pseudonym,
            "as_of": self.as_of.isoformat(),
            "definitions": self.definitions,
            "populations": with_facts("population", self.populations, "{population}"),
            "strata": with_facts("stratum", self.strata, "{pyramid}:{stratum}"),
            "actions": with_facts("action", self.actions, "{pathway}.{action}"),
            "alerts": with_facts("alert", self.alerts, "{alert}"),
        }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()}


def explain_person(
    spark: SparkSession,
    person: str,
    *,
    as_of: date | None = None,
    lake_root: str | None = None,
    definitions: Definitions | None = None,
) -> Explanation:
    """The explanation of one person (pseudonym `v<N>:...` or numeric person id) at `as_of` (default: latest)."""
    from pyspark.sql import functions as F

    defs = definitions or load_definitions()
    tables = {name: LakeTable(spark, name, lake_root=lake_root) for name in GOLD_OUTPUTS.values()}
    if not all(t.exists() for t in tables.values()):
        raise PersonNotFound("gold is empty: run `pdp run` first")
    numeric = person.removeprefix("-").isdigit()  # person ids are xxhash64 values: often negative
    key = F.col("person_id") == int(person) if numeric else F.col("person_pseudonym") == person
    strata = tables["gold.stratum"].read().where(key)
    populations = tables["gold.population"].read().where(key)
    dates = [r[0] for r in strata.select("as_of").union(populations.select("as_of")).distinct().collect()]
    if as_of is None:
        if not dates:
            raise PersonNotFound("no gold row for that person (not in any population)")
        as_of = max(dates)
    elif as_of not in dates:
        raise PersonNotFound(f"no gold row for that person at {as_of.isoformat()}")
    day = F.col("as_of") == F.lit(as_of)

    def rows(name: str, order: list[str]) -> list[dict[str, Any]]:
        frame = tables[name].read().where(key & day).drop("as_of")
        return [_jsonable(r.asDict()) for r in frame.orderBy(*order).collect()]

    pops = rows("gold.population", ["population"])
    head = pops[0] if pops else rows("gold.stratum", ["pyramid"])[0]
    out = Explanation(int(head["person_id"]), head["person_pseudonym"], as_of, head["definitions"])
    strip = ("person_id", "person_pseudonym", "definitions")
    out.populations = [{k: v for k, v in r.items() if k not in strip} for r in pops]
    out.strata = [{k: v for k, v in r.items() if k not in strip} for r in rows("gold.stratum", ["pyramid"])]
    out.actions = [{k: v for k, v in r.items() if k not in strip}
                   for r in rows("gold.care_action", ["pathway", "action"])]
    out.alerts = [{k: v for k, v in r.items() if k not in strip} for r in rows("gold.alert", ["alert"])]
    for r in rows("gold.evidence", ["kind", "subject", "criterion", "fact_date"]):
        fact = {k: r[k] for k in ("rule_id", "criterion", "fact_table", "event_id", "fact_date", "source",
                                  "vocabulary", "source_code", "value")}
        fact["criterion_text"] = defs.criteria[r["criterion"]].description if r["criterion"] in defs.criteria else ""
        out.evidence.setdefault((r["kind"], r["subject"]), []).append(fact)
    return out
