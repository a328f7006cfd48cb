"""Units of measurement: which units a measurement may arrive in, and its value in the one unit rules read.

Why: the population rules compare values with thresholds (HbA1c >= 6.5 %, NT-proBNP >= 450 pg/mL,
a 2 kg weight gain). Senders do not share units: an IFCC lab sends HbA1c in mmol/mol (53 mmol/mol
is 7.0 %), a hospital sends glucose in mmol/L, a scale in pounds. Compared as sent, every IFCC
HbA1c is "above 6.5". So ``units.yml`` declares, per concept read with a threshold or a change, its
unit and the units it is accepted in, with their conversion; the edge refuses any other unit for
those concepts (:func:`land_unit`), and silver converts (:func:`unit_conversion_sql`).

A unit is also sender-typed text that lands in the lake: for codes whose concept declares no units,
the edge lands a unit only when it reads as one (:func:`is_unit`: UCUM-style terms, each a known
unit atom with an optional prefix, factor and exponent, a power of ten or a short ``{annotation}``,
joined by ``/`` or ``.``), so a name, a phone number or a date typed in a unit field never does;
the edge then keeps the value and leaves the unit out, counted (:mod:`pdp.ingest.validate`).

What it changes, measured 2026-12-07 (ad hoc: `pdp bench strata`'s scoring run twice on one
5 000-person territory, seed 7, whose second lab reports in SI units, once with silver's
conversion replaced by the values as sent; 2 cores shared with test runs, figures are agreements,
not timings): the T2D and HF pyramids agree with the coded truth alike (0.9998 and 0.9996 both
ways: the persons with two HbA1c in two years are already diabetic here), but the status of the
T2D HbA1c action (due every 3 or 6 months as the last value is above 7 % or not) agrees 0.9888
with the conversion and 0.9385 without, and all actions 0.9947 against 0.9887. A floor, not a
proof: the generator's labs and the registry state the same chemistry.

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
>>> land_unit("LOINC", "3016-3", "mUI/L")      # TSH: no rule reads it, a unit lands as sent
'mUI/L'
>>> land_unit("LOINC", "3016-3", "µUI/mL"), land_unit("LOINC", "26464-8", "10³/mm³")
('uUI/mL', '10^3/mm3')
>>> [is_unit(text) for text in ("G/L", "x10E9/L", "mg/24h", "DUPONT", "06.12.34.56.78", "12/03/57")]
[True, True, True, False, False, False]
>>> try:
...     land_unit("LOINC", "3016-3", "Jean 0612345678")
... except UnitRefused as exc:
...     print(exc.kind)
malformed
>>> convert("hba1c", "mmol/mol", 53.0)       # 7.00044, to the 0.1 % labs print
7.0
>>> convert("weight", "g", 81250.0)            # half up, as Spark's round
81.3
"""

from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pdp.semantic.concepts import concept_members_sql, concept_of, concept_sets, sql_quote

__all__ = [
    "UnitRefused",
    "UnitsError",
    "convert",
    "implied_unit",
    "is_unit",
    "land_unit",
    "parse_units",
    "unit_conversion_sql",
    "unit_key",
    "units_version",
]

# A unit's grammar, UCUM-style with the spellings French labs use (G/L, UI, mn, x10E9): terms joined by
# "/" or "."; a term is a power of ten, an {annotation}, or an atom with an optional factor (1.73m2,
# 24h), SI prefix and exponent. Anything else (a name, a phone number, a date) is not a unit.
_ATOMS = frozenset({
    "g", "mol", "L", "l", "m", "s", "sec", "min", "mn", "h", "d", "wk", "mo", "a", "an", "U", "UI", "IU", "eq", "Eq",
    "Pa", "bar", "kat", "osm", "Osm", "%", "‰", "°C", "Cel", "G", "T", "bpm", "cal", "ratio", "m[Hg]", "m[H2O]", "[iU]",
    "[IU]", "[lb_av]", "[in_i]", "[ft_i]", "[pH]", "[degF]", "[drp]", "Hz", "V", "W", "J", "Gy", "Sv", "Bq", "lx",
})
_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a")
# UCUM annotations are free text by design: only those labs and this platform's specs write land
_ANNOTATIONS = frozenset({"creat", "1.73_m2", "cells", "HbA1c", "RBC", "WBC", "Hb", "total", "pack", "score",
                          "beats", "ratio", "tot"})
_TERM = re.compile(
    r"(?:x?10(?:[*^]|[Ee])-?[0-9]{1,2}|x?10{1,5}|\{(?P<alone>[A-Za-z0-9_.]{1,16})\}"
    r"|(?P<factor>[0-9]{1,3}(?:[.,][0-9]{1,3})?)?(?P<atom>[A-Za-z%‰°]+(?:\[[A-Za-z0-9_]{1,8}\])?|\[[A-Za-z_]{1,8}\])"
    r"(?:\^?-?[0-9])?(?:\{(?P<note>[A-Za-z0-9_.]{1,16})\})?)"
)
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def _fold(text: str) -> str:
    """NFKC without its superscript flattening (10³ is 10^3, m² is m2), µ and μ as u, no spaces."""
    text = re.sub(r"(?<=10)([⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)", lambda m: "^" + m.group(1).translate(_SUPERSCRIPTS), text)
    folded = unicodedata.normalize("NFKC", text.translate(_SUPERSCRIPTS)).replace("μ", "u")
    return "".join(folded.split())


def _atom_known(atom: str) -> bool:
    return atom in _ATOMS or any(atom.startswith(p) and atom[len(p):] in _ATOMS for p in _PREFIXES)


def is_unit(text: str) -> bool:
    """True when `text` (folded: no spaces, µ as u) reads as a unit: every term known (see ``_ATOMS``)."""
    if not text or len(text) > 32:
        return False
    terms = text.split("/")
    if terms[0] == "":  # "/mm3", "/min": per ...
        terms = terms[1:]
    for term in terms:
        for part in re.split(r"\.(?![0-9])", term) if term else [""]:  # "." joins terms, "1.73" is a factor
            match = _TERM.fullmatch(part)
            if match is None or (match.group("atom") is not None and not _atom_known(match.group("atom"))):
                return False
            if any(note is not None and note not in _ANNOTATIONS for note in match.group("alone", "note")):
                return False
    return True


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
    return _fold(text).casefold()


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
    spelling); otherwise the sent unit folded (no spaces, µ as u), when it reads as a unit."""
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
    folded = _fold(unit)
    if not is_unit(folded):
        raise UnitRefused("malformed", "not a unit")
    return folded


def implied_unit(vocabulary: str, code: str) -> str | None:
    """The unit a value of (`vocabulary`, `code`) sent without one is in: the unit the code's
    definition fixes (``code_units``); None when its concept has one unit (the value is in it) or
    no rule reads it; :class:`UnitRefused` when its concept comes in several units and the code
    fixes none (a glucose of 95 without a unit: g/L, mmol/L or mg/dL?).

    >>> implied_unit("LOINC", "59261-8"), implied_unit("LOINC", "62238-1"), implied_unit("LOINC", "3016-3")
    ('mmol/mol', None, None)
    """
    concept = _concept_units(vocabulary, code)
    if concept is None:
        return None
    units = _units()
    fixed = units.code_units.get(code)
    if fixed is None and len({u for u, _, _ in units.accept[concept].values()}) > 1:
        raise UnitRefused("unknown", f"a value without a unit, and {concept} comes in several")
    return fixed


def convert(concept: str, unit: str, value: float) -> float:
    """`value` in `unit` (a spelling :func:`land_unit` returned) in `concept`'s own unit."""
    units = _units()
    _, factor, offset = units.accept[concept][unit_key(unit)]
    if (factor, offset) == (1.0, 0.0):
        return value
    exact = Decimal(repr(value * factor + offset))  # the shortest decimal, rounded half up: as Spark's round
    return float(exact.quantize(Decimal(1).scaleb(-units.decimals[concept]), rounding=ROUND_HALF_UP))


def unit_conversion_sql(vocabulary_col: str, code_col: str, unit_col: str, value_col: str) -> tuple[str, str]:
    """Spark SQL expressions of (value, unit) in each concept's own unit: a row in one of the
    concept's accepted spellings is converted and relabelled; rows of other codes, in another
    spelling (a lake landed before a unit was checked), or without a unit (the edge set the unit
    a code implies, or refused it) keep theirs.

    A converted value is rounded half up to the concept's ``decimals``, as :func:`convert` does.
    """
    units = _units()
    value_whens, unit_whens = [], []
    for concept, table in units.accept.items():
        member = concept_members_sql([concept], vocabulary_col, code_col)
        converted = {u: (f, o) for u, f, o in table.values() if (f, o) != (1.0, 0.0)}
        for unit, (factor, offset) in sorted(converted.items()):
            shifted = f" + {offset!r}" if offset else ""
            value_whens.append(f"WHEN {unit_col} = {sql_quote(unit)} AND {member} "
                               f"THEN round({value_col} * {factor!r}{shifted}, {units.decimals[concept]})")
        spellings = sorted({u for u, _, _ in table.values()} - {units.unit[concept]})
        if spellings:
            listed = ", ".join(sql_quote(u) for u in spellings)
            unit_whens.append(f"WHEN {unit_col} IN ({listed}) AND {member} THEN {sql_quote(units.unit[concept])}")
    value_sql = f"CASE {' '.join(value_whens)} ELSE {value_col} END" if value_whens else value_col
    unit_sql = f"CASE {' '.join(unit_whens)} ELSE {unit_col} END" if unit_whens else unit_col
    return value_sql, unit_sql
