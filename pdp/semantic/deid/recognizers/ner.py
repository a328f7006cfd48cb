"""Persons found by the French spaCy model (``fr_core_news_md``, label PER), cleaned up.

Why a cleaning step: on clinical letters the model tags section titles ("ANTÉCÉDENTS"),
clinical words ("Cholécystectomie", "Ionogramme", "HbA1c", "Metformine", "Charcot") and whole
label lines ("Michèle MACE\\n\\nDestinataire") as persons. Each entity is cut at line breaks,
trimmed of titles and of listed clinical words (``clinical_terms.yml``) at its edges, and kept
only if what remains looks like a name: name-shaped words (capitalised, no digits) of which at
least one is not a listed term, and — for a single word — not the first word of its line or
sentence (a capitalised word there is usually a heading or a clinical noun, and the names that
do stand there come with a title or a label, which the context recognizer finds).

Reads Presidio's neutral NLP artefacts (``nlp_artifacts.entities``), never spaCy directly.

**What the model reads** (:func:`model_view`): the document with every line that cannot yield a
kept name blanked to spaces (same length, so offsets hold). A line is kept when it has a
capitalised word that is neither the first of its line or sentence nor a listed clinical term —
exactly the words the cleaning above can keep (a lone word opening a sentence is dropped anyway,
and a two-word name has a second, non-opening word). On the synthetic letters about a third of
the characters are kept and the model runs ~2.7 times faster (116 → 308 documents per CPU-second
for the model alone), with the same recall.

Example::

    >>> model_view("Examen clinique : RAS.\nVue avec Sophie MARTIN.\n")
    '                      \nVue avec Sophie MARTIN.\n'
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pdp.semantic.deid.allowlist import ClinicalTerms, clinical_terms
from pdp.semantic.deid.recognizers.base import FrRecognizer, register
from pdp.semantic.deid.text import LOWER, PARTICLES, UPPER, fold, is_name_token

_TITLES = frozenset({"mme", "mmes", "mlle", "melle", "madame", "mademoiselle", "monsieur", "m", "m.", "mr", "dr",
                     "dr.", "dre", "docteur", "pr", "pr.", "professeur", "me"})
_TOKEN = re.compile(r"[^\s,;:()\[\]\"«»]+")
_CAPITALISED = re.compile(rf"(?<![\w'’])([{UPPER}][{LOWER}]+|[{UPPER}]{{2,}})(?![\w])")
_NOT_NEWLINE = re.compile(r"[^\n]")


def _worth_reading(line: str, terms: ClinicalTerms) -> bool:
    for match in _CAPITALISED.finditer(line):
        before = line[:match.start()].rstrip()
        if not before.strip(" \t-•*>") or before.endswith((".", ":", "!", "?")):
            continue
        if not terms.allows(match.group(1)):
            return True
    return False


def model_view(text: str) -> str:
    """``text`` with the lines that cannot yield a kept name blanked (same length, same offsets)."""
    terms = clinical_terms()
    return "".join(
        line if _worth_reading(line, terms) else _NOT_NEWLINE.sub(" ", line)
        for line in text.splitlines(keepends=True)
    )


def clean_person(text: str, start: int, end: int, terms: ClinicalTerms) -> list[tuple[int, int]]:
    """The name parts of a model entity ``text[start:end]``, as (start, end) offsets; maybe none."""
    out: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        tokens = [(start + line.start() + m.start(), start + line.start() + m.end())
                  for m in _TOKEN.finditer(line.group(0))]
        words = [(s, e, text[s:e].rstrip(".")) for s, e in tokens]
        titled = False
        while words and fold(words[0][2]).rstrip(".") in _TITLES:
            words, titled = words[1:], True
        # keep the name-shaped words, trimming listed clinical words at both edges
        while words and (not is_name_token(words[0][2]) or terms.allows(words[0][2])):
            words = words[1:]
        while words and (not is_name_token(words[-1][2]) or terms.allows(words[-1][2])):
            words = words[:-1]  # a name neither ends on a particle ("Chef de") nor on a listed word
        if not words or any(not _word_ok(w) for _s, _e, w in words):
            continue
        if all(terms.allows(w) for _s, _e, w in words):
            continue
        if len(words) == 1 and not titled and _opens_sentence(text, words[0][0]):
            continue
        out.append((words[0][0], words[-1][0] + len(words[-1][2])))
    return out


def _word_ok(word: str) -> bool:
    return (is_name_token(word) and len(word) > 1) or fold(word) in PARTICLES


def _opens_sentence(text: str, pos: int) -> bool:
    """True if only spaces, bullets or a sentence end stand between the line start and ``pos``."""
    before = text[max(0, pos - 40):pos].rsplit("\n", 1)[-1]
    stripped = before.rstrip()
    return not stripped.strip(" \t-•*>") or stripped.endswith((".", ":", "!", "?"))


@register
class FrNerPersonRecognizer(FrRecognizer):
    """PER entities of the spaCy model, cleaned of clinical words and headings."""

    NAME = "fr_ner_person"
    ENTITIES = ("PERSONNE",)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if nlp_artifacts is None or not nlp_artifacts.entities:
            return []
        terms = clinical_terms()
        out: list[RecognizerResult] = []
        for ent in nlp_artifacts.entities:
            if ent.label_ != "PERSON":
                continue
            for start, end in clean_person(text, ent.start_char, ent.end_char, terms):
                out.append(self.result("PERSONNE", start, end, 0.65, "ner"))
        return out
