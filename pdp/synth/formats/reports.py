"""French free-text clinical reports (discharge letters, consultation notes) with exact spans.

Why this writer exists: the platform must de-identify free text and extract clinical facts
from it (DOMAIN: "semantic consolidation of free text"), and both can only be measured
against documents whose every identifier and every fact is known to the character. So each
`Report` of a person becomes a realistic French letter — letterhead, date, patient header as
the sending system knows the patient, "Cher confrère" to the GP, a body stating the report's
facts with their assertion (affirmed, negated, hypothesis, family history), a signature — and
the same pieces that make up the text also make up the ground truth: the document is built by
appending pieces and recording offsets as they are appended, never by searching the text
afterwards, so a span cannot drift from the text it labels.

Phrasing lives in ``report_phrases.yml`` (validated at load, fail closed); the layout varies
(bullets, labelled sections, inline lists, narrative paragraphs), and so do the patient
header, the name forms, the date formats and the sentence order, all drawn from one
``random.Random`` per document seeded from ``world.seed`` and the ``doc_id``: the output does
not depend on chunking or on the worker that renders it.

Outputs for a chunk of persons:
  * ``reports/<2 hex chars of sha256(doc_id)>/<doc_id>.txt``: one UTF-8 document each (256
    shards, so 50 000 documents never sit in one folder);
  * ``reports/index.csv``: the document-sharing metadata (XDS/DMP-like) sent with each file;
  * ``ground_truth/report_spans.jsonl``: one JSON object per document with its spans
    (character offsets, Python ``str`` indexing, i.e. Unicode code points);
  * ``ground_truth/record_links.csv`` rows linking each document to its true person.

Example::

    rendered = render_reports(persons, world, identity_of)
    docs = [r for r in rendered if r.spec.path.endswith(".txt")]

Two styles (``World.report_style``, ``pdp synth --report-style``). "standard" is the phrasing
the NLP pipes were tuned and are tested on. "varied", for evaluation (``pdp bench nlp``), draws
most fact sentences from held-out phrasing (``report_phrases_varied.yml``, checked to copy no
standard template) and gives a share of documents style artefacts: typos inside words (clinical
terms included, and once in a while the patient's name, still labelled PATIENT_NAME), compound
names broken across lines in the header, hard-wrapped lines, numbered lists, lab results pasted
as a table (a FACT covers test, value and unit; the reference range stays outside) and dictation
(spoken punctuation, hesitations, repeated words, lower-case sentences without periods). Each
artefact transforms a piece *before* it is appended, so the spans stay exact; the standard style
draws nothing more from the random stream and is byte-identical to what it was.

Measured performance: 5 000-6 000 documents/s on one core (51 000 documents of ~1 100
characters with their index and spans in 8-10 s), ~4 700/s in the varied style; the test suite
guards a floor of 1 000/s in both styles.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pdp.synth.model import Facility, Person, Professional, Report, ReportFact, SourceIdentity, Stay, age
from pdp.synth.output import RECORD_LINKS, FileSpec, Rendered, record_link
from pdp.synth.world import Commune, World

__all__ = [
    "INDEX_COLUMNS",
    "REPORT_INDEX",
    "REPORT_SPANS",
    "REPORT_STYLES",
    "SPAN_LABELS",
    "render_reports",
    "report_path",
    "supported_concepts",
]

INDEX_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "file",
    "doc_type",
    "date",
    "sender_finess_or_rpps",
    "author_rpps",
    "nir",
    "birth_name",
    "used_name",
    "first_names",
    "birth_date",
    "sex",
)
REPORT_INDEX = FileSpec(path="reports/index.csv", header=",".join(INDEX_COLUMNS) + "\n")
REPORT_SPANS = FileSpec(path="ground_truth/report_spans.jsonl")

SPAN_LABELS: frozenset[str] = frozenset(
    {
        "PATIENT_NAME",
        "PATIENT_FIRST_NAME",
        "BIRTH_DATE",
        "NIR",
        "ADDRESS",
        "PHONE",
        "EMAIL",
        "OTHER_PERSON_NAME",
        "FACILITY",
        "DATE",
        "FACT",
    }
)

Section = Literal["history", "complications", "family", "treatment", "exam", "paraclinical", "conclusion"]
Service = Literal["diabetology", "cardiology", "nephrology", "internal"]
Assertion = Literal["affirmed", "negated", "hypothesis", "family"]
ASSERTIONS: tuple[str, ...] = ("affirmed", "negated", "hypothesis", "family")
ReportStyle = Literal["standard", "varied"]
REPORT_STYLES: tuple[str, ...] = get_args(ReportStyle)

_DOC_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TOKEN_RE = re.compile(r"(\[\[|\]\]|\{[A-Za-z_]+\})")
_NAME_TOKEN_RE = re.compile(r"[^\s,;/]+")
_ELIDING = frozenset("aeiouyhàâäéèêëîïôöùûüAEIOUYHÀÂÉÈÊËÎÏÔÖÙÛÜ")

# Placeholders each kind of template may use (checked when the phrase file is loaded).
_COMMON = frozenset({"e", "il", "patient", "le_patient", "votre_patient"})
_FACT_PLACEHOLDERS = _COMMON | {"depuis", "en", "cote", "imc"}
_FAMILY_PLACEHOLDERS = _FACT_PLACEHOLDERS | {"rel", "poss_rel", "le_rel", "re"}
_INSIDE_SPAN = frozenset({"e", "re", "value", "cote"})
_INTRO_PLACEHOLDERS = _COMMON | {"ident", "age", "de_service", "sejour", "motif"}
_FILLER_PLACEHOLDERS = _COMMON | {"rdv"}
_COMPANION_PLACEHOLDERS = _COMMON | {"proche"}

# Where the onset year of an affirmed fact comes from: the earliest event carrying one of
# these catalog codes before the report (t2d and heart failure use the truth's diagnosis dates).
_ONSET_CATALOG_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "t2d": (("diagnoses", "t2d"),),
    "insulin": (
        ("diagnoses", "insulin_long_term"),
        ("drugs", "insulin_glargine"),
        ("drugs", "insulin_aspart"),
    ),
    "retinopathy": (("diagnoses", "t2d_retinopathy"),),
    "nephropathy": (("diagnoses", "t2d_nephropathy"), ("diagnoses", "ckd_5")),
    "neuropathy": (("diagnoses", "t2d_neuropathy"),),
    "foot_ulcer": (("diagnoses", "foot_ulcer"),),
    "angiopathy": (("diagnoses", "t2d_angiopathy"), ("diagnoses", "arteritis")),
    "amputation": (("diagnoses", "amputation_status"), ("procedures", "amputation")),
    "dialysis": (("diagnoses", "dialysis_status"), ("procedures", "dialysis")),
    "stroke": (("diagnoses", "stroke"),),
    "mi": (("diagnoses", "mi"), ("diagnoses", "old_mi")),
    "hypertension": (("diagnoses", "hypertension"),),
    "obesity": (("diagnoses", "obesity"),),
    "heart_failure": (("diagnoses", "hf"), ("diagnoses", "hf_congestive"), ("diagnoses", "hf_left")),
    "severe_hypoglycaemia": (("diagnoses", "severe_hypo"),),
}

Piece = tuple[str, dict[str, Any] | None]  # text, and the span it forms (None: plain text)


# --------------------------------------------------------------------------------------
# Phrase file: schema, validation, compilation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Template:
    """A template compiled once: ("t", literal) | ("[", "") | ("]", "") | ("p", placeholder)."""

    source: str
    ops: tuple[tuple[str, str], ...]
    spans: int


def _compile(template: str, allowed: frozenset[str], *, spans: int, where: str) -> _Template:
    """Parse a template, refusing unknown placeholders, misplaced spans or a wrong span count.

    Why at load time: a typo in the phrase file would otherwise surface as a wrong ground truth
    in some rare document; refusing the file is the fail-closed behaviour the platform wants.
    """
    ops: list[tuple[str, str]] = []
    inside = False
    count = 0
    for token in _TOKEN_RE.split(template):
        if not token:
            continue
        if token == "[[":
            if inside:
                raise ValueError(f"{where}: nested '[[' in {template!r}")
            inside = True
            count += 1
            ops.append(("[", ""))
        elif token == "]]":
            if not inside:
                raise ValueError(f"{where}: ']]' without '[[' in {template!r}")
            if ops[-1][0] == "[":
                raise ValueError(f"{where}: empty fact span in {template!r}")
            inside = False
            ops.append(("]", ""))
        elif token.startswith("{"):
            name = token[1:-1]
            if name not in allowed:
                raise ValueError(f"{where}: placeholder {{{name}}} not allowed here in {template!r}")
            if inside and name not in _INSIDE_SPAN:
                raise ValueError(f"{where}: placeholder {{{name}}} cannot sit inside a fact span")
            ops.append(("p", name))
        else:
            if "[" in token or "]" in token or "{" in token or "}" in token:
                raise ValueError(f"{where}: stray bracket in {template!r}")
            if inside and ops[-1][0] == "[" and token[0].isspace():
                raise ValueError(f"{where}: fact span starts with a space in {template!r}")
            ops.append(("t", token))
    if inside:
        raise ValueError(f"{where}: '[[' not closed in {template!r}")
    for i, (kind, _arg) in enumerate(ops):
        if kind == "]" and ops[i - 1][0] == "t" and ops[i - 1][1][-1].isspace():
            raise ValueError(f"{where}: fact span ends with a space in {template!r}")
    if count != spans:
        raise ValueError(f"{where}: expected {spans} fact span(s), found {count} in {template!r}")
    if template.rstrip().endswith("."):
        raise ValueError(f"{where}: templates carry no final period: {template!r}")
    return _Template(template, tuple(ops), count)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ValueFormat(_Strict):
    decimals: int = Field(ge=0, le=3)
    thousands: bool = False
    strip_zero: bool = False


class _ConceptPhrases(_Strict):
    section: Section
    service: Service
    nouns: list[str]
    value: _ValueFormat | None = None
    affirmed: list[str] = Field(min_length=2)
    negated: list[str] = Field(min_length=2)
    hypothesis: list[str] = Field(min_length=2)
    family: list[str] = []


class _NegationGroup(_Strict):
    head: str
    sep: str
    last: str
    tail: str


class _RelativeForms(_Strict):
    forms: list[str] = Field(min_length=1)
    feminine: bool


class _Companion(_Strict):
    link: str
    feminine: bool


class _PhraseFile(_Strict):
    concepts: dict[str, _ConceptPhrases]
    negation_groups: list[_NegationGroup] = Field(min_length=1)
    relatives: dict[str, _RelativeForms]
    default_relatives: list[str] = Field(min_length=1)
    companions: list[_Companion] = Field(min_length=1)
    female_first_names: list[str] = Field(min_length=3)
    male_first_names: list[str] = Field(min_length=3)
    companion_family_names: list[str] = Field(min_length=3)
    companion_sentences: list[str] = Field(min_length=1)
    months: list[str] = Field(min_length=12, max_length=12)
    services: dict[Service, list[str]]
    specialist_titles: dict[Service, list[str]]
    stay_motifs: dict[str, list[str]]
    generic_motifs: dict[Literal["discharge_letter", "consultation_note"], list[str]]
    intros: dict[Literal["discharge_letter", "consultation_note", "referral"], list[str]]
    section_titles: dict[Section, list[str]]
    narrative_leads: dict[Section, list[str]]
    fillers: dict[Section, list[str]]
    salutations: list[str] = Field(min_length=1)
    closings: list[str] = Field(min_length=1)
    sign_offs: list[str] = Field(min_length=1)
    subjects: dict[Literal["discharge_letter", "consultation_note", "referral"], list[str]]

    @model_validator(mode="after")
    def _complete(self) -> _PhraseFile:
        """Every section, service and document kind must have phrasing: no silent gaps."""
        for name, mapping, keys in (
            ("services", self.services, get_args(Service)),
            ("specialist_titles", self.specialist_titles, get_args(Service)),
            ("section_titles", self.section_titles, get_args(Section)),
            ("narrative_leads", self.narrative_leads, get_args(Section)),
            ("fillers", self.fillers, get_args(Section)),
            ("intros", self.intros, ("discharge_letter", "consultation_note", "referral")),
            ("subjects", self.subjects, ("discharge_letter", "consultation_note", "referral")),
            ("generic_motifs", self.generic_motifs, ("discharge_letter", "consultation_note")),
        ):
            missing = [k for k in keys if not mapping.get(k)]
            if missing:
                raise ValueError(f"{name}: no phrasing for {missing}")
        for rel in self.default_relatives:
            if rel not in self.relatives:
                raise ValueError(f"default_relatives: {rel!r} is not in relatives")
        return self


@dataclass(frozen=True, slots=True)
class _Concept:
    key: str
    section: str
    service: str
    nouns: tuple[str, ...]
    value: _ValueFormat | None
    templates: dict[str, tuple[_Template, ...]]


@dataclass(frozen=True, slots=True)
class _Phrasebook:
    """The validated phrase file with every template compiled."""

    raw: _PhraseFile
    concepts: dict[str, _Concept]
    intros: dict[str, tuple[_Template, ...]]
    fillers: dict[str, tuple[_Template, ...]]
    companion_sentences: tuple[_Template, ...]
    closings: tuple[_Template, ...]


def _build_phrasebook(raw: _PhraseFile) -> _Phrasebook:
    concepts: dict[str, _Concept] = {}
    for key, c in raw.concepts.items():
        templates: dict[str, tuple[_Template, ...]] = {}
        for assertion in ASSERTIONS:
            sources: list[str] = getattr(c, assertion)
            if assertion == "family" and c.value is not None:
                if sources:
                    raise ValueError(f"concepts.{key}: a measurement has no family-history phrasing")
                continue
            if not sources:
                raise ValueError(f"concepts.{key}.{assertion}: no template")
            allowed = _FAMILY_PLACEHOLDERS if assertion == "family" else _FACT_PLACEHOLDERS
            if c.value is not None and assertion != "negated":
                allowed = allowed | {"value"}
            compiled = tuple(_compile(s, allowed, spans=1, where=f"concepts.{key}.{assertion}") for s in sources)
            for t in compiled:
                names = {arg for kind, arg in t.ops if kind == "p"}
                if assertion == "family" and not names & {"rel", "poss_rel", "le_rel"}:
                    raise ValueError(f"concepts.{key}.family: {t.source!r} does not name the relative")
                if "value" in allowed and "value" not in names:
                    raise ValueError(f"concepts.{key}.{assertion}: {t.source!r} does not quote {{value}}")
            templates[assertion] = compiled
        concepts[key] = _Concept(key, c.section, c.service, tuple(c.nouns), c.value, templates)
    return _Phrasebook(
        raw=raw,
        concepts=concepts,
        intros={
            kind: tuple(_compile(s, _INTRO_PLACEHOLDERS, spans=0, where=f"intros.{kind}") for s in items)
            for kind, items in raw.intros.items()
        },
        fillers={
            section: tuple(_compile(s, _FILLER_PLACEHOLDERS, spans=0, where=f"fillers.{section}") for s in items)
            for section, items in raw.fillers.items()
        },
        companion_sentences=tuple(
            _compile(s, _COMPANION_PLACEHOLDERS, spans=0, where="companion_sentences") for s in raw.companion_sentences
        ),
        closings=tuple(_compile(s.removesuffix("."), _COMMON, spans=0, where="closings") for s in raw.closings),
    )


@lru_cache(maxsize=1)
def _phrasebook() -> _Phrasebook:
    """Load, validate and compile report_phrases.yml once per process."""
    text = resources.files("pdp.synth.formats").joinpath("report_phrases.yml").read_text(encoding="utf-8")
    return _build_phrasebook(_PhraseFile.model_validate(yaml.safe_load(text)))


class _LabRow(_Strict):
    labels: list[str] = Field(min_length=1)
    unit: str
    references: list[str] = Field(min_length=1)


class _VariedConcept(_Strict):
    affirmed: list[str] = []
    negated: list[str] = []
    hypothesis: list[str] = []
    family: list[str] = []


class _VariedFile(_Strict):
    concepts: dict[str, _VariedConcept]
    relative_forms: dict[str, list[str]]
    negation_groups: list[_NegationGroup] = Field(min_length=1)
    lab_rows: dict[str, _LabRow]
    lab_fillers: list[tuple[str, str, str, str]] = Field(min_length=3)
    lab_titles: list[str] = Field(min_length=1)
    hesitations: list[str] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class _Varied:
    """The held-out phrasing (report_phrases_varied.yml), compiled and checked against the main file."""

    raw: _VariedFile
    templates: dict[str, dict[str, tuple[_Template, ...]]]  # concept -> assertion -> templates


def _build_varied(raw: _VariedFile, book: _Phrasebook) -> _Varied:
    """Compile the held-out templates with the same rules as the main file (fail closed)."""
    templates: dict[str, dict[str, tuple[_Template, ...]]] = {}
    for key, c in raw.concepts.items():
        concept = book.concepts.get(key)
        if concept is None:
            raise ValueError(f"varied concepts.{key}: not a concept of report_phrases.yml")
        by_assertion: dict[str, tuple[_Template, ...]] = {}
        for assertion in ASSERTIONS:
            sources: list[str] = getattr(c, assertion)
            if not sources:
                continue
            if assertion not in concept.templates:
                raise ValueError(f"varied concepts.{key}.{assertion}: the concept has no such assertion")
            allowed = _FAMILY_PLACEHOLDERS if assertion == "family" else _FACT_PLACEHOLDERS
            if concept.value is not None and assertion != "negated":
                allowed = allowed | {"value"}
            where = f"varied concepts.{key}.{assertion}"
            compiled = tuple(_compile(src, allowed, spans=1, where=where) for src in sources)
            for t in compiled:
                names = {arg for kind, arg in t.ops if kind == "p"}
                if assertion == "family" and not names & {"rel", "poss_rel", "le_rel"}:
                    raise ValueError(f"{where}: {t.source!r} does not name the relative")
                if "value" in allowed and "value" not in names:
                    raise ValueError(f"{where}: {t.source!r} does not quote {{value}}")
                if t.source in {x.source for x in concept.templates[assertion]}:
                    raise ValueError(f"{where}: {t.source!r} copies report_phrases.yml (not held out)")
            by_assertion[assertion] = compiled
        templates[key] = by_assertion
    for rel in raw.relative_forms:
        if rel not in book.raw.relatives:
            raise ValueError(f"varied relative_forms: {rel!r} is not in relatives")
    for key in raw.lab_rows:
        if key not in book.concepts or book.concepts[key].value is None:
            raise ValueError(f"varied lab_rows: {key!r} is not a measurement concept")
    return _Varied(raw=raw, templates=templates)


@lru_cache(maxsize=1)
def _varied_book() -> _Varied:
    """Load, validate and compile report_phrases_varied.yml once per process."""
    text = resources.files("pdp.synth.formats").joinpath("report_phrases_varied.yml").read_text(encoding="utf-8")
    return _build_varied(_VariedFile.model_validate(yaml.safe_load(text)), _phrasebook())


def supported_concepts() -> frozenset[str]:
    """Concept keys a `ReportFact` may carry."""
    return frozenset(_phrasebook().concepts)


def report_path(doc_id: str) -> str:
    """Where a document lands: sharded by a stable hash so no folder holds thousands of files."""
    if not _DOC_ID_RE.fullmatch(doc_id):
        raise ValueError(f"doc_id {doc_id!r} is not usable as a file name")
    shard = hashlib.sha256(doc_id.encode("utf-8")).hexdigest()[:2]
    return f"reports/{shard}/{doc_id}.txt"


# --------------------------------------------------------------------------------------
# Document text with offsets recorded as it is appended
# --------------------------------------------------------------------------------------


_TYPO_WORD_RE = re.compile(r"[^\W\d_]{5,}")
_DICTATION_WORD_RE = re.compile(r"\b[a-zàâéèêîôûç']{2,}\b")


def _typo(word: str, rng: random.Random) -> str:
    """A keyboard slip inside a word: two letters swapped, one dropped or doubled.

    First and last letters are kept, so a labelled word still starts and ends where it did.
    """
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    roll = rng.random()
    if roll < 0.5 and word[i] != word[i + 1]:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if roll < 0.8:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


@dataclass(slots=True)
class _Noise:
    """Style artefacts of one "varied" document, applied to each piece as it is appended.

    Every transformation happens before the piece is appended, so offsets are recorded on the
    final text: a span labels exactly the (possibly misspelt, wrapped) characters it covers.
    """

    rng: random.Random
    typo_rate: float = 0.0  # per eligible word of plain text (FACT words: twice as often)
    name_typo: bool = False  # one mention of the patient's name misspelt
    name_breaks: bool = False  # compound names broken across lines in the header
    wrap: int | None = None  # hard-wrapped at this column (a space becomes a line break)
    dictated: bool = False  # body transcribed from dictation
    hesitations: tuple[str, ...] = ()
    dictating: bool = False  # inside the dictated part right now
    raw: bool = False  # copied block (lab table): no artefact
    col: int = 0

    @classmethod
    def draw(cls, rng: random.Random, varied: _Varied) -> _Noise:
        return cls(
            rng=rng,
            typo_rate=rng.choice((0.02, 0.04)) if rng.random() < 0.35 else 0.0,
            name_typo=rng.random() < 0.08,
            name_breaks=rng.random() < 0.25,
            wrap=rng.randint(60, 90) if rng.random() < 0.15 else None,
            dictated=rng.random() < 0.15,
            hesitations=tuple(varied.raw.hesitations),
        )

    def _typos(self, text: str, rate: float) -> str:
        rng = self.rng

        def slip(m: re.Match[str]) -> str:
            word = m.group(0)
            if not word[1:].islower() or rng.random() >= rate:
                return word
            return _typo(word, rng)

        return _TYPO_WORD_RE.sub(slip, text)

    def _dictation(self, text: str) -> str:
        """Spoken punctuation, a hesitation or a repeated word, as a speech transcript leaves them."""
        rng = self.rng
        if len(text) > 12 and rng.random() < 0.12:
            words = list(_DICTATION_WORD_RE.finditer(text))
            if words:
                w = rng.choice(words)
                if rng.random() < 0.5:
                    text = text[: w.start()] + rng.choice(self.hesitations) + " " + text[w.start() :]
                else:
                    text = text[: w.end()] + " " + w.group(0) + text[w.end() :]
        if ", " in text:
            text = re.sub(", ", lambda _m: " virgule " if rng.random() < 0.7 else ", ", text)
        return text

    def _wrap(self, text: str) -> str:
        width, col = self.wrap, self.col
        if width is None:
            return text
        if "\n" not in text and col + len(text) < width:
            self.col = col + len(text)
            return text
        chars = list(text)
        for i, ch in enumerate(chars):
            if ch == "\n":
                col = 0
            elif ch == " " and col >= width:
                chars[i] = "\n"
                col = 0
            else:
                col += 1
        self.col = col
        return "".join(chars)

    def apply(self, text: str, meta: dict[str, Any] | None, *, verbatim: bool = False) -> str:
        if self.raw or verbatim or not text:
            if self.wrap is not None and text:
                self.col = len(text) - text.rfind("\n") - 1 if "\n" in text else self.col + len(text)
            return text
        if meta is None:
            if self.dictating:
                text = self._dictation(text)
            if self.typo_rate:
                text = self._typos(text, self.typo_rate)
        elif meta["label"] == "FACT" and self.typo_rate:
            text = self._typos(text, 2 * self.typo_rate)
        return self._wrap(text)


class _Text:
    """Append-only text that records the span of each labelled piece as it is appended."""

    __slots__ = ("_parts", "_pos", "noise", "spans")

    def __init__(self, noise: _Noise | None = None) -> None:
        self._parts: list[str] = []
        self._pos = 0
        self.spans: list[dict[str, Any]] = []
        self.noise = noise

    def add(self, text: str, *, verbatim: bool = False) -> None:
        """Append plain text; `verbatim` keeps it from the style artefacts (a spoken "point")."""
        if self.noise is not None:
            text = self.noise.apply(text, None, verbatim=verbatim)
        self._parts.append(text)
        self._pos += len(text)

    def add_pieces(self, pieces: Sequence[Piece]) -> None:
        parts, pos, noise = self._parts, self._pos, self.noise
        for text, meta in pieces:
            if noise is not None:
                text = noise.apply(text, meta)
            parts.append(text)
            start = pos
            pos += len(text)
            if meta is None:
                continue
            if not text:
                raise ValueError(f"empty {meta['label']} span")
            span: dict[str, Any] = {"start": start, "end": pos, "label": meta["label"], "text": text}
            for key, val in meta.items():
                if key != "label":
                    span[key] = val
            self.spans.append(span)
        self._pos = pos

    def value(self) -> str:
        return "".join(self._parts)


def _span(text: str, label: str) -> Piece:
    return (text, {"label": label})


def _capitalize(pieces: list[Piece]) -> list[Piece]:
    """Upper-case the first letter of a sentence, inside a span if the span opens it."""
    for i, (text, meta) in enumerate(pieces):
        if text:
            if text[0].islower():
                pieces = [*pieces[:i], (text[0].upper() + text[1:], meta), *pieces[i + 1 :]]
            return pieces
    return pieces


def _lowercase_start(pieces: list[Piece]) -> list[Piece]:
    """Lower-case a capitalised common word opening a phrase placed after a comma or a lead."""
    for i, (text, meta) in enumerate(pieces):
        if text:
            word = text.split(" ", 1)[0]
            if len(word) > 1 and word[0].isupper() and word[1:].islower() and meta is None:
                pieces = [*pieces[:i], (text[0].lower() + text[1:], meta), *pieces[i + 1 :]]
            return pieces
    return pieces


# --------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------


def _french_number(value: float, fmt: _ValueFormat, rng: random.Random) -> str:
    """A value as a French clinician writes it: decimal comma, optional thousands spacing."""
    decimals = fmt.decimals
    if fmt.strip_zero and float(value).is_integer():
        decimals = 0
    text = f"{value:.{decimals}f}"
    integer, _, fraction = text.partition(".")
    if fmt.thousands and len(integer.lstrip("-")) > 3:
        sep = rng.choice((" ", "", "\u202f"))
        sign = "-" if integer.startswith("-") else ""
        digits = integer.lstrip("-")
        groups = []
        while digits:
            groups.insert(0, digits[-3:])
            digits = digits[:-3]
        integer = sign + sep.join(groups)
    return f"{integer},{fraction}" if fraction else integer


def _format_phone(phone: str, rng: random.Random) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) != 10 or not digits.startswith("0"):
        return phone
    pairs = [digits[i : i + 2] for i in range(0, 10, 2)]
    style = rng.randrange(5)
    if style == 0:
        return digits
    if style == 1:
        return ".".join(pairs)
    if style == 2:
        return "+33 " + digits[1] + " " + " ".join(pairs[1:])
    return " ".join(pairs)


def _format_nir(nir: str, rng: random.Random) -> str:
    if len(nir) != 15 or rng.random() < 0.35:
        return nir
    return " ".join((nir[0], nir[1:3], nir[3:5], nir[5:7], nir[7:10], nir[10:13], nir[13:15]))


def _title_name(name: str) -> str:
    """ "LEFÈVRE-DUPONT" -> "Lefèvre-Dupont": how names read in running text."""
    return name.title()


# --------------------------------------------------------------------------------------
# Per-render context
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _WorldIndex:
    """Look-ups built once per chunk instead of scanning the world's tuples per document."""

    world: World
    facilities: dict[str, Facility]
    gps: dict[str, Professional]
    communes: dict[str, Commune]
    onset_codes: dict[str, frozenset[str]]

    @classmethod
    def build(cls, world: World) -> _WorldIndex:
        catalog = world.catalog
        onset: dict[str, frozenset[str]] = {}
        for concept, keys in _ONSET_CATALOG_KEYS.items():
            codes = set()
            for section, key in keys:
                entry = catalog.get(section, {}).get(key)
                if entry is not None:
                    codes.add(str(entry["code"]))
            onset[concept] = frozenset(codes)
        return cls(
            world=world,
            facilities={f.finess: f for f in (*world.hospitals, *world.labs, *world.pharmacies)},
            gps={p.rpps: p for p in world.gps},
            communes={c.code: c for c in world.communes},
            onset_codes=onset,
        )


@dataclass(slots=True)
class _FactContext:
    fact: ReportFact
    concept: _Concept
    onset: date | None
    relative_key: str | None = None
    relative_form: str = ""
    relative_feminine: bool = False


@dataclass(slots=True)
class _Item:
    section: str
    pieces: list[Piece]


@dataclass(slots=True)
class _DocContext:
    """Everything one document's rendering draws on; placeholders resolve against it."""

    rng: random.Random
    book: _Phrasebook
    index: _WorldIndex
    person: Person
    report: Report
    sid: SourceIdentity
    stay: Stay | None
    mode: Literal["to_gp", "referral"]
    sender: Facility | None
    service_key: str
    service: str
    feminine: bool
    name_style: Literal["upper", "title", "as_is"]
    date_style: int
    author_title: str
    earliest_codes: dict[str, date] | None = None
    used_companions: set[str] = field(default_factory=set)
    varied: _Varied | None = None  # the held-out phrasing, in the "varied" style only
    noise: _Noise | None = None  # this document's style artefacts, in the "varied" style only

    # ---- names -------------------------------------------------------------------------

    def styled(self, name: str) -> str:
        if self.name_style == "upper":
            return name.upper()
        if self.name_style == "title":
            return _title_name(name)
        return name

    def main_name(self) -> str:
        return self.sid.used_name or self.sid.birth_name

    def first_first_name(self) -> str | None:
        match = _NAME_TOKEN_RE.search(self.sid.first_names)
        return match.group(0) if match else None

    def ident(self) -> list[Piece]:
        """The patient named in the body: civility, family name, sometimes first and birth name."""
        rng = self.rng
        civ = ("Mme" if self.feminine else "M.") if rng.random() < 0.8 else ("Madame" if self.feminine else "Monsieur")
        written = self.styled(self.main_name())
        if self.noise is not None and self.noise.name_typo:
            # Misspelt once (the first mention in the body): still the patient's name.
            self.noise.name_typo = False
            written = _typo(written, rng)
        name = _span(written, "PATIENT_NAME")
        first = self.first_first_name()
        form = rng.randrange(4)
        if first is None or form == 3:
            pieces: list[Piece] = [(civ + " ", None), name]
        elif form == 0:
            pieces = [(civ + " ", None), name, (" ", None), _span(first, "PATIENT_FIRST_NAME")]
        else:
            pieces = [(civ + " ", None), _span(first, "PATIENT_FIRST_NAME"), (" ", None), name]
        if self.sid.used_name and rng.random() < 0.3:
            born = "née " if self.feminine else "né "
            pieces += [(" (" + born, None), _span(self.styled(self.sid.birth_name), "PATIENT_NAME"), (")", None)]
        return pieces

    def professional(self, prof: Professional, *, title: str | None = None) -> list[Piece]:
        """A doctor's name: title, then first and family name (OTHER_PERSON_NAME spans)."""
        title = title or self.rng.choice(("Dr", "Dr", "Docteur"))
        family = _span(prof.family_name.upper(), "OTHER_PERSON_NAME")
        first = _span(prof.first_name, "OTHER_PERSON_NAME")
        if self.rng.random() < 0.75:
            return [(title + " ", None), first, (" ", None), family]
        return [(title + " ", None), family, (" ", None), first]

    # ---- dates -------------------------------------------------------------------------

    def fmt_date(self, day: date) -> str:
        style = self.date_style if self.rng.random() < 0.95 else self.rng.randrange(4)
        if style == 0:
            return f"{day.day:02d}/{day.month:02d}/{day.year}"
        if style == 1:
            first = "1er" if day.day == 1 else str(day.day)
            return f"{first} {self.book.raw.months[day.month - 1]} {day.year}"
        if style == 2:
            return f"{day.day:02d}.{day.month:02d}.{day.year}"
        return f"{day.day:02d}/{day.month:02d}/{day.year % 100:02d}"

    def date_piece(self, day: date) -> Piece:
        return _span(self.fmt_date(day), "DATE")

    def onset_of(self, concept: str) -> date | None:
        """When the affirmed condition began, from the truth or the earliest coded event."""
        truth = self.person.truth
        candidate: date | None
        if concept == "t2d":
            candidate = truth.diagnosis_date
        elif concept == "heart_failure":
            candidate = truth.hf_diagnosis_date
        else:
            if self.earliest_codes is None:
                earliest: dict[str, date] = {}
                for event in self.person.events:
                    known = earliest.get(event.code)
                    if known is None or event.day < known:
                        earliest[event.code] = event.day
                self.earliest_codes = earliest
            days = [self.earliest_codes[c] for c in self.index.onset_codes.get(concept, ()) if c in self.earliest_codes]
            candidate = min(days) if days else None
        if candidate is None or candidate >= self.report.day:
            return None
        return candidate

    # ---- template rendering --------------------------------------------------------------

    def render(self, template: _Template, fact: _FactContext | None = None) -> list[Piece]:
        out: list[Piece] = []
        buffer: list[str] | None = None
        for kind, arg in template.ops:
            if kind == "t":
                if buffer is None:
                    out.append((arg, None))
                else:
                    buffer.append(arg)
            elif kind == "[":
                buffer = []
            elif kind == "]":
                assert fact is not None and buffer is not None
                out.append(("".join(buffer), _fact_meta(fact)))
                buffer = None
            else:
                pieces = _PLACEHOLDERS[arg](self, fact)
                if buffer is None:
                    out.extend(pieces)
                else:
                    buffer.extend(text for text, _ in pieces)
        return out


def _fact_meta(fact: _FactContext) -> dict[str, Any]:
    meta: dict[str, Any] = {"label": "FACT", "concept": fact.fact.concept, "assertion": fact.fact.assertion}
    if fact.fact.value is not None:
        meta["value"] = fact.fact.value
    if fact.relative_key is not None:
        meta["relative"] = fact.relative_key
    return meta


def _ph_depuis(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    onset = fact.onset if fact else None
    if onset is None or ctx.rng.random() < 0.15:
        return []
    roll = ctx.rng.random()
    years = age(onset, ctx.report.day)
    if roll < 0.2 and years >= 2:
        return [(f" depuis {years} ans", None)]
    if roll < 0.4:
        return [(" depuis ", None), _span(f"{ctx.book.raw.months[onset.month - 1]} {onset.year}", "DATE")]
    if roll < 0.5:
        return [(" (depuis ", None), _span(str(onset.year), "DATE"), (")", None)]
    return [(" depuis ", None), _span(str(onset.year), "DATE")]


def _ph_en(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    onset = fact.onset if fact else None
    if onset is None or ctx.rng.random() < 0.15:
        return []
    roll = ctx.rng.random()
    if roll < 0.25:
        return [(" en ", None), _span(f"{ctx.book.raw.months[onset.month - 1]} {onset.year}", "DATE")]
    if roll < 0.4:
        return [(" (", None), _span(f"{onset.month:02d}/{onset.year}", "DATE"), (")", None)]
    return [(" en ", None), _span(str(onset.year), "DATE")]


def _ph_imc(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    bmi = ctx.person.truth.bmi
    if bmi is None or bmi < 25 or ctx.rng.random() < 0.4:
        return []
    text = _french_number(bmi, _ValueFormat(decimals=1), ctx.rng)
    return [(f" (IMC {text} kg/m²)", None)]


def _ph_value(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    assert fact is not None and fact.fact.value is not None and fact.concept.value is not None
    return [(_french_number(fact.fact.value, fact.concept.value, ctx.rng), None)]


def _ph_rel(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    assert fact is not None
    return [(fact.relative_form, None)]


def _ph_poss_rel(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    assert fact is not None
    return [(("sa " if fact.relative_feminine else "son ") + fact.relative_form, None)]


def _ph_le_rel(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    assert fact is not None
    form = fact.relative_form
    article = "l'" if form[0] in _ELIDING else "la " if fact.relative_feminine else "le "
    return [(article + form, None)]


def _ph_re(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    assert fact is not None
    return [("e" if fact.relative_feminine else "", None)]


def _ph_proche(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    """A named relative ("sa fille, Mme Claire MARTIN"), never sharing the patient's names."""
    rng, raw = ctx.rng, ctx.book.raw
    companion = rng.choice(raw.companions)
    patient_names = {ctx.sid.birth_name.upper(), (ctx.sid.used_name or "").upper()}
    patient_first = {t.upper() for t in _NAME_TOKEN_RE.findall(ctx.sid.first_names)}
    pool_first = raw.female_first_names if companion.feminine else raw.male_first_names
    first = rng.choice([n for n in pool_first if n.upper() not in patient_first] or pool_first)
    family = rng.choice([n for n in raw.companion_family_names if n.upper() not in patient_names])
    poss = "sa " if companion.feminine else "son "
    civ = "Mme " if companion.feminine else "M. "
    pieces: list[Piece] = [(poss + companion.link, None)]
    if rng.random() < 0.7:
        pieces += [
            (", " + civ, None),
            _span(first, "OTHER_PERSON_NAME"),
            (" ", None),
            _span(family, "OTHER_PERSON_NAME"),
        ]
    else:
        pieces += [
            (" (", None),
            _span(first, "OTHER_PERSON_NAME"),
            (" ", None),
            _span(family, "OTHER_PERSON_NAME"),
            (")", None),
        ]
    if rng.random() < 0.2:
        number = "06" + "".join(str(rng.randrange(10)) for _ in range(8))
        pieces += [(", joignable au ", None), _span(_format_phone(number, rng), "PHONE")]
    return pieces


def _ph_rdv(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    return [ctx.date_piece(ctx.report.day + timedelta(days=ctx.rng.randint(30, 200)))]


def _ph_sejour(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    if ctx.stay is None or ctx.rng.random() < 0.15:
        return []
    return [(" du ", None), ctx.date_piece(ctx.stay.admission), (" au ", None), ctx.date_piece(ctx.stay.discharge)]


def _ph_motif(ctx: _DocContext, fact: _FactContext | None) -> list[Piece]:
    raw, rng = ctx.book.raw, ctx.rng
    if ctx.stay is not None and ctx.stay.principal_dx in raw.stay_motifs and rng.random() < 0.8:
        return [(" pour " + rng.choice(raw.stay_motifs[ctx.stay.principal_dx]), None)]
    if rng.random() < 0.5:
        return []
    kind = "discharge_letter" if ctx.report.kind == "discharge_letter" else "consultation_note"
    return [(" pour " + rng.choice(raw.generic_motifs[kind]), None)]


_PLACEHOLDERS: dict[str, Callable[[_DocContext, _FactContext | None], list[Piece]]] = {
    "e": lambda ctx, _: [("e" if ctx.feminine else "", None)],
    "il": lambda ctx, _: [("elle" if ctx.feminine else "il", None)],
    "patient": lambda ctx, _: [("patiente" if ctx.feminine else "patient", None)],
    "le_patient": lambda ctx, _: [("la patiente" if ctx.feminine else "le patient", None)],
    "votre_patient": lambda ctx, _: [("votre patiente" if ctx.feminine else "votre patient", None)],
    "ident": lambda ctx, _: ctx.ident(),
    "age": lambda ctx, _: [(str(max(0, age(ctx.sid.birth_date, ctx.report.day))), None)],
    "de_service": lambda ctx, _: [(_de(ctx.service), None)],
    "sejour": _ph_sejour,
    "motif": _ph_motif,
    "depuis": _ph_depuis,
    "en": _ph_en,
    "cote": lambda ctx, _: [(ctx.rng.choice(("droit", "gauche")), None)],
    "imc": _ph_imc,
    "value": _ph_value,
    "rel": _ph_rel,
    "poss_rel": _ph_poss_rel,
    "le_rel": _ph_le_rel,
    "re": _ph_re,
    "proche": _ph_proche,
    "rdv": _ph_rdv,
}


# --------------------------------------------------------------------------------------
# Facts: validation, sentences, sections
# --------------------------------------------------------------------------------------


def _check_fact(report: Report, fact: ReportFact, book: _Phrasebook) -> _Concept:
    """Refuse a fact the text could not state truthfully (the ground truth would lie)."""
    concept = book.concepts.get(fact.concept)
    where = f"report {report.doc_id}"
    if concept is None:
        raise ValueError(f"{where}: unknown concept {fact.concept!r} (supported: {', '.join(sorted(book.concepts))})")
    if fact.assertion not in ASSERTIONS:
        raise ValueError(f"{where}: unknown assertion {fact.assertion!r} for concept {fact.concept!r}")
    if concept.value is not None:
        if fact.assertion == "family":
            raise ValueError(f"{where}: concept {fact.concept!r} is a measurement, it has no family history")
        if fact.assertion == "negated" and fact.value is not None:
            raise ValueError(f"{where}: negated measurement {fact.concept!r} cannot carry a value")
        if fact.assertion != "negated" and (fact.value is None or not math.isfinite(fact.value)):
            raise ValueError(f"{where}: measurement {fact.concept!r} needs a finite value, got {fact.value!r}")
    elif fact.value is not None:
        raise ValueError(f"{where}: concept {fact.concept!r} takes no value, got {fact.value!r}")
    if fact.relative is not None and fact.assertion != "family":
        raise ValueError(f"{where}: relative {fact.relative!r} given on a non-family fact {fact.concept!r}")
    if fact.relative is not None and fact.relative not in book.raw.relatives:
        raise ValueError(
            f"{where}: unknown relative {fact.relative!r} (known: {', '.join(sorted(book.raw.relatives))})"
        )
    return concept


def _fact_context(ctx: _DocContext, fact: ReportFact, concept: _Concept) -> _FactContext:
    onset = ctx.onset_of(fact.concept) if fact.assertion == "affirmed" else None
    fc = _FactContext(fact=fact, concept=concept, onset=onset)
    if fact.assertion == "family":
        key = fact.relative or ctx.rng.choice(ctx.book.raw.default_relatives)
        forms = ctx.book.raw.relatives[key]
        fc.relative_key = key
        fc.relative_form = ctx.rng.choice(forms.forms)
        fc.relative_feminine = forms.feminine
        if ctx.varied is not None and key in ctx.varied.raw.relative_forms and ctx.rng.random() < 0.4:
            fc.relative_form = ctx.rng.choice(ctx.varied.raw.relative_forms[key])
    return fc


def _de(noun: str) -> str:
    """ "de" + noun with French elision: "de cardiologie", "d'endocrinologie"."""
    return ("d'" if noun[0] in _ELIDING else "de ") + noun


def _elide(joiner: str, noun: str) -> str:
    """French elision: "pas de" + "AOMI" -> "pas d'AOMI"."""
    if joiner.endswith("de ") and noun[0] in _ELIDING:
        return joiner[:-3] + "d'"
    return joiner


def _negation_group(ctx: _DocContext, facts: list[_FactContext]) -> list[Piece]:
    pattern = ctx.rng.choice(ctx.book.raw.negation_groups)
    if ctx.varied is not None and ctx.rng.random() < 0.5:
        pattern = ctx.rng.choice(ctx.varied.raw.negation_groups)
    pieces: list[Piece] = []
    for i, fc in enumerate(facts):
        noun = ctx.rng.choice(fc.concept.nouns)
        joiner = pattern.head if i == 0 else pattern.last if i == len(facts) - 1 else pattern.sep
        pieces.append((_elide(joiner, noun), None))
        pieces.append((noun, _fact_meta(fc)))
    if pattern.tail:
        pieces.append((pattern.tail, None))
    return pieces


def _fact_items(ctx: _DocContext, contexts: list[_FactContext]) -> list[_Item]:
    rng = ctx.rng
    items: list[_Item] = []
    groupable = [fc for fc in contexts if fc.fact.assertion == "negated" and fc.concept.nouns]
    grouped: list[_FactContext] = []
    if len(groupable) >= 2 and rng.random() < 0.5:
        grouped = rng.sample(groupable, rng.randint(2, min(4, len(groupable))))
        items.append(_Item(grouped[0].concept.section, _negation_group(ctx, grouped)))
    for fc in contexts:
        if any(fc is g for g in grouped):
            continue
        template = rng.choice(fc.concept.templates[fc.fact.assertion])
        if ctx.varied is not None and rng.random() < 0.7:
            held_out = ctx.varied.templates.get(fc.fact.concept, {}).get(fc.fact.assertion)
            if held_out:
                template = rng.choice(held_out)
        section = fc.concept.section
        if fc.fact.assertion == "family":
            section = "family"
        elif fc.fact.assertion == "hypothesis" and rng.random() < 0.6:
            section = "conclusion"
        items.append(_Item(section, ctx.render(template, fc)))
    return items


def _filler_items(ctx: _DocContext, sections_with_facts: set[str]) -> list[_Item]:
    rng = ctx.rng
    chances = {
        "history": (0.7, 2),
        "family": (0.4, 1),
        "treatment": (0.5, 2),
        "exam": (0.6, 2),
        "paraclinical": (0.5, 1),
        "conclusion": (1.0, 2),
        "complications": (0.3, 1),
    }
    items: list[_Item] = []
    for section, (chance, most) in chances.items():
        if section == "family" and "family" in sections_with_facts:
            continue
        if rng.random() >= chance:
            continue
        pool = ctx.book.fillers[section]
        for template in rng.sample(pool, min(len(pool), rng.randint(1, most))):
            items.append(_Item(section, ctx.render(template)))
    return items


def _section_order(rng: random.Random) -> list[str]:
    order = ["history", "complications", "treatment", "family", "exam", "paraclinical"]
    if rng.random() < 0.4:
        order.remove("family")
        order.insert(1, "family")
    if rng.random() < 0.3:
        i, j = order.index("exam"), order.index("paraclinical")
        order[i], order[j] = order[j], order[i]
    if rng.random() < 0.3:
        order.remove("treatment")
        order.append("treatment")
    return [*order, "conclusion"]


# --------------------------------------------------------------------------------------
# Document assembly
# --------------------------------------------------------------------------------------


_NARRATIVE_PARAGRAPH = {
    "history": 0,
    "complications": 0,
    "treatment": 0,
    "family": 1,
    "exam": 2,
    "paraclinical": 2,
    "conclusion": 3,
}


def _join_phrases(items: list[_Item]) -> list[Piece]:
    pieces: list[Piece] = []
    for i, item in enumerate(items):
        if i:
            pieces.append((" et " if i == len(items) - 1 else ", ", None))
            pieces.extend(_lowercase_start(item.pieces))
        else:
            pieces.extend(item.pieces)
    return pieces


def _write_body(doc: _Text, ctx: _DocContext, items: list[_Item]) -> None:
    rng, raw = ctx.rng, ctx.book.raw
    by_section: dict[str, list[_Item]] = {}
    merge_complications = rng.random() < 0.3
    for item in items:
        section = "history" if merge_complications and item.section == "complications" else item.section
        by_section.setdefault(section, []).append(item)
    for section_items in by_section.values():
        rng.shuffle(section_items)
    order = [s for s in _section_order(rng) if s in by_section]
    dictated = ctx.noise is not None and ctx.noise.dictated
    if dictated:
        layout = rng.choice(("prose", "narrative"))
    elif ctx.varied is not None:
        layout = rng.choices(("bullets", "prose", "inline", "narrative", "numbered"), weights=(2, 2, 2, 2, 3))[0]
    else:
        layout = rng.choices(("bullets", "prose", "inline", "narrative"), weights=(3, 3, 2, 3))[0]
    title_style = rng.randrange(3)
    bullet = rng.choice(("- ", "• ", "* ", "  - "))
    bullet_period = rng.random() < 0.4
    numbering = rng.choice(("{k}. ", "{k}) ", "{k}- ", "{a}) ")) if layout == "numbered" else ""
    cap = _capitalize if not dictated else list
    stop = _stop if dictated else _period
    paragraph = None
    for section in order:
        section_items = by_section[section]
        title = rng.choice(raw.section_titles[section])
        if layout == "narrative":
            group = _NARRATIVE_PARAGRAPH[section]
            if paragraph is not None:
                doc.add(" " if group == paragraph else "\n\n")
            paragraph = group
            lead = rng.choice(raw.narrative_leads[section])
            take = rng.randint(1, min(3, len(section_items))) if lead.endswith(": ") else 1
            first = _join_phrases(section_items[:take])
            if lead:
                first = [(lead, None), *_lowercase_start(first)]
            sentences = [first] + [item.pieces for item in section_items[take:]]
            for k, sentence in enumerate(sentences):
                if k:
                    doc.add(" ")
                doc.add_pieces(cap(sentence))
                stop(doc, rng)
            continue
        if title_style == 0:
            heading = f"{title} :"
        elif title_style == 1:
            heading = f"{title.upper()} :"
        else:
            heading = title
        if layout == "bullets":
            doc.add(heading + "\n")
            for item in section_items:
                doc.add(bullet)
                doc.add_pieces(_capitalize(item.pieces) if rng.random() < 0.85 else item.pieces)
                doc.add(".\n" if bullet_period else "\n")
            doc.add("\n")
        elif layout == "numbered":
            doc.add(heading + "\n")
            for k, item in enumerate(section_items):
                doc.add(numbering.format(k=k + 1, a="abcdefghijklmnopqrstuvwxyz"[k % 26]))
                doc.add_pieces(_capitalize(item.pieces) if rng.random() < 0.7 else item.pieces)
                doc.add(";\n" if bullet_period and k < len(section_items) - 1 else "\n")
            doc.add("\n")
        elif layout == "prose":
            doc.add(heading + (" " if title_style != 2 else "\n"))
            for k, item in enumerate(section_items):
                if k:
                    doc.add(" ")
                doc.add_pieces(cap(item.pieces))
                stop(doc, rng)
            doc.add("\n\n")
        else:
            doc.add(heading + (" " if title_style != 2 else " : "))
            doc.add_pieces(_join_phrases(section_items) if len(section_items) < 4 else _comma_list(section_items))
            doc.add(".\n\n")
    if layout == "narrative":
        doc.add("\n\n")


def _period(doc: _Text, rng: random.Random) -> None:
    doc.add(".")


def _stop(doc: _Text, rng: random.Random) -> None:
    """The end of a dictated sentence: the punctuation word as spoken, or nothing at all."""
    doc.add(rng.choice((" point", " point à la ligne\n", " point à la ligne", "", "", ".")), verbatim=True)


def _comma_list(items: list[_Item]) -> list[Piece]:
    pieces: list[Piece] = []
    for i, item in enumerate(items):
        if i:
            pieces.append((", ", None))
            pieces.extend(_lowercase_start(item.pieces))
        else:
            pieces.extend(item.pieces)
    return pieces


def _write_letterhead(doc: _Text, ctx: _DocContext) -> None:
    rng, report = ctx.rng, ctx.report
    if ctx.sender is not None:
        name = ctx.sender.name.upper() if rng.random() < 0.4 else ctx.sender.name
        doc.add_pieces([_span(name, "FACILITY"), ("\n", None)])
        doc.add(f"Service {_de(ctx.service)}\n")
        if rng.random() < 0.5:
            doc.add(rng.choice(("FINESS : ", "N° FINESS ", "Établissement FINESS ")) + ctx.sender.finess + "\n")
        if rng.random() < 0.4:
            doc.add_pieces([*ctx.professional(report.author, title=ctx.author_title), ("\n", None)])
            if rng.random() < 0.5:
                doc.add(rng.choice(("Praticien hospitalier", "Chef de clinique", "Médecin du service")) + "\n")
    else:
        doc.add_pieces([*ctx.professional(report.author), ("\n", None)])
        doc.add(("Médecine générale" if ctx.mode == "referral" else "Consultations spécialisées") + "\n")
        if rng.random() < 0.6:
            doc.add(rng.choice(("RPPS : ", "N° RPPS ", "RPPS ")) + report.author.rpps + "\n")
    doc.add("\n")


def _city(ctx: _DocContext) -> str | None:
    code = ctx.sender.commune_code if ctx.sender is not None else ctx.report.author.commune_code
    commune = ctx.index.communes.get(code)
    return commune.name if commune is not None else None


def _write_date_line(doc: _Text, ctx: _DocContext) -> None:
    rng = ctx.rng
    city = _city(ctx)
    style = rng.randrange(4)
    if city and style < 2:
        doc.add(f"{city}, le " if style == 0 else f"Fait à {city}, le ")
    elif style == 2:
        doc.add("Date : ")
    else:
        doc.add("Le ")
    doc.add_pieces([ctx.date_piece(ctx.report.day), ("\n\n", None)])


def _write_addressee(doc: _Text, ctx: _DocContext, addressee: Professional | None) -> None:
    rng = ctx.rng
    if addressee is None:
        if rng.random() < 0.6:
            doc.add(rng.choice(("Au médecin traitant", "À l'attention du médecin traitant")) + "\n\n")
        return
    if ctx.mode == "referral":
        title = rng.choice(ctx.book.raw.specialist_titles[ctx.service_key])
        hospital = rng.choice(ctx.index.world.hospitals) if ctx.index.world.hospitals else None
        doc.add_pieces([*ctx.professional(addressee), (f"\n{title.capitalize()}\n", None)])
        if hospital is not None and rng.random() < 0.6:
            doc.add_pieces([_span(hospital.name, "FACILITY"), ("\n", None)])
        doc.add("\n")
        return
    style = rng.randrange(3)
    if style == 0:
        doc.add_pieces([*ctx.professional(addressee), ("\nMédecin traitant\n\n", None)])
    elif style == 1:
        doc.add_pieces([("À l'attention du ", None), *ctx.professional(addressee), ("\n\n", None)])
    else:
        doc.add_pieces([("Destinataire : ", None), *ctx.professional(addressee), (" (médecin traitant)\n\n", None)])


def _first_names_pieces(first_names: str) -> list[Piece]:
    """Each first name a span, separators as the source wrote them left outside the spans."""
    pieces: list[Piece] = []
    pos = 0
    for match in _NAME_TOKEN_RE.finditer(first_names):
        if match.start() > pos:
            pieces.append((first_names[pos : match.start()], None))
        pieces.append(_span(match.group(0), "PATIENT_FIRST_NAME"))
        pos = match.end()
    if pos < len(first_names):
        pieces.append((first_names[pos:], None))
    return pieces


def _break_name(text: str) -> str | None:
    """A compound name broken across two lines: "LEFÈVRE-\nDUPONT", "DE LA\nFONTAINE"."""
    if "-" in text.strip("-"):
        return text.replace("-", "-\n", 1)
    if " " in text.strip():
        return text.replace(" ", "\n", 1)
    return None


def _break_header_names(pieces: list[Piece]) -> list[Piece]:
    """The first compound patient name or first name of a header block, broken across lines."""
    for i, (text, meta) in enumerate(pieces):
        if meta is not None and meta["label"] in ("PATIENT_NAME", "PATIENT_FIRST_NAME"):
            broken = _break_name(text)
            if broken is not None:
                return [*pieces[:i], (broken, meta), *pieces[i + 1 :]]
    return pieces


def _write_patient_header(doc: _Text, ctx: _DocContext) -> None:
    """The patient as the sending system knows them: exact source strings, some traits optional."""
    if ctx.noise is not None and ctx.noise.name_breaks:
        # Written to a scratch text first, names broken, then appended: offsets stay exact.
        scratch = _HeaderBuffer()
        _write_patient_header_lines(scratch, ctx)
        doc.add_pieces(_break_header_names(scratch.pieces))
        return
    _write_patient_header_lines(doc, ctx)


class _HeaderBuffer:
    """Collects pieces instead of appending them (same interface as `_Text` for the header)."""

    __slots__ = ("pieces",)

    def __init__(self) -> None:
        self.pieces: list[Piece] = []

    def add(self, text: str) -> None:
        self.pieces.append((text, None))

    def add_pieces(self, pieces: Sequence[Piece]) -> None:
        self.pieces.extend(pieces)


def _write_patient_header_lines(doc: _Text | _HeaderBuffer, ctx: _DocContext) -> None:
    rng, sid, person = ctx.rng, ctx.sid, ctx.person
    born = "Née le " if ctx.feminine else "Né le "
    dob = _span(f"{sid.birth_date.day:02d}/{sid.birth_date.month:02d}/{sid.birth_date.year}", "BIRTH_DATE")
    if rng.random() < 0.15:
        dob = _span(ctx.fmt_date(sid.birth_date), "BIRTH_DATE")
    first_names = _first_names_pieces(sid.first_names)
    show_nir = sid.nir is not None and rng.random() < 0.5
    show_address = rng.random() < 0.4
    show_phone = person.phone is not None and rng.random() < 0.3
    show_email = person.email is not None and rng.random() < 0.1
    address = person.address
    commune = address.commune_name.upper() if rng.random() < 0.5 else address.commune_name
    civ = "Mme" if ctx.feminine else "M."
    if rng.random() < 0.55:
        # Labelled block, one trait per line.
        if sid.used_name and rng.random() < 0.5:
            doc.add_pieces([("Nom d'usage : ", None), _span(sid.used_name, "PATIENT_NAME"), ("\n", None)])
            doc.add_pieces([("Nom de naissance : ", None), _span(sid.birth_name, "PATIENT_NAME"), ("\n", None)])
        else:
            doc.add_pieces([(rng.choice(("Patient : ", "Patient(e) : ", "Nom : ")), None)])
            if sid.used_name:
                doc.add_pieces([_span(sid.used_name, "PATIENT_NAME"), (" née " if ctx.feminine else " né ", None)])
            doc.add_pieces([_span(sid.birth_name, "PATIENT_NAME"), ("\n", None)])
        doc.add_pieces([(rng.choice(("Prénom(s) : ", "Prénoms : ", "Prénom : ")), None), *first_names, ("\n", None)])
        doc.add_pieces([(rng.choice(("Date de naissance : ", "DDN : ", born)), None), dob, ("\n", None)])
        if show_nir:
            assert sid.nir is not None
            label = rng.choice(("NIR : ", "N° SS : ", "INS : ", "N° de sécurité sociale : ", "Matricule INS : "))
            doc.add_pieces([(label, None), _span(_format_nir(sid.nir, rng), "NIR"), ("\n", None)])
        if show_address:
            doc.add_pieces([(rng.choice(("Adresse : ", "Domicile : ")), None), _span(address.line, "ADDRESS")])
            if rng.random() < 0.5:
                doc.add_pieces([(", ", None), _span(f"{address.postcode} {commune}", "ADDRESS"), ("\n", None)])
            else:
                doc.add_pieces([("\n", None), _span(f"{address.postcode} {commune}", "ADDRESS"), ("\n", None)])
        if show_phone:
            assert person.phone is not None
            label = rng.choice(("Tél. : ", "Téléphone : ", "Portable : "))
            doc.add_pieces([(label, None), _span(_format_phone(person.phone, rng), "PHONE"), ("\n", None)])
        if show_email:
            assert person.email is not None
            doc.add_pieces([(rng.choice(("Courriel : ", "Mail : ")), None), _span(person.email, "EMAIL"), ("\n", None)])
    else:
        # One line: "Concerne : Mme MARTIN Claire Marie (née DUPONT), née le 12/03/1950, ..."
        doc.add(rng.choice(("Concerne : ", "Patient : ", "Réf. : ")) + civ + " ")
        between = "\n" if ctx.noise is not None and ctx.noise.name_breaks and rng.random() < 0.5 else " "
        doc.add_pieces([_span(ctx.main_name(), "PATIENT_NAME"), (between, None), *first_names])
        if sid.used_name:
            doc.add_pieces(
                [(" (née " if ctx.feminine else " (né ", None), _span(sid.birth_name, "PATIENT_NAME"), (")", None)]
            )
        doc.add_pieces([(", " + born.lower(), None), dob])
        if show_nir:
            assert sid.nir is not None
            doc.add_pieces(
                [(rng.choice((", NIR ", " - INS ", ", n° SS ")), None), _span(_format_nir(sid.nir, rng), "NIR")]
            )
        if show_address:
            doc.add_pieces(
                [
                    (", demeurant ", None),
                    _span(f"{address.line}, {address.postcode} {commune}", "ADDRESS"),
                ]
            )
        if show_phone:
            assert person.phone is not None
            doc.add_pieces([(", tél. ", None), _span(_format_phone(person.phone, rng), "PHONE")])
        doc.add("\n")
    if ctx.stay is not None and ctx.report.kind == "discharge_letter" and rng.random() < 0.4:
        doc.add_pieces(
            [
                ("Hospitalisation du ", None),
                ctx.date_piece(ctx.stay.admission),
                (" au ", None),
                ctx.date_piece(ctx.stay.discharge),
                ("\n", None),
            ]
        )
    doc.add("\n")


def _write_signature(doc: _Text, ctx: _DocContext) -> None:
    rng, raw, report = ctx.rng, ctx.book.raw, ctx.report
    closing = ctx.render(rng.choice(ctx.book.closings))
    doc.add_pieces(_capitalize(closing))
    doc.add(".\n")
    doc.add(rng.choice(raw.sign_offs) + "\n\n")
    doc.add_pieces([*ctx.professional(report.author, title=ctx.author_title), ("\n", None)])
    if ctx.sender is not None and rng.random() < 0.5:
        doc.add(f"Service {_de(ctx.service)}\n")
    elif ctx.sender is None and rng.random() < 0.5:
        doc.add("Médecin généraliste\n" if ctx.mode == "referral" else "Médecin spécialiste\n")
    if rng.random() < 0.3:
        doc.add(f"RPPS {report.author.rpps}\n")
    if rng.random() < 0.25:
        dictated = report.day - timedelta(days=rng.randint(0, 3))
        doc.add_pieces([("Dicté le ", None), ctx.date_piece(dictated), (", non relu\n", None)])
    others = [s for s in ctx.index.world.specialists if s.rpps != report.author.rpps]
    if others and rng.random() < 0.3:
        cc = rng.choice(others)
        doc.add_pieces([("\nCopie : ", None), *ctx.professional(cc), (", ", None)])
        doc.add(rng.choice(raw.specialist_titles[ctx.service_key]) + "\n")


def _lab_row(
    label: str, value: str, unit: str, reference: str, style: int, meta: dict[str, Any] | None
) -> list[Piece]:
    """One row of a lab table as copied from a laboratory report; a FACT covers test to unit."""
    if style == 0:
        measured = f"{label} {'.' * max(3, 26 - len(label))} {value} {unit}"
        rest = "   " + reference
    elif style == 1:
        measured = f"{label}\t{value}\t{unit}"
        rest = "\t" + reference
    elif style == 2:
        measured = f"{label.ljust(30)}{value.rjust(8)} {unit}"
        rest = " " * max(2, 16 - len(unit)) + reference
    else:
        measured = f"{label} : {value} {unit}"
        rest = " " + reference
    return [(measured, meta), (rest + "\n", None)]


def _write_lab_table(doc: _Text, ctx: _DocContext, facts: list[_FactContext]) -> None:
    """Results pasted from the laboratory's report: dotted leaders, tabs or aligned columns."""
    rng, varied = ctx.rng, ctx.varied
    assert varied is not None
    style = rng.randrange(4)
    decimal_point = rng.random() < 0.3  # the lab system's export, not the French comma
    title = rng.choice(varied.raw.lab_titles)
    head, dated, tail = title.partition("{date}")
    doc.add("\n")
    if dated:
        sampled = ctx.report.day - timedelta(days=rng.randint(0, 20))
        doc.add_pieces([(head, None), ctx.date_piece(sampled), (tail + "\n", None)])
    else:
        doc.add(head + "\n")
    if style == 1 and rng.random() < 0.7:
        doc.add("Analyse\tRésultat\tUnité\tValeurs de référence\n")
    rows: list[list[Piece]] = []
    for fc in facts:
        spec = varied.raw.lab_rows[fc.fact.concept]
        assert fc.fact.value is not None and fc.concept.value is not None
        value = _french_number(fc.fact.value, fc.concept.value, rng)
        if decimal_point:
            value = value.replace(",", ".")
        label, reference = rng.choice(spec.labels), rng.choice(spec.references)
        rows.append(_lab_row(label, value, spec.unit, reference, style, _fact_meta(fc)))
    for label, value, unit, reference in rng.sample(varied.raw.lab_fillers, rng.randint(2, 4)):
        if decimal_point:
            value = value.replace(",", ".")
        rows.append(_lab_row(label, value, unit, reference, style, None))
    rng.shuffle(rows)
    for row in rows:
        doc.add_pieces(row)
    doc.add("\n")


def _choose_service(book: _Phrasebook, facts: Sequence[ReportFact], rng: random.Random) -> str:
    """The department most of the affirmed or suspected facts point to."""
    counts: dict[str, int] = {}
    for fact in facts:
        if fact.assertion in ("affirmed", "hypothesis"):
            service = book.concepts[fact.concept].service
            counts[service] = counts.get(service, 0) + 1
    if not counts:
        return rng.choice(("internal", "diabetology"))
    best = max(counts.values())
    return rng.choice(sorted(k for k, v in counts.items() if v == best))


def _render_document(
    person: Person,
    report: Report,
    sid: SourceIdentity,
    index: _WorldIndex,
    book: _Phrasebook,
    stays: dict[str, Stay],
    varied: _Varied | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    concepts = [_check_fact(report, fact, book) for fact in report.facts]
    seed = hashlib.sha256(f"{index.world.seed}\x1freports\x1f{report.doc_id}".encode()).digest()
    rng = random.Random(int.from_bytes(seed[:8], "big"))

    sender = index.facilities.get(report.facility)
    if sender is None and report.facility != report.author.rpps and report.facility not in index.gps:
        raise ValueError(f"report {report.doc_id}: unknown sender {report.facility!r} (not a FINESS nor an RPPS)")
    is_patients_gp = person.gp is not None and person.gp.rpps == report.author.rpps
    mode: Literal["to_gp", "referral"] = "referral" if sender is None and is_patients_gp else "to_gp"
    service_key = _choose_service(book, report.facts, rng)
    ctx = _DocContext(
        rng=rng,
        book=book,
        index=index,
        person=person,
        report=report,
        sid=sid,
        stay=stays.get(report.stay_id) if report.stay_id else None,
        mode=mode,
        sender=sender,
        service_key=service_key,
        service=rng.choice(book.raw.services[service_key]),
        feminine=sid.sex == "F",
        name_style=rng.choice(("upper", "upper", "title", "as_is")),
        date_style=rng.randrange(4),
        author_title=rng.choice(("Dr", "Dr", "Docteur", "Pr") if sender is not None else ("Dr", "Dr", "Docteur")),
        varied=varied,
        noise=_Noise.draw(rng, varied) if varied is not None else None,
    )
    if mode == "referral":
        specialists = [s for s in index.world.specialists if s.rpps != report.author.rpps]
        addressee = rng.choice(specialists) if specialists else None
    else:
        addressee = person.gp if person.gp is not None and person.gp.rpps != report.author.rpps else None

    doc = _Text(ctx.noise)
    _write_letterhead(doc, ctx)
    if rng.random() < 0.5:
        _write_date_line(doc, ctx)
        _write_addressee(doc, ctx, addressee)
    else:
        _write_addressee(doc, ctx, addressee)
        _write_date_line(doc, ctx)
    kind = "referral" if mode == "referral" else report.kind
    if rng.random() < 0.6:
        doc.add(rng.choice(book.raw.subjects[kind]) + "\n")
    _write_patient_header(doc, ctx)
    doc.add(rng.choice(book.raw.salutations) + "\n\n")
    if ctx.noise is not None and ctx.noise.dictated:
        ctx.noise.dictating = True
    doc.add_pieces(_capitalize(ctx.render(rng.choice(book.intros[kind]))))
    doc.add(".")
    if rng.random() < 0.3:
        doc.add(" ")
        doc.add_pieces(_capitalize(ctx.render(rng.choice(book.companion_sentences))))
        doc.add(".")
    doc.add("\n\n")

    contexts = [_fact_context(ctx, fact, concept) for fact, concept in zip(report.facts, concepts, strict=True)]
    lab_facts: list[_FactContext] = []
    if varied is not None:
        lab_rows = varied.raw.lab_rows
        lab_facts = [fc for fc in contexts if fc.fact.assertion == "affirmed" and fc.fact.concept in lab_rows]
        if lab_facts and rng.random() < 0.5:
            contexts = [fc for fc in contexts if not any(fc is lab for lab in lab_facts)]
        else:
            lab_facts = []
    items = _fact_items(ctx, contexts)
    items += _filler_items(ctx, {item.section for item in items})
    _write_body(doc, ctx, items)
    if ctx.noise is not None:
        ctx.noise.dictating = False
        if lab_facts:
            ctx.noise.raw = True
            _write_lab_table(doc, ctx, lab_facts)
            ctx.noise.raw = False
    _write_signature(doc, ctx)
    return doc.value(), doc.spans


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def render_reports(
    persons: list[Person],
    world: World,
    identity_of: Callable[[Person, str], SourceIdentity],
) -> list[Rendered]:
    """Render every report of a chunk of persons: one text file each, the index, the spans.

    `identity_of(person, "reports")` gives the patient's identity as the sending systems know
    it (possibly degraded, often without NIR); it feeds both the document header and the
    index metadata, so de-identification and linkage are measured against what was really
    written. Raises ValueError on a fact the renderer cannot state truthfully (unknown
    concept, a measurement without value...), naming the document and the concept.
    """
    book = _phrasebook()
    style = getattr(world, "report_style", "standard")
    if style not in REPORT_STYLES:
        raise ValueError(f"unknown report style {style!r} (known: {', '.join(REPORT_STYLES)})")
    varied = _varied_book() if style == "varied" else None
    index = _WorldIndex.build(world)
    out: list[Rendered] = []
    index_rows = io.StringIO()
    index_writer = csv.writer(index_rows, lineterminator="\n")
    span_lines: list[str] = []
    links: list[str] = []
    count = 0
    for person in persons:
        if not person.reports:
            continue
        sid = identity_of(person, "reports")
        stays = {stay.stay_id: stay for stay in person.stays}
        for report in person.reports:
            path = report_path(report.doc_id)
            text, spans = _render_document(person, report, sid, index, book, stays, varied)
            out.append(Rendered(FileSpec(path=path, encoding="utf-8"), text))
            index_writer.writerow(
                (
                    report.doc_id,
                    path,
                    report.kind,
                    report.day.isoformat(),
                    report.facility,
                    report.author.rpps,
                    sid.nir or "",
                    sid.birth_name,
                    sid.used_name or "",
                    sid.first_names,
                    sid.birth_date.isoformat(),
                    sid.sex,
                )
            )
            record = {"doc_id": report.doc_id, "person_id": person.person_id, "file": path, "spans": spans}
            span_lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            links.append(record_link("report", path, report.doc_id, person.person_id).text)
            count += 1
    out.append(Rendered(REPORT_INDEX, index_rows.getvalue(), records=count))
    out.append(Rendered(REPORT_SPANS, "".join(span_lines), records=count))
    if count:
        out.append(Rendered(RECORD_LINKS, "".join(links), records=count))
    return out
