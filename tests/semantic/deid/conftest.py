"""Fixtures for the de-identification tests: the model loaded once per session, readable helpers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pdp.semantic.deid import PersonTraits


@pytest.fixture(scope="session")
def deid() -> Callable[..., list[tuple[str, str]]]:
    """``deid(text, traits=None)`` → [(placeholder type, original words)], model loaded once."""
    from pdp.semantic.deid import deidentify, load

    load()

    def run(text: str, traits: PersonTraits | None = None, *, ner: bool = True) -> list[tuple[str, str]]:
        result = deidentify(text, traits, ner=ner)
        return [(s.type, text[s.start:s.end]) for s in result.spans]

    return run


@pytest.fixture(scope="session")
def found() -> Callable[[object, str], list[tuple[str, str]]]:
    """``found(recognizer, text)`` → what one recognizer finds, as (type, words), in text order."""

    def run(recognizer: object, text: str) -> list[tuple[str, str]]:
        results = recognizer.analyze(text, [])  # type: ignore[attr-defined]
        return [(r.entity_type, text[r.start:r.end]) for r in sorted(results, key=lambda r: (r.start, r.end))]

    return run
