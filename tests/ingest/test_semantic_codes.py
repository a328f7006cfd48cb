"""Code syntax checks (pdp.semantic.codes), read as tables: what each code system accepts and refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pdp.semantic import CODE_SYSTEMS, validate_code

VALID = [
    ("CIM-10", "E11.9"), ("CIM-10", "I10"), ("CIM-10", "L97"), ("CIM-10", "Z99.2"), ("CIM-10", "U07.1"),
    ("CCAM", "DEQP003"), ("CCAM", "JVJF004"),
    ("LOINC", "4548-4"), ("LOINC", "62238-1"), ("LOINC", "33762-6"), ("LOINC", "8480-6"),
    ("ATC", "A10BA02"), ("ATC", "A10BA"), ("ATC", "A10B"), ("ATC", "A10"), ("ATC", "A"),
    ("CIP13", "3400963160969"), ("CIP13", "3400930001233"),
    ("SNOMED", "185349003"), ("SNOMED", "401191002"), ("SNOMED", "419099009"),
    ("UCUM", "mm[Hg]"), ("UCUM", "mL/min/{1.73_m2}"),
    ("PMSI-UNIT", "MCO"), ("PMSI-UNIT", "HAD"),
    ("HL7-ACTCODE", "AMB"), ("HL7-ACTCODE", "IMP"),
]  # fmt: skip

INVALID = [
    ("CIM-10", "E119", "no dot before the subcategory"),
    ("CIM-10", "e11.9", "lower case"),
    ("CIM-10", "E11.999", "three characters after the dot"),
    ("CIM-10", "11.9", "no chapter letter"),
    ("CCAM", "DEQP03", "six characters"),
    ("CCAM", "deqp003", "lower case"),
    ("LOINC", "4548-5", "wrong check digit"),
    ("LOINC", "4548", "no check digit"),
    ("LOINC", "12345678-9", "eight digits"),
    ("ATC", "Z10BA02", "Z is no anatomical group"),
    ("ATC", "A10BA2", "one digit at level 5"),
    ("ATC", "A1", "one digit at level 2"),
    ("CIP13", "3400963160968", "wrong EAN-13 check digit"),
    ("CIP13", "340096316096", "twelve digits"),
    ("SNOMED", "185349004", "wrong Verhoeff check digit"),
    ("SNOMED", "12345", "five digits"),
    ("SNOMED", "0185349003", "leading zero"),
    ("UCUM", "mm Hg", "space"),
    ("PMSI-UNIT", "URG", "not a PMSI field"),
    ("HL7-ACTCODE", "amb", "lower case"),
    ("HL7-ACTCODE", "Dr DUPONT", "not an encounter class"),
]


@pytest.mark.parametrize(("system", "code"), VALID)
def test_valid_codes_pass(system: str, code: str) -> None:
    assert validate_code(system, code)


@pytest.mark.parametrize(("system", "code", "why"), INVALID, ids=[f"{s} {w}" for s, _, w in INVALID])
def test_invalid_codes_fail(system: str, code: str, why: str) -> None:
    assert not validate_code(system, code)


# Published SNOMED CT concept ids (international release, and the US extension's 1000119xxx ids),
# as FHIR senders and synthetic-patient generators write them: an independent reference for the
# Verhoeff check, not the codes our own generator was checked with.
PUBLISHED_SNOMED = [
    ("162864005", "Body mass index 30+ - obesity (finding)"),
    ("368581000119106", "Neuropathy due to type 2 diabetes mellitus (disorder)"),
    ("44054006", "Diabetes mellitus type 2 (disorder)"),
    ("46635009", "Diabetes mellitus type 1 (disorder)"),
    ("84114007", "Heart failure (disorder)"),
    ("4855003", "Retinopathy due to diabetes mellitus (disorder)"),
    ("230572002", "Neuropathy due to diabetes mellitus (disorder)"),
    ("371087003", "Ulcer of foot due to diabetes mellitus (disorder)"),
    ("127013003", "Disorder of kidney due to diabetes mellitus (disorder)"),
    ("38341003", "Hypertensive disorder (disorder)"),
    ("59621000", "Essential hypertension (disorder)"),
    ("43396009", "Hemoglobin A1c measurement (procedure)"),
    ("88805009", "Chronic congestive heart failure (disorder)"),
    ("1551000119108", "Nonproliferative diabetic retinopathy due to type 2 diabetes mellitus (disorder)"),
]


@pytest.mark.parametrize(("code", "term"), PUBLISHED_SNOMED, ids=[t for _, t in PUBLISHED_SNOMED])
def test_published_snomed_ids_pass_the_verhoeff_check(code: str, term: str) -> None:
    assert validate_code("SNOMED", code)


CORRUPTED_SNOMED = [
    ("162864006", "last digit changed"),
    ("162864500", "check digit and the digit before swapped"),
    ("126864005", "two digits transposed"),
    ("368581000119107", "last digit changed (extension id)"),
    ("368581000191106", "two digits transposed (extension id)"),
    ("48114007", "first two digits transposed"),
    ("4855008", "last digit changed"),
]


@pytest.mark.parametrize(("code", "why"), CORRUPTED_SNOMED, ids=[w + " " + c for c, w in CORRUPTED_SNOMED])
def test_corrupted_snomed_ids_fail(code: str, why: str) -> None:
    assert not validate_code("SNOMED", code)


def test_every_snomed_id_of_the_concept_sets_is_valid() -> None:
    from pdp.semantic.concepts import concept_sets

    codes = [code for sets in concept_sets().values() for code in sets.get("SNOMED", [])]
    assert len(codes) > 20
    assert [code for code in codes if not validate_code("SNOMED", code)] == []


def test_every_code_of_the_synthetic_catalog_is_valid() -> None:
    catalog = yaml.safe_load((Path(__file__).resolve().parents[2] / "pdp/synth/catalog.yml").read_text("utf-8"))
    systems = {"diagnoses": "CIM-10", "measurements": "LOINC", "drugs": "ATC"}
    checked = 0
    for section, entries in catalog.items():
        if not isinstance(entries, dict):
            continue
        for entry in entries.values():
            system = entry.get("system") or systems[section]
            assert validate_code(system, str(entry["code"])), (system, entry["code"])
            checked += 1
    assert checked > 50


def test_an_unknown_system_is_not_silently_valid_or_invalid() -> None:
    assert "SOCIAL-REFERRAL" not in CODE_SYSTEMS
    with pytest.raises(KeyError):
        validate_code("SOCIAL-REFERRAL", "anything")
