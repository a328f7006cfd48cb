"""The real authoriser records every decision and every policy reload in the audit log."""

from __future__ import annotations

from sqlalchemy import Engine

from pdp.governance.audit import AuditDecisionRecorder, AuditLog, PolicyChangeRecorder
from pdp.governance.authz import Authoriser, Principal


def test_every_decision_and_policy_reload_is_an_audit_entry(governance_engine: Engine) -> None:
    log = AuditLog(governance_engine)
    authz = Authoriser(on_decision=AuditDecisionRecorder(log), on_reload=PolicyChangeRecorder(log))
    siop = Principal(sub="auth0|siop-douaisis-1", role="siop_platform", territories={"douaisis"})
    allowed = authz.authorise(siop, "douaisis", "worklist", "read", "care_coordination")
    again = authz.authorise(siop, "douaisis", "worklist", "read", "care_coordination")  # from the cache
    denied = authz.authorise(siop, "cornouaille", "worklist", "read", "care_coordination")
    odd = authz.authorise(siop, "douaisis", "1850578006084", "read", "care coordination")  # a NIR as object
    authz.reload()
    assert allowed.allowed and again.allowed and not denied.allowed and not odd.allowed

    entries = log.query()
    assert [(e.action, e.decision, e.actor, e.actor_role) for e in entries[:4]] == [
        ("authorisation_decision", "allowed", "auth0|siop-douaisis-1", "siop_platform"),
        ("authorisation_decision", "allowed", "auth0|siop-douaisis-1", "siop_platform"),
        ("authorisation_decision", "denied", "auth0|siop-douaisis-1", "siop_platform"),
        ("authorisation_decision", "denied", "auth0|siop-douaisis-1", "siop_platform"),
    ]
    assert entries[0].rule == allowed.rule and entries[2].rule == denied.rule
    assert (entries[0].details["cached"], entries[1].details["cached"]) == (False, True)
    assert entries[2].details["domain"] == "cornouaille" and entries[0].purpose == "care_coordination"
    assert entries[3].details["object"] == "<withheld>" and entries[3].purpose is None
    assert "1850578006084" not in repr(entries)
    assert (entries[4].action, entries[4].decision, entries[4].details["new_version"]) == (
        "policy_change",
        "done",
        authz.policy_version,
    )
    assert log.verify(trusted_keys={}).ok
