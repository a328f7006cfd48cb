"""The source spec: one declarative YAML file per source, validated by pydantic (unknown keys are errors).

Why declarative: a data engineer adds a source of a known format by writing a spec, not code,
and a reviewer reads in one file what the edge takes from it — which columns are identity
(and stay at the edge), which become events in silver and in which code system, which are
non-nominative attributes, and what makes a record bad. The spec is engine-neutral: the
parsers read it, the silver writers read the events it yields, nothing here knows Spark.

Shape (see ``sources/pmsi.yml`` for a full example)::

    name: pmsi                      # = file name; the source name in bronze, silver and quarantine
    version: 1                      # bump when the mapping changes (goes to commit metadata)
    description: ...
    format: delimited               # a registered parser (pdp.ingest.parsers)
    files: ["pmsi/*.csv"]           # globs relative to the ingest root
    encoding: auto                  # BOM -> utf-8-sig, else UTF-8, else Latin-1 if latin1_fallback
    latin1_fallback: true
    options: {delimiter: ";", columns: [...]}   # the parser's own options (validated by its model)
    record_id: num_sejour           # the sender's record id (dedup, audit)
    identity: {birth_name: nom_naissance, sex: {column: sexe, map: {"1": M, "2": F}}, ...}
    events: [{domain: condition, code_system: CIM-10, code: dp, start: date_entree, status: {const: DP}}]
    attributes: {admission_mode: mode_entree}
    code_systems: [CIM-10, CCAM, PMSI-UNIT]
    validation: {required: [num_sejour, dp]}
    limits: {max_record_bytes: 1048576}   # optional, stricter size bounds (pdp.ingest.limits)

A field reference is a column name (``nom``) or a mapping: ``column`` or ``const``, then
optionally ``pattern`` (regex; group ``value`` or the first group is kept), ``map`` (value
translation; a value outside the map is VALUE_INVALID; values are compared as :func:`map_key`
makes them, so an office suite's typographic apostrophe, a case or spacing change still maps),
``split`` (event codes only: one event per part), ``date_format`` and ``type`` (text, integer,
number, date).

Structured formats (HL7, FHIR) read identity and events from the format itself: their specs
have no ``identity``/``events``/``attributes``/``record_id``, only parser options.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from datetime import date, datetime
from functools import cached_property
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pdp.ingest.limits import Limits
from pdp.ingest.model import IDENTITY_FIELDS, Domain
from pdp.semantic.codes import CODE_SYSTEMS

__all__ = [
    "DateRange",
    "EventSpec",
    "FieldRef",
    "IdentityField",
    "SourceSpec",
    "ValidationSpec",
    "format_validation_error",
]

IdentityField = Literal[
    "birth_name",
    "used_name",
    "first_names",
    "sex",
    "birth_date",
    "birth_place",
    "nir",
    "address_line",
    "postcode",
    "commune_code",
    "phone",
    "email",
    "gp_rpps",
]
assert get_args(IdentityField) == IDENTITY_FIELDS, "IdentityField must list IdentityFields' fields in order"

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_SYSTEM_NAME = re.compile(r"[A-Z0-9][A-Z0-9-]*")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_date_format(fmt: str) -> str:
    probe = date(2001, 2, 3)
    try:
        parsed = datetime.strptime(probe.strftime(fmt), fmt).date()
    except ValueError:
        raise ValueError(f"date format {fmt!r} cannot be parsed back") from None
    if parsed != probe:
        raise ValueError(f"date format {fmt!r} does not hold a full date (day, month, year)")
    return fmt


_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "´": "'"})


def map_key(text: str) -> str:
    """How a sent value meets a ``map``'s keys: NFC, apostrophes alike, spaces collapsed, case folded
    (``map_key("Aide à l’ouverture  de droits") == map_key("aide à l'ouverture de droits")``)."""
    return " ".join(unicodedata.normalize("NFC", text).translate(_APOSTROPHES).casefold().split())


class FieldRef(_Model):
    """Where one value comes from in a record: a column (or layout field), or a constant."""

    column: str | None = None
    const: str | None = None
    pattern: str | None = None
    map: dict[str, str] | None = None
    split: str | None = None
    date_format: str | None = None
    type: Literal["text", "integer", "number", "date"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"column": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> FieldRef:
        if (self.column is None) == (self.const is None):
            raise ValueError("give exactly one of 'column' or 'const'")
        if self.pattern is not None:
            try:
                compiled = re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern does not compile: {exc}") from None
            if compiled.groups > 1 and "value" not in compiled.groupindex:
                raise ValueError("a pattern with several groups must name the kept one (?P<value>...)")
        if self.map is not None and len({map_key(k) for k in self.map}) < len(self.map):
            raise ValueError("map: two keys differ only in case, spaces or apostrophes (values are compared without)")
        if self.split == "":
            raise ValueError("split must be a non-empty separator")
        if self.date_format is not None:
            _check_date_format(self.date_format)
        return self


class EventSpec(_Model):
    """One kind of event a record yields (several when ``code.split`` is set)."""

    domain: Domain
    code_system: str
    code: FieldRef
    start: FieldRef
    end: FieldRef | None = None
    value: FieldRef | None = None
    unit: FieldRef | None = None
    visit_key: FieldRef | None = None
    provider: FieldRef | None = None
    status: FieldRef | None = None
    source_value: FieldRef | None = None

    @model_validator(mode="after")
    def _split_only_on_code(self) -> EventSpec:
        for name in ("start", "end", "value", "unit", "visit_key", "provider", "status", "source_value"):
            ref = getattr(self, name)
            if ref is not None and ref.split is not None:
                raise ValueError(f"{name}: 'split' is only allowed on 'code'")
        return self

    def refs(self) -> dict[str, FieldRef]:
        names = ("code", "start", "end", "value", "unit", "visit_key", "provider", "status", "source_value")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class DateRange(_Model):
    """Dates outside [min, max] are DATE_OUT_OF_RANGE; ``max`` unset = the day of the run."""

    min: date = date(1880, 1, 1)
    max: date | None = None


class ValidationSpec(_Model):
    """What makes a record bad, beyond what the format itself requires."""

    required: list[str] = Field(default_factory=list)
    identity_required: list[IdentityField] = Field(default_factory=lambda: ["birth_name", "birth_date"])
    check_nir: bool = True
    check_codes: bool = True
    codes: dict[str, str] = Field(default_factory=dict)  # coded column (not an event code) -> code system
    dates: DateRange = Field(default_factory=DateRange)
    duplicates: Literal["per_source", "per_file", "off"] = "per_source"


class SourceSpec(_Model):
    """One source: its files, its format and parser options, its mapping to identity and events."""

    name: str
    version: int = Field(ge=1)
    description: str = Field(min_length=1)
    format: str | None = None
    files: list[str] = Field(min_length=1)
    companions: list[str] = Field(default_factory=list)  # read through the source's index, not alone
    encoding: str = "auto"
    latin1_fallback: bool = False
    subject: Literal["person", "reference"] = "person"
    hold_back: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    record_id: FieldRef | None = None
    date_format: str = "%d/%m/%Y"
    identity: dict[IdentityField, FieldRef] = Field(default_factory=dict)
    events: list[EventSpec] = Field(default_factory=list)
    attributes: dict[str, FieldRef] = Field(default_factory=dict)
    code_systems: list[str] = Field(default_factory=list)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    limits: Limits = Field(default_factory=Limits)  # size bounds (pdp.ingest.limits); defaults real files never hit

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("lower-case letters, digits and '_', starting with a letter")
        return value

    @field_validator("files", "companions")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            parts = pattern.split("/")
            if pattern.startswith("/") or ".." in parts or "\\" in pattern or not pattern.strip():
                raise ValueError(f"{pattern!r}: a glob relative to the ingest root, '/'-separated, without '..'")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        if value != "auto":
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r} (use 'auto' or a Python codec name)") from None
        return value

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, value: str) -> str:
        return _check_date_format(value)

    @field_validator("code_systems")
    @classmethod
    def _systems(cls, value: list[str]) -> list[str]:
        for system in value:
            if not _SYSTEM_NAME.fullmatch(system):
                raise ValueError(f"{system!r}: code system names are upper case (CIM-10, LOINC, PMSI-UNIT...)")
        return value

    @field_validator("attributes")
    @classmethod
    def _attribute_names(cls, value: dict[str, FieldRef]) -> dict[str, FieldRef]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r}: attribute names are lower-case snake_case")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> SourceSpec:
        if self.format is None:
            if not self.hold_back:
                raise ValueError("format: required unless the source is held back (hold_back: true)")
            return self
        from pdp.ingest.parsers.base import get_parser, parser_names

        try:
            info = get_parser(self.format)
        except KeyError:
            raise ValueError(f"format: unknown parser {self.format!r} (known: {', '.join(parser_names())})") from None
        options = self.parser_options  # validates the parser's options
        declared = set(self.code_systems)
        if not info.mapped:
            for key in ("record_id", "identity", "events", "attributes"):
                if getattr(self, key):
                    raise ValueError(f"{key}: the {info.name} parser reads it from the format itself; remove it")
            used = getattr(options, "code_systems_used", lambda: set())()
            missing = sorted(set(used) - declared)
            if missing:
                raise ValueError(f"code_systems: the parser options map to undeclared systems {missing}")
        else:
            self._check_mapping(getattr(options, "field_names", lambda: None)(), declared)
        for column, system in self.validation.codes.items():
            if system not in CODE_SYSTEMS:
                known = ", ".join(sorted(CODE_SYSTEMS))
                raise ValueError(f"validation.codes.{column}: {system!r} cannot be checked (known: {known})")
            if system not in declared:
                raise ValueError(f"validation.codes.{column}: {system!r} is not listed in code_systems")
        if self.subject == "reference" and self.identity:
            raise ValueError("identity: a reference source (subject: reference) carries no person identity")
        return self

    def _check_mapping(self, names: set[str] | None, declared: set[str]) -> None:
        refs: list[tuple[str, FieldRef]] = [(f"identity.{k}", v) for k, v in self.identity.items()]
        refs += [(f"attributes.{k}", v) for k, v in self.attributes.items()]
        if self.record_id is not None:
            refs.append(("record_id", self.record_id))
        for i, event in enumerate(self.events):
            refs += [(f"events.{i}.{k}", v) for k, v in event.refs().items()]
            if event.code_system not in declared:
                raise ValueError(f"events.{i}.code_system: {event.code_system!r} is not listed in code_systems")
            checked = event.code_system in CODE_SYSTEMS and self.validation.check_codes
            if not checked and event.code.column is not None and event.code.map is None:
                # nothing checks such a code's shape, and it lands as sent: a free-text column (a social
                # worker's referral reason) would put whatever was typed, names included, in the lake
                why = "has no syntax check" if self.validation.check_codes else "is not checked (check_codes: false)"
                raise ValueError(f"events.{i}.code: {event.code_system!r} {why}: map the column's "
                                 "values (code.map) so that only known codes land")
        columns = [(f"validation.required.{c}", c) for c in self.validation.required]
        columns += [(f"validation.codes.{c}", c) for c in self.validation.codes]
        columns += [(where, ref.column) for where, ref in refs if ref.column is not None]
        if names is not None:
            for where, column in columns:
                if column not in names:
                    raise ValueError(f"{where}: column {column!r} is not declared in the parser options")
        identity_columns = {ref.column for ref in self.identity.values() if ref.column is not None}
        for name, ref in self.attributes.items():
            if ref.column in identity_columns:
                raise ValueError(f"attributes.{name}: column {ref.column!r} is identity; attributes go to silver")
            shapeless = ref.type == "text" and ref.map is None and ref.pattern is None
            if self.subject == "person" and ref.column is not None and shapeless \
                    and ref.column not in self.validation.codes:
                # a text attribute lands as sent, next to a person's pseudonym: a column a person types in
                # (a name, a phone number) must not, so its values or its shape are declared
                raise ValueError(f"attributes.{name}: text would land as sent: declare its values (map), its "
                                 "shape (pattern) or its code system (validation.codes)")
        if self.subject == "person":
            for name in self.validation.identity_required:
                if name not in self.identity:
                    raise ValueError(f"identity.{name}: required by validation.identity_required but not mapped")

    @cached_property
    def parser_options(self) -> BaseModel | None:
        """The ``options`` validated by the parser's own options model (None for held-back sources)."""
        if self.format is None:
            return None
        from pdp.ingest.parsers.base import get_parser

        model = get_parser(self.format).options
        if model is None:
            if self.options:
                raise ValueError(f"options: the {self.format} parser takes no options")
            return None
        try:
            return model.model_validate(self.options)
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc, prefix="options")) from None

    @property
    def required_identity(self) -> tuple[str, ...]:
        """Identity fields every record must carry (none for reference data)."""
        return () if self.subject == "reference" else tuple(self.validation.identity_required)

    def produces(self) -> list[str]:
        """Event domains this source yields (what silver tables it feeds)."""
        if self.format is None:
            return []
        from pdp.ingest.parsers.base import get_parser

        info = get_parser(self.format)
        return sorted({e.domain for e in self.events}) if info.mapped else list(info.produces)


def format_validation_error(exc: ValidationError, *, prefix: str = "") -> str:
    """The first error of a pydantic ValidationError as ``field.path: message`` (one line)."""
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"])
    if prefix:
        loc = f"{prefix}.{loc}" if loc else prefix
    message = error["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{loc}: {message}{suffix}" if loc else f"{message}{suffix}"
