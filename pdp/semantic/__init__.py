"""Terminologies (code systems, concept sets) and free-text semantics.

Public surface: :func:`validate_code` and :data:`CODE_SYSTEMS`, the syntax checks the edge
applies to every incoming code; the concept sets (:func:`concept_sets`, :func:`concept_members_sql`)
through which the population algorithms read silver.
"""

from __future__ import annotations

from pdp.semantic.codes import CODE_SYSTEMS, validate_code
from pdp.semantic.concepts import (
    UnknownConceptError,
    concept_members_sql,
    concept_of,
    concept_sets,
    concept_sets_version,
)

__all__ = [
    "CODE_SYSTEMS",
    "UnknownConceptError",
    "concept_members_sql",
    "concept_of",
    "concept_sets",
    "concept_sets_version",
    "validate_code",
]
