"""The spec-driven mapping of a flat record (delimited row, fixed-width line) to a SourceRecord.

Why one builder for every flat format: "adding a source = adding a spec" holds only if the
columns-to-identity-and-events logic lives in one place that reads the spec, not in a parser
per sender. The delimited and fixed-width parsers split lines into named text fields; this
module does the rest, in the same order for every source, so the first fault found names
the reason:

1. identity traits extracted (a value outside a ``map`` is VALUE_INVALID), then
   IDENTITY_MISSING for a required trait that is empty, DATE_INVALID / DATE_OUT_OF_RANGE for
   the birth date, NIR_INVALID;
2. FIELD_MISSING for an empty ``validation.required`` field;
3. events: one per non-empty code (per part when ``split``); CODE_UNKNOWN, DATE_*, VALUE_INVALID;
4. ``validation.codes`` (coded fields that are not events), then typed attributes: a value outside
   its map, pattern or type is left out of the record and counted (``attributes_dropped``), the
   record kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

from pdp.ingest.model import Event, IdentityFields, ParseOutcome, SourceRecord
from pdp.ingest.parsers.base import FileContext
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.spec import EventSpec, FieldRef, SourceSpec, map_key
from pdp.ingest.validate import Checks, Invalid

__all__ = ["RecordBuilder"]


class _Extract:
    """One compiled field reference."""

    __slots__ = ("column", "const", "date_format", "group", "map", "pattern", "split", "type", "where")

    def __init__(self, ref: FieldRef, where: str, date_format: str) -> None:
        self.column = ref.column
        self.const = ref.const
        self.pattern = re.compile(ref.pattern) if ref.pattern else None
        groups = self.pattern.groupindex if self.pattern else {}
        self.group: int | str = "value" if "value" in groups else (1 if self.pattern and self.pattern.groups else 0)
        self.map = {map_key(k): v for k, v in ref.map.items()} if ref.map is not None else None
        self.split = ref.split
        self.date_format = ref.date_format or date_format
        self.type = ref.type
        self.where = ref.column or where

    def text(self, values: Mapping[str, str]) -> str | None:
        if self.const is not None:
            return self.const
        text = values.get(self.column, "")  # type: ignore[arg-type]
        if self.pattern is not None and text:
            match = self.pattern.search(text)
            text = (match.group(self.group) or "").strip() if match else ""
        if not text:
            return None
        if self.map is not None:
            mapped = self.map.get(map_key(text))
            if mapped is None:
                raise Invalid(ReasonCode.VALUE_INVALID, f"{self.where}: value outside the spec's map")
            return mapped
        return text

    def shaped(self, values: Mapping[str, str], checks: Checks) -> tuple[str | None, bool]:
        """An attribute's text (:meth:`typed`), and whether a sent value was left out for not having
        its declared shape: outside its map or pattern, or not of its type. A record-level attribute
        that is not what the spec says costs the record that attribute, not its events."""
        sent = bool(values.get(self.column, "")) if self.column is not None else False  # type: ignore[arg-type]
        try:
            text = self.typed(values, checks)
        except Invalid:
            return None, True
        return text, text is None and sent

    def typed(self, values: Mapping[str, str], checks: Checks) -> str | None:
        """Text checked against the reference's type (attributes keep their canonical text)."""
        text = self.text(values)
        if text is None or self.type == "text":
            return text
        if self.type == "date":
            return checks.date(text, self.date_format, self.where).isoformat()
        number = checks.number(text, self.where)
        if self.type == "integer":
            if not number.is_integer():
                raise Invalid(ReasonCode.VALUE_INVALID, f"{self.where}: not an integer")
            return str(int(number))
        return repr(number)


class _EventMaker:
    __slots__ = ("code", "domain", "end", "opt", "start", "system")

    def __init__(self, spec: EventSpec, index: int, date_format: str) -> None:
        where = f"events.{index}"
        self.domain = spec.domain
        self.system = spec.code_system
        self.code = _Extract(spec.code, f"{where}.code", date_format)
        self.start = _Extract(spec.start, f"{where}.start", date_format)
        self.end = _Extract(spec.end, f"{where}.end", date_format) if spec.end else None
        self.opt = {
            name: _Extract(ref, f"{where}.{name}", date_format)
            for name, ref in spec.refs().items()
            if name in ("value", "unit", "visit_key", "provider", "status", "source_value")
        }

    def events(self, values: Mapping[str, str], checks: Checks) -> list[Event]:
        text = self.code.text(values)
        if text is None:
            return []
        codes = [c.strip() for c in text.split(self.code.split)] if self.code.split else [text]
        start_text = self.start.text(values)
        if start_text is None:
            raise Invalid(ReasonCode.FIELD_MISSING, f"{self.start.where}: empty (start date of a {self.domain} event)")
        start = checks.date(start_text, self.start.date_format, self.start.where)
        end: date | None = None
        if self.end is not None:
            end_text = self.end.text(values)
            end = checks.date(end_text, self.end.date_format, self.end.where) if end_text else None
            if end is not None and end < start:
                raise Invalid(ReasonCode.DATE_OUT_OF_RANGE, f"{self.end.where}: before {self.start.where}")
        opt = {name: ex.text(values) for name, ex in self.opt.items()}
        value_text = opt.pop("value", None)
        value = checks.number(value_text, self.opt["value"].where) if value_text is not None else None
        source_value = opt.pop("source_value", None)
        out = []
        for code in codes:
            if not code:
                continue
            event = Event(
                domain=self.domain,  # type: ignore[arg-type]
                code_system=self.system,
                code=code,
                start_date=start,
                end_date=end,
                value=value,
                source_value=source_value if source_value is not None else code,
                **opt,
            )
            out.append(checks.event(event, self.code.where))
        return out


class RecordBuilder:
    """A spec compiled once per file; :meth:`build` maps one record's named text fields."""

    def __init__(self, spec: SourceSpec) -> None:
        fmt = spec.date_format
        self.identity = {name: _Extract(ref, name, fmt) for name, ref in spec.identity.items()}
        birth = spec.identity.get("birth_date")
        self.birth_date_format = (birth.date_format if birth else None) or fmt
        self.record_id = _Extract(spec.record_id, "record_id", fmt) if spec.record_id else None
        self.required = tuple(spec.validation.required)
        self.events = [_EventMaker(e, i, fmt) for i, e in enumerate(spec.events)]
        self.codes = tuple(spec.validation.codes.items())
        self.attributes = {name: _Extract(ref, name, fmt) for name, ref in spec.attributes.items()}
        self.columns = self._columns(spec)

    @staticmethod
    def _columns(spec: SourceSpec) -> frozenset[str]:
        """Columns any part of the mapping reads (parsers keep only these)."""
        refs = [*spec.identity.values(), *spec.attributes.values()]
        refs += [r for e in spec.events for r in e.refs().values()]
        if spec.record_id:
            refs.append(spec.record_id)
        names = {r.column for r in refs if r.column is not None}
        return frozenset(names | set(spec.validation.required) | set(spec.validation.codes))

    def build(self, values: Mapping[str, str], position: int, raw: bytes, ctx: FileContext) -> ParseOutcome:
        """A SourceRecord, or the first fault as a Quarantined row (values are stripped text)."""
        checks = ctx.checks
        try:
            identity = None
            if self.identity or ctx.spec.required_identity:
                texts = {name: ex.text(values) for name, ex in self.identity.items()}
                identity = checks.identity(texts, self.birth_date_format)
            for column in self.required:
                if not values.get(column):
                    raise Invalid(ReasonCode.FIELD_MISSING, f"{column}: empty")
            events: list[Event] = []
            for maker in self.events:
                events.extend(maker.events(values, checks))
            for column, system in self.codes:
                code = values.get(column)
                if code:
                    checks.code(system, code, column)
            attributes = []
            dropped = 0
            for name, ex in self.attributes.items():
                text, left_out = ex.shaped(values, checks)
                if text is not None:
                    attributes.append((name, text))
                dropped += left_out
            record_id = self.record_id.text(values) if self.record_id else None
        except Invalid as fault:
            return ctx.quarantine(position, fault.reason, fault.message, raw)
        except Exception as exc:  # a mapping bug costs this record, not the rest of the file
            return ctx.quarantine(position, ReasonCode.PARSER_ERROR, f"mapping raised {type(exc).__name__}", raw)
        return SourceRecord(
            source=ctx.source,
            file=ctx.file,
            position=position,
            record_id=record_id,
            raw=raw,
            identity=identity if identity is not None else IdentityFields(),
            events=tuple(events),
            attributes=tuple(attributes),
            attributes_dropped=dropped,
        )
