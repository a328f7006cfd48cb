"""`pdp ingest` end to end: a report about a person the vault already knows is de-identified with
the vault's names of that person, not only with its index row's.

The story: Jeanne DURAND married MARTIN-LEFEVRE. Her GP's export (first batch) gives both names;
the hospital's document-sharing index (second batch) gives her birth name only, and the letter
calls her by her used name — the name the generic recognizers leave when no title precedes it.

Both batches run the edge as Spark tasks (`PDP_EDGE_ENGINE=spark`, :mod:`pdp.ingest.spark_tasks`),
the executors opening the key store from a master key file and the vault's linkage view from the
store the settings name: the whole `pdp ingest` path of a cluster, in local mode (the other
in-process ingests run the worker-process engine).
"""

from __future__ import annotations

import base64
import json
import os
from datetime import date
from pathlib import Path

import pytest
from ingest_helpers import lake_settings
from pyspark.sql import SparkSession

from pdp.config import Settings
from pdp.ingest import silver
from pdp.ingest.pipeline import IngestReport, ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore
from pdp.synth.nir import make_nir

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BORN = date(1950, 3, 14)
NIR = make_nir("F", BORN, "75112", 123)
USED = "MARTIN-LEFEVRE"
LETTER = (
    "Compte rendu de consultation de diabétologie.\n"
    "Mme Jeanne MARTIN-LEFEVRE, née le 14/03/1950, est suivie pour un diabète de type 2.\n"
    "HbA1c à 7,4 %. Pas de rétinopathie.\n"
    "Dossier MARTIN-LEFEVRE transmis au médecin traitant.\n"
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("known-var")
    master = base64.b64encode(os.urandom(32)).decode("ascii")
    key_file = var / "master.key"
    key_file.write_text(master)
    key_file.chmod(0o600)
    s = lake_settings(var, master).model_copy(update={"master_key": None, "master_key_file": key_file,
                                                      "edge_engine": "spark"})
    KeyStore.from_settings(s).init()
    return s


def gp_bundle() -> dict:
    patient = {
        "resourceType": "Patient", "id": "p1",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": NIR}],
        "name": [{"use": "official", "family": "DURAND", "given": ["Jeanne"]},
                 {"use": "usual", "family": USED, "given": ["Jeanne"]}],
        "gender": "female", "birthDate": BORN.isoformat(),
    }
    condition = {
        "resourceType": "Condition", "id": "c1", "subject": {"reference": "urn:uuid:p1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11"}]},
        "recordedDate": "2024-01-10",
    }
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (patient, condition)]
    return {"resourceType": "Bundle", "id": "b1", "type": "collection", "entry": entries}


def reports(root: Path) -> None:
    (root / "reports" / "d1").mkdir(parents=True)
    (root / "reports" / "d1" / "D1.txt").write_text(LETTER, encoding="utf-8")
    (root / "reports" / "index.csv").write_text(
        "doc_id,file,doc_type,date,nir,birth_name,used_name,first_names,birth_date,sex\n"
        f"D1,reports/d1/D1.txt,consultation_note,2024-05-02,{NIR},DURAND,,Jeanne,{BORN.isoformat()},F\n",
        encoding="utf-8")


class NoteJobs:
    """Counts the silver.note builds of each batch (the spy on silver._notes)."""

    def __init__(self) -> None:
        self.calls: list[str] = []


@pytest.fixture(scope="module")
def note_jobs() -> NoteJobs:
    return NoteJobs()


@pytest.fixture(scope="module")
def gp_batch(spark: SparkSession, settings: Settings, note_jobs: NoteJobs,
             tmp_path_factory: pytest.TempPathFactory) -> IngestReport:
    """First batch: the GP's export, which tells the vault both of Jeanne's names."""
    root = tmp_path_factory.mktemp("gp-batch")
    (root / "gp").mkdir()
    (root / "gp" / "10001234567.ndjson").write_text(json.dumps(gp_bundle()) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        build_notes = silver._notes

        def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
            note_jobs.calls.append("gp")
            return build_notes(*args, **kwargs)

        patch.setattr(silver, "_notes", spy)
        return ingest_directory(root, spark=spark, settings=settings, workers=0)


def test_a_batch_without_reports_runs_no_note_job(gp_batch: IngestReport, note_jobs: NoteJobs) -> None:
    assert gp_batch.totals()[1] == 2 and gp_batch.vault_records == 1  # the Patient and its Condition
    assert gp_batch.parse_engine == "spark"
    assert note_jobs.calls == [] and gp_batch.silver["note"] == 0


def test_a_known_persons_used_name_is_redacted_in_silver_note(
    gp_batch: IngestReport, spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    from pyspark.sql import DataFrame

    def no_probe(self: DataFrame) -> bool:
        raise AssertionError("silver.note needs no emptiness probe: the batch knows it landed reports")

    hospital = tmp_path / "hospital-batch"
    reports(hospital)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(silver, "_locations", lambda *a, **k: 0)  # its own probe is not under test here
        patch.setattr(DataFrame, "isEmpty", no_probe)
        second = ingest_directory(hospital, spark=spark, settings=settings, workers=0)
    assert second.totals()[1] == 1 and second.silver["note"] == 1 and second.parse_engine == "spark"

    (note,) = LakeTable(spark, "silver.note", lake_root=settings.lake_uri).read().collect()
    assert USED not in note.note_text and "MARTIN" not in note.note_text.upper()
    assert "Dossier <NOM> transmis" in note.note_text, "the vault's used name is the patient's own <NOM>"
    assert "DURAND" not in note.note_text and NIR not in note.note_text
    pseudonyms = {r.person_pseudonym for r in LakeTable(spark, "bronze.records", lake_root=settings.lake_uri)
                  .read().select("person_pseudonym").collect()}
    assert pseudonyms == {note.person_pseudonym}, "the report landed as the person the GP record made"
