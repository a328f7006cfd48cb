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

from sqlalchemy import Column, Connection, DateTime, Engine, String, Table, select, update

from pdp.governance.db import metadata
from pdp.pseudonym.vault import check_pseudonym

__all__ = ["OppositionRegistry", "opposition_registry", "opposition_token"]

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


# Keyed hashes (``opposition`` key, never rotated with the pseudonyms) of the opposed person's
# canonical identities, NIR scheme and traits scheme: what the edge checks, so an opposition
# survives key rotations and the erasure of the vault record, and catches a later record that
# comes without a NIR.
opposition_token = Table(
    "opposition_token",
    metadata,
    Column("token", String(64), primary_key=True),
    Column("status", String(16), nullable=False),  # active | withdrawn
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("withdrawn_at", DateTime(timezone=True), nullable=True),
)


class OppositionRegistry:
    """The registry in the governance store; implements the ``opposed`` hook of re-identification."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    def submit(self, pseudonyms: Iterable[str], *, tokens: Iterable[str] = (), at: datetime | None = None) -> list[str]:
        """Register the opposition of the person behind `pseudonyms` (and identity `tokens`); returns
        the pseudonyms newly active."""
        now = at or datetime.now(UTC)
        items = sorted({check_pseudonym(p) for p in pseudonyms})
        changed: list[str] = []
        r = opposition_registry.c
        with self._engine.begin() as conn:
            _set_tokens(conn, sorted(set(tokens)), "active", now)
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

    def withdraw(
        self, pseudonyms: Iterable[str], *, tokens: Iterable[str] = (), at: datetime | None = None
    ) -> list[str]:
        """Withdraw the opposition (future data only); returns the pseudonyms that were active."""
        now = at or datetime.now(UTC)
        items = sorted({check_pseudonym(p) for p in pseudonyms})
        r = opposition_registry.c
        with self._engine.begin() as conn:
            _set_tokens(conn, sorted(set(tokens)), "withdrawn", now)
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

    def opposed_tokens(self, tokens: Sequence[str]) -> set[str]:
        """Which identity tokens belong to an active opposition (the edge's check)."""
        items = list(dict.fromkeys(tokens))
        t = opposition_token.c
        found: set[str] = set()
        with self._engine.connect() as conn:
            for start in range(0, len(items), _CHUNK):
                found.update(conn.execute(select(t.token).where(
                    t.token.in_(items[start:start + _CHUNK]), t.status == "active")).scalars())
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
        """Follow a key rotation or a linkage merge: old pseudonym → new. An active opposition wins
        over any state the new pseudonym had (and is applied again, since new data may be there)."""
        r = opposition_registry.c
        moved = 0
        with self._engine.begin() as conn:
            rows = conn.execute(select(opposition_registry).where(r.pseudonym.in_(list(mapping)))).mappings().all()
            for row in rows:
                new = mapping[row["pseudonym"]]
                conn.execute(opposition_registry.delete().where(r.pseudonym == row["pseudonym"]))
                existing = conn.execute(select(opposition_registry).where(r.pseudonym == new)).mappings().first()
                if existing is None:
                    conn.execute(opposition_registry.insert().values({**row, "pseudonym": new}))
                elif row["status"] == "active":
                    conn.execute(update(opposition_registry).where(r.pseudonym == new).values(
                        status="active", submitted_at=row["submitted_at"], withdrawn_at=None, applied_at=None))
                moved += 1
        return moved


def _set_tokens(conn: Connection, tokens: list[str], status: str, now: datetime) -> None:
    t = opposition_token.c
    known = set(conn.execute(select(t.token).where(t.token.in_(tokens))).scalars()) if tokens else set()
    for token in tokens:
        if token in known:
            values = {"status": status, **({"withdrawn_at": now} if status == "withdrawn"
                                           else {"submitted_at": now, "withdrawn_at": None})}
            conn.execute(update(opposition_token).where(t.token == token).values(**values))
        elif status == "active":
            conn.execute(opposition_token.insert().values(token=token, status="active", submitted_at=now))
