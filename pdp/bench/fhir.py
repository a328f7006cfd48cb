"""`pdp bench fhir`: FHIR R4 Bundle JSON through parse and edge, per core, full validation.

What it measures: MB of FHIR JSON and resources per CPU-second (one process: per core) through
the parser (JSON decoding, every read resource validated by its R4B model, extraction, code
checks) and the edge (identity normalisation, keyed pseudonym, keyed record hash): the
``fhir_bundle_json`` format, one Bundle per file. Reference, measured in the same run on the
very same bundles put on one line each: the ``fhir_bundle_ndjson`` format (GP exports), which
reads each line's Bundle the same way, resource by resource (until issue 13 it validated each
line's Bundle whole: 0.3 MB/s on a loaded machine in the issue's first try, ~4 000 resources/s
here). Lake writes are not included (Spark's share is measured by ``pdp bench ingest``).

The bundles look like a generator's: one patient each, years of GP visits with vital signs
(blood pressure with components), lab results, problems, prescriptions by Medication reference,
procedures, ``urn:uuid:`` references, pretty-printed. Resource types the platform does not read
(claims) are left out on purpose: they are skipped unvalidated and would flatter the MB/s.
`PDP_BENCH_FHIR_PATIENTS` (default 40) and `PDP_BENCH_FHIR_VISITS` (default 60 per patient).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pdp.bench import setting

_SCT, _LOINC, _UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
_RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_CODING_SYSTEMS = {_SCT: "SNOMED", _LOINC: "LOINC", _RXNORM: "RXNORM",
                   "http://terminology.hl7.org/CodeSystem/v3-ActCode": "HL7-ACTCODE"}
_CONDITIONS = [("44054006", "Diabetes mellitus type 2 (disorder)"), ("59621000", "Essential hypertension (disorder)"),
               ("162864005", "Body mass index 30+ - obesity (finding)"),
               ("368581000119106", "Neuropathy due to type 2 diabetes mellitus (disorder)"),
               ("10509002", "Acute bronchitis (disorder)")]
_LABS = [("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 5.5, 9.5),
         ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 200),
         ("29463-7", "Body Weight", "kg", 55, 120), ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 19, 40)]


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _letters(index: int) -> str:
    return "".join(chr(65 + (index // 26**k) % 26) for k in range(4))


def _bundle(rng: random.Random, index: int, visits: int) -> dict[str, Any]:
    """One patient's transaction Bundle, generator-style."""
    def urn() -> str:
        return f"urn:uuid:{rng.getrandbits(128):032x}"

    patient_url = urn()
    entries: list[dict[str, Any]] = [{"fullUrl": patient_url, "resource": {
        "resourceType": "Patient", "id": patient_url[9:], "meta": {"profile": [
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Generated</div>"},
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": patient_url[9:]},
                       {"type": _cc("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                        "system": "http://hospital.smarthealthit.org", "value": patient_url[9:]}],
        "name": [{"use": "official", "family": f"NOM{_letters(index)}", "given": ["Jeanne", "Marie"],
                  "prefix": ["Mrs."]},
                 {"use": "maiden", "family": f"NAISS{_letters(index)}", "given": ["Jeanne", "Marie"]}],
        "telecom": [{"system": "phone", "value": "555-000-0000", "use": "home"}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": f"{rng.randint(1930, 1990)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [{"line": [f"{rng.randint(1, 900)} Rue Principale", "Apt 2"], "city": "Douai",
                     "postalCode": "59500", "country": "FR"}],
        "maritalStatus": _cc("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married"),
        "communication": [{"language": _cc("urn:ietf:bcp:47", "fr-FR", "French")}]}}]
    medication_url = urn()
    entries.append({"fullUrl": medication_url, "resource": {
        "resourceType": "Medication", "id": medication_url[9:], "status": "active",
        "code": _cc(_RXNORM, "860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet")}})
    subject = {"reference": patient_url}
    day = date(2010, 1, 4)
    for _ in range(visits):
        day += timedelta(days=rng.randint(20, 80))
        stamp = f"{day.isoformat()}T09:{rng.randint(0, 59):02d}:00+01:00"
        encounter_url = urn()
        encounter = {"reference": encounter_url}
        entries.append({"fullUrl": encounter_url, "resource": {
            "resourceType": "Encounter", "id": encounter_url[9:], "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [_cc(_SCT, "185349003", "Encounter for check up (procedure)")], "subject": subject,
            "period": {"start": stamp, "end": stamp}}})
        entries.append({"fullUrl": urn(), "resource": {
            "resourceType": "Observation", "id": urn()[9:], "status": "final",
            "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs",
                             "vital-signs")],
            "code": _cc(_LOINC, "85354-9", "Blood pressure panel with all children optional"),
            "subject": subject, "encounter": encounter, "effectiveDateTime": stamp, "issued": stamp,
            "component": [
                {"code": _cc(_LOINC, "8480-6", "Systolic Blood Pressure"),
                 "valueQuantity": {"value": rng.randint(105, 170), "unit": "mm[Hg]", "system": _UCUM,
                                   "code": "mm[Hg]"}},
                {"code": _cc(_LOINC, "8462-4", "Diastolic Blood Pressure"),
                 "valueQuantity": {"value": rng.randint(60, 100), "unit": "mm[Hg]", "system": _UCUM,
                                   "code": "mm[Hg]"}}]}})
        for code, display, unit, low, high in _LABS:
            entries.append({"fullUrl": urn(), "resource": {
                "resourceType": "Observation", "id": urn()[9:], "status": "final",
                "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory",
                                 "laboratory")],
                "code": _cc(_LOINC, code, display), "subject": subject, "encounter": encounter,
                "effectiveDateTime": stamp, "issued": stamp,
                "valueQuantity": {"value": round(rng.uniform(low, high), 1), "unit": unit, "system": _UCUM,
                                  "code": unit}}})
        if rng.random() < 0.3:
            code, display = rng.choice(_CONDITIONS)
            entries.append({"fullUrl": urn(), "resource": {
                "resourceType": "Condition", "id": urn()[9:],
                "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
                "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed",
                                          "Confirmed"),
                "category": [_cc("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis",
                                 "Encounter Diagnosis")],
                "code": _cc(_SCT, code, display), "subject": subject, "encounter": encounter,
                "onsetDateTime": stamp, "recordedDate": stamp}})
        entries.append({"fullUrl": urn(), "resource": {
            "resourceType": "MedicationRequest", "id": urn()[9:], "status": "active", "intent": "order",
            "medicationReference": {"reference": medication_url}, "subject": subject, "encounter": encounter,
            "authoredOn": stamp, "dosageInstruction": [{"sequence": 1, "asNeededBoolean": False}]}})
        if rng.random() < 0.2:
            entries.append({"fullUrl": urn(), "resource": {
                "resourceType": "Procedure", "id": urn()[9:], "status": "completed",
                "code": _cc(_SCT, "401191002", "Monofilament foot sensation test"), "subject": subject,
                "encounter": encounter, "performedPeriod": {"start": stamp, "end": stamp}}})
    for entry in entries:
        entry["request"] = {"method": "POST", "url": entry["resource"]["resourceType"]}
    return {"resourceType": "Bundle", "id": f"{rng.getrandbits(64):016x}", "type": "transaction", "entry": entries}


def _spec(folder: Path, name: str, fmt: str, files: str) -> Any:
    from pdp.ingest.registry import validate_spec

    text = json.dumps({"name": name, "version": 1, "description": "bench", "format": fmt, "files": [files],
                       "encoding": "utf-8", "options": {"coding_systems": _CODING_SYSTEMS},
                       "code_systems": sorted(set(_CODING_SYSTEMS.values())),
                       "validation": {"duplicates": "off"}})
    (folder / f"{name}.yml").write_text(text, encoding="utf-8")  # JSON is YAML
    return validate_spec(folder / f"{name}.yml")


def _run(spec: Any, paths: list[Path], root: Path, edge: Any) -> tuple[float, int, int]:
    """CPU seconds, outcomes, events of parse + edge over `paths`."""
    from pdp.ingest.edge import BronzeRow
    from pdp.ingest.parse import parse_file

    started = time.process_time()
    outcomes = events = 0
    for path in paths:
        for row in edge.process(parse_file(spec, path, root, today=date(2026, 1, 1))):
            outcomes += 1
            if isinstance(row, BronzeRow):
                events += len(row.events)
    return time.process_time() - started, outcomes, events


def bench_fhir() -> dict[str, Any]:
    from pdp.bench.scratch import throwaway_keys
    from pdp.ingest.edge import Edge
    from pdp.pseudonym.keys import KeyStore

    patients = setting("PDP_BENCH_FHIR_PATIENTS", 40)
    visits = setting("PDP_BENCH_FHIR_VISITS", 60)
    rng = random.Random(13)
    with tempfile.TemporaryDirectory(prefix="pdp-bench-fhir-") as tmp:
        var = Path(tmp)
        settings = throwaway_keys(var_dir=var, key_store=var / "keys")
        store = KeyStore.from_settings(settings)
        store.init()
        root, specs = var / "in", var / "specs"
        (root / "bundles").mkdir(parents=True)
        specs.mkdir()
        bundles = [_bundle(rng, i, visits) for i in range(patients)]
        paths = []
        for i, bundle in enumerate(bundles):
            path = root / "bundles" / f"patient-{i:04d}.json"
            path.write_text(json.dumps(bundle, indent=2), encoding="utf-8")
            paths.append(path)
        line_file = root / "lines.ndjson"
        line_file.write_text("\n".join(json.dumps(b) for b in bundles) + "\n", encoding="utf-8")
        resources = sum(len(b["entry"]) for b in bundles)
        pretty_mb = sum(p.stat().st_size for p in paths) / 1e6
        line_mb = line_file.stat().st_size / 1e6
        new_spec = _spec(specs, "bundles", "fhir_bundle_json", "bundles/*.json")
        old_spec = _spec(specs, "lines", "fhir_bundle_ndjson", "lines.ndjson")
        _run(new_spec, paths[:1], root, Edge(store))  # warm: the R4B model classes import on first use
        _run(old_spec, [line_file], root, Edge(store))
        # best of 3 (these machines are shared: the least disturbed run is the closest to the code's cost)
        after = min((_run(new_spec, paths, root, Edge(store)) for _ in range(3)), key=lambda r: r[0])
        before = min((_run(old_spec, [line_file], root, Edge(store)) for _ in range(3)), key=lambda r: r[0])
    return {
        "patients": patients,
        "resources": resources,
        "mb_pretty": round(pretty_mb, 1),
        "mb_one_line": round(line_mb, 1),
        "bundle_json_cpu_s": round(after[0], 2),
        "bundle_json_mb_per_cpu_s": round(pretty_mb / after[0], 2),
        "bundle_json_mb_per_cpu_s_compact": round(line_mb / after[0], 2),
        "bundle_json_resources_per_cpu_s": round(resources / after[0]),
        "bundle_json_outcomes": after[1],
        "bundle_json_events": after[2],
        "reference_bundle_ndjson_cpu_s": round(before[0], 2),
        "reference_bundle_ndjson_mb_per_cpu_s": round(line_mb / before[0], 2),
        "reference_bundle_ndjson_resources_per_cpu_s": round(resources / before[0]),
        "reference_bundle_ndjson_events": before[2],
        "ratio_resources_per_s_vs_reference": round(before[0] / after[0], 2),
    }
