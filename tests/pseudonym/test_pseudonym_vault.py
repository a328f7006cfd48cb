"""The identity vault, on SQLite and on PostgreSQL: encryption, binding, merge, rekey, renaming, erasure."""

from __future__ import annotations

import base64
import logging
import os
import threading
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select, update

from pdp.config import Settings, get_settings
from pdp.governance import create_all, make_engine
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.reidentify import Actor, DbAuditSink, Decision, reidentify
from pdp.pseudonym.vault import (
    IdentityVault,
    UpsertResult,
    VaultError,
    VaultRecord,
    identity_vault,
    identity_vault_seal,
)


def pseudonym(n: int) -> str:
    """A pseudonym in the Pseudonymiser's shape: ``v1:`` + 43 base64url characters."""
    return "v1:" + base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode()[:43]


def nir_with_key(first13: str) -> str:
    return first13 + f"{97 - int(first13) % 97:02d}"


# Distinctive values: if any of them reaches the database file or a log, a grep finds it.
NIR = nir_with_key("1850578006084")
IDENTITY = VaultRecord(
    birth_name="ZYGOMATIQUE",
    used_name="XYLOPHAGOS",
    first_names=("QUETZALIA", "MARIE"),
    sex="F",
    birth_date=date(1985, 5, 17),
    birth_place="78006",
    nir=NIR,
    gp_rpps="10001234567",
    address_line="17 IMPASSE DES ZYGOMATIQUES",
    postcode="78000",
    commune_code="78646",
    phone="0698765432",
    email="quetzalia.zygomatique@example.org",
    observed_at=date(2024, 3, 1),
)
SECRETS = ["ZYGOMATIQUE", "XYLOPHAGOS", "QUETZALIA", NIR, "IMPASSE DES ZYGOMATIQUES", "0698765432", "quetzalia"]


def new_key_store(directory: Path) -> KeyStore:
    master = base64.b64encode(os.urandom(32)).decode()
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=directory, master_key=master))
    store.init()
    return store


@pytest.fixture()
def key_store(tmp_path: Path) -> KeyStore:
    return new_key_store(tmp_path / "keys")


@pytest.fixture()
def vault(governance_engine: Engine, key_store: KeyStore) -> IdentityVault:
    return IdentityVault(governance_engine, key_store, batch_size=3)


def raw_row(engine: Engine, p: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(select(identity_vault).where(identity_vault.c.pseudonym == p)).mappings().one())


# --- encryption -----------------------------------------------------------------------------------


def test_a_record_round_trips_through_the_vault(vault: IdentityVault) -> None:
    assert vault.upsert(pseudonym(1), IDENTITY) == UpsertResult(inserted=1, updated=0)
    assert vault.get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}
    assert vault.count() == 1


def test_absent_pseudonyms_are_left_out_of_get_many(vault: IdentityVault) -> None:
    vault.upsert(pseudonym(1), IDENTITY)
    assert list(vault.get_many([pseudonym(2), pseudonym(1), pseudonym(3)])) == [pseudonym(1)]


def test_the_row_holds_ciphertext_under_the_vault_key_with_a_fresh_nonce(
    vault: IdentityVault, governance_engine: Engine
) -> None:
    vault.upsert(pseudonym(1), IDENTITY)
    first = raw_row(governance_engine, pseudonym(1))
    vault.upsert(pseudonym(1), IDENTITY)
    second = raw_row(governance_engine, pseudonym(1))
    assert first["key_version"] == 1
    assert len(first["nonce"]) == 12
    assert first["nonce"] != second["nonce"]
    assert len(first["ciphertext"]) % 128 == 16  # padded plaintext + 16-byte tag
    for value in SECRETS:
        assert value.encode() not in bytes(first["ciphertext"])


def test_a_ciphertext_moved_to_another_pseudonym_fails_authentication(
    vault: IdentityVault, governance_engine: Engine
) -> None:
    other = VaultRecord(birth_name="DURAND", observed_at=date(2024, 1, 1))
    vault.upsert_many({pseudonym(1): IDENTITY, pseudonym(2): other})
    moved = raw_row(governance_engine, pseudonym(1))
    with governance_engine.begin() as conn:  # the linkage view: the associated data is the pseudonym
        conn.execute(
            update(identity_vault)
            .where(identity_vault.c.pseudonym == pseudonym(2))
            .values(nonce=moved["nonce"], ciphertext=moved["ciphertext"])
        )
    with pytest.raises(VaultError, match="failed authentication") as caught:
        vault.linkage_view([pseudonym(2)])
    assert pseudonym(2) in str(caught.value)
    with governance_engine.begin() as conn:  # a sealed observation: its bind names the pseudonym
        conn.execute(update(identity_vault_seal).where(identity_vault_seal.c.pseudonym == pseudonym(1))
                     .values(pseudonym=pseudonym(2)))
    with pytest.raises(VaultError, match="failed authentication"):
        vault.get_many([pseudonym(2)])
    assert vault.get_many([pseudonym(1)]) == {}


def test_a_tampered_ciphertext_is_refused(vault: IdentityVault, governance_engine: Engine) -> None:
    vault.upsert(pseudonym(1), IDENTITY)
    with governance_engine.connect() as conn:
        blob = bytearray(conn.scalar(select(identity_vault_seal.c.ciphertext)))
    blob[5] ^= 0x01
    with governance_engine.begin() as conn:
        conn.execute(update(identity_vault_seal).values(ciphertext=bytes(blob)))
    with pytest.raises(VaultError, match="failed authentication"):
        vault.get_many([pseudonym(1)])


def test_another_key_store_cannot_open_the_vault(
    vault: IdentityVault, governance_engine: Engine, tmp_path: Path
) -> None:
    vault.upsert(pseudonym(1), IDENTITY)
    stranger = IdentityVault(governance_engine, new_key_store(tmp_path / "other-keys"))
    with pytest.raises(VaultError, match="failed authentication"):
        stranger.get_many([pseudonym(1)])


def test_the_vault_key_is_not_the_pseudonym_key(key_store: KeyStore) -> None:
    assert key_store.current("vault").material != key_store.current("pseudonym").material


# --- merge rule -----------------------------------------------------------------------------------


def test_a_missing_field_never_erases_a_stored_one(vault: IdentityVault) -> None:
    vault.upsert(pseudonym(1), IDENTITY)
    result = vault.upsert(pseudonym(1), VaultRecord(phone="0611111111", observed_at=date(2025, 1, 1)))
    assert result == UpsertResult(inserted=0, updated=1)
    got = vault.get_many([pseudonym(1)])[pseudonym(1)]
    assert got.phone == "0611111111"
    assert got.birth_name == IDENTITY.birth_name
    assert got.address_line == IDENTITY.address_line
    assert got.observed_at == date(2025, 1, 1)


def test_an_older_observation_fills_gaps_but_does_not_overwrite_newer_values(vault: IdentityVault) -> None:
    vault.upsert(pseudonym(1), VaultRecord(phone="0622222222", observed_at=date(2024, 6, 1)))
    vault.upsert(
        pseudonym(1),
        VaultRecord(phone="0633333333", email="old@example.org", observed_at=date(2023, 1, 1)),
    )
    got = vault.get_many([pseudonym(1)])[pseudonym(1)]
    assert got.phone == "0622222222"
    assert got.email == "old@example.org"


def test_equal_or_unknown_dates_let_the_last_write_win(vault: IdentityVault) -> None:
    vault.upsert(pseudonym(1), VaultRecord(phone="0644444444"))
    vault.upsert(pseudonym(1), VaultRecord(phone="0655555555"))
    assert vault.get_many([pseudonym(1)])[pseudonym(1)].phone == "0655555555"
    vault.upsert(pseudonym(2), VaultRecord(phone="0666666666", observed_at=date(2024, 1, 1)))
    vault.upsert(pseudonym(2), VaultRecord(phone="0677777777"))
    assert vault.get_many([pseudonym(2)])[pseudonym(2)].phone == "0666666666"


def test_merge_dates_are_kept_per_field(vault: IdentityVault) -> None:
    """A newer address must not carry an older record's phone over a newer phone."""
    vault.upsert(pseudonym(1), VaultRecord(phone="0600000001", observed_at=date(2024, 9, 1)))
    vault.upsert(pseudonym(1), VaultRecord(address_line="1 RUE NEUVE", observed_at=date(2024, 10, 1)))
    vault.upsert(
        pseudonym(1), VaultRecord(phone="0600000002", address_line="2 RUE VIEILLE", observed_at=date(2024, 9, 15))
    )
    got = vault.get_many([pseudonym(1)])[pseudonym(1)]
    assert got.phone == "0600000002"  # 15 Sept beats 1 Sept
    assert got.address_line == "1 RUE NEUVE"  # 1 Oct beats 15 Sept


def test_upsert_many_merges_repeated_pseudonyms_in_order_and_counts_sources(
    vault: IdentityVault, governance_engine: Engine
) -> None:
    items = [
        (pseudonym(1), VaultRecord(birth_name="MARTIN", observed_at=date(2024, 1, 1))),
        (pseudonym(2), VaultRecord(birth_name="BERNARD")),
        (pseudonym(1), VaultRecord(phone="0612121212", observed_at=date(2024, 2, 1))),
        (pseudonym(1), VaultRecord(birth_name="MARTIN-DUVAL", observed_at=date(2024, 3, 1))),
    ]
    assert vault.upsert_many(items) == UpsertResult(inserted=2, updated=0)
    got = vault.get_many([pseudonym(1)])[pseudonym(1)]
    assert (got.birth_name, got.phone) == ("MARTIN-DUVAL", "0612121212")
    assert raw_row(governance_engine, pseudonym(1))["source_count"] == 3
    vault.upsert(pseudonym(1), VaultRecord(email="m@example.org"))
    assert raw_row(governance_engine, pseudonym(1))["source_count"] == 4


def test_upsert_many_is_one_transaction(vault: IdentityVault, monkeypatch: pytest.MonkeyPatch) -> None:
    """batch_size=3: the failure hits the third batch, after two were written; none stays."""
    calls = {"n": 0}
    real_seal = IdentityVault._seal

    def failing_seal(cipher, p, state):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("disk full")
        return real_seal(cipher, p, state)

    monkeypatch.setattr(IdentityVault, "_seal", staticmethod(failing_seal))
    with pytest.raises(RuntimeError):
        vault.upsert_many({pseudonym(i): VaultRecord(birth_name=f"NOM{i}") for i in range(8)})
    assert vault.count() == 0


def test_concurrent_writers_never_lose_a_merge(governance_engine: Engine, key_store: KeyStore) -> None:
    vaults = [IdentityVault(governance_engine, key_store) for _ in range(2)]
    errors: list[BaseException] = []

    def write(v: IdentityVault) -> None:
        try:
            for _ in range(10):
                v.upsert(pseudonym(1), VaultRecord(birth_name="DUPONT"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in vaults]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert raw_row(governance_engine, pseudonym(1))["source_count"] == 20


# --- key rotation ---------------------------------------------------------------------------------


def test_rekey_moves_every_row_to_the_current_vault_key(
    vault: IdentityVault, key_store: KeyStore, governance_engine: Engine
) -> None:
    records = {pseudonym(i): VaultRecord(birth_name=f"NOM{i}", phone=f"06000000{i:02d}") for i in range(7)}
    vault.upsert_many(records)
    key_store.rotate("vault")
    vault.upsert(pseudonym(99), VaultRecord(birth_name="NOUVEAU"))
    assert vault.key_versions() == {1: 7, 2: 1}
    before = {p: bytes(raw_row(governance_engine, p)["ciphertext"]) for p in records}

    assert vault.rekey() == 7

    assert vault.key_versions() == {2: 8}
    assert all(bytes(raw_row(governance_engine, p)["ciphertext"]) != before[p] for p in records)
    key_store.retire("vault", 1)
    assert vault.get_many(records) == records
    assert vault.rekey() == 0


def test_after_rekey_the_old_key_is_no_longer_needed(
    vault: IdentityVault, key_store: KeyStore, governance_engine: Engine
) -> None:
    vault.upsert(pseudonym(1), IDENTITY)
    key_store.rotate("vault")
    vault.rekey()

    class OnlyCurrent:
        def current(self, purpose: str):
            return key_store.current(purpose)

        def get(self, purpose: str, version: int):
            assert version == key_store.current(purpose).version, "an old key version was asked for"
            return key_store.get(purpose, version)

    assert IdentityVault(governance_engine, OnlyCurrent()).get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}


def test_repseudonymise_renames_and_keeps_every_record(vault: IdentityVault) -> None:
    records = {pseudonym(i): VaultRecord(birth_name=f"NOM{i}") for i in range(5)}
    vault.upsert_many(records)
    mapping = {pseudonym(i): pseudonym(100 + i) for i in range(5)}
    mapping[pseudonym(50)] = pseudonym(150)  # not in the vault: ignored

    assert vault.repseudonymise(mapping) == 5

    assert vault.count() == 5
    assert vault.get_many(records) == {}
    assert vault.get_many(pseudonym(100 + i) for i in range(5)) == {
        pseudonym(100 + i): records[pseudonym(i)] for i in range(5)
    }


def test_repseudonymise_handles_swaps_and_chains(vault: IdentityVault) -> None:
    a, b, c = (VaultRecord(birth_name=name) for name in ("AAA", "BBB", "CCC"))
    vault.upsert_many({pseudonym(1): a, pseudonym(2): b, pseudonym(3): c})
    vault.repseudonymise({pseudonym(1): pseudonym(2), pseudonym(2): pseudonym(1), pseudonym(3): pseudonym(4)})
    assert vault.get_many([pseudonym(1), pseudonym(2), pseudonym(3), pseudonym(4)]) == {
        pseudonym(1): b,
        pseudonym(2): a,
        pseudonym(4): c,
    }


def test_repseudonymise_merges_into_a_person_already_seen_under_the_new_key(
    vault: IdentityVault, governance_engine: Engine
) -> None:
    vault.upsert(pseudonym(1), VaultRecord(birth_name="MARTIN", phone="0601010101", observed_at=date(2023, 1, 1)))
    vault.upsert(pseudonym(9), VaultRecord(phone="0609090909", observed_at=date(2024, 1, 1)))
    assert vault.repseudonymise({pseudonym(1): pseudonym(9)}) == 1
    got = vault.get_many([pseudonym(9)])[pseudonym(9)]
    assert (got.birth_name, got.phone) == ("MARTIN", "0609090909")
    assert vault.count() == 1
    assert raw_row(governance_engine, pseudonym(9))["source_count"] == 2


def test_repseudonymise_refuses_two_pseudonyms_sent_to_one(vault: IdentityVault) -> None:
    vault.upsert_many({pseudonym(1): VaultRecord(birth_name="A"), pseudonym(2): VaultRecord(birth_name="B")})
    with pytest.raises(VaultError, match="two pseudonyms to one"):
        vault.repseudonymise({pseudonym(1): pseudonym(3), pseudonym(2): pseudonym(3)})
    assert set(vault.get_many([pseudonym(1), pseudonym(2)])) == {pseudonym(1), pseudonym(2)}


def test_a_failure_mid_way_through_repseudonymise_rolls_everything_back(
    vault: IdentityVault, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = {pseudonym(i): VaultRecord(birth_name=f"NOM{i}") for i in range(6)}
    vault.upsert_many(records)
    calls = {"n": 0}
    real_seal = IdentityVault._seal

    def failing_seal(cipher, p, state):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("crash")
        return real_seal(cipher, p, state)

    monkeypatch.setattr(IdentityVault, "_seal", staticmethod(failing_seal))
    with pytest.raises(RuntimeError):
        vault.repseudonymise({pseudonym(i): pseudonym(100 + i) for i in range(6)})
    monkeypatch.undo()
    assert vault.count() == 6
    assert vault.get_many(records) == records
    assert vault.get_many(pseudonym(100 + i) for i in range(6)) == {}


# --- erasure, input checks ------------------------------------------------------------------------


def test_delete_erases_records(vault: IdentityVault) -> None:
    vault.upsert_many({pseudonym(i): VaultRecord(birth_name=f"NOM{i}") for i in range(4)})
    assert vault.delete([pseudonym(1), pseudonym(2), pseudonym(77)]) == 2
    assert vault.count() == 2
    assert vault.get_many([pseudonym(1), pseudonym(2)]) == {}


@pytest.mark.parametrize("bad", [NIR, "ZYGOMATIQUE", "quetzalia.zygomatique@example.org", "+33698765432", "", None])
def test_identity_values_are_refused_as_pseudonyms_without_being_echoed(vault: IdentityVault, bad: object) -> None:
    with pytest.raises(VaultError) as caught:
        vault.upsert(bad, VaultRecord(birth_name="MARTIN"))  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    if bad:
        assert str(bad) not in str(caught.value)
    assert vault.count() == 0


def test_vault_record_repr_str_and_errors_show_no_identity_value() -> None:
    for text in (repr(IDENTITY), str(IDENTITY), f"{IDENTITY}", repr([IDENTITY])):
        assert "birth_name" in text
        for value in SECRETS:
            assert value not in text
    with pytest.raises(ValidationError) as caught:
        VaultRecord(birth_name="ZYGOMATIQUE", nir="ZYGOMATIQUE-NOT-A-NIR")
    assert "ZYGOMATIQUE" not in str(caught.value)


def test_vault_record_normalises_codes_and_refuses_an_empty_record() -> None:
    record = VaultRecord(sex="2", nir=f"{NIR[0]} {NIR[1:3]} {NIR[3:5]} {NIR[5:7]} {NIR[7:10]} {NIR[10:13]} {NIR[13:]}")
    assert (record.sex, record.nir) == ("F", NIR)
    assert VaultRecord(first_names="ANNE").first_names == ("ANNE",)
    with pytest.raises(ValidationError, match="at least one"):
        VaultRecord(birth_name="  ", observed_at=date(2024, 1, 1))
    with pytest.raises(ValidationError):
        VaultRecord(birth_name="X", favourite_colour="blue")


def test_nothing_identifying_is_logged(vault: IdentityVault, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    vault.upsert(pseudonym(1), IDENTITY)
    vault.get_many([pseudonym(1)])
    vault.repseudonymise({pseudonym(1): pseudonym(2)})
    vault.delete([pseudonym(2)])
    assert "identity vault" in caplog.text
    for value in SECRETS:
        assert value not in caplog.text


# --- the database file ----------------------------------------------------------------------------


def test_the_sqlite_file_holds_no_plaintext_identity(tmp_path: Path, key_store: KeyStore) -> None:
    db = tmp_path / "store" / "pdp.db"
    engine = make_engine(f"sqlite:///{db}")
    create_all(engine)
    vault = IdentityVault(engine, key_store)
    others = {pseudonym(10 + i): VaultRecord(birth_name=f"PERSONNE{i}", phone=f"07000000{i:02d}") for i in range(20)}
    vault.upsert_many({pseudonym(1): IDENTITY, **others})

    class AllowAll:
        def authorize(self, actor, purpose, pseudonyms):
            return Decision.allow(pseudonyms, "test policy")

    assert reidentify(
        [pseudonym(1)],
        actor=Actor("coordinator-1"),
        purpose="care_coordination",
        vault=vault,
        audit=DbAuditSink(engine),
        authorizer=AllowAll(),
    ) == {pseudonym(1): IDENTITY}

    files = [p for p in db.parent.iterdir() if p.name.startswith("pdp.db")]
    assert {p.name for p in files} >= {"pdp.db", "pdp.db-wal"}
    raw = b"".join(p.read_bytes() for p in files)
    assert pseudonym(1).encode() in raw, "control: the rows are in the bytes searched"
    leaks = [
        value
        for value in SECRETS
        if any(enc in raw for enc in (value.encode("utf-8"), value.upper().encode("utf-8"), value.encode("utf-16-le")))
    ]
    assert leaks == [], "identity values in clear in the database file"
    engine.dispose()


def test_from_settings_opens_the_configured_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDP_DB_URL", f"sqlite:///{tmp_path / 'configured' / 'pdp.db'}")
    monkeypatch.setenv("PDP_KEY_STORE", str(tmp_path / "configured-keys"))
    monkeypatch.setenv("PDP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    monkeypatch.delenv("PDP_MASTER_KEY_FILE", raising=False)
    get_settings.cache_clear()
    try:
        KeyStore.from_settings().init()
        vault = IdentityVault.from_settings()
        vault.upsert(pseudonym(1), IDENTITY)
        assert IdentityVault.from_settings().get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}
    finally:
        get_settings.cache_clear()
