"""FHIR R4 QuestionnaireResponse as NDJSON (one resource a line): PREM / PROM answers from the DMP.

Why a parser of its own, on the shared FHIR line loop: a response is one resource, not a
Bundle, and its content is answers to a questionnaire the platform declares
(:mod:`pdp.semantic.survey`), not coded clinical events. The line loop, the R4B model
validation (``fhir.resources``) and the value-free fault messages are the GP parser's
(:func:`pdp.ingest.parsers.fhir_ndjson.fhir_resources`), and so is the FR Core reading of the
Patient (:func:`~pdp.ingest.parsers.fhir_ndjson.checked_patient`, with the contained subject
resolved by :func:`~pdp.ingest.parsers.fhir_ndjson.contained_subject` and faults turned into
quarantine rows by :func:`~pdp.ingest.parsers.fhir_ndjson.record_or_quarantine`): the identity goes through
the edge's pseudonymisation like any other source's, and never lands.

What a line must be: ``status`` ``completed`` or ``amended`` (anything else is SURVEY_STATUS:
an unfinished or withdrawn questionnaire is not an answer to count); ``questionnaire`` the
canonical of a questionnaire in force (else CODE_UNKNOWN); ``authored`` a full date; the
subject a ``contained`` Patient (``subject.reference = "#id"``) carrying the identity; every
answer allowed by the questionnaire (else VALUE_INVALID, the item named, never the value).

What it yields: one record per response, record id = the resource id, which the edge keeps
only as a keyed hash (as every record id): the id a patient portal issued is a handle on the
person there. Events (domain ``survey``, code system ``PDP-SURVEY``, dated ``authored``, status
= the response status): one per kept answer (code ``<name>@<version>/<linkId>``, value = item
score on 0-100, source value = the answer code as sent) and the scale score
(``<name>@<version>/score``) when enough items are answered. Free-text answers are read and
dropped: verbatims need de-identification before they may enter the lake.

Measured (CPU time, one core, the synthetic DMP responses of 6 items): ~0.43 ms per response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from pdp.ingest.model import Event, ParseOutcome, Quarantined, SourceRecord
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.parsers.fhir_models import model_class
from pdp.ingest.parsers.fhir_ndjson import (
    FhirIdentityOptions,
    checked_patient,
    contained_subject,
    fhir_resources,
    record_or_quarantine,
)
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.split import split_lines
from pdp.ingest.validate import Invalid
from pdp.semantic.survey import SURVEY_CODE_SYSTEM, AnswerError, questionnaire_for

__all__ = ["ACCEPTED_STATUSES", "QuestionnaireOptions", "parse_questionnaire_responses"]

ACCEPTED_STATUSES = frozenset({"completed", "amended"})


class QuestionnaireOptions(FhirIdentityOptions):
    """Options of the ``fhir_questionnaire_response_ndjson`` parser: the Patient's identifier systems."""

    def code_systems_used(self) -> set[str]:
        return {SURVEY_CODE_SYSTEM}


@parser("fhir_questionnaire_response_ndjson", options=QuestionnaireOptions, produces=("survey",), split=split_lines)
def parse_questionnaire_responses(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """NDJSON of FHIR R4 QuestionnaireResponses (PREM / PROM): one record per line, scored by its questionnaire."""
    opts: QuestionnaireOptions = ctx.spec.parser_options  # type: ignore[assignment]
    for item in fhir_resources(stream, ctx, "QuestionnaireResponse", model_class("QuestionnaireResponse")):
        if isinstance(item, Quarantined):
            yield item
            continue
        position, raw, response = item
        yield record_or_quarantine(_record, response, position, raw, ctx, opts)


def _record(
    response: dict[str, Any], position: int, raw: bytes, ctx: FileContext, opts: QuestionnaireOptions
) -> SourceRecord:
    status = response.get("status")
    if status not in ACCEPTED_STATUSES:
        raise Invalid(ReasonCode.SURVEY_STATUS, "QuestionnaireResponse.status: not completed or amended")
    canonical = response.get("questionnaire")
    questionnaire = questionnaire_for(canonical) if isinstance(canonical, str) else None
    if questionnaire is None:
        raise Invalid(ReasonCode.CODE_UNKNOWN, "QuestionnaireResponse.questionnaire: not a questionnaire in force")
    authored = response.get("authored")
    if not authored:
        raise Invalid(ReasonCode.FIELD_MISSING, "QuestionnaireResponse.authored: no date")
    if len(authored) < 10:
        raise Invalid(ReasonCode.DATE_INVALID, "QuestionnaireResponse.authored: partial date")
    checks = ctx.checks
    day = checks.date(authored[:10], "%Y-%m-%d", "QuestionnaireResponse.authored")
    patient, contained = contained_subject(response)
    identity = checked_patient(patient, contained, ctx, opts,
                               missing="QuestionnaireResponse.subject: no contained Patient")
    try:
        scored = questionnaire.score(response.get("item") or [])
    except AnswerError as exc:
        raise Invalid(ReasonCode.VALUE_INVALID, f"QuestionnaireResponse.{exc}") from None
    if not scored.items:
        raise Invalid(ReasonCode.FIELD_MISSING, "QuestionnaireResponse.item: no answered item")
    events = [
        Event(domain="survey", code_system=SURVEY_CODE_SYSTEM, code=questionnaire.code(link_id), start_date=day,
              value=value, status=status, source_value=answer)
        for link_id, value, answer in scored.items
    ]
    if scored.score is not None:
        events.append(Event(domain="survey", code_system=SURVEY_CODE_SYSTEM, code=questionnaire.score_code,
                            start_date=day, value=scored.score, status=status, source_value=questionnaire.canonical))
    return SourceRecord(
        source=ctx.source,
        file=ctx.file,
        position=position,
        record_id=response.get("id"),
        raw=raw,
        identity=identity,
        events=tuple(events),
    )
