"""FHIR resources one at a time: each resource a record of its own, or a quarantine row of its own.

Why per resource (per bundle entry, per Bulk Data line): a FHIR server's or a generator's
bundle holds years of a patient's records, and one bad code, impossible date or invalid
resource must not throw the rest away. So the unit the edge counts is the resource: a
Patient is a record with an identity and no event; an Encounter, Condition, Observation,
MedicationRequest, MedicationStatement or Procedure is a record with the identity of the
Patient its ``subject`` (or ``patient``) resolves to, and its events. Every such resource is
validated by its R4B model (``fhir.resources``) before anything is read from it; a resource
that fails, whose code is not valid or not in a system the spec maps, or whose Patient cannot
be resolved or keyed is quarantined with its reason, and the others land:
in = landed + quarantined, counted per resource. Resources of other types (Claim,
ExplanationOfBenefit, CarePlan...) are not platform data: neither records nor quarantine rows,
but counted per type as *skipped* (:meth:`~pdp.ingest.parsers.base.FileContext.skip`), so that
what a sender sent is accounted for and a sender whose data the platform does not read shows in
the ingestion report. Medication and Practitioner resources (:data:`REFERENCED_TYPES`) are read
through the references that point to them: not records, not skipped.

What a resource yields:

* **Patient**: identity (FR Core: INS-NIR by identifier system; a Patient without a NIR is
  keyed on its traits — other systems' identifiers are never read, so never land), names by
  ``use`` (maiden, else official, else usual is the birth name; official or usual the used
  name; nickname and anonymous names never), every given name, birth date with or without a
  time, the home address's lines joined.
* **Condition**: a ``condition`` event, status = ``clinicalStatus``; a ``verificationStatus``
  of ``refuted`` or ``entered-in-error`` is not a diagnosis (FHIR_NOT_A_FACT).
* **Observation**: a ``measurement`` per ``valueQuantity`` (UCUM ``code`` as unit) and per
  ``component`` with a value (blood pressure: systolic and diastolic); an ``observation`` for
  ``valueCodeableConcept`` (the answer's code kept in ``source_value``, when in a system the
  spec maps and valid there, CODE_UNKNOWN otherwise; text never read);
  ``dataAbsentReason`` everywhere: no fact (FHIR_NOT_A_FACT).
* **MedicationRequest / MedicationStatement**: a ``drug`` event coded by
  ``medicationCodeableConcept`` or by the ``Medication`` its ``medicationReference`` points to.
* **Procedure / Encounter**: ``procedure`` / ``visit`` events with their period (start, end).

Any resource ``entered-in-error`` (or a cancelled or not-done one) is FHIR_NOT_A_FACT.
Resource ids are sender-local: the edge lands only the keyed hashes of record ids and visit
keys (the Encounter's id), as for every source.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from pdp.ingest.model import Event, IdentityFields, ParseOutcome, SourceRecord
from pdp.ingest.parsers.base import FileContext
from pdp.ingest.parsers.fhir_models import model_class
from pdp.ingest.parsers.fhir_ndjson import (
    FhirOptions,
    _coding,
    _day,
    _period_start,
    _practitioner_rpps,
    _validation_fault,
    patient_identity,
)
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.validate import Checks, Invalid

__all__ = ["READ_TYPES", "REFERENCED_TYPES", "References", "entry_outcome", "is_fhir_type", "raw_of", "validated"]

READ_TYPES = frozenset(
    {"Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "MedicationStatement", "Procedure"}
)
"""Resource types that are records; any other type is skipped (or read through a reference)."""

REFERENCED_TYPES = frozenset({"Medication", "Practitioner"})
"""Resource types read through the references that point to them (a drug's code, a GP's RPPS): not skipped."""

_NOT_A_FACT_STATUS = frozenset({"entered-in-error", "cancelled", "not-done"})
_NOT_A_DIAGNOSIS = frozenset({"refuted", "entered-in-error"})
_UCUM = "http://unitsofmeasure.org"


class References(Protocol):
    """How a resource's references resolve where it came from (a bundle's entries, a Bulk export's files)."""

    def resolve(self, reference: dict[str, Any] | None) -> dict[str, Any] | None:
        """The resource a reference points to (Medication, Practitioner, Encounter...), or None."""
        ...

    def patient(self, reference: dict[str, Any] | None, ctx: FileContext, opts: FhirOptions) -> IdentityFields:
        """The checked identity of the Patient a reference points to; :class:`Invalid` otherwise."""
        ...

    def validate_once(self, resource: dict[str, Any]) -> None:
        """:func:`validated`, once per resource these references hold (a Medication many requests point to)."""
        ...


def validated(resource: dict[str, Any]) -> None:
    """Validate `resource` with its R4B model; :class:`Invalid` (FHIR_VALIDATION or DATE_INVALID,
    element paths and error types only) otherwise."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        raise Invalid(ReasonCode.FHIR_VALIDATION, "resource: no resourceType")
    try:
        model = model_class(kind)
    except (KeyError, ValueError, LookupError, AttributeError, ImportError):
        raise Invalid(ReasonCode.FHIR_VALIDATION, "resource: unknown resourceType") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        raise Invalid(*_validation_fault(exc, kind)) from None
    except (ValueError, TypeError, LookupError) as exc:  # fhir.resources' own errors
        raise Invalid(ReasonCode.FHIR_VALIDATION, f"{kind}: {type(exc).__name__}") from None


def is_fhir_type(kind: object) -> bool:
    """True for the name of an R4 resource type (the models know it)."""
    if not isinstance(kind, str) or not kind.isascii() or not kind.isalpha():
        return False
    try:
        model_class(kind)
    except (KeyError, ValueError, LookupError, AttributeError, ImportError):
        return False
    return True


def raw_of(resource: dict[str, Any]) -> bytes:
    """The bytes the edge's keyed record hash is made of: the resource as compact JSON (the same
    resource sent again hashes the same, whatever the file's layout)."""
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def checked_identity(patient: dict[str, Any], resources: References, ctx: FileContext, opts: FhirOptions,
                     ) -> IdentityFields:
    """A validated Patient's identity texts, checked (IDENTITY_MISSING, NIR_INVALID, DATE_INVALID...)."""
    texts = patient_identity(patient, resources, opts)  # type: ignore[arg-type]
    return ctx.checks.identity(texts, "%Y-%m-%d", where="Patient")


def entry_outcome(
    resource: dict[str, Any], position: int, raw: bytes, ctx: FileContext, opts: FhirOptions, refs: References
) -> ParseOutcome | None:
    """The record or the quarantine row of one resource; None for a type that is not a record
    (counted as skipped unless it is read through references)."""
    kind = resource.get("resourceType")
    if not is_fhir_type(kind):  # not a resource at all: refused, never skipped unseen (found by fuzzing)
        return ctx.quarantine(position, ReasonCode.FHIR_VALIDATION, "resource: no or unknown resourceType", raw)
    if kind not in READ_TYPES:
        if kind not in REFERENCED_TYPES:
            ctx.skip(kind)  # type: ignore[arg-type]
        return None
    try:
        refs.validate_once(resource)
        if kind == "Patient":
            identity = checked_identity(resource, refs, ctx, opts)
            events: tuple[Event, ...] = ()
        else:
            identity = refs.patient(resource.get("subject") or resource.get("patient"), ctx, opts)
            _check_status(resource, kind)
            events = tuple(_EXTRACTORS[kind](resource, _Read(kind, refs, ctx.checks, opts)))
    except Invalid as fault:
        return ctx.quarantine(position, fault.reason, fault.message, raw)
    except Exception as exc:  # an extraction bug costs this resource only; its text may quote a value
        return ctx.quarantine(position, ReasonCode.PARSER_ERROR, f"{kind}: extraction raised {type(exc).__name__}", raw)
    resource_id = resource.get("id")
    return SourceRecord(
        source=ctx.source,
        file=ctx.file,
        position=position,
        record_id=f"{kind}/{resource_id}" if resource_id else None,
        raw=raw,
        identity=identity,
        events=events,
    )


def _check_status(resource: dict[str, Any], kind: str) -> None:
    if resource.get("status") in _NOT_A_FACT_STATUS:
        raise Invalid(ReasonCode.FHIR_NOT_A_FACT, f"{kind}.status: {resource['status']}")
    if kind == "Condition":
        for coding in (resource.get("verificationStatus") or {}).get("coding") or []:
            if coding.get("code") in _NOT_A_DIAGNOSIS:
                raise Invalid(ReasonCode.FHIR_NOT_A_FACT, f"Condition.verificationStatus: {coding['code']}")


@dataclass(frozen=True, slots=True)
class _Read:
    """What an extractor needs: where it is (for messages), references, checks, the spec's systems."""

    kind: str
    refs: References
    checks: Checks
    opts: FhirOptions

    def event(
        self, resource: dict[str, Any], *, domain: str, concept: dict[str, Any] | None, start: str | None,
        where: str | None = None, actor: dict[str, Any] | None = None, end: str | None = None,
        value: float | None = None, unit: str | None = None, visit_key: str | None = None,
        status: str | None = None, source_value: str | None = None,
    ) -> Event:
        where = where or self.kind
        system, code = _coding(concept, f"{where}.code", self.opts)
        event = Event(
            domain=domain,  # type: ignore[arg-type]
            code_system=system,
            code=code,
            start_date=_day(start, f"{where} date", self.checks),
            end_date=_day(end, f"{where} end", self.checks) if end else None,
            value=value,
            unit=unit,
            visit_key=visit_key if visit_key is not None else self.visit_of(resource),
            provider=_practitioner_rpps(self.refs.resolve(actor), self.opts),  # type: ignore[arg-type]
            status=status if status is not None else resource.get("status"),
            source_value=source_value or code,
        )
        return self.checks.event(event, f"{where}.code")

    def visit_of(self, resource: dict[str, Any]) -> str | None:
        """The Encounter's id (sender-local: the edge keys it) a resource belongs to."""
        reference = resource.get("encounter") or resource.get("context")
        if not isinstance(reference, dict):
            return None
        encounter = self.refs.resolve(reference)
        if encounter is not None and encounter.get("id"):
            return f"Encounter/{encounter['id']}"
        text = reference.get("reference") or ""
        return text if text.startswith("Encounter/") else None


def _status_code(concept: dict[str, Any] | None) -> str | None:
    codings = (concept or {}).get("coding") or []
    return codings[0].get("code") if codings else None


def _quantity(element: dict[str, Any]) -> tuple[float | None, str | None]:
    quantity = element.get("valueQuantity") or {}
    value = quantity.get("value")
    unit = quantity.get("code") if quantity.get("system") == _UCUM else quantity.get("unit")
    return (float(value) if value is not None else None), (unit or None)


def _encounter(r: dict[str, Any], read: _Read) -> list[Event]:
    types = r.get("type") or []
    concept = types[0] if types else {"coding": [r["class"]] if isinstance(r.get("class"), dict) else []}
    period = r.get("period") or {}
    participants = r.get("participant") or [{}]
    return [read.event(r, domain="visit", concept=concept, start=period.get("start"), end=period.get("end"),
                       actor=participants[0].get("individual"),
                       visit_key=f"Encounter/{r['id']}" if r.get("id") else None)]


def _condition(r: dict[str, Any], read: _Read) -> list[Event]:
    return [read.event(r, domain="condition", concept=r.get("code"),
                       start=_period_start(r, "onset") or r.get("recordedDate"),
                       end=r.get("abatementDateTime") or (r.get("abatementPeriod") or {}).get("end"),
                       actor=r.get("recorder") or r.get("asserter"), status=_status_code(r.get("clinicalStatus")))]


def _observation(r: dict[str, Any], read: _Read) -> list[Event]:
    start = _period_start(r, "effective") or r.get("issued")
    performers = r.get("performer") or [None]
    events: list[Event] = []
    value, unit = _quantity(r)
    if value is not None:
        events.append(read.event(r, domain="measurement", concept=r.get("code"), start=start, actor=performers[0],
                                 value=value, unit=unit))
    elif r.get("valueCodeableConcept"):
        code = _coding(r.get("code"), "Observation.code", read.opts)[1]
        events.append(read.event(r, domain="observation", concept=r.get("code"), start=start, actor=performers[0],
                                 source_value=f"{code}={_answer_code(r['valueCodeableConcept'], read)}"))
    for index, component in enumerate(r.get("component") or []):
        c_value, c_unit = _quantity(component)
        if c_value is None:
            continue  # a component with a dataAbsentReason (or no value) is no fact
        events.append(read.event(r, domain="measurement", concept=component.get("code"), start=start,
                                 where=f"Observation.component[{index}]", actor=performers[0], value=c_value,
                                 unit=c_unit))
    if not events:
        if r.get("dataAbsentReason") or r.get("component"):
            raise Invalid(ReasonCode.FHIR_NOT_A_FACT, "Observation: no value (dataAbsentReason)")
        events.append(read.event(r, domain="observation", concept=r.get("code"), start=start, actor=performers[0]))
    return events


def _answer_code(value: dict[str, Any], read: _Read) -> str:
    """A coded answer's code, in a system the spec maps and valid there (CODE_UNKNOWN otherwise, as
    for the observation's own code): its text, or a code in a system nothing checks, could be
    anything typed, so it never lands."""
    where = "Observation.valueCodeableConcept"
    system, code = _coding(value, where, read.opts)
    read.checks.code(system, code, where)
    return code


def _medication(r: dict[str, Any], read: _Read) -> dict[str, Any] | None:
    if r.get("medicationCodeableConcept"):
        return r["medicationCodeableConcept"]
    reference = r.get("medicationReference") or {}
    target = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(target, str) and target.startswith("#"):  # contained: validated with the resource itself
        medication = next((c for c in r.get("contained") or [] if f"#{c.get('id')}" == target), None)
    else:
        medication = read.refs.resolve(reference)
        if medication is not None:
            read.refs.validate_once(medication)
    if medication is None or medication.get("resourceType") != "Medication":
        raise Invalid(ReasonCode.FIELD_MISSING, f"{read.kind}.medicationReference: no Medication resolved")
    return medication.get("code")


def _medication_request(r: dict[str, Any], read: _Read) -> list[Event]:
    return [read.event(r, domain="drug", concept=_medication(r, read), start=r.get("authoredOn"),
                       actor=r.get("requester"))]


def _medication_statement(r: dict[str, Any], read: _Read) -> list[Event]:
    period = r.get("effectivePeriod") or {}
    return [read.event(r, domain="drug", concept=_medication(r, read),
                       start=_period_start(r, "effective") or r.get("dateAsserted"), end=period.get("end"),
                       actor=r.get("informationSource"))]


def _procedure(r: dict[str, Any], read: _Read) -> list[Event]:
    performers = r.get("performer") or [{}]
    period = r.get("performedPeriod") or {}
    return [read.event(r, domain="procedure", concept=r.get("code"), start=_period_start(r, "performed"),
                       end=period.get("end"), actor=performers[0].get("actor"))]


_EXTRACTORS: dict[str, Callable[[dict[str, Any], _Read], list[Event]]] = {
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "MedicationRequest": _medication_request,
    "MedicationStatement": _medication_statement,
    "Procedure": _procedure,
}
