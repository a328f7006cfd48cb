"""Street addresses ("12 rue des Lilas", "bd Victor Hugo", "lieu-dit Les Granges") and
postcodes with their commune ("59500 DOUAI", "62000 Arras CEDEX").

Why token by token and not one regex: the street name ends where the sentence goes on
("habite 12 rue des Lilas depuis 2010"), and French street names mix capitals, particles and
numbers ("avenue du 8 Mai 1945"). After the street type, words are taken while they look like
a street name (capitalised, a particle, a number, a month) and the run stops at the first plain
lower-case word or punctuation. Words that are also common French words ("place", "cours",
"voie", "passage") count as a street type only after a house number, in any case ("84 place du
Marché", as letters write it; "mise en place" has no number), and like every type only when a
street name follows ("2 cours de chimiothérapie" has none).

Example::

    >>> r = FrAddressRecognizer().analyze("Domicile : 12 rue des Lilas, 59500 DOUAI", [])
    >>> sorted((x.entity_type, x.start, x.end) for x in r)
    [('ADRESSE', 11, 27), ('ADRESSE', 29, 40)]
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from pdp.semantic.deid.recognizers.base import FrRecognizer, register
from pdp.semantic.deid.text import UPPER

_SAFE_TYPES = (
    r"rue|r\.|avenue|av\.|ave|boulevard|bd|bld|boul\.|impasse|imp\.|all[ée]e|chemin|ch\.|chem\.|route|rte|"
    r"quai|square|r[ée]sidence|r[ée]s\.|lotissement|lot\.|hameau|faubourg|fbg|fg|cit[ée]|lieu-dit|lieudit|ld|"
    r"chauss[ée]e|ruelle|venelle|sentier|rond-point|esplanade|parvis|promenade"
)
_AMBIGUOUS_TYPES = r"Place|Pl\.|Cours|Voie|Passage|Clos|Domaine|Mail|Villa|Traverse|Quartier"
_NUMBER = r"\d{1,4}(?:[ ]?(?:bis|ter|quater|[A-Da-d])(?![\w]))?,?[ \t]+"
_STREET = re.compile(
    rf"(?<![\w])(?:(?P<num>{_NUMBER})(?i:{_SAFE_TYPES}|{_AMBIGUOUS_TYPES})|(?i:{_SAFE_TYPES}))(?=[ \t])"
)
_WORD = re.compile(r"[ \t]+([\w'’\-.]+)")
_STREET_PARTICLES = frozenset(
    {"de", "du", "des", "la", "le", "les", "l", "d", "à", "a", "aux", "au", "en", "sur", "sous", "et", "saint",
     "sainte", "st", "ste"}
)
_MONTHS = frozenset(
    {"janvier", "février", "fevrier", "mars", "avril", "mai", "juin", "juillet", "août", "aout", "septembre",
     "octobre", "novembre", "décembre", "decembre"}
)
_POSTCODE = re.compile(
    r"(?<![\w])(?:0[1-9]|[1-8]\d|9[0-8]|2[AB])\d{3}[ \t]+"
    rf"(?P<commune>[{UPPER}][\w'’]+(?:[ \t\-]+(?:(?!CEDEX)[{UPPER}][\w'’]+|"
    r"(?:le|la|les|sur|sous|en|de|du|des|lès|lez|"
    r"aux|et|d'|l')(?=[ \t\-])))*(?:[ \t]+CEDEX(?:[ \t]+\d{1,2})?)?)"
)
_LABELLED_POSTCODE = re.compile(r"(?i:\b(?:code[ \t]+postal|CP))[ \t]*:?[ \t]*((?:\d{2}|2[AB])\d{3})(?![\w])")
_UNITS = frozenset({"UI", "U", "UA", "MG", "G", "KG", "ML", "L", "MMOL", "MOL", "µG", "UG", "NG", "PG", "NMOL", "PMOL"})


def _street_end(text: str, pos: int) -> int:
    """Where the street name after a street type ends (``pos`` = end of the type word)."""
    end = pos
    taken = 0
    while taken < 8:
        match = _WORD.match(text, end)
        if match is None:
            break
        word = match.group(1).rstrip(".")
        bare = word.lower().strip("'’")
        apostrophe = re.match(r"^[ldLD]['’](\w.*)$", word)
        if word[:1].isupper() or word[:1].isdigit() or apostrophe or bare in _STREET_PARTICLES or bare in _MONTHS:
            end = match.start(1) + len(word)
            taken += 1
            continue
        break
    # a street name never ends on a particle
    while True:
        tail = re.search(r"[ \t]+([\w'’]+)$", text[pos:end])
        if tail is None or tail.group(1).lower() not in _STREET_PARTICLES:
            break
        end = pos + tail.start()
    return end


@register
class FrAddressRecognizer(FrRecognizer):
    """Street lines and "postcode commune"; a bare postcode only when labelled (CP, code postal)."""

    NAME = "fr_address"
    ENTITIES = ("ADRESSE", "CODE_POSTAL")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for match in _STREET.finditer(text):
            end = _street_end(text, match.end())
            if end > match.end():
                score = 0.85 if match.group("num") else 0.6
                out.append(self.result("ADRESSE", match.start(), end, score, "street"))
        for match in _POSTCODE.finditer(text):
            commune = match.group("commune")
            if commune.upper() in _UNITS or len(commune) < 2:
                continue
            out.append(self.result("ADRESSE", match.start(), match.end(), 0.7, "postcode_commune"))
        for match in _LABELLED_POSTCODE.finditer(text):
            out.append(self.result("CODE_POSTAL", match.start(1), match.end(1), 0.8, "labelled_postcode"))
        return out
