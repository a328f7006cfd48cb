"""Patient feedback (PREM / PROM) end to end on the session's lake: the synthetic DMP responses went
through the edge into silver (pseudonymised), gold.indicator publishes them per stratum under
disclosure control, the territory report shows the table, and ``POST /dmp/questionnaire-responses``
takes a response into the edge's inbox (202 with a receipt) or refuses it with the edge's reason (4xx)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pdp.api.schemas import _QR_EXAMPLE
from tests.api.conftest import TERRITORY, headers, patient

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # the session's gold lake is built with Spark

ROUTE = "/dmp/questionnaire-responses"


def _response(identity: dict[str, str], **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(_QR_EXAMPLE)
    body["contained"] = [dict(patient(identity), id="patient")]
    body.update(changes)
    return body


def _dmp(token) -> dict[str, str]:
    return headers(token("dmp", ["*"]), "patient_feedback")


def test_synthetic_responses_land_in_silver_without_identity(gold_lake: Path, territory_sources: Path,
                                                             identities: dict[str, dict[str, str]]) -> None:
    from deltalake import DeltaTable

    rows = DeltaTable(str(gold_lake / "silver" / "survey_answer")).to_pandas()
    sent = (territory_sources / "questionnaires" / "dmp.ndjson").read_text(encoding="utf-8").splitlines()
    assert sent and rows["record_hash"].nunique() == len(sent)
    assert set(rows["vocabulary"]) == {"PDP-SURVEY"} and set(rows["status"]) <= {"completed", "amended"}
    assert rows["source_code"].str.endswith("/score").sum() == len(sent)
    assert rows["value"].between(0, 100).all()
    text = rows.astype(str).to_csv()
    bronze = DeltaTable(str(gold_lake / "bronze" / "records")).to_pandas()
    bronze = bronze[bronze["source"] == "questionnaires"]
    ids = {json.loads(line)["id"] for line in sent}
    assert len(bronze) == len(sent) and not ids & set(bronze["record_id"]), "a response id landed in clear"
    assert bronze["record_id"].str.startswith("i").all(), "the response id is kept as a keyed hash"
    respondents = {json.loads(line)["contained"][0]["birthDate"] for line in sent}
    for ident in identities.values():
        if ident["birth_date"] in respondents:
            for trait in (ident["nir"], ident["birth_name"], ident["birth_date"]):
                assert not trait or trait not in text, "an identity trait reached silver.survey_answer"
            assert not ident["nir"] or ident["nir"] not in bronze.astype(str).to_csv()


def test_indicator_publishes_respondents_per_stratum_under_disclosure_control(gold_lake: Path) -> None:
    from deltalake import DeltaTable

    rows = DeltaTable(str(gold_lake / "gold" / "indicator")).to_pandas()
    survey = rows[rows["measure"].isin(["survey_respondents", "survey_mean_score"])]
    assert not survey.empty and set(survey["status"]) <= {"prem_coordination@1", "prom_quality_of_life@1"}
    counts = survey[survey["measure"] == "survey_respondents"]
    published = counts["value"].dropna()
    assert not published.between(1, 10).any(), "a respondent count of 1 to 10 is published"
    assert (counts["value"].isna() == counts["suppressed"]).all()
    means = survey[survey["measure"] == "survey_mean_score"]
    shown = {(r.topic, r.status, r.category) for r in counts.itertuples() if r.value is not None and r.value > 0}
    assert {(r.topic, r.status, r.category) for r in means.itertuples()} <= shown, "a mean beside a hidden count"


def test_report_shows_patient_feedback(client, token) -> None:
    response = client.get(f"/siop/{TERRITORY}/report",
                          headers=headers(token("siop_platform", [TERRITORY]), "quality_review"))
    assert response.status_code == 200
    assert "Retours des patients (PREM / PROM)" in response.text
    assert "prem_coordination@1" in response.text or "Aucune réponse" in response.text


def test_a_response_goes_to_the_inbox_with_a_receipt_and_is_audited(app, client, token, people, api_settings) -> None:
    identity = people[2]
    response = client.post(ROUTE, json=_response(identity), headers=_dmp(token))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["questionnaires"] == ["prem_coordination@1"]
    assert body["answers"] == 6  # five items and the scale score
    inbox = Path(api_settings.var_dir) / "inbox" / "questionnaires" / f"inbox-{body['receipt']}.ndjson"
    assert inbox.is_file() and (inbox.stat().st_mode & 0o077) == 0, "nominative: readable by the platform only"
    assert json.loads(inbox.read_text(encoding="utf-8"))["contained"][0]["birthDate"] == identity["birth_date"]
    assert identity["nir"] not in response.text
    entries = app.state.ctx.audit.query(purpose="patient_feedback", action="data_access")
    assert any(e.details.get("receipt") == body["receipt"] for e in entries), "the submission is not audited"


@pytest.mark.parametrize(("change", "reason", "code"), [
    ({"status": "in-progress"}, "SURVEY_STATUS", 422),
    ({"status": "entered-in-error"}, "SURVEY_STATUS", 422),
    ({"questionnaire": "https://pdp.invalid/fhir/Questionnaire/unknown|1"}, "CODE_UNKNOWN", 422),
    ({"item": [{"linkId": "next_step", "answer": [{"valueCoding": {"code": "9"}}]}]}, "VALUE_INVALID", 422),
    ({"authored": "2099-01-01T10:00:00+01:00"}, "DATE_OUT_OF_RANGE", 422),
    ({"authored": "2025-02-30"}, "DATE_INVALID", 422),  # an impossible date, whatever the element
    ({"subject": {"reference": "#nobody"}}, "IDENTITY_MISSING", 422),
    ({"resourceType": "Consent"}, "FHIR_VALIDATION", 422),
])
def test_a_response_the_edge_would_quarantine_is_refused_with_its_reason(client, token, people, change: dict,
                                                                         reason: str, code: int) -> None:
    identity = people[2]
    response = client.post(ROUTE, json=_response(identity, **change), headers=_dmp(token))
    assert response.status_code == code, response.text
    assert response.json()["detail"]["reason"] == reason
    for trait in (identity["nir"], identity["birth_name"]):
        assert trait not in response.text


def test_a_malformed_body_and_a_wrong_purpose_are_refused(client, token) -> None:
    assert client.post(ROUTE, json={"status": "completed"}, headers=_dmp(token)).status_code == 422
    assert client.post(ROUTE, json=_QR_EXAMPLE,
                       headers=headers(token("dmp", ["*"]), "citizen_information")).status_code == 403
    assert client.post(ROUTE, json=_QR_EXAMPLE,
                       headers=headers(token("siop_platform", [TERRITORY]), "quality_review")).status_code == 403
