"""Opposition end to end: a Consent in, the person out of every result, then out of every file.

Why in this order:

1. ``submit``: the Consent's INS identity is normalised and pseudonymised exactly as the edge
   does for any source (never stored in clear), resolved to the person's pseudonym through
   linkage against the vault's known persons, and registered. Gold is purged of the person
   at once (a few small tables), so no result read afterwards holds them; re-identification,
   samples and registries consult the registry on every call.
2. ``apply`` (also run by ``pdp run``): every lake table with a pseudonym column is purged —
   Delta DELETE, then removal of every file of an earlier version or of change data that still
   holds the person (:func:`pdp.lake.erase`) — and the vault record is deleted. The proof
   (tables, versions before and after, rows, files and bytes removed) is returned for the
   audit log. When it returns, ``pdp scan-lake --pseudonym P`` finds P in no file.
3. Later data about the person are refused at the edge (:func:`withheld_at_edge`), counted
   under reason ``OPPOSED``.
4. ``withdraw``: future data are used again; what was erased stays erased.

>>> outcome = submit(consent_bytes, engine=engine, store=store, spark=spark)   # doctest: +SKIP
>>> apply(spark=spark, engine=engine, store=store).persons                      # doctest: +SKIP
1
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pdp.governance.opposition.consent import ConsentError, parse_consent
from pdp.governance.opposition.registry import OppositionRegistry

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from sqlalchemy import Engine

    from pdp.governance.audit import AuditLog
    from pdp.lake import Catalog
    from pdp.pseudonym import KeyStore

__all__ = ["ApplyReport", "SubmitOutcome", "apply", "identity_tokens", "purge_lake", "resolve", "submit", "withdraw",
           "withheld_at_edge"]

_EDGE_CHUNK = 20_000  # batch pseudonyms or tokens looked up per round at the edge
_REASON = "opposition (GDPR art. 21): erasure of the person from every version of the table"


@dataclass(frozen=True)
class SubmitOutcome:
    kind: Literal["submit", "withdraw"]
    pseudonyms: tuple[str, ...]
    changed: tuple[str, ...]
    gold: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ApplyReport:
    persons: int = 0
    pseudonyms: tuple[str, ...] = ()
    tables: list[dict[str, Any]] = field(default_factory=list)
    vault_rows: int = 0
    relationships: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"persons": self.persons, "tables": self.tables, "vault_rows": self.vault_rows,
                "care_relationships": self.relationships, "seconds": round(self.seconds, 3)}


def identity_tokens(canonical: Any, store: KeyStore, *, key: bytes | None = None) -> tuple[str, ...]:
    """The opposition tokens of an identity: keyed hashes (``opposition`` key) of its canonical
    bytes, and of its traits-scheme form when it is NIR-keyed (a later record may lack the NIR).

    The key is never rotated with the pseudonyms, so an opposition outlives key rotations and
    the erasure of the person's vault record.
    """
    from pdp.pseudonym.normalise import CanonicalIdentity

    key = key or store.ensure("opposition").material
    forms = [canonical]
    if canonical.scheme == "nir":
        forms.append(replace(canonical, scheme="traits", nir=None))
    out = []
    for form in forms:
        if isinstance(form, CanonicalIdentity):
            digest = hmac.new(key, form.canonical_bytes, hashlib.sha256).digest()[:24]
            out.append(base64.urlsafe_b64encode(digest).decode("ascii"))
    return tuple(dict.fromkeys(out))


def resolve(raw_identity: Any, *, engine: Engine, store: KeyStore) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The pseudonyms of the person behind an identity, and its opposition tokens.

    Pseudonyms: the identity's own key (NIR scheme) and its traits-scheme key, and the person's
    after linkage against the vault (:meth:`IdentityVault.linkable`), including the known
    pseudonyms linkage merges into it — so an opposition finds the person under the pseudonym
    the lake uses, even when the person was first seen without a NIR.
    """
    from pdp.pseudonym import Pseudonymiser, Rejection
    from pdp.pseudonym.linkage import LinkInput, link
    from pdp.pseudonym.normalise import normalise
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault

    canonical = normalise(raw_identity)
    if isinstance(canonical, Rejection):
        raise ConsentError(
            f"Consent.patient: the INS identity is unusable ({canonical.reason_code} on {canonical.field})"
        )
    pseudonymiser = Pseudonymiser(store)
    own = pseudonymiser.pseudonym(canonical)
    traits = own
    if canonical.scheme == "nir":
        traits = pseudonymiser.pseudonym(replace(canonical, scheme="traits", nir=None))
    known = IdentityVault(engine, EdgeKeys(store)).linkable([canonical])
    result = link([LinkInput("consent", canonical)], pseudonymiser, known=known)
    person = result.pseudonyms.get("consent", own)
    merged = [old for old, new in result.superseded.items() if new == person]
    return tuple(dict.fromkeys((own, person, traits, *merged))), identity_tokens(canonical, store)


def submit(
    consent: bytes | Path, *, engine: Engine, store: KeyStore, spark: SparkSession | None = None,
    lake_root: str | None = None, withdrawal: bool = False, audit: AuditLog | None = None,
    actor: str = "pdp-cli", actor_role: str = "dmp", lock: AbstractContextManager[Any] | None = None,
) -> SubmitOutcome:
    """Register (or, with ``withdrawal``, withdraw) the opposition a Consent expresses; recorded in `audit`.

    On submit with a Spark session, gold is purged of the person immediately.
    """
    raw = consent.read_bytes() if isinstance(consent, Path) else consent
    request = parse_consent(raw)
    if not withdrawal and request.status != "active":
        raise ConsentError(f"Consent.status: an opposition must be 'active' (got {request.status!r})")
    pseudonyms, tokens = resolve(request.raw_identity, engine=engine, store=store)
    registry = OppositionRegistry(engine)
    with lock or nullcontext():  # not between an ingest's edge check and its commit
        if withdrawal:
            outcome = SubmitOutcome("withdraw", pseudonyms, tuple(registry.withdraw(pseudonyms, tokens=tokens)))
        else:
            changed = registry.submit(pseudonyms, tokens=tokens)
            gold = purge_lake(spark, pseudonyms, zones=("gold",), lake_root=lake_root) if spark is not None else []
            outcome = SubmitOutcome("submit", pseudonyms, tuple(changed), gold)
    if audit is not None:
        audit.append(actor=actor, actor_role=actor_role,
                     action="opposition_withdraw" if withdrawal else "opposition_submit", decision="done",
                     data_ref=outcome.pseudonyms, purpose="opposition_management",
                     details={"changed": len(outcome.changed), "gold": outcome.gold})
    return outcome


def withdraw(
    consent: bytes | Path, *, engine: Engine, store: KeyStore, audit: AuditLog | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> SubmitOutcome:
    """Withdraw an opposition: data arriving from now on are used again."""
    return submit(consent, engine=engine, store=store, withdrawal=True, audit=audit, lock=lock)


def purge_lake(
    spark: SparkSession, pseudonyms: Iterable[str], *, zones: Iterable[str] = ("bronze", "silver", "gold"),
    lake_root: str | None = None, catalog: Catalog | None = None,
) -> list[dict[str, Any]]:
    """Erase `pseudonyms` from every table of `zones` that has a pseudonym column (one proof row per table)."""
    from pdp.lake import RunInfo, erase_pseudonyms

    run = RunInfo.new("governance.erasure", definitions_version="erasure/1")
    reports = erase_pseudonyms(spark, pseudonyms, run=run, reason=_REASON, zones=zones, lake_root=lake_root,
                               catalog=catalog)
    return [r.as_dict() for r in reports]


def apply(
    *, spark: SparkSession, engine: Engine, store: KeyStore, lake_root: str | None = None,
    audit: AuditLog | None = None, actor: str = "pdp-cli", lock: AbstractContextManager[Any] | None = None,
) -> ApplyReport:
    """Erase every pending opposed person from the lake (all versions, change data) and the vault.

    The proof (per table: versions before and after, rows, files and bytes removed; vault rows)
    goes to `audit` as one ``erasure`` entry naming the pseudonyms.
    """
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault

    started = time.perf_counter()
    registry = OppositionRegistry(engine)
    with lock or nullcontext():  # no ingest lands a record between the purge and marking it done
        pending = registry.pending()
        report = ApplyReport(pseudonyms=tuple(pending))
        if not pending:
            report.seconds = time.perf_counter() - started
            return report
        report.tables = purge_lake(spark, pending, lake_root=lake_root)
        report.vault_rows = IdentityVault(engine, EdgeKeys(store)).delete(pending)
        report.relationships = _forget_relationships(engine, pending)
        report.persons = len(pending)
        report.seconds = time.perf_counter() - started
        if audit is not None:  # the proof first: if it cannot be written, the erasure is redone next time
            audit.append(actor=actor, actor_role="system", action="erasure", decision="done", data_ref=pending,
                         purpose="opposition_management", rule=_REASON
                         + "; Delta's retention check overridden for the files holding the person only",
                         details=report.as_dict())
        registry.mark_applied(pending, at=datetime.now(UTC))
    return report


def _forget_relationships(engine: Engine, pseudonyms: list[str]) -> int:
    """Care relationships (GP ↔ patient) of erased persons go too."""
    from pdp.governance.authz.relationships import care_relationship

    with engine.begin() as conn:
        return int(conn.execute(care_relationship.delete().where(
            care_relationship.c.pseudonym.in_(pseudonyms))).rowcount or 0)


def withheld_at_edge(
    engine: Engine, store: KeyStore, finals: Iterable[tuple[str, str]], canonicals: Mapping[str, Any],
    *, tokens: Iterable[tuple[str, str]] | None = None,
) -> set[str]:
    """The batch pseudonyms to refuse at the edge: opposed themselves, linked to an opposed person,
    or with an identity whose opposition token is registered (after a key rotation or an erasure).

    `finals`: (batch pseudonym, person pseudonym after linkage) of every person of the batch.
    `tokens`: (batch pseudonym, opposition token) pairs computed where the identities are (Spark's
    executors, :func:`identity_tokens` under the ``opposition`` key), instead of from `canonicals`
    here. `finals` and `tokens` are read a chunk at a time: a batch that is not in this
    process's memory is not brought into it.
    """
    registry = OppositionRegistry(engine)
    withheld: set[str] = set()
    pairs_of_persons = iter(finals)
    while chunk := dict(islice(pairs_of_persons, _EDGE_CHUNK)):
        opposed = registry.opposed(sorted(set(chunk) | set(chunk.values())))
        withheld.update(p for p, person in chunk.items() if p in opposed or person in opposed)
    if tokens is None:
        key = store.ensure("opposition").material
        tokens = ((p, t) for p, c in canonicals.items() for t in identity_tokens(c, store, key=key))
    pairs = iter(tokens)
    while chunk := list(islice(pairs, _EDGE_CHUNK)):
        hit = registry.opposed_tokens(sorted({t for _, t in chunk}))
        withheld.update(p for p, t in chunk if t in hit)
    return withheld
