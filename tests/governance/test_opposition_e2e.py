"""Opposition end to end on a synthetic territory: a Consent in → the person out of gold at once →
after `apply`, out of every file of the lake (all versions, change data, logs) and out of the vault;
later data about them refused at the edge; withdrawal lets future data in again."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from shared_territory import BUILT_AS_OF, BUILT_TERRITORY, copy_var, var_settings

from pdp.algorithms import build_gold
from pdp.config import Settings
from pdp.governance import create_all, make_engine
from pdp.governance.audit import AuditLog, create_audit_tables
from pdp.governance.erased_check import PseudonymDetector, spark_xxhash64
from pdp.governance.ethics import MAX_SAMPLE, EthicsSample, SampleError, draw_sample, rank
from pdp.governance.leak_scan import scan_lake
from pdp.governance.opposition import ConsentError, OppositionRegistry, apply, submit, withdraw
from pdp.ingest.pipeline import ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.vault import IdentityVault

pytestmark = [pytest.mark.spark, pytest.mark.slow]

AS_OF = BUILT_AS_OF
TERRITORY = BUILT_TERRITORY


@pytest.fixture(scope="module")
def settings(built_territory: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the session's built territory: ingested, gold built, indicators published."""
    return var_settings(copy_var(built_territory, tmp_path_factory.mktemp("oppose var")))


@pytest.fixture(scope="module")
def territory(settings: Settings) -> Path:
    return settings.var_dir / "sources"


def consent(identity: dict[str, str], *, status: str = "active", provision: str = "deny") -> bytes:
    """A Consent as the DMP sends it: the patient contained, with the INS (NIR + traits)."""
    day, month, year = identity["birth_date"][8:], identity["birth_date"][5:7], identity["birth_date"][:4]
    return json.dumps({
        "resourceType": "Consent", "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "#p"},
        "dateTime": "2026-07-01T10:00:00+02:00",
        "contained": [{
            "resourceType": "Patient", "id": "p",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": identity["nir"]}],
            "name": [{"use": "official", "family": identity["birth_name"], "given": identity["first_names"].split()}],
            "gender": {"M": "male", "F": "female"}[identity["sex"]],
            "birthDate": f"{year}-{month}-{day}",
        }],
        "provision": {"type": provision},
    }).encode()


def a_pmsi_file_with(territory: Path, person: str) -> tuple[Path, set[str]]:
    links = list(csv.DictReader((territory / "ground_truth" / "record_links.csv").open(encoding="utf-8")))
    mine = [r for r in links if r["person_id"] == person and r["source"] == "pmsi"]
    return territory / mine[0]["file"], {r["record_id"] for r in mine if r["file"] == mine[0]["file"]}


def variant(source: Path, keep_ids: set[str], into: Path, *, nth: int = 1) -> None:
    """The same sender file minus the `nth` row of another person: new bytes, so the edge reads it again."""
    lines = source.read_bytes().splitlines(keepends=True)
    others = [i for i, line in enumerate(lines[1:], 1) if line.split(b";")[0].decode("latin-1") not in keep_ids]
    drop = others[nth - 1]
    target = into / "pmsi" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(lines[:drop] + lines[drop + 1:]))


def found(settings: Settings, pseudonyms: tuple[str, ...]) -> int:
    report = scan_lake(settings.lake_uri, detectors=[PseudonymDetector(pseudonyms)])
    return sum(f.cells for f in report.findings)


def test_ethics_sample_is_reproducible_pseudonymised_and_explained(
    spark: SparkSession, settings: Settings
) -> None:
    engine = make_engine(settings.db_url)
    create_all(engine)

    def draw(seed: int, n: int = 5) -> EthicsSample:
        return draw_sample(spark, engine, territory=TERRITORY, pyramid="t2d", stratum="1", n=n, seed=seed,
                           lake_root=settings.lake_uri)

    first, again, other = draw(7), draw(7), draw(8)
    assert first.pseudonyms == again.pseudonyms and len(first.pseudonyms) == 5
    assert first.pseudonyms != other.pseudonyms
    assert first.pseudonyms == sorted(first.pseudonyms, key=lambda p: rank(7, p))
    for record in first.records:
        assert [s["stratum"] for s in record["strata"] if s["pyramid"] == "t2d"] == ["1"]
        assert all(s["rule_id"] for s in record["strata"]), "every assignment names its rule"
        t2d = [p for p in record["populations"] if p["population"] == "t2d"]
        assert t2d and all(p["facts"] for p in t2d), "membership comes with the silver facts behind it"
        assert not {"nir", "birth_name", "first_names", "address", "phone"} & set(record)
    with pytest.raises(SampleError, match="territory"):
        draw_sample(spark, engine, territory="Nowhere", pyramid="t2d", stratum="1", n=1, seed=1,
                    lake_root=settings.lake_uri)


def test_opposition_end_to_end(
    spark: SparkSession, settings: Settings, territory: Path, tmp_path: Path
) -> None:
    engine = make_engine(settings.db_url)
    create_all(engine)
    store = KeyStore.from_settings(settings)
    truth = {r["person_id"]: r for r in csv.DictReader((territory / "ground_truth" / "persons.csv").open())}
    identities = {r["person_id"]: r for r in csv.DictReader((territory / "ground_truth" / "identities.csv").open())}
    person = next(p for p, r in truth.items() if r["t2d_coded"] == "1" and r["alive"] == "1"
                  and identities[p]["nir"] and identities[p]["nir"] == identities[p]["insured_nir"]
                  and any(link for link in [a_pmsi_file_with(territory, p)] if link[1]))

    # a Consent that is not an opposition is refused, with one line and no value
    with pytest.raises(ConsentError, match=r"provision\.type"):
        submit(consent(identities[person], provision="permit"), engine=engine, store=store)

    stratum = LakeTable(spark, "gold.stratum", lake_root=settings.lake_uri)
    create_audit_tables(engine)
    audit = AuditLog(engine)
    outcome = submit(consent(identities[person]), engine=engine, store=store, spark=spark,
                     lake_root=settings.lake_uri, audit=audit)
    pseudonyms = outcome.pseudonyms
    assert outcome.changed and outcome.gold and sum(t["rows_deleted"] for t in outcome.gold) > 0
    assert stratum.read().where(F.col("person_pseudonym").isin(list(pseudonyms))).count() == 0
    everyone = draw_sample(spark, engine, territory=TERRITORY, pyramid="t2d",
                           stratum=truth[person]["t2d_stratum_coded"], n=MAX_SAMPLE, seed=1,
                           lake_root=settings.lake_uri)
    assert not set(everyone.pseudonyms) & set(pseudonyms), "an opposed person was drawn for the ethics committee"
    assert OppositionRegistry(engine).opposed(list(pseudonyms)) == set(pseudonyms) & set(outcome.changed)
    # before apply the person is still in silver, bronze and gold history: the scan must see them
    assert found(settings, pseudonyms) > 0
    # a scoped rebuild (as the lab feed's) deletes by person id: the id must not reach the Delta log
    build_gold(spark, as_of=AS_OF, lake_root=settings.lake_uri, persons=[spark_xxhash64(p) for p in pseudonyms])
    ids = [r[0] for r in spark.sql(f"SELECT xxhash64('{pseudonyms[0]}')").collect()]
    assert ids == [spark_xxhash64(pseudonyms[0])]

    report = apply(spark=spark, engine=engine, store=store, lake_root=settings.lake_uri, audit=audit)
    assert report.persons == len(OppositionRegistry(engine).active()) and report.vault_rows >= 1
    by_table = {t["table"]: t for t in report.tables}
    assert by_table["silver.person"]["rows_deleted"] >= 1 and by_table["bronze.records"]["files_removed"] >= 1
    assert found(settings, pseudonyms) == 0, "a file of the lake still holds the erased pseudonym"
    assert IdentityVault(engine, store).get_many(list(pseudonyms)) == {}
    assert apply(spark=spark, engine=engine, store=store, lake_root=settings.lake_uri).persons == 0
    # the audit holds the proof: who, what, which pseudonyms, per table versions, rows and files
    (proof,) = audit.query(action="erasure")
    assert set(proof.data_ref) == set(report.pseudonyms) and proof.details["tables"] == report.tables
    assert [e.action for e in audit.query()] == ["opposition_submit", "erasure"]
    assert audit.verify().ok
    assert {t.action for t in audit.transparency(pseudonyms[0])} == {"opposition_submit", "erasure"}

    # new data about the opposed person are refused at the edge, counted, never landed
    source, record_ids = a_pmsi_file_with(territory, person)
    later = tmp_path / "later"
    variant(source, record_ids, later)
    refused = ingest_directory(later, spark=spark, settings=settings)
    assert refused.by_reason["OPPOSED"] == len(record_ids)
    assert all(f.balanced for f in refused.files if not f.skipped)
    assert found(settings, pseudonyms) == 0
    assert IdentityVault(engine, store).get_many(list(pseudonyms)) == {}

    # withdrawal: future data are used again
    withdrawn = withdraw(consent(identities[person], status="inactive"), engine=engine, store=store, audit=audit)
    assert set(withdrawn.changed) == set(outcome.changed)
    again = tmp_path / "again"
    variant(source, record_ids, again, nth=2)
    landed = ingest_directory(again, spark=spark, settings=settings)
    assert landed.by_reason.get("OPPOSED", 0) == 0
    assert found(settings, pseudonyms) > 0
