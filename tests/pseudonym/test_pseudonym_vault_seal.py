"""The seal split: the edge seals identities to a public key and cannot open them.

Only re-identification (``get_many``, behind ``reidentify``) and the seal-key rotation
(``reseal``) hold the private key; the edge reads only the linkage view.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, func, insert, select

from pdp.config import Settings
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.kms import KeyStoreError, LocalMasterKey
from pdp.pseudonym.sealing import SealError, open_box, seal
from pdp.pseudonym.vault import (
    LINKAGE_TRAITS,
    EdgeKeys,
    IdentityVault,
    VaultError,
    VaultRecord,
    _aad,
    _Stored,
    identity_vault,
    identity_vault_seal,
    record_canonical,
)
from tests.pseudonym.test_pseudonym_vault import IDENTITY, new_key_store, pseudonym


@pytest.fixture()
def key_store(tmp_path: Path) -> KeyStore:
    return new_key_store(tmp_path / "keys")


def sealed_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(identity_vault_seal)) or 0)


def write_legacy_row(engine: Engine, key_store: KeyStore, *records: VaultRecord) -> None:
    """A row as code before the seal split wrote it: the merged record, whole, under the vault key."""
    state = _Stored()
    for record in records:
        state.merge(record)
    key = key_store.current("vault")
    nonce = os.urandom(12)
    legacy = AESGCM(key.material).encrypt(nonce, state.to_plaintext(), _aad(pseudonym(1)))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(identity_vault).values(
            pseudonym=pseudonym(1), key_version=key.version, nonce=nonce, ciphertext=legacy,
            source_count=len(records), created_at=now, updated_at=now))


def test_a_box_opens_only_with_its_key_and_its_associated_data() -> None:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    enc, box = seal(public, b"secret", aad=b"id-1")
    assert open_box(private.private_bytes_raw(), enc, box, aad=b"id-1") == b"secret"
    assert seal(public, b"secret", aad=b"id-1")[0] != enc  # a fresh ephemeral key per box
    with pytest.raises(SealError):
        open_box(private.private_bytes_raw(), enc, box, aad=b"id-2")
    with pytest.raises(SealError):
        open_box(X25519PrivateKey.generate().private_bytes_raw(), enc, box, aad=b"id-1")


def test_the_edge_seals_links_renames_and_rekeys_without_the_private_key(
    governance_engine: Engine, key_store: KeyStore
) -> None:
    edge = IdentityVault(governance_engine, EdgeKeys(key_store))
    edge.upsert(pseudonym(1), IDENTITY)
    edge.upsert(pseudonym(1), VaultRecord(phone="0611111111", observed_at=date(2025, 1, 1)))
    assert sealed_rows(governance_engine) == 2  # append-only: one box per observation

    canonical = record_canonical(IDENTITY)
    assert canonical is not None
    assert [p for p, _c in edge.linkable([canonical])] == [pseudonym(1)]
    assert edge.repseudonymise({pseudonym(1): pseudonym(2)}) == 1
    key_store.rotate("vault")
    assert edge.rekey() == 1
    key_store.retire("vault", 1)

    with pytest.raises(VaultError, match="cannot open"):
        edge.get_many([pseudonym(2)])
    full = IdentityVault(governance_engine, key_store).get_many([pseudonym(2)])[pseudonym(2)]
    assert full.phone == "0611111111"
    assert full.model_copy(update={"phone": IDENTITY.phone, "observed_at": IDENTITY.observed_at}) == IDENTITY


def test_the_linkage_view_holds_no_contact_and_no_gp(governance_engine: Engine, key_store: KeyStore) -> None:
    edge = IdentityVault(governance_engine, EdgeKeys(key_store))
    edge.upsert(pseudonym(1), IDENTITY)
    view = edge.linkage_view([pseudonym(1)])[pseudonym(1)]
    assert set(view.present_traits()) <= set(LINKAGE_TRAITS)
    assert (view.birth_name, view.nir) == (IDENTITY.birth_name, IDENTITY.nir)
    assert (view.phone, view.email, view.address_line, view.gp_rpps) == (None, None, None, None)


def test_opening_the_store_and_reading_a_public_key_never_unwrap_the_private_seal_key(tmp_path: Path) -> None:
    master = LocalMasterKey(os.urandom(32), origin="test")
    unwrapped: list[bytes] = []

    class Recording:
        kek_id = master.kek_id

        def wrap(self, material: bytes, *, aad: bytes) -> bytes:
            return master.wrap(material, aad=aad)

        def unwrap(self, wrapped: bytes, *, aad: bytes) -> bytes:
            unwrapped.append(aad)
            return master.unwrap(wrapped, aad=aad)

    KeyStore(tmp_path / "keys", Recording()).init()
    unwrapped.clear()
    store = KeyStore(tmp_path / "keys", Recording())
    public = store.public("seal")
    assert public.version == 1 and len(public.raw) == 32
    private_aad = b"pdp-key/1\x1fseal\x1f1"
    assert private_aad not in unwrapped
    assert private_aad + b"\x1fpublic" in unwrapped  # the attestation was checked
    store.current("seal")
    assert private_aad in unwrapped  # control: the recorder sees a private unwrap


def test_a_swapped_public_key_is_refused(tmp_path: Path) -> None:
    master = base64.b64encode(os.urandom(32)).decode()
    settings = Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master)
    KeyStore.from_settings(settings).init()
    path = tmp_path / "keys" / "seal-v1.json"
    record = json.loads(path.read_text())
    record["public_key"] = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(KeyStoreError, match="does not match its attestation"):
        KeyStore.from_settings(settings)


def test_reseal_moves_every_box_to_the_current_seal_key(governance_engine: Engine, key_store: KeyStore) -> None:
    vault = IdentityVault(governance_engine, key_store)
    vault.upsert_many({pseudonym(i): VaultRecord(birth_name=f"NOM{i}", phone=f"06000000{i:02d}") for i in range(4)})
    key_store.rotate("seal")
    assert vault.reseal() == 4
    assert vault.reseal() == 0
    key_store.retire("seal", 1)

    class OnlyCurrentSeal:
        def current(self, purpose: str):
            return key_store.current(purpose)

        def get(self, purpose: str, version: int):
            assert purpose != "seal" or version == 2, "an old seal key was asked for"
            return key_store.get(purpose, version)

    got = IdentityVault(governance_engine, OnlyCurrentSeal()).get_many([pseudonym(3)])
    assert got[pseudonym(3)].phone == "0600000003"


def test_rows_from_before_the_seal_split_are_sealed_and_cut_down(
    governance_engine: Engine, key_store: KeyStore
) -> None:
    """Older code kept the whole record under the vault key; the first use seals it."""
    write_legacy_row(governance_engine, key_store, IDENTITY)
    edge = IdentityVault(governance_engine, EdgeKeys(key_store))
    assert edge.linkage_view([pseudonym(1)])[pseudonym(1)].phone is None
    assert sealed_rows(governance_engine) == 1
    assert IdentityVault(governance_engine, key_store).get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}


def test_re_identification_folds_boxes_into_the_merged_cache_and_renames_drop_it(
    governance_engine: Engine, key_store: KeyStore
) -> None:
    from pdp.pseudonym.vault import identity_vault_merged

    edge = IdentityVault(governance_engine, EdgeKeys(key_store))
    reader = IdentityVault(governance_engine, key_store)
    edge.upsert(pseudonym(1), IDENTITY)
    assert reader.get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}

    def merged() -> dict[str, int]:
        with governance_engine.connect() as conn:
            m = identity_vault_merged.c
            return dict(conn.execute(select(m.pseudonym, m.through_id)).all())

    assert list(merged()) == [pseudonym(1)]
    edge.upsert(pseudonym(1), VaultRecord(phone="0611111111", observed_at=date(2025, 1, 1)))
    assert reader.get_many([pseudonym(1)])[pseudonym(1)].phone == "0611111111"  # cache + the newer box
    assert merged()[pseudonym(1)] == 2
    edge.upsert(pseudonym(2), VaultRecord(birth_name="AUTRE", phone="0622222222", observed_at=date(2023, 1, 1)))
    assert reader.compact() == 1
    edge.repseudonymise({pseudonym(2): pseudonym(1)})  # linkage: two known persons are one
    assert merged() == {}
    got = reader.get_many([pseudonym(1)])[pseudonym(1)]
    assert got.phone == "0611111111" and got.birth_name == IDENTITY.birth_name  # older box did not overwrite
    edge.delete([pseudonym(1)])
    assert merged() == {} and reader.get_many([pseudonym(1)]) == {}


def test_a_serving_key_rotation_folds_again_and_loses_nothing(governance_engine: Engine, key_store: KeyStore) -> None:
    edge = IdentityVault(governance_engine, EdgeKeys(key_store))
    edge.upsert(pseudonym(1), IDENTITY)
    assert IdentityVault(governance_engine, key_store).get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}
    key_store.rotate("serving")
    reader = IdentityVault(governance_engine, key_store)
    assert reader.compact() == 1  # the row under the old version is folded again
    assert reader.get_many([pseudonym(1)]) == {pseudonym(1): IDENTITY}
    edge.upsert(pseudonym(1), VaultRecord(email="x@example.org", observed_at=date(2025, 1, 1)))
    got = reader.get_many([pseudonym(1)])[pseudonym(1)]
    assert got.email == "x@example.org" and got.phone == IDENTITY.phone


def test_a_stale_fold_is_never_written_back_nor_trusted(governance_engine: Engine, key_store: KeyStore) -> None:
    """A rename that moves older boxes in between a read and its write-back (review finding)."""
    from pdp.pseudonym.vault import _Keys

    edge = IdentityVault(governance_engine, EdgeKeys(key_store))
    reader = IdentityVault(governance_engine, key_store)
    edge.upsert(pseudonym(2), VaultRecord(email="old@example.org", observed_at=date(2025, 1, 1)))
    edge.upsert(pseudonym(1), IDENTITY)
    with governance_engine.connect() as conn:
        last = int(conn.scalar(select(func.max(identity_vault_seal.c.id))))
    stale = _Stored()
    stale.merge(IDENTITY)
    edge.repseudonymise({pseudonym(2): pseudonym(1)})  # pseudonym(1) now owns an older box too
    reader._write_merged({pseudonym(1): (stale, last, 1)}, _Keys(key_store))  # a fold read before the rename
    assert reader.get_many([pseudonym(1)])[pseudonym(1)].email == "old@example.org"


def test_a_legacy_row_with_linkage_traits_only_is_sealed_with_its_dates(
    governance_engine: Engine, key_store: KeyStore
) -> None:
    write_legacy_row(governance_engine, key_store, VaultRecord(birth_name="ANCIEN", observed_at=date(2020, 1, 1)),
                     VaultRecord(nir=IDENTITY.nir, observed_at=date(2022, 1, 1)))
    reader = IdentityVault(governance_engine, key_store)
    assert reader.get_many([pseudonym(1)])[pseudonym(1)].nir == IDENTITY.nir
    assert sealed_rows(governance_engine) == 2  # one box per observation date
    IdentityVault(governance_engine, EdgeKeys(key_store)).upsert(
        pseudonym(1), VaultRecord(birth_name="NOUVEAU", observed_at=date(2021, 1, 1)))
    assert reader.get_many([pseudonym(1)])[pseudonym(1)].birth_name == "NOUVEAU"  # 2021 beats 2020
