"""The audit log on SQLite and PostgreSQL: appends chain, verify names the first bad index after any
tampering done directly in the database, and only a checkpoint taken before sees a rewritten history."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert, select, text, update

from pdp.governance.audit import (
    AuditEntryError,
    AuditIntegrityError,
    AuditLog,
    AuditSigningKeys,
    SignedTreeHead,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)
from pdp.governance.audit.entry import GENESIS_HASH
from pdp.governance.audit.signing import AuditSigner, key_id_of
from pdp.governance.audit.store import row_to_entry
from pdp.governance.audit.tables import audit_checkpoint, audit_head, audit_log
from pdp.pseudonym.kms import KeyStoreError, LocalMasterKey

P1 = "v1:" + "A1b2C3d4E5" * 4 + "xyz"
P2 = "v1:" + "Z9y8X7w6V5" * 4 + "_-q"


@pytest.fixture()
def signing_keys(tmp_path: Path) -> AuditSigningKeys:
    return AuditSigningKeys(tmp_path / "keys", LocalMasterKey(os.urandom(32), origin="test"))


@pytest.fixture()
def log(governance_engine: Engine, signing_keys: AuditSigningKeys) -> AuditLog:
    return AuditLog(governance_engine, signing_keys=signing_keys)


def _fill(log: AuditLog, n: int) -> None:
    """n entries with labels only (no pseudonym: the subject index does not pin their indices)."""
    for i in range(n):
        log.append(
            actor=f"user-{i % 3}",
            actor_role="siop_platform" if i % 2 else "ethics",
            action="authorisation_decision",
            decision="allowed" if i % 2 else "denied",
            data_ref=[f"count:{i}"],
            purpose="care_coordination",
            rule=f"rule {i}",
            details={"i": i},
        )


def _exec(engine: Engine, sql: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def test_appends_are_contiguous_chained_and_verify(log: AuditLog) -> None:
    assert log.verify().ok and log.size() == 0
    _fill(log, 5)
    with log.engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.idx)).all()
    assert [r.idx for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(rows[i].prev_hash == rows[i - 1].entry_hash for i in range(1, 5))
    assert [r.at for r in rows] == sorted(r.at for r in rows)
    report = log.verify()
    assert report.ok and report.size == 5, report.line()
    assert report.root_hash == merkle_root([bytes.fromhex(r.entry_hash) for r in rows]).hex()


def test_a_refused_entry_writes_nothing(log: AuditLog) -> None:
    with pytest.raises(AuditEntryError):
        log.append(actor="u", actor_role="dmp", action="erasure", decision="done", data_ref=["1850578006084"])
    assert log.size() == 0


def test_an_altered_entry_is_named(log: AuditLog) -> None:
    _fill(log, 6)
    _exec(log.engine, "UPDATE audit_log SET decision = 'allowed' WHERE idx = 2")
    report = log.verify()
    assert not report.ok and report.first_bad_index == 2
    assert "altered" in report.reason


def test_an_altered_details_json_is_named(log: AuditLog) -> None:
    _fill(log, 4)
    _exec(log.engine, "UPDATE audit_log SET details = :d WHERE idx = 3", d='{"i":30}')
    assert log.verify().first_bad_index == 3


def test_a_deleted_entry_is_named(log: AuditLog) -> None:
    _fill(log, 6)
    _exec(log.engine, "DELETE FROM audit_log WHERE idx = 3")
    report = log.verify()
    assert not report.ok and report.first_bad_index == 3 and "missing" in report.reason


def test_an_inserted_entry_is_named(log: AuditLog) -> None:
    _fill(log, 6)
    # Make room at index 3 (two steps: no primary-key collision), then copy entry 2 there.
    _exec(log.engine, "UPDATE audit_log SET idx = idx + 1000 WHERE idx >= 3")
    _exec(log.engine, "UPDATE audit_log SET idx = idx - 999 WHERE idx >= 1000")
    with log.engine.begin() as conn:
        row = conn.execute(select(audit_log).where(audit_log.c.idx == 2)).mappings().one()
        conn.execute(insert(audit_log).values({**row, "idx": 3}))
    report = log.verify()
    assert not report.ok and report.first_bad_index == 3


def test_reordered_entries_are_named(log: AuditLog) -> None:
    _fill(log, 6)
    _exec(log.engine, "UPDATE audit_log SET idx = -1 WHERE idx = 2")
    _exec(log.engine, "UPDATE audit_log SET idx = 2 WHERE idx = 4")
    _exec(log.engine, "UPDATE audit_log SET idx = 4 WHERE idx = -1")
    report = log.verify()
    assert not report.ok and report.first_bad_index == 2


def test_a_removed_tail_is_seen_by_the_head_row(log: AuditLog) -> None:
    _fill(log, 6)
    _exec(log.engine, "DELETE FROM audit_log WHERE idx >= 4")
    report = log.verify()
    assert not report.ok and report.first_bad_index == 4 and "removed" in report.reason


def test_entries_added_behind_the_appenders_back_are_seen_by_the_head_row(log: AuditLog) -> None:
    _fill(log, 3)
    _rewrite_from(log.engine, 1, rule="forged", move_head=False)
    assert "last entry was replaced" in log.verify().reason
    with log.engine.begin() as conn:  # a well-chained forged entry appended at the end, head untouched
        last = row_to_entry(conn.execute(select(audit_log).where(audit_log.c.idx == 2)).one())
        forged = type(last)(
            **{**{f: getattr(last, f) for f in last.__slots__}, "index": 3, "prev_hash": last.entry_hash}
        )
        row = conn.execute(select(audit_log).where(audit_log.c.idx == 2)).mappings().one()
        conn.execute(
            insert(audit_log).values({**row, "idx": 3, "prev_hash": last.entry_hash, "entry_hash": forged.entry_hash})
        )
    report = log.verify()
    assert not report.ok and report.first_bad_index == 3 and "behind its back" in report.reason


def test_a_removed_tail_with_the_head_row_rewritten_is_seen_by_an_earlier_checkpoint(log: AuditLog) -> None:
    _fill(log, 5)
    head = log.checkpoint()
    assert head.tree_size == 6  # the checkpoint entry is part of the signed tree
    _exec(log.engine, "DELETE FROM audit_log WHERE idx >= 4")
    _exec(log.engine, "UPDATE audit_head SET size = 4, last_hash = (SELECT entry_hash FROM audit_log WHERE idx = 3)")
    report = log.verify()
    assert not report.ok and report.first_bad_index == 4 and "beyond the log" in report.reason


def _rewrite_from(engine: Engine, start: int, *, move_head: bool = True, **change: object) -> None:
    """An attacker with the algorithm: alter entry `start`, recompute every hash after it (and the head row)."""
    with engine.begin() as conn:
        rows = conn.execute(select(audit_log).where(audit_log.c.idx >= start).order_by(audit_log.c.idx)).all()
        prev = conn.execute(select(audit_log.c.entry_hash).where(audit_log.c.idx == start - 1)).scalar()
        prev = prev or GENESIS_HASH
        for number, row in enumerate(rows):
            values = {"prev_hash": prev, **(change if number == 0 else {})}
            forged = row_to_entry(row)
            forged = type(forged)(**{**{f: getattr(forged, f) for f in forged.__slots__}, **values})
            prev = forged.entry_hash
            conn.execute(update(audit_log).where(audit_log.c.idx == row.idx).values(**values, entry_hash=prev))
        if move_head:
            conn.execute(update(audit_head).values(last_hash=prev))


def test_a_rewritten_history_passes_the_chain_and_fails_only_against_an_earlier_checkpoint(
    log: AuditLog, tmp_path: Path
) -> None:
    _fill(log, 4)
    exported = tmp_path / "witness" / "head.json"
    log.checkpoint(out=exported)
    _fill(log, 3)
    _rewrite_from(log.engine, 1, decision="denied" if log.query()[1].decision == "allowed" else "allowed")

    # The chain alone cannot see it: every hash was recomputed...
    _exec(log.engine, "DELETE FROM audit_checkpoint")
    assert log.verify().ok
    # ...the witness's checkpoint from before does, and names the first index it can no longer vouch for.
    report = log.verify(checkpoints=[exported])
    assert not report.ok and report.first_bad_index == 0
    assert "rewritten" in report.reason and "size 5" in report.reason


def test_the_stored_checkpoint_also_sees_a_rewritten_history(log: AuditLog) -> None:
    _fill(log, 3)
    log.checkpoint()
    _fill(log, 2)
    log.checkpoint()
    _rewrite_from(log.engine, 5, rule="forged")  # after the first head (size 4), before the second (size 7)
    report = log.verify()
    assert not report.ok and report.first_bad_index == 4 and "rewritten" in report.reason


def test_an_altered_or_forged_checkpoint_is_refused(log: AuditLog) -> None:
    _fill(log, 3)
    head = log.checkpoint()
    _exec(log.engine, "UPDATE audit_checkpoint SET tree_size = 3")
    assert "invalid signature" in log.verify().reason
    _exec(log.engine, "UPDATE audit_checkpoint SET tree_size = :n", n=head.tree_size)
    assert log.verify().ok
    # An attacker signs a head of their own: valid signature, untrusted key.
    private = Ed25519PrivateKey.generate()
    rogue = AuditSigner(1, key_id_of(private.public_key()), private.public_key(), private)
    forged = SignedTreeHead.sign(size=head.tree_size, root=bytes.fromhex(head.root_hash), signer=rogue)
    with log.engine.begin() as conn:
        conn.execute(insert(audit_checkpoint).values(**{k: v for k, v in forged.to_json().items() if k != "format"}))
    report = log.verify()
    assert not report.ok and "not a trusted audit key" in report.reason


def test_checkpoint_exports_a_head_a_witness_can_check_alone(log: AuditLog, tmp_path: Path) -> None:
    _fill(log, 6)
    out = tmp_path / "head.json"
    head = log.checkpoint(out=out)
    data = json.loads(out.read_text())
    assert set(data) == {"format", "tree_size", "root_hash", "timestamp", "key_id", "public_key", "signature"}
    loaded = SignedTreeHead.load(out)
    assert loaded == head and loaded.check_signature(loaded.embedded_key())
    # Inclusion of entry 3 and consistency from 4 to the head, with the log's own proofs.
    with log.engine.connect() as conn:
        leaves = [
            bytes.fromhex(h) for h in conn.execute(text("SELECT entry_hash FROM audit_log ORDER BY idx")).scalars()
        ]
    root = bytes.fromhex(head.root_hash)
    assert verify_inclusion(leaves[3], 3, head.tree_size, [bytes.fromhex(h) for h in log.inclusion_proof(3)], root)
    proof = [bytes.fromhex(h) for h in log.consistency_proof(4)]
    assert verify_consistency(4, head.tree_size, merkle_root(leaves[:4]), root, proof)
    # A witness with only the file (no key store) verifies the log against it.
    assert AuditLog(log.engine).verify(checkpoints=[out], trusted_keys=None).ok


def test_checkpoint_refuses_to_sign_a_tampered_log(log: AuditLog) -> None:
    _fill(log, 3)
    _exec(log.engine, "UPDATE audit_log SET rule = 'x' WHERE idx = 1")
    with pytest.raises(AuditIntegrityError, match="bad entry 1"):
        log.checkpoint()


def test_the_signing_key_is_wrapped_by_the_master_key_and_never_written_in_clear(tmp_path: Path) -> None:
    master = LocalMasterKey(os.urandom(32), origin="test")
    keys = AuditSigningKeys(tmp_path / "keys", master)
    signer = keys.ensure()
    assert "private" not in repr(signer).lower() and signer.key_id in repr(signer)
    files = list((tmp_path / "keys").iterdir())
    assert [f.name for f in files] == ["audit-signing-v1.json"]
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    seed = signer._private.private_bytes_raw()
    assert seed not in files[0].read_bytes() and seed.hex().encode() not in files[0].read_bytes()
    assert AuditSigningKeys(tmp_path / "keys", master).ensure().key_id == signer.key_id  # stable
    with pytest.raises(KeyStoreError, match="master key does not open"):
        AuditSigningKeys(tmp_path / "keys", LocalMasterKey(os.urandom(32), origin="other")).public_keys()
    # A swapped public key in the file fails to unwrap (it is bound as associated data).
    record = json.loads(files[0].read_text())
    record["public_key"] = "A" * 43 + "="
    files[0].write_text(json.dumps(record))
    with pytest.raises(KeyStoreError):
        keys.public_keys()


def test_a_rotated_signing_key_keeps_old_heads_verifying(log: AuditLog, signing_keys: AuditSigningKeys) -> None:
    _fill(log, 2)
    first = log.checkpoint()
    new = signing_keys.rotate()
    second = log.checkpoint()
    assert first.key_id != second.key_id == new.key_id
    assert log.verify().checkpoints_checked == 2


def test_the_signing_key_lives_beside_the_data_keys_without_disturbing_the_key_store(tmp_path: Path) -> None:
    from pdp.config import Settings
    from pdp.pseudonym.keys import KeyStore

    settings = Settings(
        _env_file=None, key_store=tmp_path / "keys", master_key=base64.b64encode(os.urandom(32)).decode()
    )
    store = KeyStore.from_settings(settings)
    store.init()
    signer = AuditSigningKeys.from_settings(settings).ensure()
    reopened = KeyStore.from_settings(settings)
    assert {"pseudonym", "vault", "record"} <= {info.purpose for info in reopened.status()}
    reopened.rotate("pseudonym")
    assert AuditSigningKeys.from_settings(settings).current().key_id == signer.key_id
