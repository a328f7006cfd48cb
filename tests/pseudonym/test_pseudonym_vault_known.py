"""Known persons found by blocking keys hashed elsewhere (`known_chunks`), across vault key versions.

Why: a staged batch's blocking keys are hashed on Spark's executors under every vault key version
the blocking index holds (`linkage_blocks`) and streamed to `known_chunks` a chunk at a time. After
a rotation of the `vault` key, persons written before it keep keys of the old version until they
are re-keyed: a batch hashed under the current version alone would not find them, and the batch
would give them a second pseudonym (a split).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from pdp.pseudonym.normalise import CanonicalIdentity
from pdp.pseudonym.vault import IdentityVault, VaultRecord, linkage_blocks, record_canonical
from tests.pseudonym.test_pseudonym_vault import IDENTITY, new_key_store, nir_with_key, pseudonym


def _canonical(record: VaultRecord) -> CanonicalIdentity:
    canonical = record_canonical(record)
    assert canonical is not None
    return canonical


def test_known_persons_are_found_under_every_vault_key_version(governance_engine: Engine, tmp_path: Path) -> None:
    store = new_key_store(tmp_path / "keys")
    vault = IdentityVault(governance_engine, store, batch_size=2)  # the blocks stream in several chunks
    before = IDENTITY
    after = IDENTITY.model_copy(update={"birth_name": "AUBRAC", "used_name": None, "first_names": ("LEON",),
                                        "sex": "M", "nir": nir_with_key("1620359350123"), "address_line": None,
                                        "phone": None})
    stranger = IDENTITY.model_copy(update={"birth_name": "ZYGMUNT", "first_names": ("OTTO",), "sex": "M",
                                           "nir": None, "birth_date": IDENTITY.birth_date.replace(year=1931),
                                           "postcode": "13001", "address_line": None, "phone": None})
    vault.upsert_many([(pseudonym(1), before)])
    store.rotate("vault")
    vault.upsert_many([(pseudonym(2), after)])
    versions = vault.blocking_versions()
    assert len(versions) == 2, "the person written before the rotation keeps its old blocking keys"

    batch = [_canonical(r) for r in (after, stranger, before)]  # the same persons, seen again, and a stranger
    chunks = list(vault.known_chunks(linkage_blocks(store, versions, batch)))
    found = [p for chunk in chunks for p, _ in chunk]
    assert found == sorted([pseudonym(1), pseudonym(2)])
    assert dict(p for chunk in chunks for p in chunk) == {pseudonym(1): _canonical(before),
                                                         pseudonym(2): _canonical(after)}
    # hashed under the current version alone, the person written before the rotation is missed
    current_only = vault.known_by_blocks(linkage_blocks(store, versions[-1:], batch))
    assert [p for p, _ in current_only] == [pseudonym(2)]
    # and the in-process path (what a small batch uses) finds what the streamed one found
    assert vault.linkable(batch) == [p for chunk in chunks for p in chunk]
