"""Re-identification: refused without actor, purpose or policy; opposition first; every call recorded."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pdp.config import Settings
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.reidentify import (
    Actor,
    AuditEvent,
    AuditWriteFailed,
    DbAuditSink,
    Decision,
    DenyAllAuthorizer,
    PurposeCatalogError,
    ReidentificationError,
    ReidentificationRefused,
    load_purposes,
    reidentification_log,
    reidentify,
)
from pdp.pseudonym.vault import IdentityVault, VaultRecord


def pseudonym(n: int) -> str:
    return "v1:" + base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode()[:43]


P1, P2, P3, P4 = (pseudonym(n) for n in (1, 2, 3, 4))
NIR = "185057800608491"
PEOPLE = {
    P1: VaultRecord(birth_name="ZYGOMATIQUE", first_names=("QUETZALIA",), nir=NIR, phone="0698765432"),
    P2: VaultRecord(birth_name="XYLOPHAGOS", address_line="17 IMPASSE DES ZYGOMATIQUES", observed_at=date(2024, 1, 1)),
    P3: VaultRecord(birth_name="ORNITHORYNQUE", email="ornithorynque@example.org"),
}
SECRETS = ["ZYGOMATIQUE", "QUETZALIA", NIR, "0698765432", "XYLOPHAGOS", "IMPASSE", "ORNITHORYNQUE", "ornithorynque@"]
COORDINATOR = Actor("coordinator-42", roles=frozenset({"care_coordinator"}))


class AllowOnly:
    """A policy that allows the pseudonyms it was built with, and records what it was asked."""

    def __init__(self, allowed: Iterable[str]) -> None:
        self.allowed = frozenset(allowed)
        self.asked: list[tuple[Actor, str, tuple[str, ...]]] = []

    def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
        self.asked.append((actor, purpose, tuple(pseudonyms)))
        return Decision.allow(self.allowed, "test policy")


class Opposed:
    def __init__(self, opposed: Iterable[str]) -> None:
        self.opposed_set = set(opposed)

    def opposed(self, pseudonyms: Sequence[str]) -> set[str]:
        return self.opposed_set & set(pseudonyms)


class SpyVault:
    """The real vault, recording which pseudonyms were decrypted."""

    def __init__(self, vault: IdentityVault) -> None:
        self.vault = vault
        self.decrypted: list[str] = []

    @property
    def engine(self) -> Engine:
        return self.vault.engine

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
    real.upsert_many(PEOPLE)
    return SpyVault(real)


@pytest.fixture()
def audit(governance_engine: Engine) -> DbAuditSink:
    return DbAuditSink(governance_engine)


def log_rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(select(reidentification_log).order_by(reidentification_log.c.id)).mappings()
        ]


def refused(pseudonyms: Iterable[str], **kwargs: object) -> str:
    with pytest.raises(ReidentificationRefused) as caught:
        reidentify(pseudonyms, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", [None, Actor(""), Actor("   "), Actor("anonymous"), Actor("Guest"), Actor(None)])
def test_an_anonymous_actor_is_refused_and_recorded(
    actor: Actor | None, vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    message = refused(
        [P1], actor=actor, purpose="care_coordination", vault=vault, audit=audit, authorizer=AllowOnly([P1])
    )
    assert "no authenticated actor" in message
    assert vault.decrypted == []
    [row] = log_rows(governance_engine)
    assert (row["decision"], row["actor"], row["released_count"], row["pseudonyms"]) == (
        "refused",
        "anonymous",
        0,
        [P1],
    )


@pytest.mark.parametrize("purpose", [None, "", "  ", "marketing", "Care_Coordination"])
def test_a_missing_or_undeclared_purpose_is_refused_and_recorded(
    purpose: str | None, vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    message = refused([P1], actor=COORDINATOR, purpose=purpose, vault=vault, audit=audit, authorizer=AllowOnly([P1]))
    assert "purpose" in message
    assert vault.decrypted == []
    [row] = log_rows(governance_engine)
    assert (row["decision"], row["actor"], row["purpose"]) == ("refused", "coordinator-42", "<undeclared>")


def test_the_default_authorizer_denies_everything(
    vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    message = refused([P1, P2], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=audit)
    assert "deny by default" in message
    assert vault.decrypted == []
    [row] = log_rows(governance_engine)
    assert (row["decision"], row["purpose"], row["purposes_version"]) == (
        "refused", "care_coordination", load_purposes().version
    )
    assert row["pseudonyms"] == [P1, P2]
    assert DenyAllAuthorizer().authorize(COORDINATOR, "ethics_review", [P1]).allowed is False


def test_a_policy_denial_is_refused_with_its_reason(vault: SpyVault, audit: DbAuditSink) -> None:
    class Deny:
        def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
            return Decision.deny("role cannot\nuse this purpose")

    message = refused([P1], actor=COORDINATOR, purpose="ethics_review", vault=vault, audit=audit, authorizer=Deny())
    assert "policy denied: role cannot use this purpose" in message


def test_a_failing_authorizer_refuses(vault: SpyVault, audit: DbAuditSink, governance_engine: Engine) -> None:
    class Broken:
        def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
            raise ConnectionError("policy store down")

    message = refused(
        [P1], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=audit, authorizer=Broken()
    )
    assert "authorizer failed: ConnectionError" in message
    assert vault.decrypted == []
    assert log_rows(governance_engine)[0]["decision"] == "refused"


def test_a_failing_opposition_registry_refuses_before_any_decryption(vault: SpyVault, audit: DbAuditSink) -> None:
    class Broken:
        def opposed(self, pseudonyms: Sequence[str]) -> set[str]:
            raise TimeoutError

    refused(
        [P1],
        actor=COORDINATOR,
        purpose="care_coordination",
        vault=vault,
        audit=audit,
        authorizer=AllowOnly([P1]),
        opposition=Broken(),
    )
    assert vault.decrypted == []


def test_identity_values_passed_as_pseudonyms_are_refused_and_never_recorded(
    vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    message = refused(
        [P1, NIR, "ZYGOMATIQUE QUETZALIA"],
        actor=COORDINATOR,
        purpose="care_coordination",
        vault=vault,
        audit=audit,
        authorizer=AllowOnly([P1]),
    )
    assert "2 malformed pseudonym(s)" in message
    assert vault.decrypted == []
    [row] = log_rows(governance_engine)
    assert row["pseudonyms"] == [P1]
    assert row["pseudonym_count"] == 3
    dumped = json.dumps(row, default=str)
    assert NIR not in dumped and "ZYGOMATIQUE" not in dumped and NIR not in message


# --- allowed calls --------------------------------------------------------------------------------


def test_only_allowed_and_non_opposed_pseudonyms_are_decrypted_and_returned(
    vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    policy = AllowOnly([P1, P2, P4])
    got = reidentify(
        [P1, P2, P3, P4, P1],
        actor=COORDINATOR,
        purpose="care_coordination",
        vault=vault,
        audit=audit,
        authorizer=policy,
        opposition=Opposed([P2]),
    )
    assert got == {P1: PEOPLE[P1]}
    assert vault.decrypted == [P1, P4]  # P3 withheld by policy, P2 opposed: neither decrypted
    assert policy.asked == [(COORDINATOR, "care_coordination", (P1, P2, P3, P4))]
    [row] = log_rows(governance_engine)
    assert (row["decision"], row["actor"], row["purpose"]) == ("allowed", "coordinator-42", "care_coordination")
    assert row["pseudonyms"] == [P1, P2, P3, P4]
    assert (row["pseudonym_count"], row["released"], row["released_count"]) == (5, [P1], 1)
    assert row["reason"] == "test policy; released 1 of 4: 1 withheld by policy, 1 opposed, 1 not in vault"


def test_an_authorizer_cannot_release_pseudonyms_that_were_not_asked_for(vault: SpyVault, audit: DbAuditSink) -> None:
    got = reidentify(
        [P1], actor=COORDINATOR, purpose="ethics_review", vault=vault, audit=audit, authorizer=AllowOnly([P1, P2, P3])
    )
    assert got == {P1: PEOPLE[P1]}
    assert vault.decrypted == [P1]


def test_allowing_without_naming_pseudonyms_releases_nothing(vault: SpyVault, audit: DbAuditSink) -> None:
    class Vague:
        def authorize(self, actor: Actor, purpose: str, pseudonyms: Sequence[str]) -> Decision:
            return Decision(allowed=True, reason="ok")

    got = reidentify([P1], actor=COORDINATOR, purpose="ethics_review", vault=vault, audit=audit, authorizer=Vague())
    assert got == {}
    assert vault.decrypted == []


def test_every_call_is_recorded_and_the_trail_holds_no_identity_value(
    vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    allow_all = AllowOnly([P1, P2, P3])
    for _ in range(2):
        reidentify(
            [P1, P2, P3], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=audit, authorizer=allow_all
        )
    for kwargs in (
        {"actor": None, "purpose": "care_coordination"},
        {"actor": COORDINATOR, "purpose": "marketing"},
        {"actor": COORDINATOR, "purpose": "care_coordination", "authorizer": DenyAllAuthorizer()},
    ):
        with pytest.raises(ReidentificationRefused):
            reidentify([P1], vault=vault, audit=audit, **{"authorizer": allow_all, **kwargs})  # type: ignore[arg-type]

    rows = log_rows(governance_engine)
    assert [r["decision"] for r in rows] == ["allowed", "allowed", "refused", "refused", "refused"]
    assert rows[0]["released"] == [P1, P2, P3]
    assert [e.decision for e in audit.recent(limit=2)] == ["refused", "refused"]
    dumped = json.dumps(rows, default=str)
    for value in SECRETS:
        assert value not in dumped


def test_nothing_is_released_when_the_call_cannot_be_recorded(vault: SpyVault) -> None:
    class DownSink:
        def record(self, event: AuditEvent) -> None:
            raise OSError("audit store unreachable")

    with pytest.raises(AuditWriteFailed, match="nothing released"):
        reidentify(
            [P1],
            actor=COORDINATOR,
            purpose="care_coordination",
            vault=vault,
            audit=DownSink(),
            authorizer=AllowOnly([P1]),
        )
    with pytest.raises(ReidentificationError):
        reidentify([P1], actor=None, purpose="care_coordination", vault=vault, audit=DownSink())


def test_a_vault_failure_is_recorded_as_failed(audit: DbAuditSink, governance_engine: Engine) -> None:
    class BrokenVault:
        engine = governance_engine

        def get_many(self, pseudonyms: Iterable[str]) -> dict[str, VaultRecord]:
            raise RuntimeError("decryption error")

    with pytest.raises(ReidentificationError, match="vault read failed"):
        reidentify(
            [P1],
            actor=COORDINATOR,
            purpose="care_coordination",
            vault=BrokenVault(),
            audit=audit,
            authorizer=AllowOnly([P1]),
        )
    assert log_rows(governance_engine)[0]["decision"] == "failed"


# --- the purposes file ----------------------------------------------------------------------------


def test_the_declared_purposes_are_versioned_and_read_from_the_yaml_file() -> None:
    catalog = load_purposes()
    assert catalog.version >= 1
    assert {"care_coordination", "ethics_review"} <= set(catalog.purposes)
    assert not catalog.declares("marketing")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "version: 1\nfamily: f\npurposes:\n  care_coordination:\n    description: d\n    legal_basis: b\n"
            "    expires: never\n",
            "invalid",
        ),
        ("version: 1\nfamily: f\npurposes: {}\n", "invalid"),
        (
            "version: 1\nfamily: f\npurposes:\n  Care Coordination:\n    description: d\n    legal_basis: b\n",
            "snake_case",
        ),
        ("version: [\n", "unreadable"),
    ],
    ids=["unknown-key", "no-purpose", "bad-name", "bad-yaml"],
)
def test_a_bad_purposes_file_stops_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "purposes.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PurposeCatalogError, match=expected) as caught:
        load_purposes(path)
    assert "\n" not in str(caught.value)


def test_a_missing_purposes_file_stops(tmp_path: Path) -> None:
    with pytest.raises(PurposeCatalogError, match="unreadable"):
        load_purposes(tmp_path / "absent.yml")


@pytest.mark.parametrize("pseudonyms", [P1, None, 42], ids=["a-bare-string", "none", "a-number"])
def test_a_request_that_is_not_a_collection_is_refused_and_recorded(
    pseudonyms: object, vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    message = refused(
        pseudonyms,  # type: ignore[arg-type]
        actor=COORDINATOR,
        purpose="care_coordination",
        vault=vault,
        audit=audit,
        authorizer=AllowOnly([P1]),
    )
    assert "collection" in message
    assert vault.decrypted == []
    [row] = log_rows(governance_engine)
    assert (row["decision"], row["pseudonyms"]) == ("refused", [])


def test_the_governance_opposition_registry_is_consulted_by_default(
    vault: SpyVault, audit: DbAuditSink, governance_engine: Engine
) -> None:
    from pdp.governance.opposition import OppositionRegistry

    OppositionRegistry(governance_engine).submit([P2])
    got = reidentify([P1, P2], actor=COORDINATOR, purpose="care_coordination", vault=vault, audit=audit,
                     authorizer=AllowOnly([P1, P2]))
    assert set(got) == {P1} and P2 not in vault.decrypted


def test_without_a_registry_nothing_is_released(audit: DbAuditSink) -> None:
    class NoStore:
        def get_many(self, pseudonyms: Iterable[str]) -> dict[str, VaultRecord]:
            raise AssertionError("must not be read")

    with pytest.raises(ReidentificationRefused, match="opposition registry unavailable"):
        reidentify([P1], actor=COORDINATOR, purpose="care_coordination", vault=NoStore(), audit=audit,
                   authorizer=AllowOnly([P1]))
