"""Terminologies (code systems, concept sets) and free-text semantics.

Public surface: :func:`validate_code` and :data:`CODE_SYSTEMS`, the syntax checks the edge
applies to every incoming code; the concept sets (:func:`concept_sets`, :func:`concept_members_sql`)
through which the population algorithms read silver; the PREM / PROM questionnaires
(:func:`load_questionnaires`) that score patient-reported answers at the edge and name the codes
the survey indicators read; free-text de-identification (:func:`deidentify`,
:func:`deidentify_many`, :class:`PersonTraits`, from :mod:`pdp.semantic.deid`, loaded on first
use: Presidio and spaCy are heavy imports).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from pdp.semantic.codes import CODE_SYSTEMS, validate_code
from pdp.semantic.concepts import (
    UnknownConceptError,
    concept_members_sql,
    concept_of,
    concept_sets,
    concept_sets_version,
)
from pdp.semantic.survey import (
    SURVEY_CODE_SYSTEM,
    AnswerError,
    Questionnaire,
    SurveyDefinitionError,
    load_questionnaires,
    questionnaire_for,
    questionnaires_version,
)
from pdp.semantic.units import (
    UnitRefused,
    UnitsError,
    convert,
    implied_unit,
    land_unit,
    unit_conversion_sql,
    unit_key,
    units_version,
)

__all__ = [
    "CODE_SYSTEMS",
    "SURVEY_CODE_SYSTEM",
    "AnswerError",
    "DeidError",
    "DeidResult",
    "PersonTraits",
    "Questionnaire",
    "SurveyDefinitionError",
    "UnitRefused",
    "UnitsError",
    "UnknownConceptError",
    "concept_members_sql",
    "concept_of",
    "concept_sets",
    "concept_sets_version",
    "convert",
    "deidentify",
    "deidentify_many",
    "implied_unit",
    "land_unit",
    "load_questionnaires",
    "questionnaire_for",
    "questionnaires_version",
    "unit_conversion_sql",
    "unit_key",
    "units_version",
    "validate_code",
]

_DEID = frozenset({"DeidError", "DeidResult", "PersonTraits", "deidentify", "deidentify_many"})


def __getattr__(name: str) -> Any:
    if name in _DEID:
        value = getattr(import_module("pdp.semantic.deid"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
