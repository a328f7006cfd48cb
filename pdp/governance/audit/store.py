"""Appending to and reading the audit log: the one place that writes ``audit_log``.

Why a lock and not just the unique index: two writers that read the same head would both
compute index n+1 with the same ``prev_hash``; the primary key makes one of them fail, but a
failed audit write means a refused operation somewhere. So appends are serialised *before*
the head is read:

- PostgreSQL: ``pg_advisory_xact_lock(namespace, hashtext(current_schema()))`` at the start of
  the append's transaction: one lock per audit schema, released at commit or rollback, taken
  by every writer (API workers, jobs) whatever process or host it runs in.
- SQLite: the governance engine opens every transaction with ``BEGIN IMMEDIATE``
  (:mod:`pdp.governance.db`), which already holds the database's single write lock.

Then the head (last index and hash) is read, the entry is built with index = head + 1 and
``at`` = now (taken under the lock, so times follow indices), and inserted; the primary key on
``idx`` stays as the last guard. An append runs in its own transaction by default, or inside
the caller's (``connection=``), so that an operation and its audit record commit together.

Example::

    entry = append_entry(engine, AuditRecord(actor="job:oppose-apply", actor_role="system",
                                             action="erasure", decision="done", details={...}))
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text

from pdp.governance.audit.entry import GENESIS_HASH, AuditEntry, canonical_json, format_at, utc_now
from pdp.governance.audit.tables import audit_log, audit_subject
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

__all__ = ["AuditRecord", "append_entry", "count_entries", "head", "iter_entries", "row_to_entry"]

_PG_LOCK_NAMESPACE = 0x70647061  # "pdpa": the audit append lock, per schema


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What a caller records; the log adds index, time and hashes.

    ``data_ref`` holds pseudonyms or labels (``table:silver.person``, ``count:12``), never an
    identity; counts and proofs go to ``details``.
    """

    actor: str
    actor_role: str
    action: AuditAction | str
    decision: AuditDecision | str
    data_ref: tuple[str, ...] = ()
    purpose: str | None = None
    rule: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(current_schema()))"), {"ns": _PG_LOCK_NAMESPACE})


def head(conn: Connection) -> tuple[int, str]:
    """(size, hash of the last entry): ``(0, GENESIS_HASH)`` for an empty log."""
    row = conn.execute(
        select(audit_log.c.idx, audit_log.c.entry_hash).order_by(audit_log.c.idx.desc()).limit(1)
    ).first()
    return (0, GENESIS_HASH) if row is None else (int(row.idx) + 1, row.entry_hash)


def _append(conn: Connection, record: AuditRecord) -> AuditEntry:
    checked = AuditEntry.build(  # validated before the lock: a refused entry never waits for it
        index=0,
        at=utc_now(),
        actor=record.actor,
        actor_role=record.actor_role,
        action=record.action,
        data_ref=record.data_ref,
        purpose=record.purpose,
        decision=record.decision,
        rule=record.rule,
        details=record.details,
        prev_hash=GENESIS_HASH,
    )
    _lock(conn)
    size, prev = head(conn)
    entry = dataclasses.replace(checked, index=size, at=format_at(utc_now()), prev_hash=prev)
    conn.execute(
        insert(audit_log).values(
            idx=entry.index,
            at=entry.at,
            actor=entry.actor,
            actor_role=entry.actor_role,
            action=str(entry.action),
            data_ref=canonical_json(list(entry.data_ref)),
            purpose=entry.purpose,
            decision=str(entry.decision),
            rule=entry.rule,
            details=canonical_json(entry.details),
            prev_hash=entry.prev_hash,
            entry_hash=entry.entry_hash,
        )
    )
    subjects = entry.subjects()
    if subjects:
        conn.execute(insert(audit_subject), [{"pseudonym": p, "entry_idx": entry.index} for p in subjects])
    return entry


def append_entry(target: Engine | Connection, record: AuditRecord) -> AuditEntry:
    """Append ``record`` as the next entry; returns it (with index, time and hash).

    ``target`` is an engine (own transaction, committed on return) or a connection inside the
    caller's transaction (the lock is then held until the caller commits).
    """
    if isinstance(target, Connection):
        return _append(target, record)
    with target.begin() as conn:
        return _append(conn, record)


def row_to_entry(row: Any) -> AuditEntry:
    """An entry as stored, *not* re-validated (old entries must verify even if rules change).

    Raises ``ValueError`` when the stored JSON is unreadable (a tampered row).
    """
    data_ref = json.loads(row.data_ref)
    details = json.loads(row.details)
    if not isinstance(data_ref, list) or not isinstance(details, dict):
        raise ValueError("stored data_ref/details have the wrong JSON type")
    return AuditEntry(
        index=int(row.idx),
        at=row.at,
        actor=row.actor,
        actor_role=row.actor_role,
        action=row.action,
        data_ref=tuple(data_ref),
        purpose=row.purpose,
        decision=row.decision,
        rule=row.rule,
        details=details,
        prev_hash=row.prev_hash,
    )


def iter_entries(conn: Connection, *, where: Iterable[Any] = (), batch: int = 2000) -> Iterator[Any]:
    """Stored rows in index order (streamed in batches), optionally filtered."""
    query = select(audit_log).where(*where).order_by(audit_log.c.idx).execution_options(yield_per=batch)
    yield from conn.execute(query)  # options on the statement: Connection.execution_options would stick


def count_entries(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
