"""Which patients a principal may see once a decision allows it: the per-patient check.

Why not policy lines: "a professional sees their own patients" depends on data (who is whose
declared GP, which care relationships are recorded) that changes every day and counts millions
of pairs; one Casbin line per patient would make the policy a copy of that data. So Casbin
decides *whether* a professional may read worklists or re-identify for a purpose in a territory,
and :func:`patients_in_scope` then keeps only the pseudonyms the principal may see, through a
:class:`CareRelationships` source the API backs with data.

Two sources are provided: :class:`InMemoryCareRelationships` (tests, a snapshot) and
:class:`SqlCareRelationships` (the governance store's ``care_relationship`` table, SQLite or
PostgreSQL). Both answer "which of these pseudonyms does RPPS X follow?" in one call, so that a
1 500-patient worklist costs one query, not 1 500.

Example::

    >>> rel = InMemoryCareRelationships([CareRelationship("10000000001", "v1:" + "A" * 43, "declared_gp")])
    >>> sorted(rel.related("10000000001", ["v1:" + "A" * 43, "v1:" + "B" * 43])) == ["v1:" + "A" * 43]
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from pdp.governance.authz.authoriser import Principal
from pdp.governance.authz.vocabulary import PATIENT_SCOPE
from pdp.governance.db import metadata
from pdp.pseudonym.vault import VaultError, check_pseudonym

__all__ = [
    "CareRelationship",
    "CareRelationships",
    "InMemoryCareRelationships",
    "SqlCareRelationships",
    "care_relationship",
    "patients_in_scope",
]

RelationshipKind = Literal["declared_gp", "care"]
_KINDS: tuple[str, ...] = ("declared_gp", "care")
_CHUNK = 500  # bound parameters per IN (...) query: well under SQLite's and PostgreSQL's limits


class CareRelationships(Protocol):
    """The relationship hook: which of these pseudonyms are patients of the professional ``rpps``?"""

    def related(self, rpps: str, pseudonyms: Sequence[str]) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class CareRelationship:
    """A professional (RPPS) follows a patient (pseudonym): as declared GP, or a recorded care relationship."""

    rpps: str
    pseudonym: str
    kind: RelationshipKind

    def __post_init__(self) -> None:
        if not (isinstance(self.rpps, str) and self.rpps.isdigit() and len(self.rpps) == 11):
            raise ValueError("RPPS must be 11 digits")
        try:
            check_pseudonym(self.pseudonym)
        except VaultError:
            raise ValueError("malformed pseudonym (value not shown)") from None
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}")


def patients_in_scope(
    principal: Principal, pseudonyms: Sequence[str], relationships: CareRelationships | None
) -> frozenset[str]:
    """The subset of ``pseudonyms`` ``principal`` may see, by its role's patient scope.

    ``domain`` (SIOP platform): all of them — the caller passes pseudonyms of the territory the
    decision was about. ``relationship`` (professional): those the relationship source links to
    the principal's RPPS; no source, no patients. ``none``: no patient at all. Fails closed: a
    failing source raises, it never widens the answer.
    """
    scope = PATIENT_SCOPE.get(principal.role, "none")
    if scope == "domain":
        return frozenset(pseudonyms)
    if scope == "relationship" and relationships is not None and principal.rpps:
        asked = set(pseudonyms)
        return frozenset(p for p in relationships.related(principal.rpps, tuple(asked)) if p in asked)
    return frozenset()


class InMemoryCareRelationships:
    """Relationships held in memory (tests, or a snapshot refreshed by the API)."""

    def __init__(self, relationships: Iterable[CareRelationship] = ()) -> None:
        self._by_rpps: dict[str, dict[str, set[str]]] = {}
        for rel in relationships:
            self.record(rel)

    def record(self, rel: CareRelationship) -> None:
        self._by_rpps.setdefault(rel.rpps, {}).setdefault(rel.pseudonym, set()).add(rel.kind)

    def end(self, rel: CareRelationship) -> None:
        kinds = self._by_rpps.get(rel.rpps, {}).get(rel.pseudonym)
        if kinds is not None:
            kinds.discard(rel.kind)
            if not kinds:
                del self._by_rpps[rel.rpps][rel.pseudonym]

    def related(self, rpps: str, pseudonyms: Sequence[str]) -> set[str]:
        mine = self._by_rpps.get(rpps, {})
        return {p for p in pseudonyms if p in mine}


care_relationship = Table(
    "care_relationship",
    metadata,
    Column("rpps", String(11), nullable=False),
    Column("pseudonym", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("rpps", "pseudonym", "kind"),
    CheckConstraint("kind IN ('declared_gp', 'care')", name="kind"),
    Index("ix_care_relationship_pseudonym", "pseudonym"),
)


class SqlCareRelationships:
    """Relationships in the governance store (``care_relationship``), SQLite or PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, rel: CareRelationship) -> None:
        """Record ``rel`` (idempotent: recording it twice keeps one row)."""
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(care_relationship).values(
                    rpps=rel.rpps, pseudonym=rel.pseudonym, kind=rel.kind, recorded_at=datetime.now(UTC)))
        except IntegrityError:
            with self._engine.connect() as conn:
                if not self._exists(conn, rel):
                    raise

    def end(self, rel: CareRelationship) -> None:
        c = care_relationship.c
        with self._engine.begin() as conn:
            conn.execute(delete(care_relationship).where(
                c.rpps == rel.rpps, c.pseudonym == rel.pseudonym, c.kind == rel.kind))

    def related(self, rpps: str, pseudonyms: Sequence[str]) -> set[str]:
        c = care_relationship.c
        wanted = []
        for value in dict.fromkeys(pseudonyms):
            try:
                wanted.append(check_pseudonym(value))
            except VaultError:
                continue  # a malformed value is nobody's patient
        found: set[str] = set()
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                found.update(conn.execute(
                    select(c.pseudonym).where(c.rpps == rpps, c.pseudonym.in_(chunk)).distinct()).scalars())
        return found

    @staticmethod
    def _exists(conn, rel: CareRelationship) -> bool:  # type: ignore[no-untyped-def]
        c = care_relationship.c
        return conn.execute(select(c.rpps).where(
            c.rpps == rel.rpps, c.pseudonym == rel.pseudonym, c.kind == rel.kind)).first() is not None
