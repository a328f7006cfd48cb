"""A professional sees only their own patients (declared GP or care relationship); re-identification by policy."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pdp.config import Settings
from pdp.governance.authz import (
    Authoriser,
    CareRelationship,
    InMemoryCareRelationships,
    PolicyAuthorizer,
    Principal,
    SqlCareRelationships,
    patients_in_scope,
)
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.reidentify import Actor, AuditEvent, ReidentificationRefused, reidentify
from pdp.pseudonym.vault import IdentityVault, VaultRecord


def pseudonym(n: int) -> str:
    return "v1:" + base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode()[:43]


DR_A, DR_B = "10000000001", "10000000002"
MINE_GP, MINE_CARE, THEIRS, NOBODYS = (pseudonym(n) for n in (1, 2, 3, 4))
ASKED = [MINE_GP, MINE_CARE, THEIRS, NOBODYS]
RELATIONSHIPS = [
    CareRelationship(DR_A, MINE_GP, "declared_gp"),
    CareRelationship(DR_A, MINE_CARE, "care"),
    CareRelationship(DR_B, THEIRS, "declared_gp"),
]
DR_A_PRINCIPAL = Principal(sub="dr-a", role="professional", territories={"douaisis"}, rpps=DR_A)
SIOP = Principal(sub="siop-1", role="siop_platform", territories={"douaisis"})
ETHICS = Principal(sub="committee-1", role="ethics", territories={"*"})


@pytest.fixture(scope="module")
def authz() -> Authoriser:
    return Authoriser()


@pytest.fixture(params=["memory", "sql"])
def relationships(
    request: pytest.FixtureRequest, governance_engine: Engine
) -> InMemoryCareRelationships | SqlCareRelationships:
    """Both sources, the SQL one on SQLite and PostgreSQL (``governance_engine``)."""
    if request.param == "memory":
        return InMemoryCareRelationships(RELATIONSHIPS)
    store = SqlCareRelationships(governance_engine)
    for rel in RELATIONSHIPS:
        store.record(rel)
    store.record(RELATIONSHIPS[0])  # recording twice is harmless
    return store


def test_a_professional_sees_their_declared_and_care_patients_only(relationships) -> None:
    assert patients_in_scope(DR_A_PRINCIPAL, ASKED, relationships) == {MINE_GP, MINE_CARE}
    other = Principal(sub="dr-b", role="professional", territories={"douaisis"}, rpps=DR_B)
    assert patients_in_scope(other, ASKED, relationships) == {THEIRS}


def test_an_ended_relationship_no_longer_opens_the_patient(relationships) -> None:
    relationships.end(RELATIONSHIPS[1])
    assert patients_in_scope(DR_A_PRINCIPAL, ASKED, relationships) == {MINE_GP}


def test_malformed_values_are_nobodys_patients(relationships) -> None:
    assert relationships.related(DR_A, ["185057800608491", "", "ZYGOMATIQUE", MINE_GP]) == {MINE_GP}


def test_a_large_worklist_is_answered_in_chunks(relationships) -> None:
    many = [pseudonym(n) for n in range(10, 1_310)]
    assert relationships.related(DR_A, [*many, MINE_CARE]) == {MINE_CARE}


def test_roles_without_patient_scope_see_no_patient_and_siop_sees_its_territory(relationships) -> None:
    assert patients_in_scope(ETHICS, ASKED, relationships) == frozenset()
    assert patients_in_scope(SIOP, ASKED, relationships) == frozenset(ASKED)
    assert patients_in_scope(DR_A_PRINCIPAL, ASKED, None) == frozenset(), "no source, no patients"


def test_a_bad_relationship_is_refused() -> None:
    for args in [("1234", MINE_GP, "care"), (DR_A, "185057800608491", "care"), (DR_A, MINE_GP, "friend")]:
        with pytest.raises(ValueError):
            CareRelationship(*args)  # type: ignore[arg-type]


# --- the policy as re-identification's authorizer ------------------------------------------------


class MemorySink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


class SpyVault:
    """The real vault, recording which pseudonyms were decrypted."""

    def __init__(self, vault: IdentityVault) -> None:
        self.vault, self.decrypted = vault, []
        self.engine = vault.engine

    def get_many(self, pseudonyms: Iterable[str]) -> dict[str, VaultRecord]:
        wanted = list(pseudonyms)
        self.decrypted.extend(wanted)
        return self.vault.get_many(wanted)


@pytest.fixture()
def vault(governance_engine: Engine, tmp_path: Path) -> SpyVault:
    master = base64.b64encode(os.urandom(32)).decode()
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master))
    store.init()
    real = IdentityVault(governance_engine, store)
    real.upsert_many({p: VaultRecord(birth_name=f"PERSON{i}") for i, p in enumerate(ASKED)})
    return SpyVault(real)


def test_reidentify_with_the_policy_releases_only_the_professionals_own_patients(
    authz: Authoriser, vault: SpyVault
) -> None:
    sink = MemorySink()
    authorizer = PolicyAuthorizer(authz, DR_A_PRINCIPAL, "douaisis",
                                  relationships=InMemoryCareRelationships(RELATIONSHIPS))
    released = reidentify(ASKED, actor=Actor("dr-a"), purpose="care_coordination", vault=vault, audit=sink,
                          authorizer=authorizer)
    assert set(released) == {MINE_GP, MINE_CARE}
    assert set(vault.decrypted) == {MINE_GP, MINE_CARE}, "the others are never decrypted"
    [event] = sink.events
    assert event.decision == "allowed" and "identity, reidentify, care_coordination, allow" in event.reason


@pytest.mark.parametrize(
    ("principal", "actor", "domain", "purpose", "reason"),
    [
        (ETHICS, "committee-1", "douaisis", "ethics_review", "p, ethics, *, identity, reidentify, *, deny"),
        (SIOP, "siop-1", "douaisis", "quality_review", "deny-by-default"),
        (SIOP, "siop-1", "cornouaille", "care_coordination", "territory-not-in-claims"),
        (DR_A_PRINCIPAL, "dr-a", "douaisis", "audit_review", "purpose-not-allowed-for-role"),
        (DR_A_PRINCIPAL, "someone-else", "douaisis", "care_coordination", "not the authenticated principal"),
    ],
)
def test_reidentify_with_the_policy_refuses_what_the_policy_denies(
    authz: Authoriser, vault: SpyVault, principal: Principal, actor: str, domain: str, purpose: str, reason: str
) -> None:
    authorizer = PolicyAuthorizer(authz, principal, domain, relationships=InMemoryCareRelationships(RELATIONSHIPS))
    with pytest.raises(ReidentificationRefused, match=reason.replace("*", r"\*")):
        reidentify(ASKED, actor=Actor(actor), purpose=purpose, vault=vault, audit=MemorySink(), authorizer=authorizer)
    assert vault.decrypted == []


def test_a_professional_without_a_relationship_source_gets_nothing(authz: Authoriser) -> None:
    decision = PolicyAuthorizer(authz, DR_A_PRINCIPAL, "douaisis").authorize(Actor("dr-a"), "care_coordination", ASKED)
    assert not decision.allowed and "fail closed" in decision.reason


def test_the_siop_platform_reidentifies_the_territorys_pseudonyms(authz: Authoriser) -> None:
    decision = PolicyAuthorizer(authz, SIOP, "douaisis").authorize(Actor("siop-1"), "prevention_outreach", ASKED)
    assert decision.allowed and decision.allowed_pseudonyms == frozenset(ASKED)


class Douaisis:
    """Territory membership as gold would answer it: only the first two pseudonyms live in douaisis."""

    def in_territory(self, territory: str, pseudonyms: Sequence[str]) -> set[str]:
        return {p for p in pseudonyms if territory == "douaisis" and p in {MINE_GP, MINE_CARE}}


def test_territory_membership_narrows_what_the_siop_platform_may_reidentify(authz: Authoriser) -> None:
    authorizer = PolicyAuthorizer(authz, SIOP, "douaisis", membership=Douaisis())
    decision = authorizer.authorize(Actor("siop-1"), "care_coordination", ASKED)
    assert decision.allowed and decision.allowed_pseudonyms == {MINE_GP, MINE_CARE}
