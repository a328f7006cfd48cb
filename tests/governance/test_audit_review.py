"""Reading the audit trail: re-identification recorded through AuditLogSink, a citizen's
transparency record (roles and purposes, never actor ids), and the ethics committee's filters."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pdp.config import Settings
from pdp.governance.audit import AuditEntryError, AuditLog, AuditLogSink
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.reidentify import Actor, Decision, ReidentificationRefused, reidentify
from pdp.pseudonym.vault import IdentityVault, VaultRecord


def pseudonym(n: int) -> str:
    return "v1:" + base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode()[:43]


P1, P2, P3 = (pseudonym(n) for n in (1, 2, 3))
NIR = "185057800608491"
PEOPLE = {
    P1: VaultRecord(birth_name="ZYGOMATIQUE", first_names=("QUETZALIA",), nir=NIR),
    P2: VaultRecord(birth_name="XYLOPHAGOS"),
}
COORDINATOR = Actor("coordinator-42", roles=frozenset({"professional"}))


class AllowOnly:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(allowed)

    def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
        return Decision.allow(self.allowed, "p, professional, douaisis, patient, read, care_coordination")


@pytest.fixture()
def vault(governance_engine: Engine, tmp_path: Path) -> IdentityVault:
    master = base64.b64encode(os.urandom(32)).decode()
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master))
    store.init()
    real = IdentityVault(governance_engine, store)
    real.upsert_many(PEOPLE)
    return real


def test_reidentify_records_through_the_audit_log_and_the_citizen_sees_roles_not_names(
    governance_engine: Engine, vault: IdentityVault
) -> None:
    log = AuditLog(governance_engine)
    sink = AuditLogSink(log, actor_role=lambda actor_id: "professional" if actor_id.startswith("coord") else "unknown")
    released = reidentify(
        [P1, P2], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=sink, authorizer=AllowOnly([P1])
    )
    assert set(released) == {P1}
    with pytest.raises(ReidentificationRefused):
        reidentify([P1], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=sink)  # deny by default

    entries = log.query(action="reidentification")
    assert [(e.decision, e.actor, e.actor_role, e.purpose) for e in entries] == [
        ("allowed", "coordinator-42", "professional", "care_coordination"),
        ("denied", "coordinator-42", "professional", "care_coordination"),
    ]
    assert entries[0].data_ref == (P1, P2) and entries[0].details["released"] == [P1]
    assert log.verify(trusted_keys={}).ok

    record = log.transparency(P1)
    assert [(i.action, i.actor_role, i.purpose, i.decision, i.identity_released) for i in record] == [
        ("reidentification", "professional", "care_coordination", "allowed", True),
        ("reidentification", "professional", "care_coordination", "denied", False),
    ]
    assert [i.identity_released for i in log.transparency(P2)] == [False]
    assert log.transparency(P3) == []
    assert "coordinator-42" not in repr(record)
    # Nothing of the identities reached the log.
    dump = repr(log.query())
    for secret in ("ZYGOMATIQUE", "QUETZALIA", NIR, "XYLOPHAGOS"):
        assert secret not in dump


def test_a_mostly_released_call_names_the_withheld_and_transparency_reads_either_form(
    governance_engine: Engine, vault: IdentityVault
) -> None:
    """Details name the shorter list (an entry's details are capped at 64 KiB): here the withheld one."""
    log = AuditLog(governance_engine)
    sink = AuditLogSink(log, actor_role="siop_platform")
    released = reidentify([P1, P2, P3], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=sink,
                          authorizer=AllowOnly([P1, P2]))
    assert set(released) == {P1, P2}
    (entry,) = log.query(action="reidentification")
    assert entry.details["withheld"] == [P3] and "released" not in entry.details
    assert [i.identity_released for i in log.transparency(P1)] == [True]
    assert [i.identity_released for i in log.transparency(P3)] == [False]
    assert log.verify(trusted_keys={}).ok


def test_transparency_refuses_what_is_not_a_pseudonym(governance_engine: Engine) -> None:
    with pytest.raises(AuditEntryError, match="not a pseudonym") as caught:
        AuditLog(governance_engine).transparency(NIR)
    assert NIR not in str(caught.value)


def test_the_ethics_committee_filters_by_actor_purpose_decision_action_and_period(governance_engine: Engine) -> None:
    log = AuditLog(governance_engine)
    rows = [
        ("siop-1", "siop_platform", "authorisation_decision", "allowed", "care_coordination"),
        ("siop-1", "siop_platform", "authorisation_decision", "denied", "prevention_outreach"),
        ("ethics-1", "ethics", "ethics_sampling", "done", "ethics_review"),
        ("dmp-api", "dmp", "opposition_submit", "done", "opposition_management"),
    ]
    for actor, role, action, decision, purpose in rows:
        log.append(actor=actor, actor_role=role, action=action, decision=decision, purpose=purpose, data_ref=[P3])
    assert [e.index for e in log.query(actor="siop-1")] == [0, 1]
    assert [e.index for e in log.query(decision="denied")] == [1]
    assert [e.index for e in log.query(purpose="ethics_review", action="ethics_sampling")] == [2]
    today = datetime.now(UTC).date()
    assert len(log.query(since=today, until=today)) == 4
    assert log.query(until=today - timedelta(days=1)) == []
    assert log.query(since=today + timedelta(days=1)) == []
    assert len(log.query(since=datetime.now(UTC) - timedelta(hours=1), limit=2)) == 2
    assert log.query(since=date(2000, 1, 1), actor="nobody") == []
    with pytest.raises(AuditEntryError, match="unknown decision"):
        log.query(decision="refused")
    with pytest.raises(AuditEntryError, match="unknown action"):
        log.query(action="reidentify")
