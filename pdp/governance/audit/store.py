"""Appending to and reading the audit log: the one place that writes ``audit_log``.

Why a lock and not just the unique index: two writers that read the same head would both
compute index n+1 with the same ``prev_hash``; the primary key makes one of them fail, but a
failed audit write means a refused operation somewhere. So appends are serialised *before*
the head is read, by the one row of ``audit_head``:

- ``SELECT size, last_hash FROM audit_head WHERE id = 1 FOR UPDATE`` locks it and, on
  PostgreSQL under READ COMMITTED, returns the latest committed head once the lock is granted
  (lock and read in one round trip). Every writer (API workers, jobs, other hosts) takes it.
- SQLite ignores ``FOR UPDATE``; the governance engine opens every transaction with
  ``BEGIN IMMEDIATE`` (:mod:`pdp.governance.db`), which already holds the single write lock.

Then the entry is built with index = size and ``at`` = now (taken under the lock, so times
follow indices), and inserted together with its subjects and the head's update — on
PostgreSQL in one statement (data-modifying CTEs), to keep the lock for as few round trips as
possible: lock+read, write, commit. The primary key on ``idx`` stays as the last guard. An
append runs in its own transaction by default, or inside the caller's (``connection=``), so
that an operation and its audit record commit together (the head stays locked until then).

Measured (``pdp bench audit``, 2 shared cores, load ~7, local PostgreSQL 16): see
`pdp/bench/audit.py`.

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

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pdp.governance.audit.entry import GENESIS_HASH, AuditEntry, canonical_json, format_at, utc_now
from pdp.governance.audit.tables import audit_head, audit_log, audit_subject
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

__all__ = ["AuditRecord", "append_entry", "count_entries", "head", "iter_entries", "row_to_entry"]


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


def _lock_head(conn: Connection) -> tuple[int, str]:
    """Lock the head row and return (size, last hash); creates the row on the very first append."""
    locked = select(audit_head.c.size, audit_head.c.last_hash).where(audit_head.c.id == 1).with_for_update()
    row = conn.execute(locked).first()
    if row is None:
        size, last = head(conn)  # a log without a head row yet: start from its actual last entry
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(audit_head).values(id=1, size=size, last_hash=last).on_conflict_do_nothing()
        )  # a concurrent first writer may have created it: then this is a no-op, and we queue
        row = conn.execute(locked).one()
    return int(row.size), row.last_hash


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
    size, prev = _lock_head(conn)
    entry = dataclasses.replace(checked, index=size, at=format_at(utc_now()), prev_hash=prev)
    new_entry = insert(audit_log).values(
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
    subjects = [{"pseudonym": p, "entry_idx": entry.index} for p in entry.subjects()]
    move_head = update(audit_head).where(audit_head.c.id == 1).values(size=size + 1, last_hash=entry.entry_hash)
    if conn.dialect.name == "postgresql":  # one statement, one round trip under the lock
        statement = move_head.add_cte(new_entry.cte("new_entry"))
        if subjects:
            statement = statement.add_cte(insert(audit_subject).values(subjects).cte("new_subjects"))
        conn.execute(statement)
    else:
        conn.execute(new_entry)
        if subjects:  # executemany of one cached statement: a multi-row VALUES is compiled anew each time
            conn.execute(insert(audit_subject), subjects)
        conn.execute(move_head)
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
