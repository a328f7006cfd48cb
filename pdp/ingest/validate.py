"""Checks every parser applies, driven by the source spec: dates, identity, NIR, codes, numbers.

Why shared: a date is impossible, a NIR key wrong or a LOINC check digit off in the same way
whichever format carried it, and the reason code must not depend on the parser that found
it. Parsers extract text; these checks turn it into typed values or raise :class:`Invalid`,
which the parser turns into a quarantine row.

Messages name the field (column, HL7 field, FHIR element) and the kind of fault, never the
value: they go to the quarantine table, which must hold nothing nominative.

Example::

    >>> from datetime import date
    >>> checks = Checks(min_date=date(1880, 1, 1), max_date=date(2026, 1, 1), code_systems=frozenset({"CIM-10"}))
    >>> checks.date("12/05/1980", "%d/%m/%Y", "date_naissance")
    datetime.date(1980, 5, 12)
    >>> try:
    ...     checks.date("31/02/1980", "%d/%m/%Y", "date_naissance")
    ... except Invalid as exc:
    ...     print(exc.reason, exc.message)
    DATE_INVALID date_naissance: not a valid date in the format %d/%m/%Y
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from pdp.ingest.model import Event, IdentityFields
from pdp.ingest.reasons import ReasonCode
from pdp.pseudonym.nir import NirInvalid, parse_nir
from pdp.semantic import CODE_SYSTEMS, UnitRefused, implied_unit, land_unit, validate_code

__all__ = ["NOT_A_UNIT", "TEXT_VALUE_UNIT", "Checks", "Invalid", "parse_date", "parse_number"]

# Kinds of what was read and not kept (FileContext.skipped, each file's report), for values:
NOT_A_UNIT = "unit that is not a unit"  # a value lands without the text sent as its unit (Checks.event)
TEXT_VALUE_UNIT = "text value in a unit no rule converts"  # a fact from a report lands without its value


class Invalid(Exception):
    """A record fails a check: its reason code and a value-free message."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def _ymd(y: int, m: int, d: int) -> tuple[int, int, int]:
    return y, m, d


# Fast paths for the formats French senders use; other formats go through strptime.
_FAST_DATES: dict[str, tuple[re.Pattern[str], Callable[[int, int, int], tuple[int, int, int]]]] = {
    "%d/%m/%Y": (re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})"), lambda d, m, y: (y, m, d)),
    "%Y-%m-%d": (re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})"), _ymd),
    "%Y%m%d": (re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})"), _ymd),
}


def parse_date(text: str, fmt: str, where: str) -> date:
    """`text` as a date in `fmt`; :class:`Invalid` (DATE_INVALID) when unparseable or impossible.

    >>> parse_date("2024-02-29", "%Y-%m-%d", "d")
    datetime.date(2024, 2, 29)
    """
    fast = _FAST_DATES.get(fmt)
    if fast is not None:
        match = fast[0].fullmatch(text)
        if match is not None:
            y, m, d = fast[1](*(int(g) for g in match.groups()))
            try:
                return date(y, m, d)
            except ValueError:
                raise Invalid(ReasonCode.DATE_INVALID, f"{where}: not a valid date in the format {fmt}") from None
    try:
        return datetime.strptime(text, fmt).date()
    except ValueError:
        raise Invalid(ReasonCode.DATE_INVALID, f"{where}: not a valid date in the format {fmt}") from None


def parse_number(text: str, where: str) -> float:
    """A decimal number as French senders write it (``1,5`` or ``1.5``); finite only.

    >>> parse_number("1,5", "quantite")
    1.5
    """
    try:
        value = float(text.replace(",", ".").replace(" ", ""))
    except ValueError:
        raise Invalid(ReasonCode.VALUE_INVALID, f"{where}: not a number") from None
    if not math.isfinite(value):
        raise Invalid(ReasonCode.VALUE_INVALID, f"{where}: not a finite number")
    return value


@dataclass(frozen=True, slots=True)
class Checks:
    """The spec's validation policy for one run (``max_date`` is the day of the run unless set)."""

    min_date: date
    max_date: date
    code_systems: frozenset[str]
    required_identity: tuple[str, ...] = ("birth_name", "birth_date")
    check_nir: bool = True
    check_codes: bool = True
    _seen_codes: dict[tuple[str, str], bool] = field(default_factory=dict, compare=False, repr=False)
    # what was read and not kept, per kind (the file's FileContext.skipped: counted in the file's report)
    skipped: Counter[str] = field(default_factory=Counter, compare=False, repr=False)

    def date(self, text: str, fmt: str, where: str) -> date:
        """Parsed and within [min_date, max_date]."""
        return self.in_range(parse_date(text, fmt, where), where)

    def in_range(self, day: date, where: str) -> date:
        if day > self.max_date:
            raise Invalid(ReasonCode.DATE_OUT_OF_RANGE, f"{where}: date after the allowed maximum (default: today)")
        if day < self.min_date:
            raise Invalid(ReasonCode.DATE_OUT_OF_RANGE, f"{where}: date before the allowed minimum")
        return day

    def nir(self, text: str, where: str) -> None:
        if not self.check_nir:
            return
        result = parse_nir(text)
        if isinstance(result, NirInvalid):
            raise Invalid(ReasonCode.NIR_INVALID, f"{where}: {result.reason}")

    def code(self, system: str, code: str, where: str) -> None:
        """CODE_UNKNOWN for a system the spec does not declare, or a code invalid in its system."""
        if system not in self.code_systems:
            raise Invalid(ReasonCode.CODE_UNKNOWN, f"{where}: code system not declared by the source spec")
        if not self.check_codes or system not in CODE_SYSTEMS:
            return
        key = (system, code)
        ok = self._seen_codes.get(key)
        if ok is None:
            ok = validate_code(system, code)
            if len(self._seen_codes) < 100_000:  # a few thousand distinct codes in practice; bounded anyway
                self._seen_codes[key] = ok
        if not ok:
            raise Invalid(ReasonCode.CODE_UNKNOWN, f"{where}: not a valid {system} code")

    def number(self, text: str, where: str) -> float:
        return parse_number(text, where)

    def identity(self, texts: Mapping[str, str | None], birth_date_format: str, where: str = "") -> IdentityFields:
        """Identity traits from their text: presence (IDENTITY_MISSING), birth date, NIR.

        `texts` maps identity field names to stripped text (None or "" when absent);
        `where` prefixes field names in messages (``PID-7``, ``Patient.birthDate``...).
        """
        for name in self.required_identity:
            if not texts.get(name):
                raise Invalid(ReasonCode.IDENTITY_MISSING, f"{_label(where, name)}: empty")
        values = {k: (v or None) for k, v in texts.items() if k != "birth_date"}
        birth_text = texts.get("birth_date")
        birth = self.date(birth_text, birth_date_format, _label(where, "birth_date")) if birth_text else None
        nir = values.get("nir")
        if nir:
            self.nir(nir, _label(where, "nir"))
        return IdentityFields(birth_date=birth, **values)

    def event(self, event: Event, where: str) -> Event:
        """The event's code (system and syntax), date range and order, and its unit; returned
        unchanged but for the unit (:func:`pdp.semantic.land_unit`): for a concept whose values the
        rules read, the registry's spelling, the unit its code implies when none was sent, and
        UNIT_UNKNOWN for a unit they cannot convert (or none, for a concept sent in several); for
        other codes the unit folded, or left out and counted (``skipped``) when it is not a unit."""
        self.code(event.code_system, event.code, where)
        self.in_range(event.start_date, f"{where} start")
        if event.end_date is not None:
            self.in_range(event.end_date, f"{where} end")
            if event.end_date < event.start_date:
                raise Invalid(ReasonCode.DATE_OUT_OF_RANGE, f"{where}: end before start")
        if event.unit is None and event.value is None:
            return event
        try:
            sent = event.unit if event.unit is not None else implied_unit(event.code_system, event.code)
            unit = land_unit(event.code_system, event.code, sent) if sent is not None else None
        except UnitRefused as refused:
            if refused.kind == "unknown":  # a value a rule reads, in a unit it cannot convert: the record's fault
                raise Invalid(ReasonCode.UNIT_UNKNOWN, f"{where} unit: {refused}") from None
            self.skipped[NOT_A_UNIT] += 1  # no rule reads this value: it lands, its "unit" (a name?) does not
            unit = None
        return event if unit == event.unit else replace(event, unit=unit)


def _label(where: str, name: str) -> str:
    return f"{where} {name}" if where else name
