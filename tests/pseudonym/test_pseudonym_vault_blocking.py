"""The vault's keyed blocking index: linkage reads only the persons a batch could join.

On SQLite and PostgreSQL: the index follows every write (upsert, rekey, repseudonymise,
delete), rows written before it existed are indexed on first use, it holds no value in clear,
and cross-batch linkage against the indexed candidates gives what linkage against the whole
vault gives.
"""

from __future__ import annotations

import base64
import os
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, select

from pdp.config import Settings
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.normalise import CanonicalIdentity
from pdp.pseudonym.vault import IdentityVault, VaultRecord, identity_vault_blocking, record_canonical


def pseudonym(n: int) -> str:
    return "v1:" + base64.urlsafe_b64encode(n.to_bytes(32, "big")).decode()[:43]


def person(birth_name: str, first: str, born: date, *, used_name: str | None = None) -> VaultRecord:
    return VaultRecord(birth_name=birth_name, used_name=used_name, first_names=(first,), sex="F", birth_date=born)


def canonical(record: VaultRecord) -> CanonicalIdentity:
    c = record_canonical(record)
    assert isinstance(c, CanonicalIdentity)
    return c


SAME_DAY = person("QUIBERON", "ALIX", date(1961, 2, 3))  # shares the birth date with the batch
SAME_NAME = person("ZORNIGER", "BRUNE", date(1961, 9, 9))  # shares birth name and year
MARRIED = person("ABADIE", "CLEO", date(1961, 4, 4), used_name="ZORNIGER")  # used name = batch's birth name
STRANGER = person("VOLUBILIS", "DORA", date(1990, 7, 1))  # shares nothing
BATCH = person("ZORNIGER", "ELISE", date(1961, 2, 3))


@pytest.fixture()
def key_store(tmp_path: Path) -> KeyStore:
    master = base64.b64encode(os.urandom(32)).decode()
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master))
    store.init()
    return store


@pytest.fixture()
def vault(governance_engine: Engine, key_store: KeyStore) -> IdentityVault:
    v = IdentityVault(governance_engine, key_store, batch_size=2)
    v.upsert_many({pseudonym(1): SAME_DAY, pseudonym(2): SAME_NAME, pseudonym(3): MARRIED, pseudonym(4): STRANGER})
    return v


def linkable(vault: IdentityVault) -> set[str]:
    return {p for p, _ in vault.linkable([canonical(BATCH)])}


def test_only_persons_sharing_a_blocking_key_are_read(vault: IdentityVault) -> None:
    found = vault.linkable([canonical(BATCH)])
    assert {p for p, _ in found} == {pseudonym(1), pseudonym(2), pseudonym(3)}
    assert dict(found)[pseudonym(2)] == canonical(SAME_NAME)
    assert vault.linkable([]) == []


def test_the_index_follows_renames_erasure_and_rekeying(vault: IdentityVault, key_store: KeyStore) -> None:
    vault.upsert(pseudonym(1), VaultRecord(phone="0611111111"))  # a contact update keeps the person's keys
    assert linkable(vault) == {pseudonym(1), pseudonym(2), pseudonym(3)}
    vault.repseudonymise({pseudonym(1): pseudonym(11)})
    vault.delete([pseudonym(2)])
    assert linkable(vault) == {pseudonym(11), pseudonym(3)}
    vault.upsert(pseudonym(4), person("VOLUBILIS", "DORA", date(1961, 2, 3)))  # a corrected birth date
    assert linkable(vault) == {pseudonym(11), pseudonym(3), pseudonym(4)}
    key_store.rotate("vault")
    assert vault.rekey() == 3
    key_store.retire("vault", 1)
    assert linkable(vault) == {pseudonym(11), pseudonym(3), pseudonym(4)}


def test_rows_written_before_the_index_are_indexed_on_first_use(
    vault: IdentityVault, governance_engine: Engine, key_store: KeyStore
) -> None:
    with governance_engine.begin() as conn:
        conn.execute(delete(identity_vault_blocking))
    # a process started after older code wrote them (a vault object checks once per lifetime)
    assert linkable(IdentityVault(governance_engine, key_store)) == {pseudonym(1), pseudonym(2), pseudonym(3)}
    with governance_engine.connect() as conn:
        indexed = set(conn.scalars(select(identity_vault_blocking.c.pseudonym).distinct()))
    assert indexed == {pseudonym(i) for i in range(1, 5)}


def test_the_index_holds_no_value_in_clear(vault: IdentityVault, governance_engine: Engine) -> None:
    with governance_engine.connect() as conn:
        blocks = list(conn.scalars(select(identity_vault_blocking.c.block)))
    assert len(blocks) > 4
    text = " ".join(blocks)
    for needle in ("QUIBERON", "ZORNIGER", "ABADIE", "VOLUBILIS", "1961", "1990", "ALIX"):
        assert needle not in text
