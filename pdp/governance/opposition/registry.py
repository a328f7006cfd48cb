"""The opposition registry: which persons objected, since when, and whether the lake is purged yet.

Why pseudonyms only: the registry is consulted by every part that produces a result (gold,
worklists, samples, PSI registries, re-identification), and none of them may hold an
identity. A row holds the person's pseudonym (current key), the state and the dates:

- ``active``: opposed; absent from every result from now on; ``applied_at`` set once
  ``pdp oppose apply`` has erased the person from the lake and the vault;
- ``withdrawn``: the person withdrew the opposition; data arriving from then on are used again
  (what was erased stays erased).

A person may be known under several pseudonyms (NIR scheme, traits scheme before linkage):
each is a row, so that new data under any of them is refused at the edge.

>>> registry = OppositionRegistry(engine)          # doctest: +SKIP
>>> registry.submit(["v1:..."]); registry.opposed(["v1:...", "v1:other"])   # doctest: +SKIP
{'v1:...'}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Engine, String, Table, select, update

from pdp.governance.db import metadata
from pdp.pseudonym.vault import check_pseudonym

__all__ = ["OppositionRegistry", "opposition_registry"]

_CHUNK = 500

opposition_registry = Table(
    "opposition_registry",
    metadata,
    Column("pseudonym", String(128), primary_key=True),
    Column("status", String(16), nullable=False),  # active | withdrawn
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=True),
)


class OppositionRegistry:
    """The registry in the governance store; implements the ``opposed`` hook of re-identification."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    def submit(self, pseudonyms: Iterable[str], *, at: datetime | None = None) -> list[str]:
        """Register the opposition of the person behind `pseudonyms`; returns those newly active."""
        now = at or datetime.now(UTC)
        items = sorted({check_pseudonym(p) for p in pseudonyms})
        changed: list[str] = []
        r = opposition_registry.c
        with self._engine.begin() as conn:
            known = {row.pseudonym: row.status for row in conn.execute(
                select(r.pseudonym, r.status).where(r.pseudonym.in_(items)))}
            for p in items:
                if known.get(p) == "active":
                    continue
                if p in known:
                    conn.execute(update(opposition_registry).where(r.pseudonym == p).values(
                        status="active", submitted_at=now, withdrawn_at=None, applied_at=None))
                else:
                    conn.execute(opposition_registry.insert().values(pseudonym=p, status="active", submitted_at=now))
                changed.append(p)
        return changed

    def withdraw(self, pseudonyms: Iterable[str], *, at: datetime | None = None) -> list[str]:
        """Withdraw the opposition (future data only); returns the pseudonyms that were active."""
        now = at or datetime.now(UTC)
        items = sorted({check_pseudonym(p) for p in pseudonyms})
        r = opposition_registry.c
        with self._engine.begin() as conn:
            active = [row.pseudonym for row in conn.execute(
                select(r.pseudonym).where(r.pseudonym.in_(items), r.status == "active"))]
            if active:
                conn.execute(update(opposition_registry).where(r.pseudonym.in_(active)).values(
                    status="withdrawn", withdrawn_at=now))
        return active

    def opposed(self, pseudonyms: Sequence[str]) -> set[str]:
        """Which of `pseudonyms` belong to an active opposition (the re-identification hook)."""
        items = list(dict.fromkeys(pseudonyms))
        r = opposition_registry.c
        found: set[str] = set()
        with self._engine.connect() as conn:
            for start in range(0, len(items), _CHUNK):
                chunk = items[start:start + _CHUNK]
                found.update(conn.execute(
                    select(r.pseudonym).where(r.pseudonym.in_(chunk), r.status == "active")).scalars())
        return found

    def active(self) -> list[str]:
        """Every actively opposed pseudonym (what results must exclude)."""
        r = opposition_registry.c
        with self._engine.connect() as conn:
            return sorted(conn.execute(select(r.pseudonym).where(r.status == "active")).scalars())

    def pending(self) -> list[str]:
        """Active oppositions the lake has not been purged of yet (``pdp oppose apply``'s work)."""
        r = opposition_registry.c
        with self._engine.connect() as conn:
            return sorted(conn.execute(
                select(r.pseudonym).where(r.status == "active", r.applied_at.is_(None))).scalars())

    def mark_applied(self, pseudonyms: Iterable[str], *, at: datetime | None = None) -> None:
        items = sorted(set(pseudonyms))
        r = opposition_registry.c
        with self._engine.begin() as conn:
            for start in range(0, len(items), _CHUNK):
                conn.execute(update(opposition_registry).where(r.pseudonym.in_(items[start:start + _CHUNK]))
                             .values(applied_at=at or datetime.now(UTC)))

    def follow(self, mapping: Mapping[str, str]) -> int:
        """Follow a key rotation or a linkage merge: old pseudonym → new, state kept."""
        r = opposition_registry.c
        moved = 0
        with self._engine.begin() as conn:
            rows = conn.execute(select(opposition_registry).where(r.pseudonym.in_(list(mapping)))).mappings().all()
            for row in rows:
                new = mapping[row["pseudonym"]]
                conn.execute(opposition_registry.delete().where(r.pseudonym == row["pseudonym"]))
                if conn.execute(select(r.pseudonym).where(r.pseudonym == new)).first() is None:
                    conn.execute(opposition_registry.insert().values({**row, "pseudonym": new}))
                moved += 1
        return moved
