"""GP records as GP software (SIA) exports them: one FHIR R4 Bundle (type "collection")
per patient per GP, one bundle per line in ``gp/<rpps>.ndjson``.

Why this shape: GP software exposes its patient files through FHIR R4 with French
conventions (FR Core identifiers: INS-NIR, IdNatPs/RPPS; French terminologies from the
ANS terminology server). The PDP's GP ingest must read exactly that: a Patient whose
identity may lack the INS, a birth name and a used name, encounters, problems (CIM-10),
measurements (LOINC/UCUM), prescriptions (ATC) and acts (CCAM or SNOMED CT).

Bundles are built as plain dicts and serialised with `json.dumps` (no fhir.resources
models at generation time: there are millions of them); the tests validate every line
with the R4 models. Resource ids are name-based UUIDs (RFC 4122 version 5) of the seed
and the event ids, so the output is identical for a given seed.

The record is the resource, as the ingest reads it (``fhir_bundle_ndjson``: one record per
resource, so one bad entry costs that entry only): a file's record count (the manifest) and its
ground-truth record links (``Type/id``) are those of every resource of its bundles but the
Practitioners, which are read through the references to them and are not records.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from pdp.synth.formats.hl7_lab import given_names, local_patient_id, measurement_decimals
from pdp.synth.model import Address, ClinicalEvent, Person, Professional, SourceIdentity
from pdp.synth.output import FileSpec, Rendered, record_link
from pdp.synth.world import World

SOURCE = "gp_fhir"
GP_DIR = "gp"

# Identifier systems (FR Core).
NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"  # INS-NIR (matricule INS)
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"  # national health professional id, "8" + RPPS
RPPS_SYSTEM = "http://rpps.fr"  # bare RPPS number
FR_IDENTIFIER_TYPES = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
V2_IDENTIFIER_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
INSEE_CODE_EXTENSION = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"
INSEE_COMMUNES = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
BIRTH_PLACE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

# Code systems: ANS terminology server canonicals for the French terminologies
# (CIM-10 FR "à usage PMSI", OID 2.16.840.1.113883.6.3; CCAM), international ones otherwise.
CODE_SYSTEMS: dict[str, str] = {
    "CIM-10": "https://smt.esante.gouv.fr/terminologie-cim-10",
    "CCAM": "https://smt.esante.gouv.fr/terminologie-ccam",
    "LOINC": "http://loinc.org",
    "ATC": "http://www.whocc.no/atc",
    "SNOMED": "http://snomed.info/sct",
}
UCUM = "http://unitsofmeasure.org"

_VITAL_SIGNS = frozenset({"29463-7", "39156-5", "8480-6", "8462-4"})
_IMAGING = frozenset({"10230-1"})
_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
_CLINICAL_ACTIVE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
}
_CONFIRMED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}
_PROBLEM_LIST = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item",
            }
        ]
    }
]
_AMBULATORY = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "code": "AMB",
    "display": "ambulatory",
}
_ACTIVE_PRESCRIPTION_DAYS = 365
_NOT_RECORDS = frozenset({"Practitioner"})  # read through the references to them (the ingest's REFERENCED_TYPES)

# Compact UTF-8 JSON; no circularity check (the dicts are trees, some shared subtrees).
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://pdp.invalid/synth/gp_fhir").bytes
_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def render_gp_bundles(
    persons: list[Person],
    world: World,
    identity_of: Callable[[Person, str], SourceIdentity],
) -> list[Rendered]:
    """One Bundle per (person, GP) for every GP who recorded events about the person,
    appended to that GP's NDJSON file, plus one ground-truth record link per record (resource).

    GP files come first (in order of first appearance), then the record links.
    """
    gps = {gp.rpps: gp for gp in world.gps}
    lines: dict[str, list[str]] = {}
    records: dict[str, int] = {}
    links: list[Rendered] = []
    for person in persons:
        files = gp_files(person.events)
        if not files:
            continue
        identity = identity_of(person, SOURCE)
        for rpps, events in files:
            author = gps.get(rpps) or _author_from_person(person, rpps)
            bundle = build_bundle(person, identity, author, events, world)
            lines.setdefault(rpps, []).append(_to_json(bundle))
            ids = record_ids(bundle)
            records[rpps] = records.get(rpps, 0) + len(ids)
            links += [record_link(SOURCE, gp_file_path(rpps), rid, person.person_id) for rid in ids]
    files_out = [
        Rendered(FileSpec(path=gp_file_path(rpps)), "\n".join(texts) + "\n", records[rpps])
        for rpps, texts in lines.items()
    ]
    return files_out + links


def record_ids(bundle: dict[str, Any]) -> list[str]:
    """The sender record ids of a bundle as the ingest reads it: ``Type/id`` of every resource but
    the Practitioners (read through references, not records)."""
    return [
        f"{r['resourceType']}/{r['id']}"
        for r in (e["resource"] for e in bundle["entry"])
        if r["resourceType"] not in _NOT_RECORDS
    ]


def gp_files(events: list[ClinicalEvent]) -> list[tuple[str, list[ClinicalEvent]]]:
    """A person's GP-channel events grouped by the recording GP's RPPS (sorted by RPPS);
    events without an RPPS have no GP software to come from and are left out."""
    groups: dict[str, list[ClinicalEvent]] = {}
    for event in events:
        if event.channel == "gp" and event.facility:
            groups.setdefault(event.facility, []).append(event)
    return sorted(groups.items())


def gp_file_path(rpps: str) -> str:
    """Relative path of a GP's NDJSON export."""
    return f"{GP_DIR}/{rpps}.ndjson"


def build_bundle(
    person: Person,
    identity: SourceIdentity,
    author: Professional,
    events: list[ClinicalEvent],
    world: World,
) -> dict[str, Any]:
    """The collection Bundle of one patient's file in one GP's software.

    Some sub-dicts (codes, fixed codings) are shared between bundles: serialise the result,
    do not mutate it.
    """
    seed = world.seed
    author_id = resource_uuid(f"{seed}|Practitioner|{author.rpps}")
    patient_id = resource_uuid(f"{seed}|Patient|{author.rpps}|{person.person_id}")
    practitioners = [practitioner(author, author_id)]
    declared_id = None  # the médecin traitant, who may be another GP than the author
    if person.gp is not None:
        declared_id = author_id
        if person.gp.rpps != author.rpps:
            declared_id = resource_uuid(f"{seed}|Practitioner|{person.gp.rpps}")
            practitioners.append(practitioner(person.gp, declared_id))
    resources = [patient(person, identity, author.rpps, patient_id, declared_id, seed), *practitioners]
    subject = _ref("Patient", patient_id)
    performer = _ref("Practitioner", author_id)
    cutoff = world.reference_date - timedelta(days=_ACTIVE_PRESCRIPTION_DAYS)
    for day, day_events in _visits(events):
        when = day.isoformat()
        encounter_id = resource_uuid(f"{seed}|Encounter|{day_events[0].event_id}")
        resources.append(encounter(encounter_id, when, day_events, subject, performer))
        context = _ref("Encounter", encounter_id)
        active = day >= cutoff
        for event in day_events:
            resource = clinical_resource(event, when, seed, subject, context, performer, active)
            if resource is not None:
                resources.append(resource)
    return {
        "resourceType": "Bundle",
        "id": resource_uuid(f"{seed}|Bundle|{author.rpps}|{person.person_id}"),
        "type": "collection",
        "timestamp": f"{world.reference_date.isoformat()}T21:00:00Z",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def patient(
    person: Person,
    identity: SourceIdentity,
    rpps: str,
    patient_id: str,
    gp_id: str | None,
    seed: int,
) -> dict[str, Any]:
    """Patient: INS-NIR when the source has it, the software's own id, birth and used names,
    traits, home address, phone/email, and the declared GP (médecin traitant)."""
    identifiers = []
    if identity.nir:
        identifiers.append(
            {
                "use": "official",
                "type": _concept(FR_IDENTIFIER_TYPES, "INS-NIR"),
                "system": NIR_SYSTEM,
                "value": identity.nir,
            }
        )
    identifiers.append(
        {
            "use": "usual",
            "type": _concept(V2_IDENTIFIER_TYPES, "PI"),
            "system": local_id_system(rpps),
            "value": local_patient_id(seed, rpps, person.person_id),
        }
    )
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": identifiers,
        "name": human_names(identity),
        "gender": "male" if identity.sex == "M" else "female",
        "birthDate": identity.birth_date.isoformat(),
        "address": [home_address(person, identity.address)],
    }
    if identity.birth_place:
        resource["extension"] = [
            {
                "url": BIRTH_PLACE_EXTENSION,
                "valueAddress": {"extension": [_insee_code(identity.birth_place)]},
            }
        ]
    telecom = _telecom(person)
    if telecom:
        resource["telecom"] = telecom
    if gp_id is not None:
        resource["generalPractitioner"] = [_ref("Practitioner", gp_id)]
    return resource


def local_id_system(rpps: str) -> str:
    """Identifier system of one GP software installation's patient numbers."""
    return f"https://sia.invalid/rpps/{rpps}/patient"


def practitioner(professional: Professional, practitioner_id: str) -> dict[str, Any]:
    """Practitioner with its IdNatPs ("8" + RPPS, OID 1.2.250.1.71.4.2.1) and bare RPPS."""
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": practitioner_id,
        "identifier": [
            {
                "use": "official",
                "type": _concept(FR_IDENTIFIER_TYPES, "IDNPS"),
                "system": IDNPS_SYSTEM,
                "value": f"8{professional.rpps}",
            },
            {
                "type": _concept(FR_IDENTIFIER_TYPES, "RPPS"),
                "system": RPPS_SYSTEM,
                "value": professional.rpps,
            },
        ],
    }
    name: dict[str, Any] = {"prefix": ["Dr"]}
    if professional.family_name.strip():
        name["family"] = professional.family_name.strip()
    if professional.first_name.strip():
        name["given"] = [professional.first_name.strip()]
    if len(name) > 1:
        resource["name"] = [name]
    return resource


def encounter(
    encounter_id: str,
    when: str,
    events: list[ClinicalEvent],
    subject: dict[str, str],
    performer: dict[str, str],
) -> dict[str, Any]:
    """Encounter for one visit day; typed by the day's "encounter" event when there is one."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": _AMBULATORY,
        "subject": subject,
        "participant": [{"individual": performer}],
        "period": {"start": when, "end": when},
    }
    types = [_code(e) for e in events if e.kind == "encounter"]
    if types:
        resource["type"] = types
    return resource


def clinical_resource(
    event: ClinicalEvent,
    when: str,
    seed: int,
    subject: dict[str, str],
    context: dict[str, str],
    performer: dict[str, str],
    active: bool,
) -> dict[str, Any] | None:
    """The resource an event (recorded on `when`) becomes; None for "encounter" events,
    which type the Encounter. `active`: a prescription recent enough to still run."""
    rid = resource_uuid(f"{seed}|{event.event_id}")
    if event.kind == "diagnosis":
        return {
            "resourceType": "Condition",
            "id": rid,
            "clinicalStatus": _CLINICAL_ACTIVE,
            "verificationStatus": _CONFIRMED,
            "category": _PROBLEM_LIST,
            "code": _code(event),
            "subject": subject,
            "encounter": context,
            "recordedDate": when,
            "recorder": performer,
        }
    if event.kind == "measurement":
        return observation(event, rid, when, subject, context, performer)
    if event.kind == "drug":
        return {
            "resourceType": "MedicationRequest",
            "id": rid,
            "status": "active" if active else "completed",
            "intent": "order",
            "medicationCodeableConcept": _code(event),
            "subject": subject,
            "encounter": context,
            "authoredOn": when,
            "requester": performer,
        }
    if event.kind == "procedure":
        return {
            "resourceType": "Procedure",
            "id": rid,
            "status": "completed",
            "code": _code(event),
            "subject": subject,
            "encounter": context,
            "performedDateTime": when,
            "performer": [{"actor": performer}],
        }
    return None


def observation(
    event: ClinicalEvent,
    rid: str,
    when: str,
    subject: dict[str, str],
    context: dict[str, str],
    performer: dict[str, str],
) -> dict[str, Any]:
    """Observation with a UCUM valueQuantity, or a data-absent reason without value."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "category": [_concept(_CATEGORY_SYSTEM, _observation_category(event.code))],
        "code": _code(event),
        "subject": subject,
        "encounter": context,
        "effectiveDateTime": when,
        "performer": [performer],
    }
    if event.value is None:
        resource["dataAbsentReason"] = _concept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "unknown")
        return resource
    decimals = measurement_decimals(event.code)
    value: float | int = round(event.value, decimals) if decimals else round(event.value)
    quantity: dict[str, Any] = {"value": value}
    if event.unit:
        quantity.update(unit=event.unit, system=UCUM, code=event.unit)
    resource["valueQuantity"] = quantity
    return resource


def resource_uuid(name: str) -> str:
    """RFC 4122 version-5 UUID of `name` in the writer's namespace (same result as
    `uuid.uuid5`, without building UUID objects)."""
    h = hashlib.sha1(_UUID_NAMESPACE + name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _visits(events: list[ClinicalEvent]) -> list[tuple[date, list[ClinicalEvent]]]:
    """Events grouped by visit day, chronologically."""
    days: dict[date, list[ClinicalEvent]] = {}
    for event in events:
        days.setdefault(event.day, []).append(event)
    return sorted(days.items())


def human_names(identity: SourceIdentity) -> list[dict[str, Any]]:
    """Official (birth) name, then the usual (used) name when the source has one."""
    given = given_names(identity.first_names.strip()) if identity.first_names.strip() else []
    names = [_human_name("official", identity.birth_name, given)]
    if identity.used_name and identity.used_name.strip():
        names.append(_human_name("usual", identity.used_name, given))
    return names


def _human_name(use: str, family: str, given: list[str]) -> dict[str, Any]:
    name: dict[str, Any] = {"use": use}
    if family.strip():
        name["family"] = family.strip()
    if given:
        name["given"] = given
    return name


def home_address(person: Person, former: Address | None = None) -> dict[str, Any]:
    """Home address with its INSEE commune code; blank parts are left out (FHIR forbids
    empty strings). ``former``: the address the GP's software still holds after a move."""
    a = former or person.address
    address: dict[str, Any] = {"use": "home", "type": "physical", "country": "FRA"}
    if a.commune_code:
        address["extension"] = [_insee_code(a.commune_code)]
    if a.line.strip():
        address["line"] = [a.line.strip()]
    if a.commune_name.strip():
        address["city"] = a.commune_name.strip()
    if a.postcode.strip():
        address["postalCode"] = a.postcode.strip()
    return address


def _insee_code(code: str) -> dict[str, Any]:
    """FR Core INSEE code extension (commune, or 99xxx country of birth) on an address."""
    return {"url": INSEE_CODE_EXTENSION, "valueCoding": {"system": INSEE_COMMUNES, "code": code}}


def _telecom(person: Person) -> list[dict[str, str]]:
    telecom = []
    if person.phone:
        mobile = person.phone.startswith(("06", "07", "+336", "+337"))
        telecom.append({"system": "phone", "value": person.phone, "use": "mobile" if mobile else "home"})
    if person.email:
        telecom.append({"system": "email", "value": person.email, "use": "home"})
    return telecom


def _observation_category(loinc: str) -> str:
    if loinc in _VITAL_SIGNS:
        return "vital-signs"
    return "imaging" if loinc in _IMAGING else "laboratory"


def _code(event: ClinicalEvent) -> dict[str, Any]:
    """CodeableConcept of an event's code in its code system, with the French label."""
    return _codeable_concept(event.code_system, event.code, event.label)


@lru_cache(maxsize=4096)
def _codeable_concept(code_system: str, code: str, label: str) -> dict[str, Any]:
    """Shared between resources (never mutated): built once per distinct code."""
    return {"coding": [{"system": CODE_SYSTEMS[code_system], "code": code, "display": label}]}


def _concept(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _ref(resource_type: str, resource_id: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource_id}", "type": resource_type}


def _author_from_person(person: Person, rpps: str) -> Professional:
    """The recording GP when the world does not list it: the person's GP if it matches,
    else a professional known only by RPPS (GP software always knows its own RPPS)."""
    if person.gp is not None and person.gp.rpps == rpps:
        return person.gp
    return Professional(rpps=rpps, family_name="", first_name="", commune_code="")
