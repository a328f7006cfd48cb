"""Identity normalisation: the INS traits and the NIR of one record → one canonical identity.

Why: the same person reaches the edge spelled differently by each source (accents or not,
``Le Fèvre`` or ``LEFEVRE``, ``Jean-Marie`` or ``Jean Marie``, ``St André`` or
``SAINT-ANDRÉ``). The keyed pseudonym is computed from the canonical identity, so every
spelling difference this module does not fold away becomes a second pseudonym for one
person; and every difference it folds away *wrongly* merges two persons. Both are costly; a
false merge (one patient's care attached to another) is worse, so where the two conflict the
choice below leans to keeping people apart.

Canonical forms (the pseudonym is the keyed HMAC of exactly these fields, see
``CanonicalIdentity.canonical_bytes``)::

    nir     scheme tag, NIR body (13 characters, 2A/2B kept), birth date (ISO)
    traits  scheme tag, birth name compact, first token of the first first name,
            birth date (ISO), sex

* **NIR scheme** when a valid NIR is present *and is the person's own*: its sex digit
  (odd = male), birth year (2 digits) and birth month (unless encoded unknown) agree with the
  record's sex and birth date. Names are deliberately not in the NIR key: the NIR already
  identifies the person, and names are the noisiest traits (married name written as birth
  name, typos). The birth date is added because a NIR that is not the person's own can still
  pass the agreement check (an insured spouse of the same sex born the same month and year,
  a parent born exactly a century earlier): adding the full date keeps those apart.
* **Insured-parent NIR**: on insurance cards, minors and some spouses carry the NIR of the
  insured person (the "ouvrant droit"). Such a NIR contradicts the record's traits (a
  parent's birth year is not the child's), so it is kept as ``insured_nir`` — never in the
  key — and the record falls back to the **traits scheme**. Twins of the same insured parent
  thus get traits keys, which differ by first name and/or sex.
* **Traits scheme**: birth name (never the used name: the birth name does not change on
  marriage), compact (spaces removed: ``LE FEVRE``, ``LEFEVRE``, ``LE-FEVRE`` converge),
  the first token of the first first name (``JEAN`` for ``Jean-Marie``, ``Jean Marie``,
  ``Jean, Marie`` and ``Jean-Marie Paul``: the hyphen is dropped by many systems, and a
  space-separated list cannot be told from a compound written without its hyphen), birth
  date and sex. Birthplace is *not* in the key: most sources do not carry it, and including
  it when present would split each person between sources that have it and sources that do
  not.

Known limits, left to probabilistic linkage (they cannot be fixed deterministically):
a married name written in the birth-name field; typos; a day/month swap; same-sex twins
whose first names share the first token (``Marie-Claire`` and ``Marie-France`` with a
parent's NIR) get the same traits key; the NIR and the traits schemes give one person two
different pseudonyms (one per scheme) — linking them is the identity vault's and linkage's
job, and a temporary NIA (sex digit 7/8) will change to a definitive NIR later.

Nothing in this module puts an input value in an error, a repr or a log: :class:`Rejection`
carries a reason code, the field name and a fixed sub-code only; :class:`RawIdentity` and
:class:`CanonicalIdentity` hide their contents in ``repr``. :class:`RawIdentity` is a plain
dataclass rather than a pydantic model because pydantic's validation errors echo the input.

Example::

    >>> from datetime import date
    >>> a = normalise(RawIdentity(birth_name="Le Fèvre", first_names="Jean-Marie, Paul", sex="M",
    ...                           birth_date="12/05/1980"), today=date(2025, 1, 1))
    >>> b = normalise(RawIdentity(birth_name="LEFEVRE", first_names="JEAN MARIE", sex="1",
    ...                           birth_date="1980-05-12"), today=date(2025, 1, 1))
    >>> a.canonical_bytes == b.canonical_bytes, a.birth_name, a.first_names
    (True, 'LE FEVRE', ('JEAN MARIE', 'PAUL'))

Performance: about 10 µs per record on one core (measured on 1M varied records: ~90k records/s),
names being folded once and cached; a name seen for the first time costs a few µs more (NFKD).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Literal

from pdp.pseudonym.nir import Nir, NirInvalid, NirReason, parse_nir

__all__ = [
    "CANONICAL_FORMAT",
    "INSEE_CODE",
    "RPPS_NUMBER",
    "CanonicalIdentity",
    "RawIdentity",
    "ReasonCode",
    "Rejection",
    "compact_code",
    "normalise",
    "normalise_name",
]

CANONICAL_FORMAT = "pdp-pseudonym/1"
"""Version tag of the serialisation: changing the canonical forms means a new tag (and new pseudonyms)."""

INSEE_CODE = re.compile(r"(?:[0-9]{5}|2[AB][0-9]{3})")
"""An INSEE commune or country code (99xxx: abroad), compacted: a birthplace, a commune of residence."""

RPPS_NUMBER = re.compile(r"[0-9]{11}")
"""A health professional's RPPS number (a GP's), compacted."""

_CODE_SEPARATORS = re.compile(r"[\s.\-]")


def compact_code(text: str) -> str:
    """A code as sent without its spaces, dots and hyphens, upper-cased: ``compact_code("2a 004")`` is
    ``"2A004"``; then :data:`INSEE_CODE` or :data:`RPPS_NUMBER` say whether it is one."""
    return _CODE_SEPARATORS.sub("", text).upper()


MIN_BIRTH_DATE = date(1880, 1, 1)
_SEP = "\x1f"  # ASCII unit separator: cannot occur in a normalised field (A-Z, 0-9, space, '-')


class ReasonCode(StrEnum):
    """Why a record is refused by the edge (stable codes: quarantine relies on them)."""

    NIR_KEY = "NIR_KEY"  # NIR control key does not match its body
    NIR_FORMAT = "NIR_FORMAT"  # NIR of the wrong length, characters, sex, month, département or order
    BIRTH_DATE_INVALID = "BIRTH_DATE_INVALID"  # missing, unparseable, impossible, partial, future, before 1880
    NAME_EMPTY = "NAME_EMPTY"  # no birth name / no first name, or a placeholder ("X", "INCONNU")
    NAME_CHARSET = "NAME_CHARSET"  # a digit or a non-Latin character in a name
    SEX_INVALID = "SEX_INVALID"  # missing, or not male/female
    BIRTH_PLACE_INVALID = "BIRTH_PLACE_INVALID"  # not an INSEE code (5 digits, 2A/2B + 3 digits)
    FIELD_TYPE = "FIELD_TYPE"  # a field of the wrong type (a number where text is expected...)


_MESSAGES: dict[ReasonCode, str] = {
    ReasonCode.NIR_KEY: "the NIR control key does not match its 13 first characters",
    ReasonCode.NIR_FORMAT: "the NIR is not a well-formed NIR",
    ReasonCode.BIRTH_DATE_INVALID: "the birth date is missing, unparseable, impossible, in the future or before 1880",
    ReasonCode.NAME_EMPTY: "the name is empty or a placeholder",
    ReasonCode.NAME_CHARSET: "the name has characters outside the Latin alphabet",
    ReasonCode.SEX_INVALID: "the sex is missing or not male/female",
    ReasonCode.BIRTH_PLACE_INVALID: "the birthplace is not an INSEE commune or country code",
    ReasonCode.FIELD_TYPE: "the field has the wrong type",
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record the edge refuses: what is wrong and where, never the offending value.

    ``detail`` is a fixed sub-code (``NIR_MONTH``, ``future``, ``placeholder``...), chosen from
    a closed list in this module, so a Rejection can be logged and stored in quarantine as is.
    """

    reason_code: ReasonCode
    field: str
    detail: str | None = None

    @property
    def message(self) -> str:
        suffix = f" ({self.detail})" if self.detail else ""
        return f"{self.field}: {self.reason_code}: {_MESSAGES[self.reason_code]}{suffix}"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True, kw_only=True)
class RawIdentity:
    """One record's identity as a source wrote it (any field may be missing or malformed).

    ``first_names``: a list (one first name per item, civil-register order) or one string
    (comma-, semicolon- or slash-separated; without those, space-separated). ``birth_date``:
    a date, or ``YYYY-MM-DD``, ``dd/mm/yyyy`` (also ``-`` or ``.``), ``YYYYMMDD`` (HL7).
    ``sex``: M/F, H (homme), 1/2, or the words male/female, masculin/féminin, homme/femme.
    ``birth_place``: INSEE commune code (99xxx = abroad). ``nir``: 15 characters, separators
    allowed.
    """

    birth_name: str | None = None
    used_name: str | None = None
    first_names: str | Sequence[str] | None = None
    sex: str | None = None
    birth_date: date | str | None = None
    birth_place: str | None = None
    nir: str | None = None

    def __repr__(self) -> str:
        return "RawIdentity(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, kw_only=True)
class CanonicalIdentity:
    """The normalised identity: what the pseudonym is computed from, and what the vault keeps.

    Names are upper case A-Z with single spaces (diacritics removed, ligatures expanded,
    hyphens and apostrophes as spaces, ST/STE as SAINT/SAINTE). ``birth_name_compact`` is
    the birth name without spaces (the form the traits key uses; also a blocking key for
    linkage). ``nir`` is the person's own NIR (15 characters); ``insured_nir`` a valid NIR
    that contradicts the traits (an insured parent's or spouse's), never used in a key.
    ``canonical_bytes`` is the exact input of the pseudonym HMAC (see the module docstring).
    """

    scheme: Literal["nir", "traits"]
    nir: str | None
    insured_nir: str | None
    birth_name: str
    birth_name_compact: str
    used_name: str | None
    first_names: tuple[str, ...]
    first_name: str
    first_name_first_token: str
    sex: Literal["M", "F"]
    birth_date: date
    birth_place: str | None
    canonical_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scheme == "nir":
            if self.nir is None:
                raise ValueError("a nir-scheme identity needs the person's own NIR")
            parts = (CANONICAL_FORMAT, "nir", self.nir[:13], self.birth_date.isoformat())
        else:
            parts = (
                CANONICAL_FORMAT,
                "traits",
                self.birth_name_compact,
                self.first_name_first_token,
                self.birth_date.isoformat(),
                self.sex,
            )
        object.__setattr__(self, "canonical_bytes", _SEP.join(parts).encode("ascii"))

    def __repr__(self) -> str:
        return f"CanonicalIdentity(scheme={self.scheme!r}, <identity hidden>)"

    __str__ = __repr__


# --- names ------------------------------------------------------------------------------

# Letters NFKD does not decompose into a base letter plus a combining mark.
_LETTERS = str.maketrans(
    {
        "Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "ẞ": "SS", "Ø": "O", "ø": "o",
        "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ð": "D", "ð": "d", "Þ": "TH", "þ": "th", "ı": "i",
    }
)  # fmt: skip
# Apostrophes, hyphens, dashes, dots, commas and the like separate name parts.
_SEPARATORS = re.compile(r"[\s'’‘`´ʼ\-‐‑‒–—.,;:/_()\"]+")
_ALLOWED = re.compile(r"[A-Z ]+")
_SAINTS = {"ST": "SAINT", "STE": "SAINTE"}
_PLACEHOLDERS = frozenset({"X", "XX", "XXX", "INCONNU", "INCONNUE", "ANONYME", "NEANT", "INDETERMINE", "NONRENSEIGNE"})
_BIRTH_THEN_USED = frozenset({"EPOUSE", "EPSE", "EP", "VEUVE", "VVE"})  # "DUPONT épouse MARTIN"
_USED_THEN_BIRTH = frozenset({"NEE"})  # "MARTIN née DUPONT"
_FIRST_NAME_LIST = re.compile(r"[,;/]+")


class _NameCharsetError(ValueError):
    """A name has a character outside A-Z once folded (digit, non-Latin letter, symbol)."""


@lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> tuple[str, ...]:
    """Fold a name to upper-case A-Z tokens; raises _NameCharsetError (without the value).

    Cached: names repeat heavily across records (a few thousand surnames and first names cover
    most of a territory), and folding is most of the cost of normalising a record.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_LETTERS))
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()
    spaced = _SEPARATORS.sub(" ", folded).strip()
    if spaced and not _ALLOWED.fullmatch(spaced):
        raise _NameCharsetError("name has characters outside the Latin alphabet")
    tokens = spaced.split()
    # ST/STE abbreviate SAINT/SAINTE only before another word ("ST ANDRE"), never alone.
    return tuple(_SAINTS.get(tok, tok) if i < len(tokens) - 1 else tok for i, tok in enumerate(tokens))


def normalise_name(text: str) -> str:
    """A name in canonical form: ``"Saint-André d'Arcy"`` → ``"SAINT ANDRE D ARCY"``.

    Raises ValueError (without echoing the value) for digits or non-Latin characters.
    """
    return " ".join(_tokens(text))


def _is_placeholder(tokens: Sequence[str]) -> bool:
    return "".join(tokens) in _PLACEHOLDERS


def _split_birth_and_used(tokens: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """Split ``DUPONT EP MARTIN`` / ``MARTIN NEE DUPONT`` written in the birth-name field."""
    for i, tok in enumerate(tokens[1:-1], start=1):
        if tok in _BIRTH_THEN_USED:
            return tokens[:i], tokens[i + 1 :]
        if tok in _USED_THEN_BIRTH:
            return tokens[i + 1 :], tokens[:i]
    return tokens, None


def _first_name_items(value: str | Sequence[str]) -> list[str]:
    """Split first names: a list item or a comma-separated part is one first name; a string
    without commas is split on spaces (a hyphenated compound stays one first name)."""
    if isinstance(value, str):
        parts = _FIRST_NAME_LIST.split(value)
        if len(parts) == 1:
            parts = value.split()
        return parts
    return [part for item in value for part in _FIRST_NAME_LIST.split(item)]


# --- dates, sex, places -----------------------------------------------------------------

_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ][0-9:.+\-Z]*)?")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})(?:\d{2,6}(?:[.]\d+)?)?(?:[+\-]\d{4})?")  # HL7 TS
_FRENCH = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})")
_YMD_SLASH = re.compile(r"(\d{4})/(\d{2})/(\d{2})")

_SEXES: dict[str, Literal["M", "F"]] = {
    "M": "M", "H": "M", "1": "M", "MALE": "M", "MASCULIN": "M", "HOMME": "M",
    "F": "F", "2": "F", "FEMALE": "F", "FEMININ": "F", "FEMME": "F",
}  # fmt: skip


def _parse_date(value: date | str, today: date) -> date | str:
    """The birth date, or the fixed sub-code saying why it is refused."""
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        text = value.strip()
        for pattern in (_ISO, _COMPACT, _YMD_SLASH, _FRENCH):
            match = pattern.fullmatch(text)
            if match:
                break
        else:
            return "unparseable"
        a, b, c = (int(g) for g in match.groups())
        year, month, dom = (c, b, a) if pattern is _FRENCH else (a, b, c)
        if month == 0 or dom == 0:
            return "partial"
        try:
            day = date(year, month, dom)
        except ValueError:
            return "impossible"
    if day > today:
        return "future"
    if day < MIN_BIRTH_DATE:
        return "before_1880"
    return day


def _nir_is_own(nir: Nir, sex: str, birth: date) -> bool:
    """True when the NIR's sex, year and (known) month agree with the record's traits."""
    month = nir.month
    return nir.sex == sex and nir.year2 == birth.year % 100 and (month is None or month == birth.month)


# --- the edge entry point ---------------------------------------------------------------


def normalise(raw: RawIdentity, *, today: date | None = None) -> CanonicalIdentity | Rejection:
    """Normalise one record's identity, or say (by reason code) why it cannot be.

    Checks run in a fixed order — birth name, used name, first names, sex, birth date,
    birthplace, NIR — and the first failure is returned. ``today`` bounds birth dates
    (default: the local date; pass it to make a batch reproducible).
    """
    today = today or date.today()

    # Birth name (with "EP"/"NEE" markers split off) and used name.
    if raw.birth_name is not None and not isinstance(raw.birth_name, str):
        return Rejection(ReasonCode.FIELD_TYPE, "birth_name")
    try:
        birth_tokens, marked_used = _split_birth_and_used(_tokens(raw.birth_name or ""))
    except _NameCharsetError:
        return Rejection(ReasonCode.NAME_CHARSET, "birth_name")
    if not birth_tokens:
        return Rejection(ReasonCode.NAME_EMPTY, "birth_name")
    if _is_placeholder(birth_tokens):
        return Rejection(ReasonCode.NAME_EMPTY, "birth_name", "placeholder")
    if raw.used_name is not None and not isinstance(raw.used_name, str):
        return Rejection(ReasonCode.FIELD_TYPE, "used_name")
    try:
        used_tokens = _tokens(raw.used_name or "") or marked_used or ()
    except _NameCharsetError:
        return Rejection(ReasonCode.NAME_CHARSET, "used_name")
    birth_name = " ".join(birth_tokens)
    used_name = " ".join(used_tokens) or None
    if used_name == birth_name or (used_tokens and _is_placeholder(used_tokens)):
        used_name = None

    # First names.
    value = raw.first_names
    if value is None:
        return Rejection(ReasonCode.NAME_EMPTY, "first_names")
    if not isinstance(value, str) and not (
        isinstance(value, Sequence) and all(isinstance(item, str) for item in value)
    ):
        return Rejection(ReasonCode.FIELD_TYPE, "first_names")
    try:
        first_names = tuple(name for name in (normalise_name(item) for item in _first_name_items(value)) if name)
    except _NameCharsetError:
        return Rejection(ReasonCode.NAME_CHARSET, "first_names")
    if not first_names:
        return Rejection(ReasonCode.NAME_EMPTY, "first_names")
    if _is_placeholder(first_names[0].split()):
        return Rejection(ReasonCode.NAME_EMPTY, "first_names", "placeholder")

    # Sex.
    if raw.sex is None:
        return Rejection(ReasonCode.SEX_INVALID, "sex", "missing")
    if not isinstance(raw.sex, str):
        return Rejection(ReasonCode.FIELD_TYPE, "sex")
    try:
        sex_key = "".join(_tokens(raw.sex))
    except _NameCharsetError:
        sex_key = raw.sex.strip()  # "1" / "2" are digits, which names refuse
    sex = _SEXES.get(sex_key)
    if sex is None:
        return Rejection(ReasonCode.SEX_INVALID, "sex")

    # Birth date.
    if raw.birth_date is None or (isinstance(raw.birth_date, str) and not raw.birth_date.strip()):
        return Rejection(ReasonCode.BIRTH_DATE_INVALID, "birth_date", "missing")
    if not isinstance(raw.birth_date, date | str):
        return Rejection(ReasonCode.FIELD_TYPE, "birth_date")
    birth_date = _parse_date(raw.birth_date, today)
    if isinstance(birth_date, str):
        return Rejection(ReasonCode.BIRTH_DATE_INVALID, "birth_date", birth_date)

    # Birthplace (kept for the vault and linkage, not in the key).
    birth_place: str | None = None
    if raw.birth_place is not None:
        if not isinstance(raw.birth_place, str):
            return Rejection(ReasonCode.FIELD_TYPE, "birth_place")
        birth_place = raw.birth_place.strip().upper() or None
        if birth_place is not None and not INSEE_CODE.fullmatch(birth_place):
            return Rejection(ReasonCode.BIRTH_PLACE_INVALID, "birth_place")

    # NIR: invalid is an input error; valid but contradicting the traits is an insured's NIR.
    own_nir: str | None = None
    insured_nir: str | None = None
    if raw.nir is not None:
        if not isinstance(raw.nir, str):
            return Rejection(ReasonCode.FIELD_TYPE, "nir")
        if raw.nir.strip():
            parsed = parse_nir(raw.nir)
            if isinstance(parsed, NirInvalid):
                if parsed.reason is NirReason.NIR_KEY:
                    return Rejection(ReasonCode.NIR_KEY, "nir")
                return Rejection(ReasonCode.NIR_FORMAT, "nir", parsed.reason.value)
            if _nir_is_own(parsed, sex, birth_date):
                own_nir = parsed.value
            else:
                insured_nir = parsed.value

    compact = "".join(birth_tokens)
    return CanonicalIdentity(
        scheme="nir" if own_nir else "traits",
        nir=own_nir,
        insured_nir=insured_nir,
        birth_name=birth_name,
        birth_name_compact=compact,
        used_name=used_name,
        first_names=first_names,
        first_name=first_names[0],
        first_name_first_token=first_names[0].split()[0],
        sex=sex,
        birth_date=birth_date,
        birth_place=birth_place,
    )
