"""Text helpers shared by the recognizers: a length-preserving fold and name-shaped tokens.

Why length-preserving: every recognizer reports offsets into the *original* text. Matching on
a folded copy (lower case, accents removed, typographic apostrophes and dashes made plain) is
only safe if the folded copy has exactly the same length, character for character, so that an
offset found in one is an offset in the other. ``unicodedata.normalize`` alone does not keep
lengths (``œ`` stays, ``ﬁ`` becomes two letters), so a translation table maps each code point to
exactly one code point.

Example::

    >>> fold("Élise LE GALL-Lefèvre ’")
    "elise le gall-lefevre '"
    >>> len(fold("Œdème")) == len("Œdème")
    True
"""

from __future__ import annotations

import unicodedata

__all__ = ["NAME_TOKEN", "PARTICLES", "fold", "is_name_token"]


def _fold_char(char: str) -> str:
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    lower = (base if len(base) == 1 else char).lower()
    return lower if len(lower) == 1 else char


_TABLE: dict[int, str] = {i: _fold_char(chr(i)) for i in range(0x250)}
_TABLE.update({ord(c): "'" for c in "\u2019\u2018\u02bc\u00b4`"})
_TABLE.update({ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212"})
_TABLE.update({ord(c): " " for c in "\u00a0\u202f\u2007\u2009"})


def fold(text: str) -> str:
    """Lower case, accents off, apostrophes/dashes/spaces made plain; same length as ``text``."""
    return text.translate(_TABLE)


# A capitalised or upper-case word, possibly hyphenated or with an apostrophe ("LE GALL",
# "Lefèvre-Dupont", "D'Artagnan", "O'Neill"): how a name is written in French letters.
# The letters of French names, for regex character classes: Latin-1's and the ligature Œ/œ and Ÿ,
# which Latin-1 lacks (LECŒUR, Œillet); one definition for every recognizer.
UPPER = "A-ZÀ-ÖØ-ÞŒŸ"
LOWER = "a-zß-öø-ÿœ"
NAME_TOKEN = (
    rf"(?:[{UPPER}][{LOWER}]+|[{UPPER}]{{2,}}|[{UPPER}]['’][{UPPER}][{LOWER}{UPPER}]+)"
    rf"(?:[-‐][{UPPER}](?:[{LOWER}]+|[{UPPER}]+))*"
)
PARTICLES = frozenset({"de", "du", "des", "le", "la", "les", "van", "von", "der", "den", "di", "da", "del", "dos",
                       "ben", "el", "al", "d'", "l'", "mac", "st", "ste"})


def is_name_token(token: str) -> bool:
    """A token shaped like a name: starts with an upper-case letter, letters (and - ') only."""
    if not token or not token[0].isupper():
        return False
    return all(c.isalpha() or c in "-'’" for c in token)
