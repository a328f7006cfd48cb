"""Vault writes prepared where the identities are (`prepare_writes`) land as `upsert_many` lands them.

Why: the vault's one writer spent its time sealing and hashing each person (~2 300-2 700 persons/s,
7-8 h for 68 M); preparing the rows on the edge's executors leaves it the copy. Prepared or not,
the vault must end up the same: the linkage view, the re-identified records, the blocking keys,
the name tokens, the sealed boxes and the source counts. Compared here person by person between
two sets of pseudonyms written the two ways, on SQLite and PostgreSQL: new persons (copied as
prepared), persons the vault holds (merged from their records), and writes prepared before a
key rotation (made again).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.vault import (
    EdgeKeys,
    IdentityVault,
    VaultError,
    VaultRecord,
    _Keys,
    identity_vault,
    identity_vault_blocking,
    identity_vault_name_tokens,
    identity_vault_seal,
    prepare_writes,
)
from tests.pseudonym.test_pseudonym_vault import IDENTITY, new_key_store, nir_with_key, pseudonym

REFERENCE, PREPARED = 0, 1000  # the two sets of pseudonyms: person i is pseudonym(offset + i)


def _people() -> list[VaultRecord]:
    """Persons with and without an address, one without a birth date (no canonical identity, no blocking key)."""
    return [
        IDENTITY,
        IDENTITY.model_copy(update={"birth_name": "AUBRAC", "used_name": None, "first_names": ("LEON",), "sex": "M",
                                    "nir": nir_with_key("1620359350123"), "address_line": None, "phone": None}),
        VaultRecord(birth_name="BOUVINES", first_names=("ALIX", "JEANNE"), sex="F", postcode="59830",
                    address_line="3 RUE DU PONT", observed_at=date(2023, 2, 1)),
        IDENTITY.model_copy(update={"birth_name": "CASSEL", "first_names": ("ROSE",), "birth_date": date(1950, 1, 2),
                                    "nir": None, "observed_at": None}),
    ]


def _later(record: VaultRecord) -> VaultRecord:
    """A later observation of the same person: moved, renamed, a new phone."""
    return record.model_copy(update={"used_name": "DURANDAL", "address_line": "9 ALLEE DES TILLEULS",
                                     "phone": "0611223344", "observed_at": date(2025, 6, 1)})


def _write(vault: IdentityVault, offset: int, records: list[VaultRecord], store: KeyStore, *,
           prepared_with: KeyStore | None = None) -> list[list[str]]:
    """The persons written at `offset`: with upsert_many (REFERENCE) or prepared (by `prepared_with`, the
    edge's keys) then written; returns the pseudonyms `records` was asked for."""
    pairs = [(pseudonym(offset + i), r) for i, r in enumerate(records)]
    if prepared_with is None:
        vault.upsert_many(pairs)
        return []
    asked: list[list[str]] = []
    by_pseudonym = dict(pairs)

    def records_of(pseudonyms: list[str]) -> dict[str, VaultRecord]:
        asked.append(sorted(pseudonyms))
        return {p: by_pseudonym[p] for p in pseudonyms}

    items = list(prepare_writes(EdgeKeys(prepared_with), pairs))
    vault.write_prepared(items, records_of)
    return asked


def _person_view(engine: Engine, store: KeyStore, offset: int, count: int) -> list[dict]:
    """Everything the vault holds of persons offset..offset+count, pseudonym-free so two sets compare."""
    full = IdentityVault(engine, store)  # re-identification's keys: the tests' reference reader
    keys = _Keys(store)
    people = [pseudonym(offset + i) for i in range(count)]
    linkage, records = full.linkage_view(people), full.get_many(people)
    out = []
    with engine.connect() as conn:
        for p in people:
            blocks = sorted(conn.execute(select(identity_vault_blocking.c.block, identity_vault_blocking.c.key_version)
                                         .where(identity_vault_blocking.c.pseudonym == p)).all())
            t = identity_vault_name_tokens.c
            tokens = sorted(conn.execute(select(t.kind, t.token, t.size).where(t.holder == keys.holder(p))).all())
            boxes = conn.scalar(select(func.count()).select_from(identity_vault_seal)
                                .where(identity_vault_seal.c.pseudonym == p))
            row = conn.execute(select(identity_vault.c.source_count, identity_vault.c.key_version)
                               .where(identity_vault.c.pseudonym == p)).one()
            out.append({"linkage": linkage.get(p), "record": records.get(p),
                        "blocks": blocks, "tokens": tokens, "boxes": boxes, "row": tuple(row)})
    return out


@pytest.fixture()
def key_store(tmp_path: Path) -> KeyStore:
    return new_key_store(tmp_path / "keys")


def test_prepared_writes_land_as_upsert_many_lands_them(governance_engine: Engine, key_store: KeyStore) -> None:
    vault = IdentityVault(governance_engine, EdgeKeys(key_store), batch_size=3)
    people = _people()
    _write(vault, REFERENCE, people, key_store)
    asked = _write(vault, PREPARED, people, key_store, prepared_with=key_store)
    assert asked == [], "new persons go in as prepared: no record is asked for"
    first = _person_view(governance_engine, key_store, REFERENCE, len(people))
    assert _person_view(governance_engine, key_store, PREPARED, len(people)) == first
    assert first[0]["blocks"] and first[0]["tokens"] and not [b for b, _ in first[2]["blocks"] if b != "*3"]

    # one chunk mixing a second observation of the persons the vault holds (merged from their records)
    # and two new persons (copied in as prepared)
    later = [_later(r) for r in people] + [_later(people[0]).model_copy(update={"birth_name": "EPERNAY"}),
                                           people[2].model_copy(update={"birth_name": "FOURMIES"})]
    _write(vault, REFERENCE, later, key_store)
    asked = _write(vault, PREPARED, later, key_store, prepared_with=key_store)
    assert asked == [sorted(pseudonym(PREPARED + i) for i in range(len(people)))]
    second = _person_view(governance_engine, key_store, REFERENCE, len(later))
    assert _person_view(governance_engine, key_store, PREPARED, len(later)) == second
    assert second[:len(people)] != first and [v["row"][0] for v in second] == [2, 2, 2, 2, 1, 1]


@pytest.mark.parametrize("purpose", ["vault", "seal", "nametoken", "opposition"])
def test_writes_prepared_before_a_key_rotation_are_made_again(governance_engine: Engine, key_store: KeyStore,
                                                              purpose: str) -> None:
    vault = IdentityVault(governance_engine, EdgeKeys(key_store))
    people = _people()
    pairs = [(pseudonym(PREPARED + i), r) for i, r in enumerate(people)]
    stale = list(prepare_writes(EdgeKeys(key_store), pairs))
    key_store.rotate(purpose)  # what the executors prepared under is no longer current
    asked: list[list[str]] = []

    def records_of(pseudonyms: list[str]) -> dict[str, VaultRecord]:
        asked.append(sorted(pseudonyms))
        return dict(p for p in pairs if p[0] in pseudonyms)

    vault.write_prepared(stale, records_of)
    _write(vault, REFERENCE, people, key_store)
    assert asked == [sorted(p for p, _ in pairs)]
    view = _person_view(governance_engine, key_store, PREPARED, len(people))
    assert view == _person_view(governance_engine, key_store, REFERENCE, len(people))
    assert {v["row"][1] for v in view} == {2 if purpose == "vault" else 1}, "written under the current vault key"
    with pytest.raises(VaultError, match="twice"):
        vault.write_prepared([stale[0], stale[0]], records_of)
