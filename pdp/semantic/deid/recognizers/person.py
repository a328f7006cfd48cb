"""Person names found by their context: titles (Mme, M., Dr, Pr, Docteur...), relations ("fils
de", "épouse", "sa fille, Mme..."), birth names ("née X"), labelled header fields ("Nom :",
"Prénom(s) :") and signature lines ("Caroline RODRIGUES" alone on a line).

Why context and not the NER model alone: the French model misses names in header blocks and
tags clinical words as persons; a title or a label is a stronger signal than the model, and
it also tells which words are the name (the title itself stays in the text: "Dr <PERSONNE>").

Example::

    >>> t = "Copie : Docteur MACE Michèle. Présence de sa sœur (Chloé FRANÇOIS)."
    >>> [t[r.start:r.end] for r in FrPersonContextRecognizer().analyze(t, [])]
    ['MACE Michèle', 'Chloé FRANÇOIS']
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pdp.semantic.deid.allowlist import clinical_terms
from pdp.semantic.deid.recognizers.base import FrRecognizer, register
from pdp.semantic.deid.text import LOWER, NAME_TOKEN, UPPER

_PARTICLE = r"(?:de|du|des|le|la|van|von|der|di|da|del|dos|ben|el|d'|l')"
# 1 to 4 name words on one line, particles allowed inside ("Jean de LA FONTAINE").
_NAMES = rf"{NAME_TOKEN}(?:(?:[ \t]+{_PARTICLE})?[ \t]+{NAME_TOKEN}){{0,3}}(?![\w])"
_INITIALS = r"(?:[A-Z]\.(?:[ \t]*-?[ \t]*[A-Z]\.)?[ \t]*)"
_TITLE = (
    r"(?<![\w])(?:Mme|Mmes|Mlle|Melle|Madame|Mademoiselle|Monsieur|Messieurs|M\.|"
    rf"M(?=[ \t]+[{UPPER}][A-Za-z{UPPER}{LOWER}])|MM\.|Mr\.?|"
    r"Dr\.?|Dre|Drs|"
    r"Docteur|Docteurs|Pr\.?|Pre|Professeur|Me|Maître|Maitre|Sr|Sœur|Soeur|Père)[ \t]+"
)
_RELATION = (
    r"(?i:(?<![\w])(?:fils|fille|petit-fils|petite-fille|[ée]poux|[ée]pouse|veuve|veuf|mari|conjoint|conjointe|"
    r"compagne|compagnon|fr[èe]re|s[œo]e?ur|m[èe]re|p[èe]re|neveu|ni[èe]ce|gendre|belle-fille|beau-fils|"
    r"tuteur|tutrice|curateur|curatrice|aidant|aidante|personne[ \t]+de[ \t]+confiance))"
    r"(?:[ \t]+(?:de|d')[ \t]*|[ \t]*[,:(][ \t]*|[ \t]+)"
)
_BORN = r"(?<![\w])(?:née|né|Née?|NÉE?|NEE?)[ \t]+(?!(?i:le|la|les|en|à|au|vers|dans|avec|sous|par|à)(?![\w]))"
_FAMILY_LABEL = (
    r"(?m:^[ \t]*(?i:nom(?:[ \t]+(?:de[ \t]+naissance|d'usage|marital|de[ \t]+jeune[ \t]+fille|patient|"
    r"de[ \t]+famille))?|patient(?:\(e\))?|patiente|nom[ \t]+et[ \t]+pr[ée]nom)[ \t]*:[ \t]*)"
)
_FIRST_LABEL = r"(?m:^[ \t]*(?i:pr[ée]noms?|pr[ée]nom\(s\))[ \t]*:[ \t]*)"
_SIGNATURE = (
    r"(?m:^[ \t]*(?!(?:Mme|Mlle|Madame|Monsieur|Mademoiselle|Docteur|Professeur|Dr|Pr|Me)(?![\w]))"
    rf"(?P<sig>[{UPPER}][{LOWER}]+(?:-[{UPPER}][{LOWER}]+)?[ \t]+[{UPPER}]{{2,}}"
    rf"(?:[-' \t][{UPPER}]{{2,}})?|[{UPPER}]{{2,}}(?:[-'][{UPPER}]{{2,}})?[ \t]+[{UPPER}][{LOWER}]+"
    rf"(?:-[{UPPER}][{LOWER}]+)?)[ \t]*$)"
)
_PATTERNS: tuple[tuple[str, re.Pattern[str], str, float], ...] = (
    ("title", re.compile(rf"{_TITLE}(?P<name>{_INITIALS}?{_NAMES})"), "PERSONNE", 0.85),
    ("relation", re.compile(rf"{_RELATION}(?:{_TITLE})?(?P<name>{_NAMES})"), "PERSONNE", 0.75),
    ("born_name", re.compile(rf"{_BORN}(?P<name>{_NAMES})"), "PERSONNE", 0.75),
    ("family_label", re.compile(rf"{_FAMILY_LABEL}(?:{_TITLE})?(?P<name>{_NAMES})"), "NOM", 0.8),
    (
        "first_label",
        re.compile(rf"{_FIRST_LABEL}(?P<name>{NAME_TOKEN}(?:[ \t]*[,;/]?[ \t]+{NAME_TOKEN}){{0,4}})(?![\w])"),
        "PRENOM",
        0.8,
    ),
    ("signature", re.compile(_SIGNATURE), "PERSONNE", 0.6),
)
_WORD = re.compile(r"[^\s,;/()]+")


@register
class FrPersonContextRecognizer(FrRecognizer):
    """Names after a title, a relation, "née", a header label, or alone on a signature line."""

    NAME = "fr_person_context"
    ENTITIES = ("PERSONNE", "NOM", "PRENOM")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        terms = clinical_terms()
        out: list[RecognizerResult] = []
        for rule, regex, entity, score in _PATTERNS:
            group = "sig" if rule == "signature" else "name"
            for match in regex.finditer(text):
                start, end = match.span(group)
                words = _WORD.findall(text[start:end])
                if rule in ("signature", "relation", "born_name") and all(terms.allows(w) for w in words):
                    continue  # "Examen CLINIQUE", "épouse Hypertension": listed words, not a name
                out.append(self.result(entity, start, end, score, rule))
        return out
