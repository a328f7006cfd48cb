"""De-identification of French free-text reports: one document and the person's known traits in,
de-identified text with typed placeholders and the redacted spans out.

Example (the model loads once per process, 3-8 s; then ~5 ms per 1 KB letter on one core)::

    from pdp.semantic.deid import PersonTraits, deidentify

    traits = PersonTraits(birth_name="Dupont", used_name="Martin", first_names="Jeanne")
    result = deidentify("Mme Jeanne MARTIN née DUPONT, DDN : 14/03/1950, sous Metformine.", traits)
    result.text    # 'Mme <PRENOM> <NOM> née <NOM>, DDN : <DATE_NAISSANCE>, sous Metformine.'
    result.spans   # (DeidSpan(type='PRENOM', start=4, end=10, score=0.95, ...), ...)

What it writes: ``DeidResult.text`` (placeholders ``<NOM>``, ``<PRENOM>``, ``<PERSONNE>``,
``<NIR>``, ``<DATE_NAISSANCE>``, ``<TEL>``, ``<EMAIL>``, ``<ADRESSE>``, ``<CODE_POSTAL>``,
``<ID_HOPITAL>``) and ``DeidResult.spans`` (type, start/end in the original, out_start/out_end in
the output, score, recognizer). The original text is not kept in the result, never logged, and
never put in an error (:class:`DeidError`, :class:`TraitsError` name what failed, not the text).

Measured (``pdp bench nlp``, synthetic letters of ~1 KB, seed 90411): see the README's figures.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.semantic.deid.allowlist import AllowListError, ClinicalTerms, clinical_terms
    from pdp.semantic.deid.engine import (
        PLACEHOLDERS,
        DeidError,
        DeidResult,
        DeidSpan,
        deidentify,
        deidentify_many,
    )
    from pdp.semantic.deid.traits import PersonTraits, TraitsError

__all__ = [
    "PLACEHOLDERS",
    "AllowListError",
    "ClinicalTerms",
    "DeidError",
    "DeidResult",
    "DeidSpan",
    "PersonTraits",
    "TraitsError",
    "clinical_terms",
    "deidentify",
    "deidentify_many",
    "load",
]

_HOME = {
    "AllowListError": "allowlist",
    "ClinicalTerms": "allowlist",
    "clinical_terms": "allowlist",
    "PLACEHOLDERS": "engine",
    "DeidError": "engine",
    "DeidResult": "engine",
    "DeidSpan": "engine",
    "deidentify": "engine",
    "deidentify_many": "engine",
    "PersonTraits": "traits",
    "TraitsError": "traits",
}


def load(*, ner: bool = True) -> None:
    """Load the model and the recognizers now (a worker calls it once at start, not on its first document)."""
    from pdp.semantic.deid.allowlist import clinical_terms
    from pdp.semantic.deid.engine import analyzer

    clinical_terms()
    analyzer(ner)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
