"""An audit entry: its canonical bytes are fixed, and identities are refused (never echoed)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from pdp.governance.audit.entry import GENESIS_HASH, AuditEntry, AuditEntryError, canonical_json

PSEUDONYM = "v1:" + "Ab3_-" * 8 + "xyz"


def _entry(**overrides: object) -> AuditEntry:
    fields: dict[str, object] = {
        "index": 0,
        "at": datetime(2026, 12, 3, 17, 0, 0, 123456, tzinfo=UTC),
        "actor": "coordinator-42",
        "actor_role": "professional",
        "action": "reidentification",
        "data_ref": (PSEUDONYM, "count:3"),
        "purpose": "care_coordination",
        "decision": "allowed",
        "rule": "p, professional, douaisis, patient, read, care_coordination",
        "details": {"released": [PSEUDONYM], "requested_count": 1},
        "prev_hash": GENESIS_HASH,
    }
    fields.update(overrides)
    return AuditEntry.build(**fields)  # type: ignore[arg-type]


def test_the_canonical_form_is_sorted_compact_utf8_json_and_the_hash_is_the_rfc_leaf_hash() -> None:
    entry = _entry(rule="règle: médecin traitant")
    raw = entry.canonical_bytes()
    assert raw.startswith(b'{"action":"reidentification","actor":"coordinator-42","actor_role":"professional",')
    assert b'"at":"2026-12-03T17:00:00.123456Z"' in raw
    assert "règle: médecin".encode() in raw  # UTF-8, not \u escapes
    assert b'": ' not in raw and b', "' not in raw  # compact separators
    assert entry.entry_hash == hashlib.sha256(b"\x00" + raw).hexdigest()
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


def test_any_field_changes_the_hash() -> None:
    base = _entry().entry_hash
    for change in (
        {"index": 1},
        {"purpose": "quality_review"},
        {"decision": "denied"},
        {"data_ref": (PSEUDONYM,)},
        {"details": {"released": []}},
        {"prev_hash": "1" * 64},
        {"actor_role": "dmp"},
    ):
        assert _entry(**change).entry_hash != base, change


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data_ref", ("1850578006084",)),  # a NIR
        ("data_ref", ("185057800608436",)),  # a NIR with its key
        ("data_ref", ("1 85 05 78 006 084 36",)),  # spaced: whitespace refused anyway
        ("data_ref", ("nir:1.85.05.78.006.084",)),  # dotted NIR inside a label
        ("data_ref", ("185052A006084",)),  # Corsican NIR
        ("data_ref", ("jean.dupont@example.fr",)),  # an e-mail
        ("data_ref", ("Jean Dupont",)),  # a name (whitespace)
        ("data_ref", ("x" * 201,)),  # too long
        ("data_ref", "v1:not-a-collection-of-refs"),
        ("details", {"name": "DUPONT"}),  # an identity key
        ("details", {"patient": {"birth_date": "1985-05-01"}}),
        ("details", {"note": "NIR 1850578006084 seen"}),
        ("details", {"key_id": "ed25519:1850578006084"}),  # not a key id's shape (16 hex): a NIR after a colon
        ("details", {"ratio": float("nan")}),
        ("rule", "contact 1850578006084"),
        ("rule", "two\nlines"),
        ("actor", "Jean Dupont"),
        ("actor_role", "Professional"),
        ("action", "reidentify"),  # not in the vocabulary
        ("decision", "maybe"),
        ("purpose", "care coordination"),
    ],
)
def test_identities_and_malformed_fields_are_refused_without_echoing_the_value(field: str, value: object) -> None:
    with pytest.raises(AuditEntryError) as caught:
        _entry(**{field: value})
    message = str(caught.value)
    assert "\n" not in message
    for secret in ("1850578006084", "dupont", "DUPONT", "1985-05-01", "Dupont"):
        assert secret not in message


def test_pseudonyms_labels_counts_and_hex_hashes_are_accepted() -> None:
    root = "0123456789012345678901234567890123456789012345678901234567891abc"  # 13+ digits inside hex
    entry = _entry(data_ref=(PSEUDONYM, "table:silver.person", "count:12"), details={"root_hash": root, "n": 10**9})
    # a signing key's id whose 16 hex characters happen to be digits (one key in ~1 850; CI met one)
    _entry(details={"key_id": "ed25519:4319448897472085"})
    assert entry.subjects() == (PSEUDONYM,)
