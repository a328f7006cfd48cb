"""The FHIR GP writer: every NDJSON line must be an R4 Bundle that fhir.resources accepts,
with the identifiers, names, codes and values that went in."""

from __future__ import annotations

import json
import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from builders import (
    GP_A,
    GP_B,
    identity_of_factory,
    make_world,
    sample_persons,
    synthetic_population,
)
from fhir.resources.R4B.bundle import Bundle

from pdp.synth.formats.fhir_gp import (
    _UUID_NAMESPACE,
    CODE_SYSTEMS,
    IDNPS_SYSTEM,
    NIR_SYSTEM,
    RPPS_SYSTEM,
    SOURCE,
    UCUM,
    gp_file_path,
    local_id_system,
    record_ids,
    render_gp_bundles,
    resource_uuid,
)
from pdp.synth.formats.hl7_lab import local_patient_id
from pdp.synth.model import Person
from pdp.synth.output import RECORD_LINKS, Rendered
from pdp.synth.world import World

WITHOUT_NIR = (2,)
UUID_URN = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def persons() -> list[Person]:
    return sample_persons()


@pytest.fixture(scope="module")
def rendered(persons: list[Person], world: World) -> list[Rendered]:
    return render_gp_bundles(persons, world, identity_of_factory(WITHOUT_NIR))


@pytest.fixture(scope="module")
def bundles(rendered: list[Rendered]) -> dict[str, list[dict[str, Any]]]:
    """Every line of every GP file, validated with the R4 models, as JSON per file."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rendered:
        if r.spec == RECORD_LINKS:
            continue
        assert r.text.endswith("\n")
        lines = r.text.split("\n")[:-1]
        for line in lines:
            Bundle.model_validate_json(line)
            out[r.spec.path].append(json.loads(line))
        assert sum(len(record_ids(b)) for b in out[r.spec.path]) == r.records, "a record per resource"
    return dict(out)


def links(rendered: list[Rendered]) -> list[list[str]]:
    return [r.text.strip().split(",") for r in rendered if r.spec == RECORD_LINKS]


def bundle_of(
    bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered], person_id: int, rpps: str
) -> dict[str, Any]:
    ids = {rid for _s, f, rid, pid in links(rendered) if int(pid) == person_id and f == gp_file_path(rpps)}
    (bundle,) = [b for b in bundles[gp_file_path(rpps)] if set(record_ids(b)) <= ids]
    return bundle


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def by_url(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["fullUrl"]: e["resource"] for e in bundle["entry"]}


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a JSON tree, containers included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def test_files_and_bundle_envelope(bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered]) -> None:
    assert set(bundles) == {gp_file_path(GP_A.rpps), gp_file_path(GP_B.rpps)}
    all_bundles = [b for bs in bundles.values() for b in bs]
    assert len(all_bundles) == 4, "p1@A, p2@A, p2@B, p3@B; p4 and p5 have no GP event"
    assert len({b["id"] for b in all_bundles}) == 4
    for bundle in all_bundles:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
        for entry in bundle["entry"]:
            assert UUID_URN.match(entry["fullUrl"]), entry["fullUrl"]
            assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"
        assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])


def test_record_links_point_to_the_resources(
    bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered]
) -> None:
    """One link per record the ingest reads: every resource of a bundle but its Practitioners, as ``Type/id``."""
    rows = links(rendered)
    patients = [(int(pid), f) for _s, f, rid, pid in rows if rid.startswith("Patient/")]
    assert sorted(patients) == [
        (1, gp_file_path(GP_A.rpps)),
        (2, gp_file_path(GP_A.rpps)),
        (2, gp_file_path(GP_B.rpps)),
        (3, gp_file_path(GP_B.rpps)),
    ]
    for source, _file, rid, _pid in rows:
        assert source == SOURCE
        assert not rid.startswith("Practitioner/")
    for file, file_bundles in bundles.items():
        resources = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for b in file_bundles for e in b["entry"]}
        linked = {rid for _s, f, rid, _p in rows if f == file}
        assert linked == {r for r in resources if not r.startswith("Practitioner/")}


def test_every_reference_resolves_inside_its_bundle(bundles: dict[str, list[dict[str, Any]]]) -> None:
    for bundle in (b for bs in bundles.values() for b in bs):
        urls = by_url(bundle)
        refs = [v for _p, v in walk(bundle) if isinstance(v, dict) and "reference" in v]
        assert refs
        for ref in refs:
            assert ref["reference"] in urls, ref
            assert urls[ref["reference"]]["resourceType"] == ref["type"]


def test_patient_with_nir_names_contact_and_declared_gp(
    bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered], persons: list[Person], world: World
) -> None:
    bundle = bundle_of(bundles, rendered, 1, GP_A.rpps)
    (patient,) = resources(bundle, "Patient")
    nir, local = patient["identifier"]
    assert (nir["system"], nir["value"]) == (NIR_SYSTEM, persons[0].identity.nir)
    assert nir["type"]["coding"][0]["code"] == "INS-NIR"
    assert (local["system"], local["value"]) == (local_id_system(GP_A.rpps), local_patient_id(world.seed, GP_A.rpps, 1))
    assert local["type"]["coding"][0]["code"] == "PI"
    assert patient["name"] == [
        {"use": "official", "family": "LEFÈVRE", "given": ["Marie-Hélène", "Françoise"]},
        {"use": "usual", "family": "DUPONT-MÉNARD", "given": ["Marie-Hélène", "Françoise"]},
    ]
    assert (patient["gender"], patient["birthDate"]) == ("female", "1961-11-02")
    (address,) = patient["address"]
    assert (address["line"], address["city"], address["postalCode"]) == (["3 impasse de l'Église"], "Douai", "59500")
    assert address["extension"][0]["valueCoding"]["code"] == "59178"
    assert patient["telecom"] == [
        {"system": "phone", "value": "0612345678", "use": "mobile"},
        {"system": "email", "value": "mh.dupont@example.fr", "use": "home"},
    ]
    (gp_ref,) = patient["generalPractitioner"]
    gp = by_url(bundle)[gp_ref["reference"]]
    assert {(i["system"], i["value"]) for i in gp["identifier"]} == {
        (IDNPS_SYSTEM, f"8{GP_A.rpps}"),
        (RPPS_SYSTEM, GP_A.rpps),
    }
    assert gp["name"] == [{"prefix": ["Dr"], "family": "DUBOIS", "given": ["Hélène"]}]


def test_patient_without_nir_seen_by_another_gp(
    bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered]
) -> None:
    bundle = bundle_of(bundles, rendered, 2, GP_A.rpps)
    (patient,) = resources(bundle, "Patient")
    assert [i["system"] for i in patient["identifier"]] == [local_id_system(GP_A.rpps)]
    other = bundle_of(bundles, rendered, 2, GP_B.rpps)
    assert [i["system"] for i in resources(other, "Patient")[0]["identifier"]] == [local_id_system(GP_B.rpps)]
    assert patient["name"] == [{"use": "official", "family": "CŒURDEROY", "given": ["Jean-Marie", "Noël"]}]
    practitioners = resources(bundle, "Practitioner")
    assert [p["identifier"][1]["value"] for p in practitioners] == [GP_A.rpps, GP_B.rpps], "author, then declared GP"
    (gp_ref,) = patient["generalPractitioner"]
    assert by_url(bundle)[gp_ref["reference"]]["identifier"][1]["value"] == GP_B.rpps
    (condition,) = resources(bundle, "Condition")
    assert condition["code"]["coding"][0]["code"] == "E11.9"
    assert "telecom" not in patient


def test_patient_without_declared_gp_or_contact(
    bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered]
) -> None:
    bundle = bundle_of(bundles, rendered, 3, GP_B.rpps)
    (patient,) = resources(bundle, "Patient")
    assert "generalPractitioner" not in patient
    assert "telecom" not in patient
    (weight,) = resources(bundle, "Observation")
    assert "valueQuantity" not in weight
    assert weight["dataAbsentReason"]["coding"][0]["code"] == "unknown"


def test_clinical_resources_codes_and_values(
    bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered]
) -> None:
    bundle = bundle_of(bundles, rendered, 1, GP_A.rpps)
    conditions = [
        (c["code"]["coding"][0]["system"], c["code"]["coding"][0]["code"]) for c in resources(bundle, "Condition")
    ]
    assert conditions == [(CODE_SYSTEMS["CIM-10"], "E11.9"), (CODE_SYSTEMS["CIM-10"], "I10")]
    observations = {o["code"]["coding"][0]["code"]: o for o in resources(bundle, "Observation")}
    assert set(observations) == {"29463-7", "8480-6"}
    for obs in observations.values():
        assert obs["code"]["coding"][0]["system"] == "http://loinc.org"
        assert obs["valueQuantity"]["system"] == UCUM
        assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    assert observations["29463-7"]["valueQuantity"] == {"value": 82.4, "unit": "kg", "system": UCUM, "code": "kg"}
    assert observations["8480-6"]["valueQuantity"]["value"] == 148
    (med,) = resources(bundle, "MedicationRequest")
    assert med["medicationCodeableConcept"]["coding"][0] == {
        "system": "http://www.whocc.no/atc",
        "code": "A10BA02",
        "display": "METFORMINE 1000 mg cp",
    }
    assert (med["status"], med["intent"]) == ("completed", "order"), "prescribed more than a year before"
    procedures = [
        (p["code"]["coding"][0]["system"], p["code"]["coding"][0]["code"]) for p in resources(bundle, "Procedure")
    ]
    assert procedures == [(CODE_SYSTEMS["CCAM"], "DEQP003"), ("http://snomed.info/sct", "401191002")]


def test_one_encounter_per_visit_day(bundles: dict[str, list[dict[str, Any]]], rendered: list[Rendered]) -> None:
    bundle = bundle_of(bundles, rendered, 1, GP_A.rpps)
    encounters = resources(bundle, "Encounter")
    assert [e["period"]["start"] for e in encounters] == ["2024-03-04", "2024-09-16"]
    assert encounters[0]["type"][0]["coding"][0]["code"] == "185349003"
    assert "type" not in encounters[1], "no encounter event that day"
    assert all(e["class"]["code"] == "AMB" and e["status"] == "finished" for e in encounters)
    urls = by_url(bundle)
    dated = {
        "Condition": "recordedDate",
        "Observation": "effectiveDateTime",
        "MedicationRequest": "authoredOn",
        "Procedure": "performedDateTime",
    }
    for kind, field in dated.items():
        for resource in resources(bundle, kind):
            assert urls[resource["encounter"]["reference"]]["period"]["start"] == resource[field]


def test_no_empty_values_and_valid_codes(bundles: dict[str, list[dict[str, Any]]]) -> None:
    """What fhir.resources does not check: empty arrays, blank strings, bound codes."""
    for bundle in (b for bs in bundles.values() for b in bs):
        for path, value in walk(bundle):
            assert value not in ([], {}, ""), path
            if isinstance(value, str):
                assert value == value.strip(), path
        for patient in resources(bundle, "Patient"):
            assert patient["gender"] in {"male", "female"}


def test_lines_are_compact_utf8_json(rendered: list[Rendered]) -> None:
    text = "".join(r.text for r in rendered if r.spec != RECORD_LINKS)
    assert "LEFÈVRE" in text and "\\u00" not in text
    assert all(r.spec.encoding == "utf-8" for r in rendered)
    for line in text.splitlines():
        assert json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) == line


def test_r5_models_reject_the_r4_bundle(bundles: dict[str, list[dict[str, Any]]]) -> None:
    """Guards the model choice: an R4 Encounter.class (one Coding) is not R5 (a list)."""
    from fhir.resources.bundle import Bundle as R5Bundle

    bundle = next(iter(bundles.values()))[0]
    with pytest.raises(ValueError):
        R5Bundle.model_validate(bundle)


def test_resource_ids_are_rfc4122_v5() -> None:
    for name in ("1|Patient|10001234567|1", "x", "é|€"):
        assert resource_uuid(name) == str(uuid.uuid5(uuid.UUID(bytes=_UUID_NAMESPACE), name))


def test_output_is_deterministic_and_chunk_independent(persons: list[Person], world: World) -> None:
    identity_of = identity_of_factory(WITHOUT_NIR)
    whole = render_gp_bundles(persons, world, identity_of)
    assert whole == render_gp_bundles(persons, world, identity_of)
    split = render_gp_bundles(persons[:1], world, identity_of) + render_gp_bundles(persons[1:], world, identity_of)

    def by_file(rendered: list[Rendered]) -> dict[str, str]:
        out: dict[str, str] = defaultdict(str)
        for r in rendered:
            out[r.spec.path] += r.text
        return dict(out)

    assert by_file(whole) == by_file(split)


def test_ground_truth_ids_never_leak(rendered: list[Rendered], persons: list[Person]) -> None:
    text = "".join(r.text for r in rendered if r.spec != RECORD_LINKS)
    for person in persons:
        for event in person.events:
            assert event.event_id not in text


def test_synthetic_population_validates() -> None:
    world = make_world()
    persons = synthetic_population(2000, world)
    identity_of = identity_of_factory(range(1000, 3000, 11))
    rendered = render_gp_bundles(persons, world, identity_of)
    lines = [line for r in rendered if r.spec != RECORD_LINKS for line in r.text.splitlines()]
    expected = sum(1 for p in persons if any(e.channel == "gp" for e in p.events))
    assert len(lines) == expected == sum(1 for _s, _f, rid, _p in links(rendered) if rid.startswith("Patient/"))
    assert sum(r.records for r in rendered if r.spec != RECORD_LINKS) == len(links(rendered))
    for line in lines[::5]:
        Bundle.model_validate_json(line)
