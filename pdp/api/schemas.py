"""Request and response shapes, one per entity and direction.

Why separate shapes: a route's ``response_model`` is the last filter before bytes leave the
platform. A pseudonymised shape (:class:`PersonRecord`, for the ethics committee) has no field
an identity could go into; an identified shape (:class:`PatientIdentity`, for the SIOP) has no
pseudonym field, so the lake's key never travels beside the identity it hides. Input shapes
forbid unknown fields.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_NIR = r"^[12378][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?$"
_RPPS = r"^[0-9]{11}$"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- public ------------------------------------------------------------------------------------


class Health(_Out):
    status: Literal["ok"]
    gold_as_of: date | None
    gold_version: str


class ApiError(_Out):
    detail: Any


# --- identities in (bodies only, never URLs) -----------------------------------------------------


class CitizenIdentity(_In):
    """An INS identity: the NIR and the INS traits (in the request body, never in a URL or a log)."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True,
        json_schema_extra={"example": {"nir": "180017512345678", "birth_name": "MARTIN", "first_names": ["JEAN"],
                                       "sex": "M", "birth_date": "1980-01-01"}},
    )

    nir: str = Field(pattern=_NIR, description="INS matricule (NIR), 13 or 15 characters.")
    birth_name: str = Field(min_length=1, max_length=200)
    first_names: list[str] = Field(min_length=1, max_length=10)
    sex: Literal["M", "F"]
    birth_date: date

    def __repr__(self) -> str:
        return "CitizenIdentity(<hidden>)"

    __str__ = __repr__


class FhirResourceIn(BaseModel):
    """A FHIR R4 resource as JSON (validated by the governance service that consumes it)."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)
    resourceType: str


_QR_EXAMPLE = {
    "resourceType": "QuestionnaireResponse",
    "questionnaire": "https://pdp.invalid/fhir/Questionnaire/prem_coordination|1",
    "status": "completed",
    "authored": "2025-03-14T10:00:00+01:00",
    "contained": [{
        "resourceType": "Patient", "id": "patient",
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "180017505600103"}],
        "name": [{"use": "official", "family": "MARTIN", "given": ["JEAN"]}],
        "gender": "male", "birthDate": "1980-01-01",
    }],
    "subject": {"reference": "#patient"},
    "item": [{"linkId": link, "answer": [{"valueCoding": {"code": code}}]} for link, code in (
        ("shared_information", "4"), ("appointments", "3"), ("listened_to", "5"), ("next_step", "4"),
        ("single_contact", "5"))],
}


class QuestionnaireResponseIn(FhirResourceIn):
    """A FHIR R4 QuestionnaireResponse (PREM / PROM), the citizen as a contained FR Core Patient.

    Checked by the edge's own parser (``fhir_questionnaire_response_ndjson``): the same rules,
    the same quarantine reasons, as when the file is ingested.
    """

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True, json_schema_extra={"example": _QR_EXAMPLE})

    def __repr__(self) -> str:
        return "QuestionnaireResponseIn(<hidden>)"

    __str__ = __repr__


class QuestionnaireReceipt(_Out):
    """What the DMP keeps of a response handed to the edge (no identity, no pseudonym)."""

    receipt: str = Field(description="Opaque receipt of this submission (not derived from its content).")
    status: Literal["accepted"] = Field(description="In the edge's inbox; lands with the next `pdp ingest`.")
    questionnaires: list[str] = Field(description="The questionnaire answered, as name@version.")
    answers: int = Field(description="Answers and scale scores kept (free text is never kept).")


# --- identities out (SIOP) ------------------------------------------------------------------------


class PatientIdentity(_Out):
    """Who the row is about, re-identified for an authorised SIOP and purpose (no pseudonym here)."""

    ins_nir: str | None
    birth_name: str | None
    used_name: str | None
    first_names: list[str] | None
    sex: str | None
    birth_date: date | None
    phone: str | None
    commune_code: str | None


# --- gold rows ----------------------------------------------------------------------------------


class Fact(_Out):
    rule_id: str
    criterion: str
    criterion_text: str = ""
    fact_table: str | None
    event_id: int | None
    fact_date: date | None
    source: str | None
    vocabulary: str | None
    source_code: str | None
    value: float | None


class StratumOut(_Out):
    pyramid: str
    stratum: str
    label: str = ""
    rule_id: str


class DueAction(_Out):
    pathway: str
    action: str
    label: str
    professional: str
    status: str
    last_done: date | None
    next_due: date
    interval_days: int
    rule_id: str
    reason: str
    explanation: list[Fact] = []


class WorklistPatient(_Out):
    patient: PatientIdentity
    gp_rpps: str | None
    strata: list[StratumOut]
    actions: list[DueAction]


class WorklistPage(_Out):
    territory: str
    as_of: date
    definitions: str | None
    items: list[WorklistPatient]
    total: int = Field(description="Persons matching the filters, every page together.")
    withheld: int = Field(description="Persons of the page not released (not in the vault, or withheld by policy).")
    next_cursor: str | None


class WorklistChanges(_Out):
    """What changed in the territory's worklist since the SIOP's last pull (gold's change data)."""

    territory: str
    as_of: date
    changed: list[WorklistPatient] = Field(description="Current state (every status) of each person whose "
                                           "worklist rows changed and who is still on a pathway.")
    gone: int = Field(description="Persons whose rows were removed and who are no longer in gold (not identified).")
    withheld: int
    next_since: str = Field(description="Pass as `since` on the next pull.")


class AlertOut(_Out):
    patient: PatientIdentity
    gp_rpps: str | None
    alert: str
    label: str
    severity: str
    professional: str
    rule_id: str
    explanation: list[Fact] = []


class AlertPage(_Out):
    territory: str
    as_of: date
    items: list[AlertOut]
    withheld: int
    next_cursor: str | None


class FhirBundle(BaseModel):
    """A FHIR R4 ``Bundle`` (validated against the R4B models in the tests)."""

    model_config = ConfigDict(extra="allow")
    resourceType: Literal["Bundle"]
    type: str
    entry: list[dict[str, Any]] = []


class PathwayStep(_Out):
    action: str
    label: str
    professional: str
    interval_days: int
    because: str


class Logigramme(_Out):
    pathway: str
    version: int
    label: str
    stratum: str
    steps: list[PathwayStep]


class CareTeamMember(_In):
    """A patient joining a professional's care team: INS identity (body only) and the consent attestation.

    Why an attestation: sharing between the members of a care team of different legal entities
    needs the patient's consent (arrêté du 26 novembre 2016); the SIOP collects it and says so here.
    """

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, hide_input_in_errors=True,
        json_schema_extra={"example": {"patient": CitizenIdentity.model_config["json_schema_extra"]["example"],
                                       "consent": "recorded"}},
    )

    patient: CitizenIdentity
    consent: Literal["recorded"] = Field(description="The SIOP has recorded the patient's consent to sharing "
                                                     "within the care team.")


class CareTeamReceipt(_Out):
    """The membership after the call: no identity, no pseudonym."""

    territory: str
    rpps: str
    kind: Literal["care"]
    member: bool


class ContextualAnswer(_Out):
    """The contextual call's answer: the caller already holds the identity; nothing identifying is added."""

    territory: str
    as_of: date
    definitions: str | None
    strata: list[StratumOut]
    populations: list[str]
    actions: list[DueAction]
    logigrammes: list[Logigramme]


# --- DMP ----------------------------------------------------------------------------------------


class OppositionOut(_Out):
    status: Literal["active", "withdrawn", "none"]
    changed: int = Field(description="Pseudonyms of the person whose state this request changed.")


class TransparencyEntry(_Out):
    at: str
    action: str
    actor_role: str
    purpose: str | None
    decision: str
    identity_released: bool | None


class TransparencyRecord(_Out):
    uses: list[TransparencyEntry]


class CitizenStep(_Out):
    what: str
    status: Literal["up_to_date", "due", "overdue"]
    next_due: date
    in_plain_words: str


class CitizenPathway(_Out):
    known: bool
    opposed: bool
    as_of: date | None
    steps: list[CitizenStep]


# --- ethics -------------------------------------------------------------------------------------


class AuditEntryOut(_Out):
    index: int
    at: str
    actor: str
    actor_role: str
    action: str
    data_ref: list[str]
    purpose: str | None
    decision: str
    rule: str
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditPage(_Out):
    entries: list[AuditEntryOut]


class AuditVerification(_Out):
    ok: bool
    size: int
    root_hash: str
    checkpoints_checked: int
    first_bad_index: int | None
    line: str


class SampleRequest(_In):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"example": {"pyramid": "t2d", "stratum": "1", "n": 3, "seed": 7}})

    pyramid: Literal["t2d", "hf"] = "t2d"
    stratum: Literal["at_risk", "1", "2", "3", "4"]
    n: int = Field(ge=1, le=200)
    seed: int = Field(ge=0)


class PersonRecord(_Out):
    """A pseudonymised record for the ethics committee: the gold explanation, no identity field."""

    person_pseudonym: str
    populations: list[dict[str, Any]]
    strata: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


class EthicsSampleOut(_Out):
    territory: str
    pyramid: str
    stratum: str
    as_of: date
    n: int
    seed: int
    eligible: int
    records: list[PersonRecord]


# --- admin and definitions ----------------------------------------------------------------------


class SourceOut(_Out):
    name: str
    version: int
    format: str
    files: list[str]
    produces: list[str]
    subject: str
    hold_back: bool
    description: str


class IngestionLogRow(_Out):
    batch_id: str
    source: str
    file: str
    started_at: str | None
    finished_at: str | None
    records_in: int
    records_landed: int
    records_quarantined: int
    status: str


class QuarantineCount(_Out):
    source: str
    reason_code: str
    records: int


class DefinitionSummary(_Out):
    kind: str
    name: str
    version: int
    label: str
    description: str


class DefinitionsIndex(_Out):
    definitions: str
    criteria_version: int
    items: list[DefinitionSummary]


class DefinitionOut(_Out):
    kind: str
    name: str
    version: int
    definition: dict[str, Any]
    criteria: dict[str, str] = Field(description="The criteria the definition names, with their descriptions.")
