"""The clinical allow-list: words a French NER model mistakes for persons, kept in the text.

Why a versioned file and not a list in code: over-redaction is measured (``pdp bench nlp``)
and tuned by adding terms; each result reports the list's version so a change of figures can
be traced to a change of list. The file is validated at load and a bad file stops the process
(fail closed, as everywhere at the edge): an unknown key, an empty term, a term written with
accents or capitals (terms are compared folded) or a term listed twice is an error naming the
category, never a silent default.

Example::

    >>> terms = clinical_terms()
    >>> terms.allows("Metformine"), terms.allows("HbA1c"), terms.allows("Dupont")
    (True, True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pdp.semantic.deid.text import fold

__all__ = ["AllowListError", "ClinicalTerms", "clinical_terms", "load_clinical_terms"]


class AllowListError(ValueError):
    """The clinical terms file is unreadable or invalid (the message names the place, not a text)."""


class _TermsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    categories: dict[str, list[str]] = Field(min_length=1)

    @field_validator("categories")
    @classmethod
    def _terms(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        seen: dict[str, str] = {}
        for category, terms in value.items():
            if not terms:
                raise ValueError(f"category {category!r} is empty")
            for term in terms:
                if not isinstance(term, str) or not term.strip() or term != term.strip():
                    raise ValueError(f"category {category!r}: an empty term or one with edge spaces")
                if fold(term) != term:
                    raise ValueError(
                        f"category {category!r}: term {term!r} is not written folded (lower case, no accents)"
                    )
                if term in seen:
                    raise ValueError(f"term {term!r} listed twice ({seen[term]!r} and {category!r})")
                seen[term] = category
        return value


@dataclass(frozen=True, slots=True)
class ClinicalTerms:
    """The validated list: ``allows(words)`` is true when the words are a listed clinical term."""

    version: int
    terms: frozenset[str]

    def allows(self, words: str) -> bool:
        """True if ``words`` (any case, accents, surrounding punctuation) is a listed term."""
        return fold(words).strip(" \t\n.,;:()-'") in self.terms


def load_clinical_terms(path: Path | None = None) -> ClinicalTerms:
    """Read and validate a terms file (the packaged one by default); raise AllowListError if bad."""
    where = str(path) if path is not None else "pdp/semantic/deid/clinical_terms.yml"
    try:
        if path is None:
            text = resources.files("pdp.semantic.deid").joinpath("clinical_terms.yml").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
        parsed = _TermsFile.model_validate(raw)
    except OSError as exc:
        raise AllowListError(f"{where}: cannot be read ({type(exc).__name__})") from None
    except yaml.YAMLError:
        raise AllowListError(f"{where}: not valid YAML") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "file"
        raise AllowListError(f"{where}: {loc}: {first['msg']}") from None
    return ClinicalTerms(parsed.version, frozenset(t for terms in parsed.categories.values() for t in terms))


@lru_cache(maxsize=1)
def clinical_terms() -> ClinicalTerms:
    """The packaged list, loaded once per process."""
    return load_clinical_terms()
