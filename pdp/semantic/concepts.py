"""Concept sets: the mapping from source codes to the clinical concepts the algorithms use.

Why prefix sets, not a full terminology: the algorithms need a few dozen concepts (T2D and its
complications, HF, exams, drug classes), defined once in ``concept_sets.yml`` and applied the
same way in Spark (silver) and in Python (tests, explanations). The most specific entry wins.

>>> concept_of("CIM-10", "E11.3")
't2d_retinopathy'
>>> concept_of("CIM-10", "E11.9")
't2d'
>>> concept_of("LOINC", "4548-4")
'hba1c'
>>> concept_of("CIM-10", "J18.9") is None
True
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "UnknownConceptError",
    "concept_case_sql",
    "concept_members_sql",
    "concept_of",
    "concept_sets",
    "concept_sets_version",
    "sql_quote",
]


class UnknownConceptError(KeyError):
    """A definition names a concept set that `concept_sets.yml` does not define."""


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    data = yaml.safe_load(resources.files("pdp.semantic").joinpath("concept_sets.yml").read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "concepts" not in data or "version" not in data:
        raise ValueError("concept_sets.yml: needs 'version' and 'concepts'")
    return data


def concept_sets() -> dict[str, dict[str, list[str]]]:
    return _load()["concepts"]


def concept_sets_version() -> str:
    return f"concept_sets@{_load()['version']}"


@lru_cache(maxsize=1)
def _entries() -> list[tuple[str, str, bool, str]]:
    """(vocabulary, code or prefix, is_prefix, concept), most specific first."""
    out = []
    for concept, by_vocab in concept_sets().items():
        for vocabulary, codes in by_vocab.items():
            for code in codes:
                prefix = code.endswith("*")
                out.append((vocabulary, code.rstrip("*"), prefix, concept))
    return sorted(out, key=lambda e: (e[2], -len(e[1])))  # exact codes, then longer prefixes


def concept_of(vocabulary: str, code: str) -> str | None:
    """The concept of a source code, or None when no set holds it."""
    for vocab, entry, prefix, concept in _entries():
        if vocab == vocabulary and (code.startswith(entry) if prefix else code == entry):
            return concept
    return None


def concept_case_sql(vocabulary_col: str, code_col: str) -> str:
    """A Spark SQL CASE expression giving the concept of (vocabulary, code) columns, same order as `concept_of`."""

    whens = []
    for vocab, entry, prefix, concept in _entries():
        test = f"startswith({code_col}, {sql_quote(entry)})" if prefix else f"{code_col} = {sql_quote(entry)}"
        whens.append(f"WHEN {vocabulary_col} = {sql_quote(vocab)} AND {test} THEN {sql_quote(concept)}")
    return "CASE " + " ".join(whens) + " ELSE NULL END"


def sql_quote(text: str) -> str:
    """`text` as a SQL string literal (Spark SQL and DuckDB alike)."""
    return "'" + text.replace("'", "''") + "'"


def concept_members_sql(concepts: list[str], vocabulary_col: str, code_col: str) -> str:
    """A SQL condition true when (vocabulary, code) belongs to any of `concepts`, inclusively.

    Why inclusive, unlike `concept_of`: a population rule asking for "a T2D diagnosis" wants
    E11.2 as much as E11.9, while silver's single `concept` column keeps the most specific set
    (t2d_nephropathy). Plain `=` and `LIKE 'prefix%'`, so Spark SQL and DuckDB both run it.

    >>> concept_members_sql(["t2d"], "v", "c")
    "((v = 'CIM-10' AND (c LIKE 'E11%')) OR (v = 'SNOMED' AND (c = '44054006')))"
    """
    sets = concept_sets()
    terms = []
    for concept in concepts:
        if concept not in sets:
            raise UnknownConceptError(concept)
        for vocabulary, codes in sets[concept].items():
            tests = [
                f"{code_col} LIKE {sql_quote(code[:-1] + '%')}" if code.endswith("*")
                else f"{code_col} = {sql_quote(code)}"
                for code in codes
            ]
            terms.append(f"({vocabulary_col} = {sql_quote(vocabulary)} AND ({' OR '.join(tests)}))")
    return "(" + " OR ".join(terms) + ")" if terms else "FALSE"
