"""Small silver lakes written from readable fact lines, for the golden cases of the algorithms.

A person is one line of facts, each written as a few words, days counted from the as-of date
(``-100`` = 100 days before it; ``+3n`` after a day count = a stay of 3 nights):

    dx E11.9 -100                 a diagnosis (CIM-10), source pmsi, status DP, day case
    dx I50.9 gp -100              a GP-coded diagnosis (source gp_fhir, no status)
    dx I50.9 das -100+2n          an associated diagnosis of a 2-night stay
    proc NZFA004 -50              a CCAM act (pmsi)          proc 401191002 gp -20: a SNOMED act from the GP
    drug A10BA02 -30,-60,-90      pharmacy deliveries        drug A10BA02 gp -30: a GP prescription
    lab 4548-4=7.2 -30,-200       lab results (LOINC), one value on each date
    text E11.4 negated -40        a fact from a report with its assertion
    death -10                     a death recorded 10 days before the as-of date
"""

from __future__ import annotations

import zlib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from pdp.lake import LakeTable, RunInfo

TERRITORY_COMMUNES = ("59178", "59170")
_SOURCES = {"pmsi": "pmsi", "gp": "gp_fhir", "lab": "lab_hl7", "pharmacy": "pharmacy"}


def person_id(name: str) -> int:
    return zlib.crc32(name.encode())


def pseudonym(name: str) -> str:
    return "v1:" + (name + "_" * 43)[:43]


class SilverBuilder:
    """Accumulates silver rows for named persons, then writes every silver table into a lake root."""

    def __init__(self, as_of: date) -> None:
        self.as_of = as_of
        self.rows: dict[str, list[dict[str, Any]]] = {
            t: [] for t in ("person", "death", "location", "condition_occurrence", "procedure_occurrence",
                            "drug_exposure", "measurement", "observation", "note_fact")
        }
        self._n = 0
        for code in TERRITORY_COMMUNES:
            self.rows["location"].append({"location_id": code, "name": f"Commune {code}", "postcode": "59500",
                                          "population": 10_000, "source_file": "insee/communes.csv"})

    def day(self, offset: str) -> tuple[date, int]:
        nights = 0
        if "+" in offset[1:]:
            offset, stay = offset[0] + offset[1:].split("+")[0], offset[1:].split("+")[1]
            nights = int(stay.rstrip("n"))
        return self.as_of + timedelta(days=int(offset)), nights

    def person(self, name: str, sex: str, born: str, commune: str | None, facts: str) -> None:
        year, month = (int(x) for x in born.split("-"))
        self.rows["person"].append({
            "person_id": person_id(name), "person_pseudonym": pseudonym(name), "gender": sex,
            "year_of_birth": year, "month_of_birth": month, "location_id": commune, "gp_rpps": "10000000001",
            "first_seen": self.as_of - timedelta(days=1000), "last_seen": self.as_of, "sources": ["pmsi"],
        })
        for fact in filter(None, (f.strip() for f in facts.split(";"))):
            self._fact(name, fact.split())

    def _event(self, table: str, name: str, vocabulary: str, code: str, day: date, **extra: Any) -> None:
        self._n += 1
        row = {
            f"{table}_id" if table != "note_fact" else "note_fact_id": self._n,
            "person_id": person_id(name), "person_pseudonym": pseudonym(name), "vocabulary": vocabulary,
            "source_code": code, "start_date": day, "source": "pmsi", "record_hash": f"r{self._n}",
            "batch_id": "golden",
        }
        if table != "note_fact":
            row |= {"concept": None, "concept_id": self._n, "end_date": day, "status": None, "visit_key": None,
                    "provider": None, "source_file": "golden"}
        row |= extra
        self.rows[table].append(row)

    def _fact(self, name: str, words: list[str]) -> None:
        kind, rest = words[0], words[1:]
        if kind == "death":
            day, _ = self.day(rest[0])
            self.rows["death"].append({"person_id": person_id(name), "person_pseudonym": pseudonym(name),
                                       "death_date": day, "location_id": None, "source": "insee_deaths",
                                       "record_hash": f"d{name}"})
            return
        code, *options, days = rest
        for offset in days.split(","):
            day, nights = self.day(offset)
            if kind == "dx":
                source = "gp" if "gp" in options else "pmsi"
                status = None if source == "gp" else ("DAS" if "das" in options else "DP")
                self._event("condition_occurrence", name, "CIM-10", code, day, source=_SOURCES[source], status=status,
                            end_date=day + timedelta(days=nights))
            elif kind == "proc":
                vocabulary = "SNOMED" if code.isdigit() else "CCAM"
                source = "gp" if "gp" in options else "pmsi"
                self._event("procedure_occurrence", name, vocabulary, code, day, source=_SOURCES[source])
            elif kind == "drug":
                source = "gp" if "gp" in options else "pharmacy"
                self._event("drug_exposure", name, "ATC", code, day, source=_SOURCES[source], quantity=1.0)
            elif kind == "lab":
                loinc, value = code.split("=")
                self._event("measurement", name, "LOINC", loinc, day, source=_SOURCES["lab"], value=float(value),
                            unit=None)
            elif kind == "text":
                self._event("note_fact", name, "CIM-10", code, day, assertion=options[0], value=None, unit=None,
                            status=options[0], source="reports", note_id=self._n, concept=None, history=False,
                            rule="golden", span_start=None, span_end=None)
            else:
                raise ValueError(f"unknown fact kind {kind!r}")

    def write(self, spark: SparkSession, lake_root: Path) -> None:
        run = RunInfo.new("tests.golden", definitions_version="golden")
        for table, rows in self.rows.items():
            lake = LakeTable(spark, f"silver.{table}", lake_root=str(lake_root)).create()
            if rows:
                schema = lake.definition.spark_schema()
                full = [{c: r.get(c) for c in schema.fieldNames()} for r in rows]
                lake.append(spark.createDataFrame(full, schema), run=run)
