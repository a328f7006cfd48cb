"""The fact pipe's two declarative files, validated and compiled once: ``lexicon.yml`` (what to
find) and ``qualifiers.yml`` (what makes a found fact negated, hypothetical, a relative's, past).

Why validated: a clinician edits these files; a typo must stop the load with the file and the
field named, never silently make a complication vanish. Unknown keys are errors; every pattern
must compile; a measurement's range must be ordered.

Example::

    >>> lex = lexicon()
    >>> lex.version >= 1 and "retinopathy" in lex.concepts and "hba1c" in lex.measurements
    True
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["Code", "Cue", "FactsDefinitionError", "Lexicon", "Qualifiers", "lexicon", "qualifiers"]


class FactsDefinitionError(ValueError):
    """A definition file of the fact pipe is invalid (file and field named)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _oe(pattern: str) -> str:
    # the fold keeps "œ" (one character for one): "oedeme" in a pattern matches both spellings
    return pattern.replace("oe", "(?:oe|œ)")


def _compiles(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(_oe(pattern))
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} does not compile ({exc})") from None
    return patterns


class Code(_Strict):
    system: Literal["CIM-10", "ATC", "LOINC", "SNOMED"]
    value: str = Field(min_length=1)


class Concept(_Strict):
    kind: Literal["condition", "complication", "treatment", "sign"]
    code: Code | None
    terms: list[str] = Field(min_length=1)
    acronyms: list[str] = []

    @field_validator("terms")
    @classmethod
    def _check_terms(cls, value: list[str]) -> list[str]:
        return _compiles(value)


class Measurement(_Strict):
    code: Code
    tests: list[str] = Field(min_length=1)
    units: list[str] = Field(min_length=1)
    range: tuple[float, float]
    pair: bool = False

    @field_validator("tests", "units")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _compiles(value)

    @model_validator(mode="after")
    def _ordered(self) -> Measurement:
        if self.range[0] > self.range[1]:
            raise ValueError("range must be [low, high]")
        return self


class Lexicon(_Strict):
    version: int = Field(ge=1)
    concepts: dict[str, Concept]
    measurements: dict[str, Measurement]

    @model_validator(mode="after")
    def _distinct(self) -> Lexicon:
        both = set(self.concepts) & set(self.measurements)
        if both:
            raise ValueError(f"names used both as concept and measurement: {sorted(both)}")
        return self


class Cue(_Strict):
    cue: str
    reach: int = Field(ge=1, le=400)


class Cues(_Strict):
    before: list[str | Cue] = []
    after: list[str] = []

    @field_validator("before")
    @classmethod
    def _check_before(cls, value: list[str | Cue]) -> list[str | Cue]:
        _compiles([c.cue if isinstance(c, Cue) else c for c in value])
        return value

    @field_validator("after")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _compiles(value)


class FamilyCues(_Strict):
    anywhere: list[str] = Field(min_length=1)

    @field_validator("anywhere")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return _compiles(value)


class Qualifiers(_Strict):
    version: int = Field(ge=1)
    reach: int = Field(ge=1, le=400)
    after_reach: int = Field(ge=1, le=200)
    coordination: str
    clause_break: str
    line_break: str
    pseudo: list[str] = []
    hypothesis: Cues
    negation: Cues
    family: FamilyCues
    history: Cues

    @field_validator("pseudo")
    @classmethod
    def _check_pseudo(cls, value: list[str]) -> list[str]:
        return _compiles(value)

    @field_validator("coordination", "clause_break", "line_break")
    @classmethod
    def _check(cls, value: str) -> str:
        return _compiles([value])[0]


def _load(name: str, model: type[BaseModel]) -> BaseModel:
    text = resources.files("pdp.semantic.facts").joinpath(name).read_text(encoding="utf-8")
    try:
        return model.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise FactsDefinitionError(f"pdp/semantic/facts/{name}: {where}: {first['msg']}") from None


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The lexicon in force (validated once per process)."""
    loaded = _load("lexicon.yml", Lexicon)
    assert isinstance(loaded, Lexicon)
    return loaded


@lru_cache(maxsize=1)
def qualifiers() -> Qualifiers:
    """The qualifier cues in force (validated once per process)."""
    loaded = _load("qualifiers.yml", Qualifiers)
    assert isinstance(loaded, Qualifiers)
    return loaded


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A folded-text pattern as the pipe runs it."""
    return re.compile(_oe(pattern))
