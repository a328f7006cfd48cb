"""Key rotation re-keys the lake and the vault without losing a single link, and resumes after a crash."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml
from pyspark.sql import SparkSession

from pdp.config import Settings
from pdp.governance import create_all, make_engine
from pdp.governance.erased_check import PseudonymDetector
from pdp.governance.leak_scan import scan_lake
from pdp.lake import LakeTable, RunInfo, WorkArea, load_catalog
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise
from pdp.pseudonym.pseudonymise import Pseudonymiser
from pdp.pseudonym.rotation import RotationError, rotate_pseudonym_key
from pdp.pseudonym.vault import IdentityVault, VaultRecord

pytestmark = pytest.mark.spark

PEOPLE = [
    {"birth_name": "Lefèvre", "first_names": "Jean-Marie", "sex": "M", "birth_date": "1950-03-02"},
    {"birth_name": "d'Arcy", "first_names": "Anne", "sex": "F", "birth_date": "1977-11-30"},
    {"birth_name": "Martin", "first_names": "Paul", "sex": "M", "birth_date": "2001-01-15"},
]
EVENTS = {
    "name": "events",
    "zone": "silver",
    "description": "Test events keyed by person pseudonym.",
    "columns": [
        {"name": "event_id", "type": "BIGINT", "nullable": False, "description": "Event."},
        {"name": "person", "type": "STRING", "nullable": False, "description": "Pseudonym.", "pseudonym": True},
        {"name": "code", "type": "STRING", "description": "A code."},
    ],
}


@pytest.fixture()
def world(tmp_path: Path, spark: SparkSession):
    master_key = base64.b64encode(os.urandom(32)).decode("ascii")
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master_key))
    store.init()
    engine = make_engine(f"sqlite:///{tmp_path / 'gov.db'}")
    create_all(engine)
    vault = IdentityVault(engine, store)
    catalog_dir = tmp_path / "tables"
    (catalog_dir / "silver").mkdir(parents=True)
    (catalog_dir / "silver" / "events.yml").write_text(yaml.safe_dump(EVENTS), encoding="utf-8")
    catalog = load_catalog(catalog_dir)
    table = LakeTable(spark, catalog.table("silver.events"), lake_root=str(tmp_path / "lake")).create()
    pseudonymiser = Pseudonymiser(store)
    canonicals = [normalise(RawIdentity(**p)) for p in PEOPLE]
    assert all(isinstance(c, CanonicalIdentity) for c in canonicals)
    pseudonyms = pseudonymiser.pseudonymise_many(canonicals)  # type: ignore[arg-type]
    for p, c, person in zip(pseudonyms, canonicals, PEOPLE, strict=True):
        vault.upsert(p, VaultRecord(birth_name=person["birth_name"], sex=person["sex"],
                                    canonical=base64.b64encode(c.canonical_bytes).decode()))  # type: ignore[union-attr]
    rows = [(i, pseudonyms[i % 3], f"C{i}") for i in range(12)]
    table.append(spark.createDataFrame(rows, "event_id long, person string, code string"),
                 run=RunInfo(run_id="r1", job="test", definitions_version="t"))
    return store, vault, catalog, table, canonicals


def _groups(table: LakeTable) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for row in table.read().collect():
        out.setdefault(row.person, set()).add(row.event_id)
    return out


def test_rotation_rekeys_lake_and_vault_and_keeps_every_link(spark: SparkSession, world) -> None:
    store, vault, catalog, table, canonicals = world
    before = _groups(table)
    report = rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog, lake_root=table.lake_root)
    assert (report.old_version, report.new_version, report.resumed) == (1, 2, False)
    after = _groups(table)
    assert sorted(map(sorted, before.values())) == sorted(map(sorted, after.values())), "same people, same events"
    assert all(p.startswith("v2:") for p in after)
    expected = set(Pseudonymiser(store).pseudonymise_many(canonicals))
    assert set(after) == expected == set(vault.pseudonyms())
    assert report.tables == {"silver.events": 12} and report.vault_rows == 3
    assert {(i.version, i.status) for i in store.status() if i.purpose == "pseudonym"} >= {(1, "retired")}
    assert vault.get_many(sorted(expected)), "vault records still decrypt under their new pseudonyms"
    # the purge: no file of the lake (earlier versions, change data) holds an old pseudonym any more
    old = sorted(before)
    assert sum(t["files_removed"] for t in report.purged) >= 1
    leftover = scan_lake(str(table.lake_root), detectors=[PseudonymDetector(old)])
    assert not leftover.findings, [f.table for f in leftover.findings]
    again = rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog, lake_root=table.lake_root)
    assert again.new_version == 3 and all(p.startswith("v3:") for p in _groups(table))


def test_a_crash_midway_is_finished_by_the_next_run(spark: SparkSession, world) -> None:
    store, vault, catalog, table, canonicals = world
    store.rotate("pseudonym")  # the crash: key rotated, nothing re-mapped yet
    report = rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog, lake_root=table.lake_root)
    assert report.resumed and (report.old_version, report.new_version) == (1, 2)
    assert set(_groups(table)) == set(Pseudonymiser(store).pseudonymise_many(canonicals))


def test_a_record_without_its_canonical_identity_stops_rotation_before_any_change(
    spark: SparkSession, world
) -> None:
    store, vault, catalog, table, _ = world
    vault.upsert("v1:" + "A" * 43, VaultRecord(birth_name="LEGACY"))
    before = _groups(table)
    with pytest.raises(RotationError, match="lack their canonical identity"):
        rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog, lake_root=table.lake_root)
    assert store.current("pseudonym").version == 1 and _groups(table) == before


def test_paged_rotation_follows_each_page_before_the_vault_renames_it(spark: SparkSession, world) -> None:
    """Pages of 2 over 3 persons: the mapping goes through the work area, never whole in the driver."""
    store, vault, catalog, table, canonicals = world
    before = set(_groups(table))
    followed: list[dict[str, str]] = []

    def follow(mapping: dict[str, str]) -> None:
        assert vault.contains(mapping) == set(mapping), "the vault still holds the page's old pseudonyms"
        followed.append(dict(mapping))

    report = rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog,
                                  lake_root=table.lake_root, follow=follow, page=2)
    assert [len(m) for m in followed] == [2, 1] and report.mapped == 3 == report.vault_rows
    assert set().union(*followed) == before
    new = set(Pseudonymiser(store).pseudonymise_many(canonicals))
    assert set(_groups(table)) == new == set(vault.pseudonyms())
    assert not WorkArea(spark, "rotation-v1-v2", table.lake_root).exists(), "old → new pairs are not left behind"


def test_a_crash_while_renaming_the_vault_is_finished_by_the_next_run(spark: SparkSession, world) -> None:
    store, vault, catalog, table, canonicals = world
    calls = 0

    def crash_on_second_page(mapping: dict[str, str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog,
                             lake_root=table.lake_root, follow=crash_on_second_page, page=2)
    assert sorted(p[:3] for p in vault.pseudonyms()) == ["v1:", "v2:", "v2:"], "one page renamed, one not"
    assert not WorkArea(spark, "rotation-v1-v2", table.lake_root).exists()
    report = rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog, lake_root=table.lake_root)
    assert report.resumed and report.mapped == 1 and report.tables == {"silver.events": 0}
    new = set(Pseudonymiser(store).pseudonymise_many(canonicals))
    assert set(_groups(table)) == new == set(vault.pseudonyms())
