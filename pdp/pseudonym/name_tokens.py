"""Keyed hashes of the vault's name and address tokens: what the leak scanner compares, without decrypting.

Why: the leak scanner must know the vault's people (a name copied into the lake is a leak the
pattern detectors cannot see), but decrypting every identity to scan files would make the
scanner a second way into the vault. So the vault keeps, beside each record, keyed hashes of
the phrases the scanner looks for, under a key of their own (key store purpose
``nametoken``): the scanner holds that key only, never the vault key, and sees hashes only.

What is hashed (one row per phrase; :func:`person_phrases` is the single definition, shared by
the vault that writes rows and the scanner that builds its detector):

- ``surname``: each birth and used name (folded tokens), unless a placeholder or < 2 letters;
- ``exact``: the same, when it has at least 3 letters (a whole cell equal to it counts);
- ``first``: each first name of at least 2 letters;
- ``address``: the address line, when it has a house number and a distinctive word;
- ``anchor``: single tokens that make a cell worth a closer look (the longest token of a
  surname, the most distinctive word of an address).

Each row also stores the phrase's token count (``size``): the scanner needs the n-gram sizes
to look up, a count that says nothing about the person. Hash: keyed BLAKE2b, 128 bits, of
the phrase's tokens joined by a space (fast enough to hash every distinct token of a lake).

>>> hasher = NameTokenHasher(b"k" * 32)
>>> sorted(kind for kind, _size, _phrase in person_phrases(surnames=["Le Gall"], first_names=["Anne"], address=None))
['anchor', 'exact', 'first', 'surname']
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterator, Sequence

__all__ = [
    "ADDRESS_WORDS",
    "LIGATURES",
    "PARTICLES",
    "SAINTS",
    "NameTokenHasher",
    "fold_tokens",
    "person_phrases",
]

# Letters NFKD does not decompose into a base letter plus marks (same list as the edge's name
# normaliser), and ß, whose upper case is two letters.
LIGATURES: tuple[tuple[str, str], ...] = (
    ("Œ", "OE"), ("œ", "oe"), ("Æ", "AE"), ("æ", "ae"), ("ß", "ss"), ("ẞ", "SS"), ("Ø", "O"), ("ø", "o"),
    ("Ł", "L"), ("ł", "l"), ("Đ", "D"), ("đ", "d"), ("Ð", "D"), ("ð", "d"), ("Þ", "TH"), ("þ", "th"), ("ı", "i"),
)  # fmt: skip
_LIGATURE_TABLE = str.maketrans(dict(LIGATURES))
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
SAINTS = {"ST": "SAINT", "STE": "SAINTE"}

# Articles and prepositions: parts of names ("LE GALL", "DE LA TOUR") and of every French sentence.
PARTICLES = frozenset({"DE", "DU", "DES", "LA", "LE", "LES", "L", "D", "AU", "AUX", "ET", "EN", "SUR", "SOUS"})

# Words that say "this is an address" rather than "whose": never enough to anchor an address.
ADDRESS_WORDS = PARTICLES | frozenset({
    "RUE", "AVENUE", "AV", "AVE", "BOULEVARD", "BD", "BLVD", "CHEMIN", "CHE", "CHM", "ALLEE", "ALL", "IMPASSE",
    "IMP", "PLACE", "PL", "ROUTE", "RTE", "QUAI", "COURS", "CRS", "SQUARE", "SQ", "RESIDENCE", "RES", "LOTISSEMENT",
    "LOT", "HAMEAU", "HAM", "LIEU", "DIT", "CITE", "VOIE", "SENTIER", "PASSAGE", "PAS", "FAUBOURG", "FBG", "FG",
    "PROMENADE", "PROM", "ROND", "POINT", "PARVIS", "ESPLANADE", "MAIL", "VILLA", "CLOS", "DOMAINE", "ZA", "ZI",
    "ZAC", "BIS", "TER", "QUATER", "SAINT", "SAINTE", "ST", "STE", "BAT", "BATIMENT", "APPT", "APPARTEMENT",
    "ETAGE", "ESC", "ESCALIER", "PORTE", "CEDEX", "BP", "CS", "TSA", "GRAND", "GRANDE", "PETIT", "PETITE", "VIEUX",
    "VIEILLE", "NOUVEAU", "NOUVELLE", "NORD", "SUD", "EST", "OUEST", "HAUT", "BAS",
})  # fmt: skip
PLACEHOLDER_NAMES = frozenset({"X", "XX", "XXX", "INCONNU", "INCONNUE", "ANONYME", "NEANT", "INDETERMINE"})
MIN_EXACT_SURNAME = 3


def fold_tokens(text: str) -> tuple[str, ...]:
    """Upper-case A-Z/0-9 tokens of ``text``: accents and marks dropped, anything else separates.

    ``"12, rue Saint-Éloi"`` → ``("12", "RUE", "SAINT", "ELOI")``. For a name the edge accepts,
    the tokens are those of :func:`pdp.pseudonym.normalise.normalise_name` (ST/STE before
    another word read as SAINT/SAINTE), so vault names and lake cells compare as the edge does.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURE_TABLE))
    bare = "".join(ch for ch in decomposed if not unicodedata.category(ch).startswith("M")).upper()
    tokens = [tok for tok in _NOT_ALNUM.split(bare) if tok]
    return tuple(SAINTS.get(tok, tok) if i < len(tokens) - 1 else tok for i, tok in enumerate(tokens))


def person_phrases(
    *, surnames: Sequence[str], first_names: Sequence[str], address: str | None
) -> Iterator[tuple[str, int, tuple[str, ...]]]:
    """``(kind, size, phrase)`` for one person: what the scanner looks for (see the module docstring)."""
    for first in {p for p in (fold_tokens(n) for n in first_names) if len("".join(p)) >= 2}:
        yield "first", len(first), first
    for surname in surnames:
        phrase = fold_tokens(surname)
        letters = "".join(phrase)
        if letters in PLACEHOLDER_NAMES or len(letters) < 2:
            continue
        yield "surname", len(phrase), phrase
        if len(letters) >= MIN_EXACT_SURNAME:
            yield "exact", len(phrase), phrase
        yield "anchor", 1, (max(phrase, key=len),)
    if address:
        phrase = fold_tokens(address)
        anchors = [t for t in phrase if not t.isdigit() and t not in ADDRESS_WORDS and len(t) >= 3]
        if anchors and any(any(ch.isdigit() for ch in t) for t in phrase):
            yield "address", len(phrase), phrase
            yield "anchor", 1, (max(anchors, key=len),)


class NameTokenHasher:
    """Keyed BLAKE2b (128 bits) of a folded phrase, under the ``nametoken`` key."""

    def __init__(self, key_material: bytes) -> None:
        if len(key_material) < 16:
            raise ValueError("name-token key too short")
        self._key = bytes(key_material[:64])

    def __repr__(self) -> str:
        return "NameTokenHasher(<key hidden>)"

    def hash(self, phrase: Sequence[str]) -> str:
        return hashlib.blake2b(" ".join(phrase).encode("ascii"), key=self._key, digest_size=16).hexdigest()
