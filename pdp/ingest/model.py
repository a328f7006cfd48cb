"""What every parser hands to the edge: engine-neutral records, events and quarantine rows.

Why one neutral shape: the pseudonymisation edge, the bronze/silver writers and the streaming
feeds must not know whether a record came from a PMSI CSV, an HL7 batch or a FHIR bundle.
Parsers turn each format into a :class:`SourceRecord` (identity traits + clinical events) or a
:class:`Quarantined` row, and nothing downstream looks at the raw format again.

Nominative content stays at the edge: :class:`IdentityFields` and ``SourceRecord.raw`` hold
names, NIRs and addresses, so their ``repr`` hides them (a record printed in a log or a test
failure must not leak). ``raw`` is there for the edge to compute a *keyed* record hash; it is
never written anywhere. :class:`Quarantined` carries no value from the record at all: its
``message`` names fields, segments and counts only (the tests scan every message).

Example::

    >>> from datetime import date
    >>> e = Event(domain="condition", code_system="CIM-10", code="E11.9", start_date=date(2024, 5, 2),
    ...           status="DP", source_value="E11.9")
    >>> r = SourceRecord(source="pmsi", file="pmsi/590000001.csv", position=1, record_id="S1",
    ...                  raw=b"...", identity=IdentityFields(birth_name="DUPONT"), events=(e,))
    >>> r
    SourceRecord(source='pmsi', file='pmsi/590000001.csv', position=1, record_id=<hidden>, events=1)
    >>> r.identity
    IdentityFields(<hidden>)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from typing import TYPE_CHECKING, Literal, get_args

from pdp.ingest.reasons import ReasonCode

if TYPE_CHECKING:
    from pdp.pseudonym.normalise import RawIdentity

__all__ = [
    "DOMAINS",
    "IDENTITY_FIELDS",
    "Domain",
    "Event",
    "IdentityFields",
    "ParseOutcome",
    "Quarantined",
    "SourceRecord",
]

Domain = Literal["visit", "condition", "procedure", "drug", "measurement", "observation", "death", "survey", "text"]
DOMAINS: frozenset[str] = frozenset(get_args(Domain))


@dataclass(frozen=True, slots=True, kw_only=True)
class IdentityFields:
    """A record's identity traits and contact details as the sender wrote them (stripped).

    Only ``birth_date`` is typed: parsers parse it with the spec's date format so an impossible
    birth date is quarantined at the parser. Everything else is text for the edge's
    normalisation (``pdp.pseudonym.normalise``), which owns the folding rules. ``sex`` is
    ``"M"``/``"F"`` when the source's spec maps its codes, else as sent.
    """

    birth_name: str | None = None
    used_name: str | None = None
    first_names: str | None = None
    sex: str | None = None
    birth_date: date | None = None
    birth_place: str | None = None
    nir: str | None = None
    address_line: str | None = None
    postcode: str | None = None
    commune_code: str | None = None
    phone: str | None = None
    email: str | None = None
    gp_rpps: str | None = None

    def __repr__(self) -> str:  # identity traits never go to a log or a test report
        return "IdentityFields(<hidden>)"

    __str__ = __repr__

    def is_empty(self) -> bool:
        # the names once (IDENTITY_FIELDS): dataclasses.fields() per call was ~a tenth of the edge (ad hoc profile)
        return all(getattr(self, name) is None for name in IDENTITY_FIELDS)

    def as_raw_identity(self) -> RawIdentity:
        """The traits the pseudonym is keyed on, in the edge's input type."""
        from pdp.pseudonym.normalise import RawIdentity

        return RawIdentity(
            birth_name=self.birth_name,
            used_name=self.used_name,
            first_names=self.first_names,
            sex=self.sex,
            birth_date=self.birth_date,
            birth_place=self.birth_place,
            nir=self.nir,
        )


IDENTITY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(IdentityFields))


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One clinical fact of a record, coded, dated, not nominative.

    ``visit_key`` groups the events of one stay, lab order or encounter (the sender's own id, a
    handle on the patient at the sender: landed as a keyed hash only); ``provider`` is the FINESS
    or RPPS of the care actor (not patient data); ``status`` is the diagnosis role (``DP``/``DAS``)
    or the result/resource status;
    ``source_value`` is the code as sent (HL7: code and coding system, never the label the lab
    typed beside them), for audits of mapping.
    """

    domain: Domain
    code_system: str
    code: str
    start_date: date
    end_date: date | None = None
    value: float | None = None
    unit: str | None = None
    visit_key: str | None = field(default=None, repr=False)  # the sender's id: never in a repr (a log, a traceback)
    provider: str | None = None
    status: str | None = None
    source_value: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRecord:
    """One parsed record: who (identity, for the edge only) and what (events, attributes).

    ``position`` is 1-based: the line after the header (CSV), the message in the batch (HL7),
    the line (NDJSON, fixed width). ``raw`` is the record's bytes without its line terminator
    (HL7: its segments joined by carriage returns) — the input of the edge's keyed record hash.
    ``attributes`` are the spec's non-nominative record-level fields for silver (admission
    mode, pack code, commune population...), as (name, text) pairs; ``attributes_dropped`` counts
    the sent values left out for not having the shape the spec declares.
    ``record_id`` and the events' ``visit_key`` are the sender's own ids (stay, invoice, message
    control id, order number, resource id, death act number): handles on the person at the
    sender, so the edge lands only their keyed hashes (:meth:`pdp.ingest.edge.Edge.keyed_id`).
    """

    source: str
    file: str
    position: int
    record_id: str | None
    raw: bytes = field(repr=False)
    identity: IdentityFields = field(default_factory=IdentityFields)
    events: tuple[Event, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    attributes_dropped: int = 0  # sent attribute values left out for not having their declared shape

    def __repr__(self) -> str:
        return (
            f"SourceRecord(source={self.source!r}, file={self.file!r}, position={self.position}, "
            f"record_id={'<hidden>' if self.record_id is not None else None}, events={len(self.events)})"
        )

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantined:
    """A record (position >= 1) or a whole file (position 0) the edge refused, and why.

    ``message`` names fields and counts, never values. ``raw`` (hidden from ``repr``, empty for
    file-level rows) lets the edge compute the same keyed record hash as for a landed record,
    so a re-run recognises the row; it must not be stored.
    """

    source: str
    file: str
    position: int
    reason_code: ReasonCode
    message: str
    raw: bytes = field(default=b"", repr=False)

    @property
    def file_level(self) -> bool:
        return self.position == 0


ParseOutcome = SourceRecord | Quarantined
