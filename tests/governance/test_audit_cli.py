"""`pdp audit verify | checkpoint | query | transparency` on a SQLite store: exit codes and one-line errors."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from pdp.config import get_settings
from pdp.governance.audit import AuditLog

P1 = "v1:" + "Qw3rTy_-9z" * 4 + "abc"


@pytest.fixture()
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditLog]:
    monkeypatch.setenv("PDP_DB_URL", f"sqlite:///{tmp_path / 'pdp.db'}")
    monkeypatch.delenv("PDP_AUDIT_DB_URL", raising=False)
    monkeypatch.setenv("PDP_KEY_STORE", str(tmp_path / "keys"))
    monkeypatch.setenv("PDP_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PDP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.delenv("PDP_MASTER_KEY_FILE", raising=False)
    get_settings.cache_clear()
    log = AuditLog.from_settings(with_keys=False)
    for i, decision in enumerate(["allowed", "denied", "allowed"]):
        log.append(
            actor=f"siop-{i}",
            actor_role="siop_platform",
            action="authorisation_decision",
            decision=decision,
            purpose="care_coordination",
            data_ref=[P1],
            rule="r",
        )
    yield log
    log.engine.dispose()
    get_settings.cache_clear()


def test_checkpoint_then_verify_then_tamper(
    store: AuditLog, tmp_path: Path, pdp_cli: Callable[..., tuple[int, str, str]]
) -> None:
    witness = tmp_path / "witness.json"
    code, out, err = pdp_cli("audit", "checkpoint", "--out", str(witness))
    assert code == 0, err
    assert "signed tree head: size 4" in out and json.loads(witness.read_text())["tree_size"] == 4
    code, out, _ = pdp_cli("audit", "verify", "--checkpoint", str(witness))
    assert code == 0 and "audit log verified: 4 entries" in out and "2 signed tree head(s)" in out

    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET decision = 'allowed' WHERE idx = 1"))
    code, out, err = pdp_cli("audit", "verify")
    assert code == 1
    assert err.strip().splitlines() == ["error: audit log: bad entry 1: content does not match its hash (altered)"]
    code, _, err = pdp_cli("audit", "checkpoint")
    assert code == 1 and "bad entry 1" in err and "Traceback" not in err


def test_checkpoint_default_export_and_refusal_to_overwrite(
    store: AuditLog, tmp_path: Path, pdp_cli: Callable[..., tuple[int, str, str]]
) -> None:
    code, _out, _ = pdp_cli("audit", "checkpoint")
    assert code == 0
    exported = list((tmp_path / "var" / "audit").glob("checkpoint-*.json"))
    assert len(exported) == 1
    code, _, err = pdp_cli("audit", "checkpoint", "--out", str(exported[0]))
    assert code == 2 and "already exists" in err


def test_verify_without_master_key_is_a_one_line_user_error(
    store: AuditLog, monkeypatch: pytest.MonkeyPatch, pdp_cli: Callable[..., tuple[int, str, str]]
) -> None:
    monkeypatch.delenv("PDP_MASTER_KEY")
    get_settings.cache_clear()
    code, _, err = pdp_cli("audit", "verify")
    assert code == 2 and err.startswith("error: no master key") and len(err.strip().splitlines()) == 1


def test_query_filters_and_json(store: AuditLog, pdp_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = pdp_cli("audit", "query", "--decision", "denied", "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["index"], e["actor"]) for e in lines] == [(1, "siop-1")]
    code, out, _ = pdp_cli("audit", "query", "--actor", "siop-2", "--since", "2000-01-01", "--json")
    assert [json.loads(line)["index"] for line in out.splitlines()] == [2]
    code, out, _ = pdp_cli("audit", "query", "--purpose", "care_coordination")
    assert code == 0 and "3 entries" in out
    code, _, err = pdp_cli("audit", "query", "--decision", "refused")
    assert code == 2 and "unknown decision" in err
    code, _, err = pdp_cli("audit", "query", "--since", "yesterday")
    assert code == 2 and "--since must be a date" in err


def test_transparency(store: AuditLog, pdp_cli: Callable[..., tuple[int, str, str]]) -> None:
    code, out, _ = pdp_cli("audit", "transparency", P1, "--json")
    assert code == 0
    items = json.loads(out)
    assert [(i["actor_role"], i["decision"]) for i in items] == [
        ("siop_platform", "allowed"),
        ("siop_platform", "denied"),
        ("siop_platform", "allowed"),
    ]
    assert "siop-0" not in out  # roles, never actor ids
    code, _, err = pdp_cli("audit", "transparency", "1850578006084")
    assert code == 2 and "1850578006084" not in err


def test_a_reviewer_without_the_master_key_verifies_with_the_exported_public_keys(
    store: AuditLog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdp_cli: Callable[..., tuple[int, str, str]]
) -> None:
    assert pdp_cli("audit", "checkpoint")[0] == 0
    keys_file = tmp_path / "reviewer" / "audit-keys.json"
    code, _, err = pdp_cli("audit", "public-keys", "--out", str(keys_file))
    assert code == 0, err
    document = json.loads(keys_file.read_text())
    assert document["format"] == "pdp-audit-public-keys/1" and len(document["keys"]) == 1

    monkeypatch.delenv("PDP_MASTER_KEY")
    get_settings.cache_clear()
    code, out, _ = pdp_cli("audit", "verify", "--public-keys", str(keys_file))
    assert code == 0 and "1 signed tree head(s)" in out
    # A keys file edited to vouch for another key is refused.
    document["keys"] = {"ed25519:0000000000000000": next(iter(document["keys"].values()))}
    keys_file.write_text(json.dumps(document))
    code, _, err = pdp_cli("audit", "verify", "--public-keys", str(keys_file))
    assert code == 2 and "does not match its id" in err


def test_commands_record_their_events_through_audit_event(store: AuditLog) -> None:
    from pdp.cli import UserError, audit_event

    parameters = {
        "territory": "douaisis",
        "pyramid": "t2d",
        "stratum": "2",
        "as_of": "2026-06-30",
        "n": 2,
        "seed": 7,
        "eligible": 120,
    }
    audit_event(
        action="ethics_sampling", actor_role="ethics", data_ref=[P1], purpose="ethics_review", details=parameters
    )
    entry = store.query(action="ethics_sampling")[0]
    assert (entry.actor, entry.actor_role, entry.decision, entry.details) == ("pdp-cli", "ethics", "done", parameters)
    with pytest.raises(UserError, match="direct identifier"):
        audit_event(action="ethics_sampling", data_ref=["185057800608491"])


def test_an_opposition_withdrawal_through_the_cli_is_recorded_with_pseudonyms_only(
    store: AuditLog, tmp_path: Path, pdp_cli: Callable[..., tuple[int, str, str]]
) -> None:
    from pdp.pseudonym.keys import KeyStore

    KeyStore.from_settings().init()
    nir = "1850578006084" + f"{97 - 1850578006084 % 97:02d}"
    consent = {
        "resourceType": "Consent",
        "status": "inactive",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "#p"},
        "dateTime": "2026-07-01T10:00:00+02:00",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p",
                "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": nir}],
                "name": [{"use": "official", "family": "ZYGOMATIQUE", "given": ["QUETZALIA"]}],
                "gender": "male",
                "birthDate": "1985-05-12",
            }
        ],
        "provision": {"type": "deny"},
    }
    path = tmp_path / "consent.json"
    path.write_text(json.dumps(consent))
    code, _, err = pdp_cli("oppose", "withdraw", str(path))
    assert code == 0, err
    entry = store.query(action="opposition_withdraw")[-1]
    assert entry.actor_role == "dmp" and entry.purpose == "opposition_management" and entry.data_ref
    assert all(ref.startswith("v1:") for ref in entry.data_ref)
    dump = repr(store.query())
    assert nir not in dump and "ZYGOMATIQUE" not in dump and "QUETZALIA" not in dump
    assert store.transparency(entry.data_ref[0])[-1].action == "opposition_withdraw"


def test_keys_init_is_recorded_as_a_key_operation(
    store: AuditLog, pdp_cli: Callable[..., tuple[int, str, str]]
) -> None:
    code, _, err = pdp_cli("keys", "init")
    assert code == 0, err
    entry = store.query(action="key_operation")[-1]
    assert entry.details["operation"] == "init" and "pseudonym" in entry.details["purposes"]
    assert store.verify(trusted_keys={}).ok
