"""The audit trail's tables in the governance store (registered on ``pdp.governance.db.metadata``).

Why three tables:

- ``audit_log``: the entries, append-only. ``idx`` is the primary key (0-based, contiguous: the
  last guard against two writers taking the same place), every canonical field is stored as
  the text that was hashed (``at`` as canonical UTC text, ``data_ref`` and ``details`` as
  canonical JSON), so re-reading never depends on a driver's date or JSON handling.
- ``audit_subject``: pseudonym → entry index, derived from ``data_ref`` at append time, so a
  citizen's transparency record is an indexed look-up, not a scan of the whole log. It is an
  index, not evidence: the verifier checks the entries it points at.
- ``audit_head``: one row (size, hash of the last entry) that every append locks
  (``SELECT … FOR UPDATE``) and moves forward in the same transaction: the lock that
  serialises writers, and one round trip to read the head under it. The verifier checks it
  against the entries (a removed tail that the head still counts is seen without a checkpoint).
- ``audit_checkpoint``: the signed tree heads taken so far (what a witness also keeps).

In production these tables live in their own database or schema with their own credentials
(``PDP_AUDIT_DB_URL``); :func:`create_audit_tables` creates only them there.

Example::

    create_audit_tables(make_engine(settings.audit_db_url or settings.db_url))
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Engine, ForeignKey, Index, Integer, String, Table, Text

from pdp.governance.db import metadata

__all__ = ["audit_checkpoint", "audit_head", "audit_log", "audit_subject", "create_audit_tables"]

audit_log = Table(
    "audit_log",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("actor_role", String(64), nullable=False),
    Column("action", String(40), nullable=False),
    Column("data_ref", Text, nullable=False),
    Column("purpose", String(64), nullable=True),
    Column("decision", String(16), nullable=False),
    Column("rule", String(500), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_actor", "actor"),
    Index("ix_audit_log_action", "action"),
)

audit_subject = Table(
    "audit_subject",
    metadata,
    Column("pseudonym", String(64), primary_key=True),
    Column("entry_idx", BigInteger, ForeignKey("audit_log.idx"), primary_key=True),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    CheckConstraint("id = 1", name="single_row"),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", String(64), nullable=False),
    Column("timestamp", String(32), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
)

AUDIT_TABLES = (audit_log, audit_subject, audit_head, audit_checkpoint)


def create_audit_tables(engine: Engine) -> None:
    """Create the audit tables (only them) where missing: for a separate audit store."""
    metadata.create_all(engine, tables=list(AUDIT_TABLES))
