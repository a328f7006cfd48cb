"""PREM / PROM questionnaire responses at the edge, read as a clinician would check them: each line
of a small NDJSON file is scored by its questionnaire, or quarantined with the reason a data engineer
can act on; the identity reaches the edge only, and the response id lands as a keyed hash only.
No Spark: the parser and the edge run in-process (~0.1 s)."""

from __future__ import annotations

import base64
import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import parse_root

from pdp.config import Settings
from pdp.ingest import Quarantined, SourceRecord
from pdp.ingest.edge import BronzeRow, Edge
from pdp.pseudonym.keys import KeyStore
from pdp.semantic import AnswerError, SurveyDefinitionError, load_questionnaires

TODAY = date(2026, 6, 30)
NIR = "180017505600103"
PREM = "https://pdp.invalid/fhir/Questionnaire/prem_coordination|1"
PROM = "https://pdp.invalid/fhir/Questionnaire/prom_quality_of_life|1"


def response(**changes: Any) -> dict[str, Any]:
    """A completed PREM response of Jean Martin (born 1980-01-01), the INS in a contained Patient."""
    body: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse", "id": "portal-qr-0042", "questionnaire": PREM,
        "status": "completed", "authored": "2026-03-14T10:00:00+01:00",
        "contained": [{"resourceType": "Patient", "id": "p",
                       "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": NIR}],
                       "name": [{"use": "official", "family": "MARTIN", "given": ["Jean"]}],
                       "gender": "male", "birthDate": "1980-01-01",
                       "address": [{"use": "home", "line": ["3 rue des Lilas"], "postalCode": "59500"}]}],
        "subject": {"reference": "#p"},
        "item": [{"linkId": link, "answer": [{"valueCoding": {"code": code}}]} for link, code in (
            ("shared_information", "5"), ("appointments", "4"), ("listened_to", "3"), ("next_step", "2"))]
        + [{"linkId": "comment", "answer": [{"valueString": "Mon médecin, le Dr Durand, est formidable"}]}],
    }
    body.update(changes)
    return body


@pytest.fixture()
def key_store(tmp_path: Path) -> KeyStore:
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys",
                                            master_key=base64.b64encode(os.urandom(32)).decode("ascii")))
    store.init()
    return store


def _parse(tmp_path: Path, *lines: dict[str, Any] | str) -> tuple[list[SourceRecord], list[Quarantined]]:
    folder = tmp_path / "questionnaires"
    folder.mkdir()
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    (folder / "dmp.ndjson").write_text(text, encoding="utf-8")
    out = parse_root(tmp_path, today=TODAY)
    return out.records, out.quarantined


def test_a_completed_prem_is_scored_item_by_item_and_as_a_scale(tmp_path: Path) -> None:
    [record], quarantined = _parse(tmp_path, response())
    assert quarantined == []
    got = [(e.domain, e.code_system, e.code, e.start_date, e.value, e.status, e.source_value) for e in record.events]
    assert got == [
        ("survey", "PDP-SURVEY", "prem_coordination@1/shared_information", date(2026, 3, 14), 100.0, "completed", "5"),
        ("survey", "PDP-SURVEY", "prem_coordination@1/appointments", date(2026, 3, 14), 75.0, "completed", "4"),
        ("survey", "PDP-SURVEY", "prem_coordination@1/listened_to", date(2026, 3, 14), 50.0, "completed", "3"),
        ("survey", "PDP-SURVEY", "prem_coordination@1/next_step", date(2026, 3, 14), 25.0, "completed", "2"),
        ("survey", "PDP-SURVEY", "prem_coordination@1/score", date(2026, 3, 14), 62.5, "completed", PREM),
    ], "free text is read and dropped; the scale is the mean of the four answered items"
    assert record.identity.nir == NIR and record.identity.birth_name == "MARTIN"
    assert record.record_id == "portal-qr-0042"  # as sent by the parser: the edge lands it keyed


def test_a_prom_with_too_few_answers_keeps_its_items_but_has_no_scale_score(tmp_path: Path) -> None:
    items = [{"linkId": "mobility", "answer": [{"valueCoding": {"code": "2"}}]},
             {"linkId": "health_today", "answer": [{"valueInteger": 70}]}]
    [record], _ = _parse(tmp_path, response(questionnaire=PROM, status="amended", item=items))
    assert [(e.code, e.value, e.status) for e in record.events] == [
        ("prom_quality_of_life@1/mobility", 75.0, "amended"),
        ("prom_quality_of_life@1/health_today", 70.0, "amended"),
    ]


def test_groups_are_walked_through(tmp_path: Path) -> None:
    grouped = response(item=[{"linkId": "g1", "item": response()["item"]}])
    [record], _ = _parse(tmp_path, grouped)
    assert record.events[-1].code == "prem_coordination@1/score" and record.events[-1].value == 62.5


@pytest.mark.parametrize(("line", "reason", "message"), [
    (response(status="in-progress"), "SURVEY_STATUS", "QuestionnaireResponse.status: not completed or amended"),
    (response(status="stopped"), "SURVEY_STATUS", "QuestionnaireResponse.status: not completed or amended"),
    (response(status="entered-in-error"), "SURVEY_STATUS", "QuestionnaireResponse.status: not completed or amended"),
    (response(questionnaire=PREM.replace("|1", "|7")), "CODE_UNKNOWN",
     "QuestionnaireResponse.questionnaire: not a questionnaire in force"),
    (response(authored=None), "FIELD_MISSING", "QuestionnaireResponse.authored: no date"),
    (response(authored="2026-03"), "DATE_INVALID", "QuestionnaireResponse.authored: partial date"),
    (response(authored="2027-01-01"), "DATE_OUT_OF_RANGE",
     "QuestionnaireResponse.authored: date after the allowed maximum (default: today)"),
    (response(subject={"reference": "Patient/123"}), "IDENTITY_MISSING",
     "QuestionnaireResponse.subject: no contained Patient"),
    (response(item=[{"linkId": "next_step", "answer": [{"valueCoding": {"code": "7"}}]}]), "VALUE_INVALID",
     "QuestionnaireResponse.item next_step: answer code not among the options"),
    (response(item=[{"linkId": "mood", "answer": [{"valueCoding": {"code": "1"}}]}]), "VALUE_INVALID",
     "QuestionnaireResponse.item #1: not an item of prem_coordination@1"),
    (response(item=[{"linkId": "next_step", "answer": [{"valueCoding": {"code": "1"}}]},
                    {"linkId": "DUPONT_Jeanne_185027512345678", "answer": [{"valueCoding": {"code": "1"}}]}]),
     "VALUE_INVALID", "QuestionnaireResponse.item #2: not an item of prem_coordination@1"),
    (response(item=[{"linkId": "next_step", "answer": [{"valueInteger": 3}]}]), "VALUE_INVALID",
     "QuestionnaireResponse.item next_step: valueCoding.code expected"),
    (response(item=[{"linkId": "comment", "answer": [{"valueString": "rien"}]}]), "FIELD_MISSING",
     "QuestionnaireResponse.item: no answered item"),
    (response(resourceType="Bundle"), "FHIR_VALIDATION", "resourceType is not QuestionnaireResponse"),
    (response(status=7), "FHIR_VALIDATION", "QuestionnaireResponse.status: string_type"),
    ("{not json", "FHIR_JSON_INVALID", "line is not valid JSON"),
])
def test_a_bad_response_is_quarantined_with_its_reason_and_no_value(tmp_path: Path, line: Any, reason: str,
                                                                    message: str) -> None:
    if isinstance(line, dict):
        line = {k: v for k, v in line.items() if v is not None}
    records, quarantined = _parse(tmp_path, line, response(id="next"))
    assert [r.record_id for r in records] == ["next"], "the rest of the file lands"
    assert [(q.position, str(q.reason_code)) for q in quarantined] == [(1, reason)]
    assert quarantined[0].message.startswith(message.split(" (")[0])
    for value in (NIR, "MARTIN", "1980-01-01", "Durand", "portal-qr-0042"):
        assert value not in quarantined[0].message


def test_the_edge_keys_the_person_and_keeps_only_a_keyed_hash_of_the_response_id(tmp_path: Path, key_store) -> None:
    [record], _ = _parse(tmp_path, response())
    edge = Edge(key_store, today=TODAY)
    [row] = list(edge.process([record]))
    assert isinstance(row, BronzeRow) and row.person_pseudonym and row.record_id
    assert row.record_id.startswith("i") and "portal-qr-0042" not in row.record_id
    again = Edge(key_store, today=TODAY).process([record])
    assert next(iter(again)).record_id == row.record_id, "an amended response can be matched to its first version"
    landed = json.dumps([row.events, row.attributes, row.record_id, row.person_pseudonym], default=str)
    for value in (NIR, "MARTIN", "Jean", "1980-01-01", "3 rue des Lilas", "59500", "Durand", "formidable"):
        assert value not in landed, "an identity trait or free text would land"
    assert row.attributes["_birth_year"] == "1980"  # the quasi-identifiers every source carries, nothing more


def test_questionnaire_definitions_are_strict(tmp_path: Path) -> None:
    q = load_questionnaires()["prem_coordination"]
    with pytest.raises(AnswerError, match="answered twice"):
        q.score([{"linkId": "next_step", "answer": [{"valueCoding": {"code": "1"}}]}] * 2)
    source = Path(__file__).parents[2] / "pdp" / "semantic" / "questionnaires" / "prem_coordination.yml"
    (tmp_path / "prem_coordination.yml").write_text(source.read_text(encoding="utf-8") + "colour: blue\n",
                                                    encoding="utf-8")
    with pytest.raises(SurveyDefinitionError, match="colour"):
        load_questionnaires(tmp_path)


def test_every_fhir_parser_reads_its_patient_through_one_helper() -> None:
    """The contained-Patient reading and the fault rule live once, in the FHIR module both parsers use."""
    import inspect

    from pdp.ingest.parsers import fhir_ndjson, fhir_questionnaire
    from pdp.ingest.parsers.base import FileContext
    from pdp.ingest.registry import load_registry
    from pdp.ingest.validate import Invalid

    spec = load_registry().specs["questionnaires"]
    ctx = FileContext(spec=spec, file="questionnaires/x.ndjson", today=TODAY)
    patient, contained = fhir_ndjson.contained_subject(response())
    identity = fhir_ndjson.checked_patient(patient, contained, ctx, spec.parser_options, missing="no Patient")
    assert (identity.birth_name, identity.nir, identity.postcode) == ("MARTIN", NIR, "59500")
    patient, contained = fhir_ndjson.contained_subject(response(subject={"reference": "#other"}))
    with pytest.raises(Invalid) as fault:
        fhir_ndjson.checked_patient(patient, contained, ctx, spec.parser_options, missing="no Patient")
    assert (fault.value.reason, fault.value.message) == ("IDENTITY_MISSING", "no Patient")
    source = inspect.getsource(fhir_questionnaire)
    assert "ResourceIndex(" not in source and "except Invalid" not in source and "patient_identity(" not in source
