"""The de-identification engine: Presidio + the French spaCy model + the French recognizers,
assembled once per process, and the merge of overlapping findings into typed placeholders.

Why these choices:

* **One model load per process** (:func:`analyzer`, cached): loading ``fr_core_news_md`` takes
  3-8 s; a worker that de-identifies thousands of documents pays it once.
* **Only the NER pipe**: the model's ``ner`` has its own embedding layer, so ``tok2vec``,
  ``morphologizer``, ``parser``, ``attribute_ruler`` and ``lemmatizer`` are excluded at load
  (measured on the synthetic letters: the full pipeline ~40 docs/s, NER alone ~115 docs/s on
  one core), and the model reads only the lines that can hold a name (``ner.model_view``,
  ~2.7 times faster again). Presidio's context enhancer reads lemmas, so none of our recognizers relies on it:
  their context is in their patterns.
* **Merging by painting**: candidates are ordered by type priority (:data:`PRIORITY`: NIR and
  e-mail first, other persons' names last), then longer first, then higher score, then position;
  each paints the characters no earlier candidate painted. So a patient's name inside a
  "Dr ..." match stays ``<NOM>`` and the rest of the match becomes ``<PERSONNE>``; the result is
  the same whatever order the recognizers ran in. Touching pieces of one type are joined.
* **No text in errors or logs**: the engine logs nothing; any failure inside the analysis is
  re-raised as :class:`DeidError` naming the exception type only, without chaining (a chained
  exception could carry a slice of the document).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = [
    "MODEL",
    "PLACEHOLDERS",
    "PRIORITY",
    "DeidError",
    "DeidResult",
    "DeidSpan",
    "analyzer",
    "deidentify",
    "deidentify_many",
]

MODEL = "fr_core_news_md"
_EXCLUDED_PIPES = ("tok2vec", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")
_THRESHOLD = 0.3

PRIORITY: tuple[str, ...] = (
    "NIR", "EMAIL", "TEL", "DATE_NAISSANCE", "ID_HOPITAL", "ADRESSE", "NOM", "PRENOM", "CODE_POSTAL", "PERSONNE",
)
"""Placeholder types, strongest first: on overlap, the earlier type keeps the characters."""

PLACEHOLDERS: dict[str, str] = {t: f"<{t}>" for t in PRIORITY}
_RANK = {t: i for i, t in enumerate(PRIORITY)}
_EDGE = " \t\r\n,;:.()[]\"'«»"


class DeidError(RuntimeError):
    """De-identification failed; the message says what failed, never any of the text."""


@dataclass(frozen=True, slots=True)
class DeidSpan:
    """One redacted span: ``start``/``end`` in the original text, ``out_start``/``out_end`` in the output."""

    type: str
    start: int
    end: int
    score: float
    out_start: int
    out_end: int
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "start": self.start, "end": self.end, "score": round(self.score, 3),
                "out_start": self.out_start, "out_end": self.out_end, "source": self.source}


@dataclass(frozen=True, slots=True)
class DeidResult:
    """The de-identified text and what was redacted (offsets only; the original text is not kept)."""

    text: str
    spans: tuple[DeidSpan, ...]
    terms_version: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "spans": [s.to_json() for s in self.spans], "terms_version": self.terms_version}


@dataclass(frozen=True, slots=True)
class _Candidate:
    type: str
    start: int
    end: int
    score: float
    source: str


def _nlp_engine() -> Any:
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class _NerOnlySpacyEngine(SpacyNlpEngine):
        """Presidio's spaCy engine, loading only the NER pipe of the installed model (no download)."""

        def load(self) -> None:
            import spacy

            try:
                self.nlp = {"fr": spacy.load(MODEL, exclude=list(_EXCLUDED_PIPES))}
            except OSError:
                raise DeidError(f"the spaCy model {MODEL} is not installed (make setup installs it)") from None

    config = NerModelConfiguration(
        model_to_presidio_entity_mapping={"PER": "PERSON"},
        labels_to_ignore=["LOC", "ORG", "MISC"],
        low_score_entity_names=[],
    )
    engine = _NerOnlySpacyEngine(models=[{"lang_code": "fr", "model_name": MODEL}], ner_model_configuration=config)
    engine.load()
    return engine


@lru_cache(maxsize=2)
def analyzer(ner: bool = True) -> Any:
    """The Presidio ``AnalyzerEngine`` with the French recognizers; built once per process and mode."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    from pdp.semantic.deid.recognizers import RECOGNIZERS

    # Presidio logs at INFO/DEBUG (recognizer names, counts); keep its logger quiet at the edge.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    registry = RecognizerRegistry(supported_languages=["fr"])
    for name, cls in sorted(RECOGNIZERS.items()):
        if ner or name != "fr_ner_person":
            registry.add_recognizer(cls())
    nlp_engine = _shared_nlp_engine() if ner else _NoNlpEngine()
    return AnalyzerEngine(
        registry=registry, nlp_engine=nlp_engine, supported_languages=["fr"], default_score_threshold=_THRESHOLD
    )


@lru_cache(maxsize=1)
def _shared_nlp_engine() -> Any:
    return _nlp_engine()


class _NoNlpEngine:
    """Stands in for the NLP engine when the model is not wanted (rules only, no model load)."""

    def process_text(self, text: str, language: str) -> Any:
        from presidio_analyzer.nlp_engine import NlpArtifacts

        return NlpArtifacts(entities=[], tokens=[], tokens_indices=[], lemmas=[], nlp_engine=self, language=language)

    def process_batch(self, texts: Iterable[str], language: str, **_kw: Any) -> Iterator[tuple[str, Any]]:
        for text in texts:
            yield text, self.process_text(text, language)

    def is_loaded(self) -> bool:
        return True

    def get_supported_languages(self) -> list[str]:
        return ["fr"]

    def get_supported_entities(self) -> list[str]:
        return []

    def is_stopword(self, word: str, language: str) -> bool:
        return False

    def is_punct(self, word: str, language: str) -> bool:
        return False


def deidentify(text: str, traits: Any = None, *, ner: bool = True) -> DeidResult:
    """De-identify one document, knowing (optionally) the person's traits.

    ``traits``: a :class:`~pdp.semantic.deid.traits.PersonTraits` or ``None``. ``ner=False`` runs
    the rules only (no model). Raises :class:`DeidError` (no text in it) if anything fails.
    """
    return next(iter(deidentify_many([(text, traits)], ner=ner)))


def deidentify_many(
    items: Iterable[tuple[str, Any]], *, ner: bool = True, batch_size: int = 32
) -> Iterator[DeidResult]:
    """De-identify documents in order; the model runs over batches (``nlp.pipe``), cheaper per document."""
    from pdp.semantic.deid.allowlist import clinical_terms
    from pdp.semantic.deid.recognizers import IdentityRecognizer
    from pdp.semantic.deid.recognizers.ner import model_view

    engine = analyzer(ner)
    version = clinical_terms().version
    buffer: list[tuple[str, Any]] = []

    def flush() -> Iterator[DeidResult]:
        texts = [model_view(t) for t, _ in buffer] if ner else [t for t, _ in buffer]
        try:
            artefacts = [a for _t, a in engine.nlp_engine.process_batch(texts, "fr", batch_size=batch_size)]
            for (text, traits), nlp_artifacts in zip(buffer, artefacts, strict=True):
                adhoc = [IdentityRecognizer(traits)] if traits is not None else None
                found = engine.analyze(text, "fr", nlp_artifacts=nlp_artifacts, ad_hoc_recognizers=adhoc)
                yield _redact(text, found, version)
        except DeidError:
            raise
        except Exception as exc:
            raise DeidError(f"de-identification failed ({type(exc).__name__})") from None
        finally:
            buffer.clear()

    for text, traits in items:
        if not isinstance(text, str):
            raise DeidError("de-identification expects text (str)")
        buffer.append((text, traits))
        if len(buffer) >= batch_size:
            yield from flush()
    if buffer:
        yield from flush()


def merge(candidates: Sequence[_Candidate], length: int, text: str) -> list[_Candidate]:
    """Resolve overlaps: paint characters by priority, then cut runs into spans (see module doc)."""
    order = sorted(candidates, key=lambda c: (_RANK[c.type], -(c.end - c.start), -c.score, c.start, c.source))
    owner = [-1] * length
    for index, cand in enumerate(order):
        for i in range(max(0, cand.start), min(length, cand.end)):
            if owner[i] < 0:
                owner[i] = index
    spans: list[_Candidate] = []
    i = 0
    while i < length:
        if owner[i] < 0:
            i += 1
            continue
        j = i
        while j < length and owner[j] == owner[i]:
            j += 1
        start, end = i, j
        while start < end and text[start] in _EDGE:
            start += 1
        while end > start and text[end - 1] in _EDGE:
            end -= 1
        cand = order[owner[i]]
        if end > start and any(c.isalnum() for c in text[start:end]):
            last = spans[-1] if spans else None
            if last is not None and last.type == cand.type and last.end == start:
                spans[-1] = _Candidate(cand.type, last.start, end, max(last.score, cand.score), last.source)
            else:
                spans.append(_Candidate(cand.type, start, end, cand.score, cand.source))
        i = j
    return spans


def _redact(text: str, found: Sequence[Any], version: int) -> DeidResult:
    candidates = [
        _Candidate(r.entity_type, r.start, r.end, float(r.score),
                   str((r.recognition_metadata or {}).get("recognizer_name", "?")))
        for r in found
        if r.entity_type in _RANK
    ]
    merged = merge(candidates, len(text), text)
    parts: list[str] = []
    spans: list[DeidSpan] = []
    pos = out = 0
    for c in merged:
        parts.append(text[pos:c.start])
        out += c.start - pos
        placeholder = PLACEHOLDERS[c.type]
        parts.append(placeholder)
        spans.append(DeidSpan(c.type, c.start, c.end, c.score, out, out + len(placeholder), c.source))
        out += len(placeholder)
        pos = c.end
    parts.append(text[pos:])
    return DeidResult("".join(parts), tuple(spans), version)
