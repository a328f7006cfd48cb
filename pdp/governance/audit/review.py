"""Reading the log for people: filtered review (ethics committee) and a citizen's transparency record.

Why two readers: the ethics committee reviews *who did what, why, and how it ended* (every
field but identities, which the log never holds); a citizen asking which uses were made of
their data must learn when, by which *kind* of actor and for which purpose — not the name
or login of the professional, which is personal data of someone else. So
:func:`transparency_record` returns roles, never actor ids, and only entries that reference
the citizen's pseudonym (through the ``audit_subject`` index: one indexed look-up).

Neither reader verifies the chain (that is :func:`pdp.governance.audit.verify.verify_log`,
run by ``pdp audit verify`` and on a schedule); they read what is stored.

Example::

    entries = query_entries(engine, purpose="care_coordination", decision="denied", since=date(2026, 1, 1))
    uses = transparency_record(engine, "v1:AbC…")   # [TransparencyItem(at=…, actor_role='professional', …)]
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from pdp.governance.audit.entry import AuditEntry, AuditEntryError, format_at, is_pseudonym
from pdp.governance.audit.sink import released_in
from pdp.governance.audit.store import iter_entries, row_to_entry
from pdp.governance.audit.tables import audit_log, audit_subject
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

__all__ = ["TransparencyItem", "query_entries", "transparency_record"]


def _bound(value: date | datetime, *, end: bool) -> str:
    """A canonical time bound: a date means the whole day (``until`` includes it)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        moment = datetime.combine(value + timedelta(days=1) if end else value, time.min, tzinfo=UTC)
    return format_at(moment)


def query_entries(
    target: Engine | Connection,
    *,
    actor: str | None = None,
    purpose: str | None = None,
    decision: AuditDecision | str | None = None,
    action: AuditAction | str | None = None,
    since: date | datetime | None = None,
    until: date | datetime | None = None,
    limit: int | None = None,
) -> list[AuditEntry]:
    """Entries matching every given filter, in index order.

    ``since`` is inclusive; ``until`` is inclusive for a date (the whole day) and exclusive for
    a datetime. Unknown actions or decisions raise :class:`AuditEntryError` (a typo must not
    silently return nothing).
    """
    if isinstance(target, Engine):
        with target.connect() as conn:
            return query_entries(
                conn,
                actor=actor,
                purpose=purpose,
                decision=decision,
                action=action,
                since=since,
                until=until,
                limit=limit,
            )
    c = audit_log.c
    where: list[Any] = []
    if actor is not None:
        where.append(c.actor == actor)
    if purpose is not None:
        where.append(c.purpose == purpose)
    if decision is not None:
        try:
            where.append(c.decision == str(AuditDecision(decision)))
        except ValueError:
            raise AuditEntryError(f"unknown decision (expected one of {', '.join(AuditDecision)})") from None
    if action is not None:
        try:
            where.append(c.action == str(AuditAction(action)))
        except ValueError:
            raise AuditEntryError(f"unknown action (expected one of {', '.join(AuditAction)})") from None
    if since is not None:
        where.append(c.at >= _bound(since, end=False))
    if until is not None:
        where.append(c.at < _bound(until, end=True))
    out: list[AuditEntry] = []
    for row in iter_entries(target, where=where):
        out.append(row_to_entry(row))
        if limit is not None and len(out) >= limit:
            break
    return out


@dataclass(frozen=True, slots=True)
class TransparencyItem:
    """One use of a citizen's data as the citizen may see it (no actor id, no other pseudonym)."""

    index: int
    at: str
    action: str
    actor_role: str
    purpose: str | None
    decision: str
    identity_released: bool | None
    """For a re-identification: whether this person's identity was released; else ``None``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "at": self.at,
            "action": self.action,
            "actor_role": self.actor_role,
            "purpose": self.purpose,
            "decision": self.decision,
            "identity_released": self.identity_released,
        }


def transparency_record(target: Engine | Connection, pseudonym: str) -> list[TransparencyItem]:
    """Every logged use of the data of ``pseudonym``, oldest first (for the DMP endpoint).

    Raises :class:`AuditEntryError` when ``pseudonym`` does not have a pseudonym's shape (a NIR
    or a name is never looked up, nor echoed).
    """
    if not isinstance(pseudonym, str) or not is_pseudonym(pseudonym):
        raise AuditEntryError("transparency: not a pseudonym (value not shown)")
    if isinstance(target, Engine):
        with target.connect() as conn:
            return transparency_record(conn, pseudonym)
    query = (
        select(audit_log)
        .join(audit_subject, audit_subject.c.entry_idx == audit_log.c.idx)
        .where(audit_subject.c.pseudonym == pseudonym)
        .order_by(audit_log.c.idx)
    )
    items: list[TransparencyItem] = []
    for row in target.execute(query):
        entry = row_to_entry(row)
        released: bool | None = None
        if str(entry.action) == AuditAction.REIDENTIFICATION:
            released = released_in(entry.details, entry.data_ref, pseudonym)
        items.append(
            TransparencyItem(
                index=entry.index,
                at=entry.at,
                action=str(entry.action),
                actor_role=entry.actor_role,
                purpose=entry.purpose,
                decision=str(entry.decision),
                identity_released=released,
            )
        )
    return items
