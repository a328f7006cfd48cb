"""FHIR R4 as servers and generators send it, small: two patients' resources, as a Bundle or a Bulk export.

Patient A (NIR) has a maiden name, two given names, a prefix, a nickname and a two-line address;
patient B has no NIR (an MRN of another system) and a birth time. Their resources cover what the
FHIR parsers read — and one of each fault a bundle entry can have. ``EXPECTED`` says, per
resource, what must become of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCT, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
RXNORM, ATC = "http://www.nlm.nih.gov/research/umls/rxnorm", "http://www.whocc.no/atc"
NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
NIR_A = "257035935012371"
MRN_B = "MRN-778899"

CODING_SYSTEMS = {SCT: "SNOMED", LOINC: "LOINC", ATC: "ATC", RXNORM: "RXNORM",
                  "http://terminology.hl7.org/CodeSystem/v3-ActCode": "HL7-ACTCODE"}


def _cc(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def _clinical(status: str) -> dict[str, Any]:
    return {"clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", status),
            "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed")}


def patient_a() -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": "pat-a",
        "identifier": [{"system": NIR_SYSTEM, "value": NIR_A}, {"system": "https://hospital.example/mrn",
                                                               "value": "MRN-000111"}],
        "name": [
            {"use": "official", "family": "MARTIN", "given": ["Élise", "Marie"], "prefix": ["Mme"]},
            {"use": "maiden", "family": "DURAND"},
            {"use": "nickname", "given": ["Lisette"]},
        ],
        "gender": "female", "birthDate": "1957-03-12",
        "address": [{"use": "home", "line": ["12 rue des Lilas", "Bâtiment B"], "city": "Douai",
                     "postalCode": "59500"}],
        "telecom": [{"system": "phone", "value": "0601020304"}],
    }


def patient_b() -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": "pat-b",
        "identifier": [{"system": "https://hospital.example/mrn", "value": MRN_B}],
        "name": [{"use": "official", "family": "LEROY", "given": ["Paul", "Henri"], "suffix": ["Jr"]}],
        "gender": "male", "birthDate": "1948-06-02",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                      "valueDateTime": "1948-06-02T08:30:00+01:00"}]},
        "address": [{"line": ["3 place du Marché"], "postalCode": "59500"}],
    }


def resources(patient_a_ref: str, patient_b_ref: str, encounter_ref: str, medication_ref: str,
              ) -> list[tuple[dict[str, Any], str]]:
    """Every clinical resource, with what must become of it (``land`` or a reason code)."""
    a, b = {"reference": patient_a_ref}, {"reference": patient_b_ref}
    encounter = {"reference": encounter_ref}
    return [
        ({"resourceType": "Encounter", "id": "enc-1", "status": "finished",
          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
          "type": [_cc(SCT, "185349003", "Encounter for check up")], "subject": a,
          "period": {"start": "2024-05-02T09:00:00+02:00", "end": "2024-05-02T09:30:00+02:00"}}, "land"),
        ({"resourceType": "Condition", "id": "cond-t2d", **_clinical("active"), "subject": a, "encounter": encounter,
          "code": _cc(SCT, "44054006", "Diabetes mellitus type 2"), "onsetDateTime": "2019-02-11T10:00:00+01:00"},
         "land"),
        ({"resourceType": "Condition", "id": "cond-neuro", **_clinical("active"), "subject": a,
          "code": _cc(SCT, "368581000119106", "Neuropathy due to type 2 diabetes mellitus"),
          "onsetDateTime": "2023-09-01"}, "land"),
        ({"resourceType": "Condition", "id": "cond-bronchitis", **_clinical("resolved"), "subject": a,
          "code": _cc(SCT, "10509002", "Acute bronchitis"), "onsetDateTime": "2022-01-10",
          "abatementDateTime": "2022-01-24"}, "land"),  # outside the concept sets: unmapped, kept
        ({"resourceType": "Condition", "id": "cond-refuted", "subject": a,
          "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "inactive"),
          "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted"),
          "code": _cc(SCT, "84114007", "Heart failure"), "onsetDateTime": "2023-03-03"}, "FHIR_NOT_A_FACT"),
        ({"resourceType": "Condition", "id": "cond-typo", **_clinical("active"), "subject": a,
          "code": _cc(SCT, "44054007"), "onsetDateTime": "2023-03-03"}, "CODE_UNKNOWN"),  # check digit off
        ({"resourceType": "Observation", "id": "obs-hba1c", "status": "final", "subject": a, "encounter": encounter,
          "code": _cc(LOINC, "4548-4", "Hemoglobin A1c"), "effectiveDateTime": "2024-05-02T09:10:00+02:00",
          "valueQuantity": {"value": 7.2, "unit": "%", "system": UCUM, "code": "%"}}, "land"),
        ({"resourceType": "Observation", "id": "obs-bp", "status": "final", "subject": a, "encounter": encounter,
          "code": _cc(LOINC, "85354-9", "Blood pressure panel"), "effectiveDateTime": "2024-05-02",
          "component": [
              {"code": _cc(LOINC, "8480-6"), "valueQuantity": {"value": 142, "unit": "mmHg", "system": UCUM,
                                                                "code": "mm[Hg]"}},
              {"code": _cc(LOINC, "8462-4"), "valueQuantity": {"value": 88, "unit": "mmHg", "system": UCUM,
                                                                "code": "mm[Hg]"}},
          ]}, "land"),
        ({"resourceType": "Observation", "id": "obs-smoking", "status": "final", "subject": a,
          "code": _cc(LOINC, "72166-2", "Tobacco smoking status"), "effectiveDateTime": "2024-05-02",
          "valueCodeableConcept": _cc(SCT, "266919005", "Never smoked tobacco")}, "land"),
        ({"resourceType": "Observation", "id": "obs-smoking-typed", "status": "final", "subject": a,
          "code": _cc(LOINC, "72166-2", "Tobacco smoking status"), "effectiveDateTime": "2024-05-02",
          "valueCodeableConcept": _cc("https://sia.invalid/local", "Jeanne DUPONT 0612345678")}, "CODE_UNKNOWN"),
        ({"resourceType": "Observation", "id": "obs-absent", "status": "final", "subject": a,
          "code": _cc(LOINC, "39156-5", "BMI"), "effectiveDateTime": "2024-05-02",
          "dataAbsentReason": _cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed")},
         "FHIR_NOT_A_FACT"),
        ({"resourceType": "Observation", "id": "obs-invalid", "status": "final", "subject": a,
          "code": _cc(LOINC, "29463-7"), "effectiveDateTime": "2024-05-02",
          "valueQuantity": {"value": "heavy", "unit": "kg"}}, "FHIR_VALIDATION"),
        ({"resourceType": "MedicationRequest", "id": "mr-metformin", "status": "active", "intent": "order",
          "subject": a, "medicationReference": {"reference": medication_ref}, "authoredOn": "2024-05-02"}, "land"),
        ({"resourceType": "MedicationRequest", "id": "mr-lisinopril", "status": "active", "intent": "order",
          "subject": a, "medicationCodeableConcept": _cc(RXNORM, "314076", "lisinopril 10 MG Oral Tablet"),
          "authoredOn": "2024-05-02"}, "land"),  # RxNorm: kept, unmapped
        ({"resourceType": "Procedure", "id": "proc-mono", "status": "completed", "subject": a,
          "code": _cc(SCT, "401191002", "Monofilament foot sensation test"),
          "performedPeriod": {"start": "2024-05-02T09:15:00+02:00", "end": "2024-05-02T09:20:00+02:00"}}, "land"),
        ({"resourceType": "Observation", "id": "obs-weight-b", "status": "final", "subject": b,
          "code": _cc(LOINC, "29463-7", "Body weight"), "effectiveDateTime": "2024-06-10",
          "valueQuantity": {"value": 81.5, "unit": "kg", "system": UCUM, "code": "kg"}}, "land"),
        ({"resourceType": "Condition", "id": "cond-b-hf", **_clinical("active"), "subject": b,
          "code": _cc(SCT, "84114007", "Heart failure"), "onsetDateTime": "2021-11-05"}, "land"),
        ({"resourceType": "Condition", "id": "cond-orphan", **_clinical("active"),
          "subject": {"reference": "Patient/nobody"}, "code": _cc(SCT, "38341003"), "onsetDateTime": "2021-11-05"},
         "IDENTITY_MISSING"),
    ]


def medication() -> dict[str, Any]:
    return {"resourceType": "Medication", "id": "med-metformin",
            "code": {"coding": [{"system": RXNORM, "code": "860975"}, {"system": ATC, "code": "A10BA02"}]}}


def claim() -> dict[str, Any]:  # a resource type the platform does not read: skipped
    return {"resourceType": "Claim", "id": "claim-1", "status": "active", "use": "claim",
            "type": _cc("http://terminology.hl7.org/CodeSystem/claim-type", "professional"),
            "patient": {"reference": "Patient/pat-a"}, "created": "2024-05-02",
            "provider": {"display": "Cabinet"}, "priority": _cc("http://terminology.hl7.org/CodeSystem/processpriority",
                                                                 "normal"),
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "AMO"}}]}


def transaction_bundle() -> tuple[dict[str, Any], list[str]]:
    """A transaction Bundle with ``urn:uuid:`` references, and the expected fate of each entry (in order)."""
    uuid = {"a": "urn:uuid:6f1c0d6e-0000-4000-8000-00000000000a", "b": "urn:uuid:6f1c0d6e-0000-4000-8000-00000000000b",
            "enc": "urn:uuid:6f1c0d6e-0000-4000-8000-0000000000e1",
            "med": "urn:uuid:6f1c0d6e-0000-4000-8000-0000000000d1"}
    entries: list[tuple[dict[str, Any], str, str]] = [
        (patient_a(), uuid["a"], "land"), (patient_b(), uuid["b"], "land"), (medication(), uuid["med"], "skip"),
        (claim(), "urn:uuid:6f1c0d6e-0000-4000-8000-0000000000c1", "skip"),
    ]
    for index, (resource, fate) in enumerate(resources(uuid["a"], uuid["b"], uuid["enc"], uuid["med"])):
        full_url = uuid["enc"] if resource["id"] == "enc-1" else f"urn:uuid:6f1c0d6e-0000-4000-8000-{index:012d}"
        entries.append((resource, full_url, fate))
    bundle = {"resourceType": "Bundle", "id": "bundle-1", "type": "transaction", "entry": [
        {"fullUrl": url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        for resource, url, _ in entries
    ]}
    return bundle, [fate for _, _, fate in entries]


def write_bundle(path: Path, bundle: dict[str, Any], *, pretty: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bundle, ensure_ascii=False, indent=2 if pretty else None), encoding="utf-8")
    return path


def write_bulk_export(directory: Path) -> dict[str, list[str]]:
    """A Bulk Data export (one NDJSON file per resource type, relative references); the expected fates per file."""
    directory.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[tuple[dict[str, Any], str]]] = {"Patient": [(patient_a(), "land"), (patient_b(), "land")]}
    for resource, fate in resources("Patient/pat-a", "Patient/pat-b", "Encounter/enc-1", "Medication/med-metformin"):
        by_type.setdefault(resource["resourceType"], []).append((resource, fate))
    by_type["Medication"] = [(medication(), "skip")]
    for kind, items in by_type.items():
        lines = [json.dumps(resource, ensure_ascii=False) for resource, _ in items]
        (directory / f"{kind}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {f"{kind}.ndjson": [fate for _, fate in items] for kind, items in by_type.items()}
