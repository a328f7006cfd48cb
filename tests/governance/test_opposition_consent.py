"""A Consent the DMP sends: what is refused, and that no refusal quotes what the sender wrote.

A status and an element name are the sender's text: ``"status": "Jeanne DUPONT 0612345678"`` or an
unknown key ``"DUPONT_Jeanne"`` would put a person in an HTTP 422 body, a CLI error line and the
logs if a message quoted them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pdp.governance.opposition import ConsentError, parse_consent

NIR13 = "1850275123456"
NIR = NIR13 + f"{97 - int(NIR13) % 97:02d}"
SECRETS = ("Jeanne", "DUPONT", "0612345678", NIR)


def consent(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "#p"},
        "contained": [{
            "resourceType": "Patient", "id": "p",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": NIR}],
            "name": [{"use": "official", "family": "DUPONT", "given": ["Jeanne"]}],
            "gender": "female", "birthDate": "1985-02-11",
        }],
        "provision": {"type": "deny"},
    }
    document.update(changes)
    return document


def refusal(document: dict[str, Any]) -> str:
    with pytest.raises(ConsentError) as caught:
        parse_consent(json.dumps(document).encode())
    message = str(caught.value)
    assert "\n" not in message
    assert not [s for s in SECRETS if s in message], message
    return message


def test_a_valid_consent_is_read() -> None:
    request = parse_consent(json.dumps(consent()).encode())
    assert (request.status, request.provision) == ("active", "deny")
    assert request.raw_identity.birth_name == "DUPONT"


@pytest.mark.parametrize("status", ["Jeanne DUPONT 0612345678", "DUPONT", "", None, 3])
def test_a_status_outside_the_fhir_codes_is_refused_without_quoting_it(status: object) -> None:
    # code-shaped text passes the model (a code is any text without leading or double spaces)
    assert "Consent.status" in refusal(consent(status=status))


def test_a_code_shaped_status_that_names_a_person_is_not_a_fhir_status() -> None:
    message = refusal(consent(status="Jeanne DUPONT 0612345678"))
    assert message.startswith("Consent.status: not a FHIR consent status ("), message


@pytest.mark.parametrize("status", ["inactive", "entered-in-error"])
def test_a_fhir_status_other_than_active_reads_for_a_withdrawal(status: str) -> None:
    assert parse_consent(json.dumps(consent(status=status)).encode()).status == status


def test_an_unknown_element_is_located_without_its_name() -> None:
    message = refusal(consent(DUPONT_Jeanne=1))
    assert message == "Consent: fails FHIR R4 validation at Consent.?"


def test_an_unknown_element_deep_in_the_patient_is_located_without_its_name() -> None:
    document = consent()
    document["contained"][0]["name"][0]["Jeanne_DUPONT_0612345678"] = True
    message = refusal(document)
    assert message.startswith("Consent: fails FHIR R4 validation at Consent.contained[0]"), message
    assert message.endswith(".?"), message


def test_a_wrong_type_is_located_by_the_models_own_element_names() -> None:
    assert refusal(consent(dateTime=["DUPONT"])) == "Consent: fails FHIR R4 validation at Consent.dateTime"
