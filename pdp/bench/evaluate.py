"""Gold against the synthetic ground truth: strata, populations and due actions.

Why here and not in `pdp.algorithms`: gold code must never read the generator's truth (the
figures would be circular); evaluation is a reader of both, like a benchmark.

Persons are matched through bronze: each landed record's (source, file, record id) is in
``ground_truth/record_links.csv`` with its true person (bronze holds the record id's keyed hash
only, so the truth's ids are keyed the edge's way with the same key store first), so a
pseudonym's true person is the one most of its records belong to; a true person split over
several pseudonyms is judged by the pseudonym holding most of their records (the others count
as the platform's own extra persons, reported apart).

Three truths per pyramid, each a floor rather than a proof (the rules were written once for
the platform and once, independently, for the generator, from the same document):
``true`` (the person's real state), ``coded`` (what the coded sources support) and ``all``
(coded sources plus the affirmed facts of free-text reports).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.pseudonym.keys import KeyStore

STRATA = {"t2d": ["at_risk", "1", "2", "3", "4"], "hf": ["1", "2", "3", "4"]}
TRUTH_COLUMNS = {
    "t2d": {"true": "t2d_stratum", "coded": "t2d_stratum_coded", "all": "t2d_stratum_all"},
    "hf": {"true": "hf_stratum", "coded": "hf_stratum_coded", "all": "hf_stratum_all"},
}
POPULATION_COLUMNS = {
    "t2d": ("t2d", "t2d_coded"), "t2d_at_risk": ("t2d_at_risk", "t2d_at_risk_coded"),
    "hf": ("hf", "hf_coded"), "hf_at_risk": ("hf_at_risk", "hf_at_risk_coded"),
}
NONE = "-"


@dataclass
class PyramidScore:
    """Agreement of gold's strata with one truth, over every alive resident of the territory."""

    pyramid: str
    truth: str
    persons: int
    agreement: float
    confusion: dict[str, dict[str, int]]  # truth stratum -> gold stratum -> persons
    recall: dict[str, float]

    def counts(self, side: str) -> dict[str, int]:
        """Persons per stratum as gold (`side="gold"`) or the truth sees them."""
        out = dict.fromkeys(STRATA[self.pyramid], 0)
        for t, row in self.confusion.items():
            for g, n in row.items():
                key = g if side == "gold" else t
                if key in out:
                    out[key] += n
        return out


@dataclass
class Evaluation:
    pyramids: list[PyramidScore] = field(default_factory=list)
    populations: dict[str, dict[str, float]] = field(default_factory=dict)
    actions: dict[str, float] = field(default_factory=dict)
    extra_pseudonyms: int = 0

    def score(self, pyramid: str, truth: str) -> PyramidScore:
        return next(p for p in self.pyramids if p.pyramid == pyramid and p.truth == truth)


def _truth_rows(sources: Path) -> dict[int, dict[str, str]]:
    with open(sources / "ground_truth" / "persons.csv", encoding="utf-8", newline="") as handle:
        return {int(r["person_id"]): r for r in csv.DictReader(handle)}


def _true_stratum(row: dict[str, str], pyramid: str, truth: str) -> str:
    value = row.get(TRUTH_COLUMNS[pyramid][truth], "")
    if truth == "true" and pyramid == "t2d" and not value:
        return "at_risk" if row.get("t2d_at_risk") == "1" else NONE
    return value or NONE


def keyed_links(sources: Path, store: KeyStore | None = None) -> dict[tuple[str, str, str], int]:
    """``(source, file, keyed record id) → true person`` from ``ground_truth/record_links.csv``.

    The edge lands record ids keyed (:meth:`pdp.ingest.edge.Edge.keyed_id`), so the truth's
    clear ids are keyed the same way, under `store` (default: the settings' key store), to be
    compared with bronze's ``record_id``.
    """
    from pdp.ingest.edge import Edge
    from pdp.pseudonym.keys import KeyStore

    edge = Edge(store or KeyStore.from_settings())
    with open(sources / "ground_truth" / "record_links.csv", encoding="utf-8", newline="") as handle:
        return {(r["source"], r["file"], edge.keyed_id(r["record_id"], source=r["source"])): int(r["person_id"])
                for r in csv.DictReader(handle)}


def pseudonym_owners(
    spark: SparkSession, sources: Path, lake_root: str | None = None, store: KeyStore | None = None
) -> tuple[dict[str, int], int]:
    """pseudonym -> true person (by majority of records), and how many pseudonyms are a split's extras."""
    from collections import Counter

    from pdp.lake import LakeTable

    rows = (LakeTable(spark, "bronze.records", lake_root=lake_root).read()
            .where("person_pseudonym IS NOT NULL").select("source", "file", "record_id", "person_pseudonym")
            .toLocalIterator())
    links = keyed_links(sources, store)
    votes: dict[str, Counter[int]] = {}
    for r in rows:
        person = links.get((r["source"], r["file"], r["record_id"]))
        if person is not None:
            votes.setdefault(r["person_pseudonym"], Counter())[person] += 1
    owner: dict[str, tuple[int, int]] = {}
    for pseudonym, counter in votes.items():
        person, n = counter.most_common(1)[0]
        owner[pseudonym] = (person, n)
    best: dict[int, tuple[int, str]] = {}
    for pseudonym, (person, n) in owner.items():
        if person not in best or n > best[person][0]:
            best[person] = (n, pseudonym)
    kept = {pseudonym: person for person, (_, pseudonym) in best.items()}
    return kept, len(owner) - len(kept)


def evaluate(
    spark: SparkSession, sources: Path, *, as_of: date, lake_root: str | None = None, store: KeyStore | None = None
) -> Evaluation:
    """Score gold at `as_of` against the ground truth of the territory in `sources` (`store`: the
    key store the ingest keyed record ids with; default: the settings')."""
    from pdp.lake import LakeTable

    truth = _truth_rows(sources)
    owners, extra = pseudonym_owners(spark, sources, lake_root, store)
    day = f"as_of = DATE '{as_of.isoformat()}'"

    def gold(name: str, cols: list[str]) -> list:
        return LakeTable(spark, name, lake_root=lake_root).read().where(day).select(*cols).collect()

    gold_strata: dict[tuple[int, str], str] = {}
    for r in gold("gold.stratum", ["person_pseudonym", "pyramid", "stratum"]):
        person = owners.get(r["person_pseudonym"])
        if person is not None:
            gold_strata[(person, r["pyramid"])] = r["stratum"]
    alive = {p: row for p, row in truth.items() if row["alive"] == "1"}
    result = Evaluation(extra_pseudonyms=extra)
    for pyramid in STRATA:
        for which in ("true", "coded", "all"):
            confusion: dict[str, dict[str, int]] = {}
            for person, row in alive.items():
                t = _true_stratum(row, pyramid, which)
                g = gold_strata.get((person, pyramid), NONE)
                confusion.setdefault(t, {}).setdefault(g, 0)
                confusion[t][g] += 1
            n = sum(sum(r.values()) for r in confusion.values())
            hits = sum(confusion.get(s, {}).get(s, 0) for s in [*STRATA[pyramid], NONE])
            recall = {s: confusion.get(s, {}).get(s, 0) / max(1, sum(confusion.get(s, {}).values()))
                      for s in STRATA[pyramid]}
            result.pyramids.append(PyramidScore(pyramid, which, n, hits / max(1, n), confusion, recall))
    members: dict[str, set[int]] = {}
    for r in gold("gold.population", ["person_pseudonym", "population"]):
        person = owners.get(r["person_pseudonym"])
        if person is not None:
            members.setdefault(r["population"], set()).add(person)
    for population, (true_col, coded_col) in POPULATION_COLUMNS.items():
        found = members.get(population, set())
        for which, col in (("true", true_col), ("coded", coded_col)):
            expected = {p for p, row in alive.items() if row.get(col) == "1"}
            tp = len(found & expected)
            result.populations[f"{population}.{which}"] = {
                "precision": tp / max(1, len(found)), "recall": tp / max(1, len(expected)),
                "gold": len(found), "truth": len(expected),
            }
    result.actions = _score_actions(sources, owners, gold("gold.care_action",
                                                          ["person_pseudonym", "pathway", "action", "status"]))
    return result


def _score_actions(sources: Path, owners: dict[str, int], rows: list) -> dict[str, float]:
    """Person × action status agreement with `actions_due_coded.csv` (a missing or extra row disagrees)."""
    expected: dict[tuple[int, str, str], str] = {}
    path = sources / "ground_truth" / "actions_due_coded.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle):
            expected[(int(r["person_id"]), r["pathway"], r["action"])] = r["status"]
    got: dict[tuple[int, str, str], str] = {}
    for r in rows:
        person = owners.get(r["person_pseudonym"])
        if person is not None:
            got[(person, r["pathway"], r["action"])] = r["status"]
    keys = set(expected) | set(got)
    agree = sum(1 for k in keys if expected.get(k) == got.get(k))
    out = {"agreement": agree / max(1, len(keys)), "rows": float(len(keys)),
           "missing": float(len(set(expected) - set(got))), "extra": float(len(set(got) - set(expected)))}
    for pathway, action in sorted({(k[1], k[2]) for k in keys}):  # per action: where a disagreement comes from
        mine = [k for k in keys if (k[1], k[2]) == (pathway, action)]
        out[f"{pathway}.{action}"] = sum(1 for k in mine if expected.get(k) == got.get(k)) / len(mine)
    return out
