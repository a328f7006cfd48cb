"""The recognizer contract: small registered Presidio recognizers over compiled patterns.

Why not Presidio's ``PatternRecognizer``: it returns the whole regex match, while French
identifiers are best found *with* their context ("né le", "IPP :", "Dr") and redacted
*without* it; it also applies the ``IGNORECASE`` flag to every pattern, and a name is a name
because of its capitals. A recognizer here is a class with named, scored patterns, the group to
report, and a ``validate`` hook (e.g. the NIR key) that can change the score — never drop a hit
(a NIR with a wrong key is still a NIR in free text).

Each class registers under a name with :func:`register` and declares the placeholder types it
writes (``ENTITIES``); :data:`RECOGNIZERS` is what the engine assembles.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

__all__ = ["RECOGNIZERS", "FrRecognizer", "Rule", "compile_rules", "register"]

RECOGNIZERS: dict[str, type[FrRecognizer]] = {}


def register(cls: type[FrRecognizer]) -> type[FrRecognizer]:
    """Register a recognizer class under its ``NAME`` (a duplicate name is a programming error)."""
    if cls.NAME in RECOGNIZERS:
        raise ValueError(f"recognizer {cls.NAME!r} registered twice")
    RECOGNIZERS[cls.NAME] = cls
    return cls


@dataclass(frozen=True, slots=True)
class Rule:
    """One named pattern: what it finds (``entity``), its score, and which group is the identifier."""

    name: str
    regex: re.Pattern[str]
    entity: str
    score: float
    group: int | str = 0


class FrRecognizer(EntityRecognizer):
    """Base of the French recognizers: runs ``rules()`` and yields one result per match."""

    NAME: ClassVar[str]
    ENTITIES: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        super().__init__(supported_entities=list(self.ENTITIES), name=self.NAME, supported_language="fr")

    def load(self) -> None:  # patterns are compiled at import time
        pass

    def rules(self) -> Iterable[Rule]:
        return ()

    def validate(self, rule: Rule, match: re.Match[str], text: str) -> float | None:
        """Score of a match (``rule.score`` by default); ``None`` drops it (a shape that is not one)."""
        return rule.score

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for rule in self.rules():
            if entities and rule.entity not in entities:
                continue
            for match in rule.regex.finditer(text):
                start, end = match.span(rule.group)
                if start < 0 or start == end:
                    continue
                score = self.validate(rule, match, text)
                if score is None:
                    continue
                out.append(self.result(rule.entity, start, end, score, rule.name))
        return out

    def result(self, entity: str, start: int, end: int, score: float, rule: str) -> RecognizerResult:
        return RecognizerResult(
            entity_type=entity,
            start=start,
            end=end,
            score=score,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.NAME,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                "rule": rule,
            },
        )


def compile_rules(*rules: tuple[str, str, str, float, int | str], flags: int = 0) -> tuple[Rule, ...]:
    """Rules as plain data: (name, pattern, entity, score, group)."""
    return tuple(Rule(n, re.compile(p, flags), e, s, g) for n, p, e, s, g in rules)

