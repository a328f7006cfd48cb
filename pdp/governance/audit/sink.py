"""``AuditLogSink``: lets :func:`pdp.pseudonym.reidentify.reidentify` record into the audit log.

Why an adapter: ``reidentify`` speaks to an ``AuditSink`` protocol (``record(AuditEvent)``)
and must not know the log's vocabulary; the log must not know re-identification's event
type. The adapter maps one onto the other:

=================  ==============================================================
AuditEvent         audit entry
=================  ==============================================================
actor              actor (role from ``actor_role``, a callable or a fixed string)
purpose            purpose (``<undeclared>`` kept as is)
decision           allowed → allowed, refused → denied, failed → failed
reason             rule
pseudonyms         data_ref (the pseudonyms asked; never an identity)
released, counts,  details: ``released`` (pseudonyms released) or, when shorter, ``withheld``
purposes_version,  (pseudonyms asked and not released), ``requested_count``, ``purposes_version``,
at                 ``requested_at``
at
=================  ==============================================================

Why the shorter of the two lists: an entry's details are capped at 64 KiB, and a worklist page
usually releases every pseudonym it asks for; naming the few withheld ones lets one entry cover
a 2 000-patient page (one hash-chained write instead of four). :func:`released_in` reads both forms.

``record`` raises if the entry cannot be written, which makes ``reidentify`` release nothing.

Example::

    reidentify(pseudonyms, actor=actor, purpose="care_coordination", vault=vault,
               audit=AuditLogSink(AuditLog(engine), actor_role=lambda actor_id: "professional"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pdp.governance.audit.entry import format_at
from pdp.governance.audit.store import AuditRecord
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

if TYPE_CHECKING:
    from pdp.governance.audit.log import AuditLog
    from pdp.pseudonym.reidentify import AuditEvent

__all__ = ["AuditLogSink", "released_in"]

_DECISIONS = {"allowed": AuditDecision.ALLOWED, "refused": AuditDecision.DENIED, "failed": AuditDecision.FAILED}


def released_in(details: Mapping[str, Any], data_ref: Sequence[str], pseudonym: str) -> bool:
    """Whether a re-identification entry (its ``details`` and ``data_ref``) released ``pseudonym``."""
    if "released" in details:
        return pseudonym in details["released"]
    return pseudonym in data_ref and pseudonym not in details.get("withheld", ())


class AuditLogSink:
    """An ``AuditSink`` writing re-identification events as ``reidentification`` entries."""

    def __init__(self, log: AuditLog, *, actor_role: str | Callable[[str], str] = "unknown") -> None:
        self._log = log
        self._role = actor_role

    def record(self, event: AuditEvent) -> None:
        role = self._role(event.actor) if callable(self._role) else self._role
        released = list(event.released)
        kept = set(released)
        withheld = [p for p in event.pseudonyms if p not in kept]
        outcome = {"withheld": withheld} if len(withheld) < len(released) else {"released": released}
        self._log.record(
            AuditRecord(
                actor=event.actor if event.actor != "<malformed>" else "malformed-actor",
                actor_role=role,
                action=AuditAction.REIDENTIFICATION,
                decision=_DECISIONS.get(event.decision, AuditDecision.FAILED),
                data_ref=tuple(event.pseudonyms),
                purpose=event.purpose,
                rule=event.reason,
                details={
                    **outcome,
                    "requested_count": event.pseudonym_count,
                    "purposes_version": event.purposes_version,
                    "requested_at": format_at(event.at),
                },
            )
        )
