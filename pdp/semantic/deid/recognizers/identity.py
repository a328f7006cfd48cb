"""The patient's own traits, found in every written variant.

Why: the edge knows who the document is about (the index record, and the vault's linkage view
of the same person: other names, NIR, birth date), and the patient's identifiers are the ones
that must never leak (target recall 0.99). Knowing the exact names turns a guess into a match: ``DUPONT``, ``Dupont``,
``dupont``, ``DUPONT-MARTIN``, ``Dupont Martin``, ``DU-\\nPONT`` (hyphenated at a line break),
``Lefèvre``/``LEFEVRE`` and ``J. MARTIN`` are all the same person.

Matching runs on the folded text (:func:`~pdp.semantic.deid.text.fold`: same length, so offsets
carry over). Rules:

* family names (used, birth, and the vault's other names of the person) whole, and each part
  of a compound name of three letters or more that is not a particle ("LE GALL" → "le gall",
  "gall"); any case, but an all-lower-case occurrence is taken only if the name is not a listed common or clinical word;
* first names whole and by part ("Jean-Marie" → "jean-marie", "jean", "marie"), only with a
  capital (a first name like "Claire" or "Rose" is also an adjective or a noun), or in any case
  right beside a family name found ("mme dupont jeanne", as dictation writes it);
* initials of the first names before or after a family name ("J. MARTIN", "MARTIN J.-M."),
  except a lone "M." before it, which is "Monsieur";
* the birth date in every numeric and written form (14/03/1950, 14.03.50, 14 mars 1950, 1950-03-14);
* the NIR with or without separators and with or without its key, the phone (0X or +33, any
  separators), the e-mail, the street line (number, street type abbreviated or not) and postcode.

Example::

    >>> from pdp.semantic.deid.traits import PersonTraits
    >>> r = IdentityRecognizer(PersonTraits(birth_name="Martin-Dupont", first_names="Jean-Marie"))
    >>> t = "Vu J.-M. MARTIN-\\nDUPONT ; M. Dupont va bien."
    >>> sorted({(x.entity_type, t[x.start:x.end]) for x in r.analyze(t, [])})
    [('NOM', 'DUPONT'), ('NOM', 'Dupont'), ('NOM', 'MARTIN'), ('NOM', 'MARTIN-\\nDUPONT'), ('PRENOM', 'J.-M. ')]
"""

from __future__ import annotations

import re
from datetime import date

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pdp.semantic.deid.allowlist import clinical_terms
from pdp.semantic.deid.recognizers.base import FrRecognizer
from pdp.semantic.deid.text import PARTICLES, fold
from pdp.semantic.deid.traits import PersonTraits

__all__ = ["IdentityRecognizer"]

# Between two letters of a name: nothing, or a hyphenation at a line break.
_IN_WORD = r"(?:-[ \t]*\r?\n[ \t]*)?"
# Between two parts of a compound name: hyphen, apostrophe, spaces, a line break, or nothing.
_BETWEEN = r"(?:[ \t]*[-'][ \t]*(?:\r?\n[ \t]*)?|[ \t]*\r?\n[ \t]*|[ \t]+|)"
_PARTS = re.compile(r"[\s\-']+")
_MONTHS = (
    ("janvier", "janv"), ("fevrier", "fevr", "fev"), ("mars",), ("avril", "avr"), ("mai",), ("juin",),
    ("juillet", "juil"), ("aout",), ("septembre", "sept", "sep"), ("octobre", "oct"), ("novembre", "nov"),
    ("decembre", "dec"),
)
_SEP = r"[ .\-\u00a0]*(?:\n[ \t]*)?"  # a number may be broken across a line (a hard-wrapped letter)
_STREET_TYPES = {
    "rue": r"(?:rue|r\.?)", "avenue": r"(?:avenue|av\.?|ave)", "boulevard": r"(?:boulevard|bd|bld|boul\.?)",
    "place": r"(?:place|pl\.?)", "chemin": r"(?:chemin|ch\.?|chem\.?)", "impasse": r"(?:impasse|imp\.?)",
    "allee": r"(?:allee|all\.?)", "route": r"(?:route|rte)", "faubourg": r"(?:faubourg|fbg|fg)",
    "saint": r"(?:saint|st)", "sainte": r"(?:sainte|ste)", "residence": r"(?:residence|res\.?)",
}
_COMMON_WORDS = frozenset({"petit", "blanc", "noir", "roux", "brun", "grand", "gros", "leger", "fort", "bon",
                           "marchand", "boucher", "meunier", "masse", "page", "bras", "pied", "main", "tete",
                           "coeur", "cote", "cave", "mars", "mai", "juin", "bien", "mal", "vrai", "sage",
                           "poste", "porte", "rose", "jeune", "vieux", "lion", "loup"})


def _letters(name: str) -> str:
    return _IN_WORD.join(re.escape(c) for c in name)


def _name_pattern(name: str) -> str:
    return _BETWEEN.join(_letters(p) for p in _PARTS.split(name) if p)


def _digits(number: str) -> str:
    return _SEP.join(re.escape(c) for c in number)


class IdentityRecognizer(FrRecognizer):
    """Built per document from the person's traits (an ad hoc recognizer: not in the registry)."""

    NAME = "fr_identity"
    ENTITIES = ("NOM", "PRENOM", "DATE_NAISSANCE", "NIR", "TEL", "EMAIL", "ADRESSE", "CODE_POSTAL")

    def __init__(self, traits: PersonTraits) -> None:
        super().__init__()
        self._family = self._names(traits.family_names, split_min=3)
        self._first = self._names(traits.first_name_list, split_min=2)
        self._initials = sorted({fold(n)[0] for n in traits.first_name_list if n and fold(n)[0].isalpha()})
        self._others: list[tuple[str, re.Pattern[str], float]] = []
        if traits.birth_date is not None:
            self._others.append(("DATE_NAISSANCE", _date_regex(traits.birth_date), 0.95))
        for value in traits.nirs:
            nir = re.sub(r"[\s.\-]", "", value).lower()
            if len(nir) >= 13:
                pattern = rf"(?<![\w]){_digits(nir[:13])}(?:{_SEP}{_digits(nir[13:])})?(?![\w])"
                self._others.append(("NIR", re.compile(pattern), 1.0))
        if traits.phone:
            digits = re.sub(r"\D", "", traits.phone)
            if digits.startswith("33") and len(digits) == 11:
                digits = "0" + digits[2:]
            if len(digits) == 10 and digits.startswith("0"):
                pattern = rf"(?<![\w+])(?:(?:\+|00){_SEP}33{_SEP}(?:\(0\){_SEP})?|0){_digits(digits[1:])}(?![\w])"
                self._others.append(("TEL", re.compile(pattern), 1.0))
        if traits.email and "@" in traits.email:
            email = re.escape(fold(traits.email.strip()))
            self._others.append(("EMAIL", re.compile(rf"(?<![\w.]){email}(?![\w])"), 1.0))
        if traits.address and traits.address.strip():
            self._others.append(("ADRESSE", _street_regex(traits.address), 0.95))
        if traits.postcode and re.fullmatch(r"\s*(?:\d{2}|2[ABab])\d{3}\s*", traits.postcode):
            code = fold(traits.postcode.strip())
            self._others.append(("CODE_POSTAL", re.compile(rf"(?<![\w]){code}(?![\w])"), 0.9))

    @staticmethod
    def _names(names: tuple[str, ...], *, split_min: int) -> list[tuple[re.Pattern[str], bool]]:
        """(pattern, common) per variant: whole name, then its parts; ``common`` = also a plain word."""
        variants: list[str] = []
        for name in names:
            folded = fold(name.strip())
            if not folded:
                continue
            parts = [p for p in _PARTS.split(folded) if p]
            if len("".join(parts)) >= 2:
                variants.append(" ".join(parts))
            if len(parts) > 1:
                variants += [p for p in parts if len(p) >= split_min and p not in PARTICLES]
        terms = clinical_terms()
        out = []
        for v in dict.fromkeys(sorted(variants, key=len, reverse=True)):
            regex = re.compile(rf"(?<![\w]){_name_pattern(v)}(?![\w])")
            out.append((regex, v in _COMMON_WORDS or terms.allows(v)))
        return out

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        folded = fold(text)
        out: list[RecognizerResult] = []
        family_spans: list[tuple[int, int]] = []
        for regex, common in self._family:
            for m in regex.finditer(folded):
                original = text[m.start():m.end()]
                if original.islower() and common:
                    continue
                out.append(self.result("NOM", m.start(), m.end(), 1.0, "family_name"))
                family_spans.append(m.span())
        for regex, _common in self._first:
            for m in regex.finditer(folded):
                if not text[m.start()].isupper() and not _next_to(family_spans, m.start(), m.end(), text):
                    continue
                out.append(self.result("PRENOM", m.start(), m.end(), 0.95, "first_name"))
        if self._initials:
            letters = "".join(self._initials)
            initials = rf"[{letters}]\.(?:[ \t]*-?[ \t]*[a-z]\.)?"
            before = re.compile(rf"(?<![\w]){initials}[ \t]*$")
            after = re.compile(rf"^[ \t]+{initials}")
            for start, end in family_spans:
                m = before.search(folded, max(0, start - 12), start)
                # a lone "M." before a name is "Monsieur", not an initial
                if m and text[m.start()].isupper() and text[m.start():m.end()].strip() != "M.":
                    out.append(self.result("PRENOM", m.start(), m.end(), 0.9, "initials"))
                m = after.search(folded[end:end + 12])
                if m and text[end + m.end() - 2].isupper():
                    out.append(self.result("PRENOM", end + m.start(), end + m.end(), 0.9, "initials"))
        for entity, regex, score in self._others:
            for m in regex.finditer(folded):
                out.append(self.result(entity, m.start(), m.end(), score, entity.lower()))
        return out


def _next_to(spans: list[tuple[int, int]], start: int, end: int, text: str) -> bool:
    """True if only spaces or a comma separate [start, end) from one of ``spans`` ("dupont jeanne")."""
    for s, e in spans:
        gap = text[e:start] if e <= start else text[end:s] if end <= s else None
        if gap is not None and len(gap) <= 3 and not gap.strip(" \t,"):
            return True
    return False


def _date_regex(day: date) -> re.Pattern[str]:
    d, m, y = day.day, day.month, day.year
    dd = rf"0?{d}" if d < 10 else str(d)
    dd_written = r"(?:1er|0?1)" if d == 1 else dd
    mm = rf"0?{m}" if m < 10 else str(m)
    years = rf"(?:{y}|{y % 100:02d})"
    months = "|".join(rf"{re.escape(n)}\.?" for n in _MONTHS[m - 1])
    sep = r"[ \t]*[/.\-][ \t]*"
    numeric = rf"{dd}{sep}{mm}{sep}{years}"
    written = rf"{dd_written}[ \t]+(?:{months})[ \t]+{years}"
    iso = rf"{y}-{m:02d}-{d:02d}"
    compact = rf"{d:02d}{m:02d}{y}"
    return re.compile(rf"(?<![\w])(?:{numeric}|{written}|{iso}|{compact})(?![\w])")


def _street_regex(line: str) -> re.Pattern[str]:
    words = [w for w in re.split(r"[\s,]+", fold(line.strip())) if w]
    parts = [_STREET_TYPES.get(w.rstrip("."), _name_pattern(w)) for w in words]
    joined = r"[\s,]+".join(parts)
    return re.compile(rf"(?<![\w]){joined}(?![\w])")
