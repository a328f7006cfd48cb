"""Units of measurement: which units a measurement may arrive in, and its value in the one unit rules read.

Why: the population rules compare values with thresholds (HbA1c >= 6.5 %, NT-proBNP >= 450 pg/mL,
a 2 kg weight gain). Senders do not share units: an IFCC lab sends HbA1c in mmol/mol (53 mmol/mol
is 7.0 %), a hospital sends glucose in mmol/L, a scale in pounds. Compared as sent, every IFCC
HbA1c is "above 6.5". So ``units.yml`` declares, per concept read with a threshold or a change, its
unit and the units it is accepted in, with their conversion; the edge refuses any other unit for
those concepts (:func:`land_unit`), and silver converts (:func:`unit_conversion_sql`).

A unit is also sender-typed text that lands in the lake: for codes whose concept declares no units,
the edge still lands only a unit-shaped token (UCUM's characters, no spaces, at most 32 of them, no
run of four digits), so a name, a phone number or a sentence typed in a unit field never does.

>>> land_unit("LOINC", "4548-4", "%")
'%'
>>> land_unit("LOINC", "59261-8", " MMOL/mol")
'mmol/mol'
>>> land_unit("LOINC", "14682-9", "µmol/l")
'umol/L'
>>> implied_unit("LOINC", "59261-8")   # a value sent without its unit: the one the code is defined in
'mmol/mol'
>>> def refused(unit):
...     try:
...         land_unit("LOINC", "4548-4", unit)
...     except UnitRefused as exc:
...         return str(exc)
>>> refused("g/L")
'unknown: not a unit accepted for hba1c'
>>> land_unit("LOINC", "3016-3", "mUI/L")      # TSH: no rule reads it, any unit-shaped token lands
'mUI/L'
>>> land_unit("LOINC", "3016-3", "µUI/mL")
'uUI/mL'
>>> try:
...     land_unit("LOINC", "3016-3", "Jean 0612345678")
... except UnitRefused as exc:
...     print(exc.kind)
malformed
>>> convert("hba1c", "mmol/mol", 53.0)       # 7.00044, to the 0.1 % labs print
7.0
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pdp.semantic.concepts import concept_members_sql, concept_of, concept_sets

__all__ = [
    "UnitRefused",
    "UnitsError",
    "convert",
    "implied_unit",
    "land_unit",
    "parse_units",
    "unit_conversion_sql",
    "unit_key",
    "units_version",
]

_SHAPE = re.compile(r"[0-9A-Za-z%°/.*^\[\]{}()'+_,:-]{1,32}")
_DIGIT_RUN = re.compile(r"[0-9]{4}")


class UnitsError(ValueError):
    """``units.yml`` is invalid (one line: what and where)."""


class UnitRefused(ValueError):
    """A unit the edge does not land: ``kind`` is ``unknown`` (not accepted for the code's concept)
    or ``malformed`` (not a unit at all). The message never quotes the unit."""

    def __init__(self, kind: Literal["unknown", "malformed"], message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def unit_key(text: str) -> str:
    """How spellings are compared: NFKC (m² = m2), µ and μ as u, no spaces, case folded.

    >>> unit_key("µmol/l") == unit_key("umol/L") and unit_key("kg/m²") == unit_key("kg/m2")
    True
    """
    folded = unicodedata.normalize("NFKC", text).replace("μ", "u")
    return "".join(folded.split()).casefold()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Conversion(_Strict):
    factor: float = Field(default=1.0, gt=0)
    offset: float = 0.0


class _ConceptUnits(_Strict):
    unit: str
    decimals: int = Field(default=6, ge=0, le=6)  # a converted value's precision in `unit`
    accept: dict[str, _Conversion] = Field(min_length=1)
    code_units: dict[str, str] = Field(default_factory=dict)  # code -> the one unit its definition fixes

    @model_validator(mode="after")
    def _coherent(self) -> _ConceptUnits:
        own = self.accept.get(self.unit)
        if own is None or own.factor != 1.0 or own.offset != 0.0:
            raise ValueError(f"accept must hold the unit {self.unit!r} itself, unconverted")
        for code, unit in self.code_units.items():
            if unit not in self.accept:
                raise ValueError(f"code_units.{code}: {unit!r} is not an accepted unit")
        keys = [unit_key(u) for u in self.accept]
        if len(set(keys)) < len(keys):
            raise ValueError("accept: two units are the same spelling")
        return self


class _Registry(_Strict):
    version: int = Field(ge=1)
    concepts: dict[str, _ConceptUnits]
    aliases: dict[str, list[str]] = Field(default_factory=dict)


class _Units:
    """The registry, compiled: per concept, unit key -> (spelling landed, factor, offset)."""

    def __init__(self, registry: _Registry) -> None:
        self.version = registry.version
        self.unit = {name: c.unit for name, c in registry.concepts.items()}
        self.decimals = {name: c.decimals for name, c in registry.concepts.items()}
        used = {u for c in registry.concepts.values() for u in c.accept}
        spellings: dict[str, list[str]] = {}
        for unit, others in registry.aliases.items():
            if unit not in used:
                raise UnitsError(f"units.yml: aliases.{unit}: not a unit any concept accepts")
            spellings[unit] = others
        self.accept: dict[str, dict[str, tuple[str, float, float]]] = {}
        self.code_units: dict[str, str] = {}
        sets = concept_sets()
        for name, concept in registry.concepts.items():
            if name not in sets:
                raise UnitsError(f"units.yml: concepts.{name}: no such concept in concept_sets.yml")
            for vocabulary, codes in sets[name].items():
                for code in codes:  # silver converts by membership: each code's own concept must be this one
                    if not code.endswith("*") and concept_of(vocabulary, code) != name:
                        raise UnitsError(f"units.yml: concepts.{name}: {vocabulary} {code} belongs to another concept")
            table: dict[str, tuple[str, float, float]] = {}
            for unit, conversion in concept.accept.items():
                for spelling in (unit, *spellings.get(unit, ())):
                    key = unit_key(spelling)
                    if key in table and table[key][0] != unit:
                        raise UnitsError(f"units.yml: concepts.{name}: {spelling!r} spells two accepted units")
                    table[key] = (unit, conversion.factor, conversion.offset)
            self.accept[name] = table
            members = {code for codes in sets[name].values() for code in codes}
            for code, unit in concept.code_units.items():
                if code not in members:
                    raise UnitsError(f"units.yml: concepts.{name}.code_units: {code} is not a code of {name}")
                self.code_units[code] = unit


def parse_units(text: str) -> _Units:
    """A units registry from its YAML text, validated (:class:`UnitsError`: one line, what and where)."""
    try:
        return _Units(_Registry.model_validate(yaml.safe_load(text)))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UnitsError(f"units.yml: {where}: {first['msg']}") from None


@lru_cache(maxsize=1)
def _units() -> _Units:
    return parse_units(resources.files("pdp.semantic").joinpath("units.yml").read_text(encoding="utf-8"))


def units_version() -> str:
    return f"units@{_units().version}"


@lru_cache(maxsize=65_536)
def _concept_units(vocabulary: str, code: str) -> str | None:
    concept = concept_of(vocabulary, code)
    return concept if concept in _units().accept else None


@lru_cache(maxsize=65_536)
def land_unit(vocabulary: str, code: str, unit: str) -> str:
    """The spelling of `unit` the lake keeps for a value coded (`vocabulary`, `code`), or
    :class:`UnitRefused`: for a concept with declared units, one of them (the registry's own
    spelling); otherwise the sent token without spaces, when it has the shape of a unit."""
    concept = _concept_units(vocabulary, code)
    key = unit_key(unit)
    if concept is not None:
        units = _units()
        found = units.accept[concept].get(key)
        if found is None:
            raise UnitRefused("unknown", f"not a unit accepted for {concept}")
        fixed = units.code_units.get(code)
        if fixed is not None and found[0] != fixed:
            raise UnitRefused("unknown", f"not the unit this {concept} code is defined in")
        return found[0]
    compact = "".join(unicodedata.normalize("NFKC", unit).replace("μ", "u").split())
    if not _SHAPE.fullmatch(compact) or _DIGIT_RUN.search(compact):
        raise UnitRefused("malformed", "not a unit")
    return compact


def implied_unit(vocabulary: str, code: str) -> str | None:
    """The unit a value of (`vocabulary`, `code`) sent without one is in: the unit its definition
    fixes (``code_units``), else None (taken to be in its concept's unit, or unknown).

    >>> implied_unit("LOINC", "59261-8"), implied_unit("LOINC", "3016-3")
    ('mmol/mol', None)
    """
    return _units().code_units.get(code) if _concept_units(vocabulary, code) is not None else None


def convert(concept: str, unit: str, value: float) -> float:
    """`value` in `unit` (a spelling :func:`land_unit` returned) in `concept`'s own unit."""
    units = _units()
    _, factor, offset = units.accept[concept][unit_key(unit)]
    if (factor, offset) == (1.0, 0.0):
        return value
    return round(value * factor + offset, units.decimals[concept])


def unit_conversion_sql(vocabulary_col: str, code_col: str, unit_col: str, value_col: str) -> tuple[str, str]:
    """Spark SQL / DuckDB expressions of (value, unit) in each concept's own unit; rows of other
    codes, or without a unit (taken to be in the concept's unit), keep theirs.

    A converted value is rounded to the concept's ``decimals``, as :func:`convert` rounds it.
    """
    units = _units()
    value_whens, unit_whens = [], []
    for concept, table in units.accept.items():
        member = concept_members_sql([concept], vocabulary_col, code_col)
        converted = {u: (f, o) for u, f, o in table.values() if (f, o) != (1.0, 0.0)}
        for unit, (factor, offset) in sorted(converted.items()):
            shifted = f" + {offset!r}" if offset else ""
            value_whens.append(f"WHEN {unit_col} = {_quote(unit)} AND {member} "
                               f"THEN round({value_col} * {factor!r}{shifted}, {units.decimals[concept]})")
        if converted or len({u for u, _, _ in table.values()}) > 1:
            unit_whens.append(f"WHEN {unit_col} IS NOT NULL AND {member} THEN {_quote(units.unit[concept])}")
    value_sql = f"CASE {' '.join(value_whens)} ELSE {value_col} END" if value_whens else value_col
    unit_sql = f"CASE {' '.join(unit_whens)} ELSE {unit_col} END" if unit_whens else unit_col
    return value_sql, unit_sql


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
