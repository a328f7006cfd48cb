"""Recorders that plug the authoriser's hooks into the audit log.

Why adapters here: :class:`pdp.governance.authz.Authoriser` reports every decision to
``on_decision(DecisionRecord)`` and every policy reload to ``on_reload(previous, new)``, and
denies what it cannot record. It must not know the audit log's vocabulary, and the audit log
must not import the policy engine; these two callables translate (duck-typed on the record's
fields, so the arrow stays ``authz → audit`` when the lead wires them).

A decision is recorded as an ``authorisation_decision`` entry: actor = the principal's subject,
its role, purpose, ``allowed``/``denied``, the rule that decided, and the territory, object,
action, cache hit and policy/purposes versions in ``details``. A request too malformed to be
recorded as asked (an unknown purpose spelled with spaces, a NIR passed as an object) is still
recorded, with the offending field replaced by ``<withheld>``: a denial must leave a trace.

Cost: one durable append per decision (cached or not), i.e. the audit store's append rate
bounds the authoriser's decision rate (see `pdp/bench/audit.py`).

Example::

    log = AuditLog.from_settings()
    authz = Authoriser.from_settings(on_decision=AuditDecisionRecorder(log), on_reload=PolicyChangeRecorder(log))
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Protocol

from pdp.governance.audit.entry import AuditEntryError
from pdp.governance.audit.store import AuditRecord
from pdp.governance.audit.vocabulary import AuditAction, AuditDecision

if TYPE_CHECKING:
    from pdp.governance.audit.log import AuditLog

__all__ = ["AuditDecisionRecorder", "PolicyChangeRecorder"]

_WITHHELD = "<withheld>"
_PURPOSE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ROLE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class _DecisionRecord(Protocol):
    """The fields of ``pdp.governance.authz.DecisionRecord`` this recorder reads."""

    subject: str
    role: str
    domain: str
    obj: str
    action: str
    purpose: str
    allowed: bool
    rule: str
    cached: bool
    policy_version: str
    purposes_version: int | None


class AuditDecisionRecorder:
    """``on_decision`` for the authoriser: one audit entry per decision (raises if not written)."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def __call__(self, record: _DecisionRecord) -> None:
        purpose = record.purpose if _PURPOSE_RE.fullmatch(record.purpose or "") else None
        details: dict[str, Any] = {
            "domain": record.domain,
            "object": record.obj,
            "action": record.action,
            "cached": record.cached,
            "policy_version": record.policy_version,
            "purposes_version": record.purposes_version,
        }
        if purpose is None:
            details["purpose"] = _WITHHELD
        entry = AuditRecord(
            actor=record.subject if record.subject != "<invalid>" else "invalid-principal",
            actor_role=record.role if _ROLE_RE.fullmatch(record.role or "") else "invalid",
            action=AuditAction.AUTHORISATION_DECISION,
            decision=AuditDecision.ALLOWED if record.allowed else AuditDecision.DENIED,
            purpose=purpose,
            rule=record.rule,
            details=details,
        )
        withheld_fields = {**details, **dict.fromkeys(("domain", "object", "action"), _WITHHELD)}
        attempts = (
            entry,
            # Something in the request looked like an identity or was malformed: keep the trace, not the value.
            dataclasses.replace(entry, rule=_WITHHELD, details={**withheld_fields, "withheld": "request fields"}),
            dataclasses.replace(
                entry,
                actor="withheld-principal",
                rule=_WITHHELD,
                details={**withheld_fields, "withheld": "request and actor"},
            ),
        )
        for attempt in attempts[:-1]:
            try:
                self._log.record(attempt)
                return
            except AuditEntryError:
                continue
        self._log.record(attempts[-1])


class PolicyChangeRecorder:
    """``on_reload`` for the authoriser: a ``policy_change`` entry with the previous and new versions."""

    def __init__(self, log: AuditLog, *, actor: str = "pdp-authz") -> None:
        self._log = log
        self._actor = actor

    def __call__(self, previous_version: str, new_version: str) -> None:
        self._log.record(
            AuditRecord(
                actor=self._actor,
                actor_role="system",
                action=AuditAction.POLICY_CHANGE,
                decision=AuditDecision.DONE,
                rule="policy reloaded",
                details={"previous_version": str(previous_version), "new_version": str(new_version)},
            )
        )
