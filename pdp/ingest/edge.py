"""The edge: the only code that sees identities. Parsed records in, pseudonymised rows out.

For each parsed record: normalise the identity (a rejection is a quarantine row with its
reason code, never a new person), key the pseudonym, keep the identity traits for the vault
(encrypted there), and hand on a row that holds the pseudonym and the coded events only.
Every row carries a *keyed* record hash (HMAC under the key store's ``record`` key) so a re-run
recognises a record without anyone being able to hash a guessed record and look it up.

Quasi-identifiers the population algorithms need (sex, birth year and month, commune, GP)
travel as record attributes prefixed with ``_``; names, NIR, full birth date, address, phone
and e-mail never leave this module except into the vault.

Sender-local ids (a stay or invoice number, an HL7 message control id or order number, a FHIR
resource id, a death act number, a referral id) are handles a sender can map back to its
patient: every record id and every event's visit key lands as a keyed hash
(:meth:`Edge.keyed_id`, ``i<N>:`` + 43 characters), never in clear, whatever the parser. The
hash is the same for the same id within a source, so a stay's events still group and a resent
record still matches its first version; ``pdp scan-lake`` checks the form of every such value.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from pydantic import ValidationError

from pdp.ingest.model import IdentityFields, Quarantined, SourceRecord
from pdp.ingest.unmapped import UnmappedCodes
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.linkage import MODEL_NOT_RUN
from pdp.pseudonym.normalise import INSEE_CODE, RPPS_NUMBER, CanonicalIdentity, Rejection, compact_code, normalise
from pdp.pseudonym.pseudonymise import Pseudonymiser, digest_text
from pdp.pseudonym.vault import VaultRecord

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.config import Settings
    from pdp.ingest.identity_stage import StagedChanges
    from pdp.pseudonym.linkage import LinkageOptions
    from pdp.pseudonym.linkage_spark import BoxedInputs, OwnerSealer

__all__ = ["BronzeRow", "Edge", "EdgeState", "IdentityPack", "QuarantineRow", "fold_packs", "merge_records",
           "owner_text", "pack_record", "rekey_record"]

_CONTACT = ("address_line", "postcode", "commune_code", "phone", "email", "gp_rpps")


@dataclass(frozen=True, slots=True)
class BronzeRow:
    """A landed record: pseudonym, events and non-nominative attributes (see bronze/records.yml)."""

    record_hash: str
    source: str
    file: str
    record_position: int
    record_id: str | None
    person_pseudonym: str | None  # None for reference data (communes)
    link_rule: str
    events: list[dict[str, Any]]
    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    source: str
    file: str
    record_position: int
    reason_code: str
    message: str
    record_hash: str


@dataclass
class EdgeStats:
    landed: int = 0
    quarantined: int = 0
    vault_fields_dropped: int = 0
    # a commune or GP that is not a code, an attribute outside its declared shape: left out of the
    # record's lake attributes (never the record)
    attributes_dropped: int = 0
    pseudonymise_seconds: float = 0.0  # normalising identities and keying pseudonyms (for `pdp bench ingest`)
    by_reason: dict[str, int] = field(default_factory=dict)
    unmapped: UnmappedCodes = field(default_factory=UnmappedCodes)  # landed codes outside the concept sets

    def add(self, other: EdgeStats) -> None:
        self.landed += other.landed
        self.quarantined += other.quarantined
        self.vault_fields_dropped += other.vault_fields_dropped
        self.attributes_dropped += other.attributes_dropped
        self.pseudonymise_seconds += other.pseudonymise_seconds
        for reason, count in other.by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + count
        self.unmapped.merge(other.unmapped)


class _Identity:
    """One person's vault record being folded from the batch's observations.

    Rule, per field: the value of the latest observation carrying that field (``observed_at``;
    a record without a date ranks oldest; among equal dates the later record wins) — the
    vault's own merge rule. Why per field and not per record: folding is then associative,
    so files folded apart (worker processes) and then folded in file order give exactly what
    one pass over every record gives; and an older record's phone no longer overwrites a newer
    one just because the older record was the last with a date. ``canonical`` is the first
    record's (the identity that made the pseudonym never changes).
    """

    __slots__ = ("canonical", "dates", "observed", "values")

    def __init__(self, record: VaultRecord) -> None:
        self.values: dict[str, Any] = record.model_dump(exclude_none=True, exclude={"observed_at", "canonical"})
        self.observed: date | None = record.observed_at
        self.dates: dict[str, date | None] = dict.fromkeys(self.values, record.observed_at)
        self.canonical: str | None = record.canonical

    def fold(self, later: _Identity) -> None:
        """Fold in observations that come after this one's (in file and record order)."""
        values, dates = self.values, self.dates
        for name, value in later.values.items():
            when = later.dates[name]
            if name not in values or (when or date.min) >= (dates[name] or date.min):
                values[name] = value
                dates[name] = when
        if later.observed is not None and (self.observed is None or later.observed > self.observed):
            self.observed = later.observed
        if self.canonical is None:
            self.canonical = later.canonical

    def record(self) -> VaultRecord:
        return VaultRecord(**self.values, observed_at=self.observed, canonical=self.canonical)

    def packed(self, canonical: CanonicalIdentity | None, postcode: str | None) -> IdentityPack:
        return (self.values, self.dates, self.observed, self.canonical, canonical, postcode)

    @classmethod
    def unpacked(cls, pack: IdentityPack) -> _Identity:
        identity = cls.__new__(cls)
        identity.values, identity.dates, identity.observed, identity.canonical = pack[:4]
        return identity


IdentityPack = tuple[dict[str, Any], dict[str, date | None], date | None, str | None, CanonicalIdentity | None,
                     str | None]
"""One person's identity as a part of a batch holds it, for staging (:mod:`pdp.ingest.identity_stage`):
the fold's state (values, their dates, last observation, canonical text), the canonical identity
that made the pseudonym and the first postcode seen. Plain data: sealed before it leaves memory."""


def fold_packs(packs: Iterable[IdentityPack]) -> IdentityPack:
    """The packs of one person, in the order their records came (file, then part), folded into one:
    what :meth:`EdgeState.absorb` makes of the same parts (per field the latest observation; the
    first canonical identity and the first postcode)."""
    folded: _Identity | None = None
    canonical = postcode = None
    for pack in packs:
        if folded is None:
            folded = _Identity.unpacked(pack)
        else:
            folded.fold(_Identity.unpacked(pack))
        canonical = canonical if canonical is not None else pack[4]
        postcode = postcode if postcode is not None else pack[5]
    if folded is None:
        raise ValueError("no pack to fold")
    return folded.packed(canonical, postcode)


def pack_record(pack: IdentityPack) -> VaultRecord:
    """The vault record of a (folded) pack."""
    return _Identity.unpacked(pack).record()


@dataclass(repr=False, slots=True)
class _Known:
    """The last identity the edge keyed, and what it made: its canonical form (or rejection), its
    pseudonym, and once remembered its vault values (never printed)."""

    identity: IdentityFields
    canonical: CanonicalIdentity | Rejection
    pseudonym: str | None
    values: dict[str, Any] | None = None
    canonical_text: str | None = None
    dropped: bool = False


@dataclass(repr=False)
class EdgeState:
    """What the edge keeps for the batch commit and linkage (identities: in memory only, never printed)."""

    identities: dict[str, _Identity] = field(default_factory=dict)
    canonicals: dict[str, CanonicalIdentity] = field(default_factory=dict)
    postcodes: dict[str, str] = field(default_factory=dict)
    stats: EdgeStats = field(default_factory=EdgeStats)

    def __repr__(self) -> str:
        return f"EdgeState(<{len(self.identities)} identities hidden>)"

    def packs(self) -> Iterator[tuple[str, IdentityPack]]:
        """Each person's identity as held here, in the order they came (:data:`IdentityPack`)."""
        for pseudonym, identity in self.identities.items():
            yield pseudonym, identity.packed(self.canonicals.get(pseudonym), self.postcodes.get(pseudonym))

    def without_identities(self) -> EdgeState:
        """The counts alone: what a file's result carries once its identities are staged."""
        return EdgeState(stats=self.stats)

    def absorb(self, later: EdgeState) -> None:
        """Fold in the state of records that come after everything held here (a later file, or the
        next part of a split file): the result is what one edge fed them all in order would hold."""
        for pseudonym, identity in later.identities.items():
            previous = self.identities.get(pseudonym)
            if previous is None:
                self.identities[pseudonym] = identity
            else:
                previous.fold(identity)
        for pseudonym, canonical in later.canonicals.items():
            self.canonicals.setdefault(pseudonym, canonical)
        for pseudonym, postcode in later.postcodes.items():
            self.postcodes.setdefault(pseudonym, postcode)
        self.stats.add(later.stats)


class Edge:
    """Turns parse outcomes into bronze rows, quarantine rows and vault records."""

    def __init__(self, store: KeyStore, *, today: date | None = None) -> None:
        record_key = store.ensure("record")
        self._record_version = record_key.version
        self._record_mac = crypto_hmac.HMAC(record_key.material, hashes.SHA256())
        self._pseudonymiser = Pseudonymiser(store)
        self._today = today
        self._state = EdgeState()
        self._linked: dict[str, VaultRecord] | None = None  # vault records once linkage re-keyed them
        self._known: _Known | None = None  # the last identity keyed: a bundle's resources share their Patient's

    @property
    def stats(self) -> EdgeStats:
        return self._state.stats

    @property
    def canonicals(self) -> dict[str, CanonicalIdentity]:
        """Pseudonym → the identity that made it (the first record of the batch that did)."""
        return self._state.canonicals

    @property
    def postcodes(self) -> dict[str, str]:
        return self._state.postcodes

    @property
    def vault_records(self) -> dict[str, VaultRecord]:
        """One vault record per pseudonym: the batch's observations folded (see :class:`_Identity`)."""
        if self._linked is not None:
            return self._linked
        return {pseudonym: identity.record() for pseudonym, identity in self._state.identities.items()}

    def forget(self, pseudonyms: set[str]) -> None:
        """Drop these persons' identities (an opposition): they never reach the vault."""
        records = self.vault_records
        self._linked = {p: r for p, r in records.items() if p not in pseudonyms}

    def detach(self) -> EdgeState:
        """What the edge gathered since it was created or last detached, and a fresh start.

        A worker process detaches after each file and hands the state to the parent, which
        absorbs the files' states in file order: the result is what one edge fed
        every file in that order would hold.
        """
        state, self._state = self._state, EdgeState()
        self._known = None
        return state

    def absorb(self, state: EdgeState) -> None:
        """Fold in the state of files that come after everything absorbed so far."""
        self._state.absorb(state)
        self._linked = None
        self._known = None

    def record_hash(self, raw: bytes, *, source: str, file: str, position: int, issue: str = "") -> str:
        """Keyed hash of a record; file-level rows (no raw bytes) hash their place and their issue.

        The issue (reason and message) is part of a file-level row's hash: two different faults of
        one file at one place (a partial read, then a bad trailer once the file is whole) are two
        rows of the insert-only quarantine, not one silently kept; the same fault met again when a
        partial file is re-read is the same row.
        """
        mac = self._record_mac.copy()
        place = f"file-level\x1f{source}\x1f{file}\x1f{position}" + (f"\x1f{issue}" if issue else "")
        mac.update(raw if raw else place.encode("utf-8", "surrogatepass"))
        return f"r{self._record_version}:{digest_text(mac.finalize())}"

    def keyed_id(self, record_id: str, *, source: str) -> str:
        """Keyed hash of a sender-local id (a record id or a visit key): a resent or amended
        record keeps the same hash, so it can be matched to its first version and a stay's
        events still share one key, but the id itself never lands (see the module docstring)."""
        mac = self._record_mac.copy()
        mac.update(f"id\x1f{source}\x1f{record_id}".encode("utf-8", "surrogatepass"))
        return f"i{self._record_version}:{digest_text(mac.finalize())}"

    def file_fingerprint(self, path: Path) -> str:
        """Keyed hash of a whole file's bytes, streamed: recognises a file already ingested."""
        mac = self._record_mac.copy()
        mac.update(b"file\x1f")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                mac.update(block)
        return f"f{self._record_version}:{digest_text(mac.finalize())}"

    def pseudonym_of(self, identity: IdentityFields) -> str | None:
        """The pseudonym this edge would key `identity` under (None: the edge would reject it).

        Nothing is remembered: what a parser needs to look a person up in the vault before the
        record is landed (:class:`pdp.ingest.known.KnownPersons`), with the very rules and keys
        :meth:`process` uses, so the look-up finds the person the record will land as.
        """
        if identity.is_empty():
            return None
        canonical = normalise(identity.as_raw_identity(), today=self._today)
        return None if isinstance(canonical, Rejection) else self._pseudonymiser.pseudonym(canonical)

    def process(self, outcomes: Iterable[Quarantined | SourceRecord]) -> Iterator[BronzeRow | QuarantineRow]:
        """One output row per outcome, in order (in = landed + quarantined by construction)."""
        for outcome in outcomes:
            if isinstance(outcome, Quarantined):
                yield self._quarantine(
                    outcome.source,
                    outcome.file,
                    outcome.position,
                    str(outcome.reason_code),
                    outcome.message,
                    outcome.raw,
                )
            else:
                yield self._land(outcome)

    def _quarantine(
        self, source: str, file: str, position: int, reason: str, message: str, raw: bytes
    ) -> QuarantineRow:
        self.stats.quarantined += 1
        self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1
        return QuarantineRow(
            source, file, position, reason, message,
            self.record_hash(raw, source=source, file=file, position=position, issue=f"{reason}\x1f{message}"),
        )

    def _land(self, record: SourceRecord) -> BronzeRow | QuarantineRow:
        attributes = dict(record.attributes)
        events = [_event_dict(e) for e in record.events]
        keyed: dict[str, str] = {}  # a stay's events share one visit key: hashed once per record
        for event in events:
            visit = event["visit_key"]
            if visit is not None:
                if visit not in keyed:
                    keyed[visit] = self.keyed_id(visit, source=record.source)
                event["visit_key"] = keyed[visit]
        pseudonym, rule = None, "reference"  # reference data (communes): no person
        if not record.identity.is_empty():
            known = self._known
            if known is None or (known.identity is not record.identity and known.identity != record.identity):
                started = time.perf_counter()
                canonical = normalise(record.identity.as_raw_identity(), today=self._today)
                pseudonym = None if isinstance(canonical, Rejection) else self._pseudonymiser.pseudonym(canonical)
                self.stats.pseudonymise_seconds += time.perf_counter() - started
                known = self._known = _Known(record.identity, canonical, pseudonym)
            canonical, pseudonym = known.canonical, known.pseudonym
            if isinstance(canonical, Rejection):
                return self._quarantine(
                    record.source, record.file, record.position, str(canonical.reason_code), canonical.message,
                    record.raw,
                )  # fmt: skip
            if known.values is not None and pseudonym in self._state.identities:
                self._remember_again(pseudonym, known, record)
            else:
                self._remember(pseudonym, canonical, record, known)
            attributes.update(self._quasi_identifiers(canonical, record))
            rule = canonical.scheme
        self.stats.landed += 1
        self.stats.attributes_dropped += record.attributes_dropped
        for event in record.events:
            self.stats.unmapped.add(record.source, event.code_system, event.code, event.domain)
        record_hash = self.record_hash(record.raw, source=record.source, file=record.file, position=record.position)
        record_id = record.record_id
        if record_id is not None:
            record_id = keyed.get(record_id) or self.keyed_id(record_id, source=record.source)
        return BronzeRow(
            record_hash, record.source, record.file, record.position, record_id, pseudonym, rule, events,
            attributes,
        )  # fmt: skip

    def _remember_again(self, pseudonym: str, known: _Known, record: SourceRecord) -> None:
        """:meth:`_remember` for the identity just remembered (the Patient of a bundle's next resource):
        the same fold, without normalising, keying and validating the same identity again."""
        dates = [e.start_date for e in record.events]
        observed = max(dates) if dates else None
        later = _Identity.__new__(_Identity)
        later.values, later.observed, later.canonical = known.values, observed, known.canonical_text
        later.dates = dict.fromkeys(known.values or (), observed)
        self._state.identities[pseudonym].fold(later)
        if known.dropped:
            self.stats.vault_fields_dropped += 1
        self._linked = None

    def _remember(self, pseudonym: str, canonical: CanonicalIdentity, record: SourceRecord, known: _Known) -> None:
        """Keep the identity for the vault; within a batch, later records of a person merge in."""
        ident = record.identity
        dates = [e.start_date for e in record.events]
        fields: dict[str, Any] = {
            "birth_name": ident.birth_name,
            "used_name": ident.used_name,
            "first_names": tuple(canonical.first_names) or None,
            "sex": canonical.sex,
            "birth_date": canonical.birth_date,
            "birth_place": canonical.birth_place,
            "nir": canonical.nir,
            "observed_at": max(dates) if dates else None,
            "canonical": base64.b64encode(canonical.canonical_bytes).decode("ascii"),
        }
        contact = {name: getattr(ident, name) for name in _CONTACT}
        try:
            incoming = VaultRecord(**fields, **contact)
        except ValidationError:
            self.stats.vault_fields_dropped += 1  # a malformed contact field is dropped, never the person
            incoming = VaultRecord(**fields)
            known.dropped = True
        state = self._state
        identity = _Identity(incoming)
        known.values, known.canonical_text = dict(identity.values), identity.canonical
        previous = state.identities.get(pseudonym)
        if previous is None:
            state.identities[pseudonym] = identity
        else:
            previous.fold(identity)
        state.canonicals.setdefault(pseudonym, canonical)
        if ident.postcode:
            state.postcodes.setdefault(pseudonym, ident.postcode)
        self._linked = None

    def _quasi_identifiers(self, canonical: CanonicalIdentity, record: SourceRecord) -> dict[str, str]:
        """The person's attributes the lake keeps: sex, birth year and month, and the commune and GP
        when they are codes. A commune or GP number that is not one (an address, a name typed where
        the code goes) is left out, and counted: it would land in silver.person as typed."""
        out = {
            "_sex": canonical.sex,
            "_birth_year": str(canonical.birth_date.year),
            "_birth_month": str(canonical.birth_date.month),
        }
        for key, text, shape in (("_commune", record.identity.commune_code, INSEE_CODE),
                                 ("_gp", record.identity.gp_rpps, RPPS_NUMBER)):
            if text:
                code = compact_code(text)
                if shape.fullmatch(code):
                    out[key] = code
                else:
                    self.stats.attributes_dropped += 1
        return out

    def link(
        self,
        known: list[tuple[str, CanonicalIdentity]],
        options: LinkageOptions | None = None,
        *,
        spark: SparkSession | None = None,
        settings: Settings | None = None,
    ) -> LinkOutcome:
        """Link the batch's distinct identities to each other and to known persons (the vault).

        ``options``: the trained model's (:func:`pdp.pseudonym.linkage_trained.current_options`),
        or None for the linkage defaults (EM on the batch, built-in parameters if small).
        ``spark``: link on Spark (:mod:`pdp.pseudonym.linkage_spark`, same decision; chosen by
        :func:`~pdp.pseudonym.linkage_spark.engine_for`) instead of in this process; ``settings``:
        those of this edge's key store, which the executors open (default: the process's).

        Returns the re-keying the batch needs (its pseudonym → the person's pseudonym), the known
        pseudonyms that now belong to another person, and re-keys the vault records in memory so
        each holds the canonical identity that makes its (new) pseudonym — what rotation re-keys.
        """
        from pdp.pseudonym.linkage import LinkInput, link

        if not self.canonicals:  # nothing new: known persons are not re-linked without new evidence
            return LinkOutcome(mapping={}, superseded={}, rule_counts={})
        inputs = [LinkInput(p, c, self.postcodes.get(p)) for p, c in self.canonicals.items()]
        if spark is not None:
            from pdp.pseudonym.linkage_spark import SparkLinker

            with SparkLinker(spark, self._pseudonymiser, options=options, settings=settings) as linker:
                result = linker.link(inputs, known=known).result()
        else:
            result = link(inputs, self._pseudonymiser, known=known, options=options)
        mapping = {p: q for p, q in result.pseudonyms.items() if p in self.canonicals and q != p}

        def owner(target: str) -> str | None:
            return owner_text(result.canonicals.get(target) or self.canonicals.get(target))

        rekeyed: dict[str, VaultRecord] = {}
        for pseudonym, record in self.vault_records.items():
            target = mapping.get(pseudonym, pseudonym)
            rekeyed[target] = rekey_record(rekeyed.get(target), record, owner(target))
        self._linked = rekeyed
        return LinkOutcome(
            mapping=mapping,
            superseded=dict(result.superseded),
            rule_counts=dict(result.rule_counts),
            model_version=result.parameters["model_version"],
            owners={target: owner(target) for target in set(mapping.values())},
        )


    def link_boxed(
        self,
        boxed: BoxedInputs,
        known: list[tuple[str, CanonicalIdentity]] | BoxedInputs,
        options: LinkageOptions | None = None,
        *,
        spark: SparkSession,
        changes: Path,
        seal: OwnerSealer,
        settings: Settings | None = None,
    ) -> LinkOutcome:
        """:meth:`link` for a batch whose identities stay on Spark's executors (staged and folded
        there, :mod:`pdp.ingest.identity_stage`): the same decision on Spark, its changes written
        under `changes` (the re-keyed records, their persons' canonical identities sealed by `seal`)
        rather than brought here; the vault's records are re-keyed on the executors
        (:func:`~pdp.ingest.identity_stage.prepare_vault`)."""
        from pdp.ingest.identity_stage import StagedChanges
        from pdp.pseudonym.linkage_spark import SparkLinker

        with SparkLinker(spark, self._pseudonymiser, options=options, settings=settings) as linker:
            written = linker.link(boxed, known=known).write_changes(str(changes), seal)
        return LinkOutcome(
            mapping={},
            superseded=written.superseded,
            rule_counts=written.rule_counts,
            model_version=written.parameters["model_version"],
            staged=StagedChanges(changes, written.relinked),
        )


def owner_text(canonical: CanonicalIdentity | None) -> str | None:
    """The canonical identity a re-keyed vault record takes (base64), or None for a known person's."""
    return base64.b64encode(canonical.canonical_bytes).decode("ascii") if canonical else None


@dataclass(frozen=True)
class LinkOutcome:
    mapping: dict[str, str]  # batch pseudonym → person pseudonym (only those that change)
    superseded: dict[str, str]  # known pseudonym → person pseudonym
    rule_counts: dict[str, int]
    model_version: str = MODEL_NOT_RUN  # the linkage model used (LinkResult.parameters["model_version"])
    # the canonical identity (base64) each re-keyed record takes: its person's (what rotation re-keys)
    owners: dict[str, str | None] = field(default_factory=dict)
    # linked on Spark: mapping and owners written beside the batch instead (both dicts above empty)
    staged: StagedChanges | None = None

    @property
    def relinked(self) -> int:
        """Records whose pseudonym linkage changed."""
        return self.staged.relinked if self.staged is not None else len(self.mapping)


def rekey_record(previous: VaultRecord | None, record: VaultRecord, owner: str | None) -> VaultRecord:
    """One more record of a person linkage re-keyed, in file order: it takes its person's canonical
    identity (`owner`) and merges onto what came before (:func:`merge_records`). The one re-keying
    rule, whether the records are in memory (:meth:`Edge.link`) or merged on the executors
    (:func:`pdp.ingest.identity_stage.prepare_vault`)."""
    record = record.model_copy(update={"canonical": owner})
    return record if previous is None else merge_records(previous, record)


def merge_records(old: VaultRecord, new: VaultRecord) -> VaultRecord:
    """Linkage re-keying: records of one person merged whole, newer on top; the canonical identity stays."""
    newer = (new.observed_at or date.min) >= (old.observed_at or date.min)
    base, top = (old, new) if newer else (new, old)
    merged = base.model_dump(exclude_none=True) | top.model_dump(exclude_none=True)
    merged["canonical"] = old.canonical or new.canonical
    return VaultRecord(**merged)


def _event_dict(event: Any) -> dict[str, Any]:
    return {
        "domain": event.domain,
        "code_system": event.code_system,
        "code": event.code,
        "start_date": event.start_date,
        "end_date": event.end_date,
        "value": event.value,
        "unit": event.unit,
        "visit_key": event.visit_key,
        "provider": event.provider,
        "status": event.status,
        "source_value": event.source_value,
    }
