"""Leak scanner: proves the lake holds no direct identifier, in any table, version or change file.

Why a scanner on the files and not a query on the tables: a Delta query shows the current
version only, yet a DELETE or UPDATE leaves the old parquet files on disk until VACUUM (time
travel), change data feed writes old row images to ``_change_data/``, and the commit log
copies min/max column statistics *in clear* into ``_delta_log/*.json``, checkpoints and the
``.crc`` checksum files (which may list every file with its statistics). A leak in any of them
is a leak. So the scanner walks the lake root with pyarrow (no Spark, no JVM) and reads:

- every ``*.parquet`` file under each Delta table (a directory holding ``_delta_log/``):
  current files, files removed by a commit but retained, and ``_change_data/`` files, column
  by column and batch by batch (bounded memory), plus each file's key-value footer metadata;
- every file in ``_delta_log/`` (JSON commits, ``.crc`` files, checkpoints, sidecars): each
  JSON value is walked, and string values that are themselves JSON (``stats``, schema,
  commit metadata) are walked in turn; findings are reported under column ``_delta_log``;
- the values in partition directories (``col=value/``), reported under the partition column,
  and file names (column ``_path``);
- any other file, inside or outside a table (hidden checksums, deletion vectors, stray
  files), as text lines (column ``_file``), so that nothing under the root goes unread.

Detectors (Presidio style: a candidate pattern, then a validation hook):

- ``NIR``: 13 characters (digits, 2A/2B) and a 2-digit key, grouped as INSEE prints it with
  optional single separators of one kind (space, dot, hyphen, slash, underscore); valid only if
  :func:`pdp.pseudonym.nir.parse_nir` accepts it (structure and key), so a random 15-digit
  number is flagged with odds ~1/200, not always. Integer and scale-0 decimal columns are
  scanned for NIRs too (a NIR fits in a BIGINT); in a column of hash-derived ids, the few
  matches chance gives are dismissed (:meth:`NirDetector.chance`).
- ``NIR_BODY``: the 13 characters of a NIR without their key, after a context word (``NIR``,
  ``NSS``, ``INS``, ``matricule``, ``sécu``, ``sécurité sociale``) in the cell, and only with a
  NIR's structure (:class:`NirBodyDetector`): 13 digits alone are millisecond timestamps.
- ``PHONE``: French numbers, ``0[1-9]`` then 8 digits, or the ``+33``/``0033`` form, grouped by
  two with one kind of separator (space, dot, hyphen) or none.
- ``EMAIL``: ``local@domain.tld`` with a well-formed local part and domain.
- ``KNOWN_NAME`` / ``KNOWN_SURNAME`` / ``KNOWN_ADDRESS``: the vault's own people, see
  :class:`KnownIdentityDetector` for the false-positive rule.
- ``SENDER_NUMBER``: a stay, invoice or referral number in the shape this platform's senders
  write them (:class:`SenderNumberDetector`), anywhere, unless it sits inside a keyed value.
- ``DEATH_ACT``: a 9-digit INSEE death act number with its context word (``acte``, ``décès``)
  before it in the cell (:class:`DeathActDetector`): 9 digits alone are also FINESS and SNOMED ids.
- ``BIRTH_DATE``: a date (``12/03/1950``, ``12-03-1950``, ``12.03.1950``, ``1950-03-12``,
  ``1er janvier 1950``) right after a birth context word (``né le``, ``née le``, ``né(e) le``,
  ``DDN``, ``date de naissance``, ``naissance :``, ``born``, ``DOB``) in the cell
  (:class:`BirthDateDetector`): a date without it is an event date, everywhere in a lake.

The three detectors with context words share :class:`ContextPatternDetector`. A birth date in a
DATE column is not the scanner's business: the catalog marks such columns ``quasi_identifier``.

Sender-local ids (stay, invoice, HL7 message and order numbers, FHIR resource ids, death act
numbers) are handles a sender can map back to its patient, and their shapes vary by sender, so
the proof is by contract rather than by pattern (column checks, :class:`ColumnCheck`, on the
data cells of string columns only, never the Delta log, file names or footers):

- ``SENDER_ID``: every value of a column the catalog marks ``sender_id`` (bronze ``record_id``,
  bronze ``events[].visit_key``, silver ``visit_key``) must have the edge's keyed form
  (:data:`pdp.pseudonym.pseudonymise.KEYED_ID_PATTERN`); any other value is a finding.
- ``SENDER_UUID``: a UUID (8-4-4-4-12 hex, a FHIR resource id) in a data cell of any other
  column is a finding, unless the catalog declares the column ``platform_uuid`` (UUIDs the
  platform makes itself; none does today: its run ids and commit tokens have no hyphens).
  Delta's own UUIDs (``txnId``, the table id, part-file names) are in the log and paths, which
  this check never reads (:class:`SenderUuidCheck`).

Pattern matches must stand alone: not glued to a letter, digit or underscore. A hex digest, a
UUID or a base64 pseudonym contains digit runs that would otherwise look like phone numbers
(one 64-hex-digit hash in ~170 has a 10-digit run starting with 0[1-9]); the price is that
``tel0612345678`` is not flagged, which a lake column never holds by accident.

Columns of other types (floating point, boolean, dates, timestamps) cannot carry these
identifiers and are counted in the rows but not read.

What the report says: per (table, column, detector) the number of cells and of files that hit;
the number of tables, retained versions, files, rows and bytes read. Never a value: not in the
report, not in a log line, not in an exception (pyarrow error messages can quote a value, so
only their class name is kept). Unreadable files are findings (``UNREADABLE``), with their path
relative to the table and partition values masked.

Measured (2 cores, pyarrow 26, one process): 1,000,000 rows × 7 columns (4 strings: pseudonym,
code, label with accents, commune; 41 MB of parquet): 1.6 M rows/s (65 MB/s) with the pattern
detectors, 0.62 M rows/s (25 MB/s) with 20,341 known people from the vault (built in 1.1 s).
A Spark-written 1 M-row table (6 columns, 35 MB): 0.69 M rows/s. The `pdp demo` lake (20,000
persons, 12 tables, 660,750 rows, 46 MB): 4.3 s. Cost is in the string columns; code and label
columns are cheap (each distinct value is checked once), free text is the slow case.
Adding NIR_BODY, BIRTH_DATE and SENDER_UUID (2026-12-07, a machine shared with other work, so
before and after measured in one run, best of three): a pyarrow-written 1 M-row, 7-column table
(57 MB) took 1.03 s before, 1.35 s after (the new patterns in the RE2 pass over every string
cell); 78,174 synthetic clinical notes (31 MB) 4.0 s before, 3.5 s after (the death act
number now needs its context word in that pass). No finding on those notes, which hold the
context words in every note with their values redacted by the edge.
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pdp.pseudonym.name_tokens import LIGATURES, PARTICLES, SAINTS, NameTokenHasher, fold_tokens, person_phrases
from pdp.pseudonym.nir import Nir, nir_key, parse_nir
from pdp.pseudonym.pseudonymise import KEYED_ID_PATTERN

if TYPE_CHECKING:
    from pdp.lake.catalog import TableDef
    from pdp.pseudonym.vault import IdentityVault, VaultRecord

__all__ = [
    "DELTA_LOG_COLUMN",
    "UNREADABLE",
    "BirthDateDetector",
    "ColumnCheck",
    "ContextPatternDetector",
    "DeathActDetector",
    "Detector",
    "EmailDetector",
    "Finding",
    "KnownIdentityDetector",
    "LeakScanError",
    "NirBodyDetector",
    "NirDetector",
    "PhoneDetector",
    "ScanReport",
    "SenderIdFormCheck",
    "SenderNumberDetector",
    "SenderUuidCheck",
    "UnreadableFile",
    "default_column_checks",
    "default_detectors",
    "fold_tokens",
    "scan_lake",
]

UNREADABLE = "UNREADABLE"
DELTA_LOG_COLUMN = "_delta_log"
PATH_COLUMN = "_path"
_SPARK_PART_FILE = re.compile(
    r"part-\d{5}-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?=[.-])"
)
OTHER_FILE_COLUMN = "_file"
FOOTER_COLUMN = "_parquet_metadata"

_BATCH_ROWS = 65_536
_MAX_LINE = 1 << 20  # a text "cell" is at most 1 MiB: a binary file without newlines stays bounded
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_VERSION_FILE = re.compile(r"^(\d{20})\.(?:json$|checkpoint\b)")


class LeakScanError(Exception):
    """The scan could not start (no lake root); the message names paths, never data values."""


# --- detectors ------------------------------------------------------------------------------


SHARE_OF = "%"
"""Marks a count that is not a match but what a detector's ``chance`` rule weighs (``NIR%15``)."""


class Detector(ABC):
    """Finds one kind of direct identifier in string cells.

    ``count`` works on a whole Arrow array (vectorised candidate search, then the validation
    hook on candidates only); ``find`` on one string. Both must agree: ``count`` of an array
    equals the number of its cells for which ``find`` returns each label.

    A label may need column-level evidence (``min_distinct``): its cells count only when the
    column matched at least that many *distinct* values. ``count`` then returns it as
    ``LABEL#n``, ``n`` an index telling matched values apart (never the value itself).
    """

    labels: ClassVar[tuple[str, ...]]
    min_distinct: ClassVar[Mapping[str, int]] = {}

    @abstractmethod
    def find(self, text: str) -> set[str]:
        """The labels this detector finds in ``text`` (empty: nothing)."""

    @abstractmethod
    def count(self, values: pa.Array) -> Counter[str]:
        """Cells of ``values`` (a string array) per label found."""


def _count_distinct(values: pa.Array, find: Callable[[str], set[str]]) -> Counter[str]:
    """Labels per cell of ``values``, calling ``find`` once per distinct value (codes and labels repeat)."""
    found: Counter[str] = Counter()
    if len(values) == 0:
        return found
    distinct = pc.value_counts(values)
    for text, times in zip(distinct.field("values").to_pylist(), distinct.field("counts").to_pylist(), strict=True):
        if text is not None:
            for label in find(text):
                found[label] += times
    return found


# Separators allowed inside a phone number: space, no-break space, dot, hyphen.
_PHONE_SEPARATORS = " \u00a0.-"
_SEP = "[ \u00a0.\\-]"
# Inside a NIR also slash and underscore: forms and exports write 1/80/05/75/056/123/42 and 1_80_05_...
# (the characters :func:`parse_nir` removes, less the tab and newline no one groups a NIR with).
_NIR_SEPARATORS = " \u00a0./_-"
_NIR_SEP = "[ \u00a0./_\\-]"
# A match must not touch a letter, digit or underscore (see the module docstring).
_WORD = "0-9A-Za-z_"


class PatternDetector(Detector):
    """A regex candidate search (RE2 for arrays, ``re`` for strings) and a validation hook."""

    label: ClassVar[str]
    core: ClassVar[str]  # the pattern without its boundaries, valid in both RE2 and Python re

    def __init__(self) -> None:
        self.labels = (self.label,)
        self.pattern = re.compile(f"(?<![{_WORD}])(?:{self.core})(?![{_WORD}])")
        # RE2 has no look-around: the array search uses explicit boundaries (a superset is fine,
        # the Python pattern decides).
        self.candidate = f"(?:^|[^{_WORD}])(?:{self.core})(?:$|[^{_WORD}])"
        # What the scanner's one RE2 pass over every string array (all detectors' prefilters) looks for.
        self.prefilter = self.candidate

    def validate(self, match: re.Match[str]) -> bool:
        """True when a pattern match is an identifier (override to check more than the shape)."""
        return True

    def find(self, text: str) -> set[str]:
        for match in self.pattern.finditer(text):
            if self.validate(match):
                return {self.label}
        return set()

    def count(self, values: pa.Array) -> Counter[str]:
        return _count_distinct(values.filter(pc.match_substring_regex(values, self.candidate)), self.find)


class ContextPatternDetector(PatternDetector):
    """A pattern that is an identifier only after a context word in the same cell (Presidio's
    context words, made a requirement): the word must start at most ``window`` characters before
    the match, and what lies between them must match ``gap``. The pattern must start with a digit.

    ``context`` is an alternation valid in both RE2 and Python ``re``, matched without case and
    not glued to a letter. The array search is RE2's ``word.{0,window}pattern``, so a lake full
    of bare dates or 13-digit timestamps costs one vectorised pass, not a Python call per
    distinct value (the synthetic clinical notes say "naissance", "né le" or "NIR" in every
    note, their values redacted, beside dozens of event dates: 8 % of them pass that search).
    ``find`` then reads only the ``window`` after each context word. In the scanner's one pass
    over every string array (the union of all prefilters) the looser ``word[^letter].*[0-9]``
    stands in: the counted repetition, compiled for each array, doubled the time of a scan.
    """

    context: ClassVar[str]
    window: ClassVar[int]
    longest: ClassVar[int]  # the longest text ``core`` can match (the pattern must be bounded)
    gap: ClassVar[str] = "[\\s\\S]*"  # anything (a Python pattern for the text between word and match)

    def __init__(self) -> None:
        super().__init__()
        word = f"(?<![^\\W\\d_])(?:{self.context})(?![^\\W\\d_])"
        self._word = re.compile(word, re.IGNORECASE)
        self._context = re.compile(f"{word}(?:{self.gap})\\Z", re.IGNORECASE)
        self.candidate = f"(?is:(?:^|[^A-Za-z])(?:{self.context})[^A-Za-z].{{0,{self.window}}}(?:{self.core}))"
        self.prefilter = f"(?is:(?:^|[^A-Za-z])(?:{self.context})[^A-Za-z].*[0-9])"

    def find(self, text: str) -> set[str]:
        for word in self._word.finditer(text):
            last_start = word.start() + self.window
            # endpos past any match starting by last_start: its look-ahead boundary still sees the next character
            for match in self.pattern.finditer(text, word.end(), last_start + self.longest + 1):
                if match.start() > last_start:
                    break
                if self.validate(match):
                    return {self.label}
        return set()

    def has_context(self, match: re.Match[str]) -> bool:
        """True when a context word (and only ``gap`` after it) precedes ``match`` within the window."""
        return self._context.search(match.string, max(0, match.start() - self.window), match.start()) is not None


def _one_separator_kind(text: str, separators: str = _PHONE_SEPARATORS) -> bool:
    """True when a number is written with at most one kind of separator ("06 12 34 56 78")."""
    return len({ch for ch in text if ch in separators}) <= 1


def _is_nir(text: str) -> bool:
    """True when ``text`` (a NIR-shaped match) is a NIR: one kind of separator, valid structure and key."""
    return _one_separator_kind(text, _NIR_SEPARATORS) and isinstance(parse_nir(text), Nir)


# The 13 characters of a NIR (sex, year, month, département and commune, order), INSEE's grouping.
_NIR_BODY = (
    f"[1-478]{_NIR_SEP}?[0-9]{{2}}{_NIR_SEP}?[0-9]{{2}}{_NIR_SEP}?"
    f"(?:(?:[0-9]{{2}}|2[ABab]){_NIR_SEP}?[0-9]{{3}}|9[78][0-9]{_NIR_SEP}?[0-9]{{2}})"
    f"{_NIR_SEP}?[0-9]{{3}}"
)


class NirDetector(PatternDetector):
    """A NIR with a valid control key; printed grouped (``1 80 05 75 056 123 42``, or with dots,
    hyphens, slashes or underscores: one kind per number) or compact.

    Validation runs :func:`parse_nir`: sex digit, month, département, order number and key
    must all be valid, so about one random 15-digit string in 200 passes, not every one.
    """

    label = "NIR"
    core = f"{_NIR_BODY}{_NIR_SEP}?[0-9]{{2}}"

    def validate(self, match: re.Match[str]) -> bool:
        return _is_nir(match.group())

    def count_integers(self, values: pa.Array) -> Counter[str]:
        """NIRs stored as numbers: 15-digit integers (or scale-0 decimals) whose key is valid;
        plus, for :meth:`chance`, ``NIR%15`` the 15-digit numbers looked at, ``NIR%long`` the
        numbers longer than that and ``NIR%all`` the values."""
        candidates = self._fifteen_digits(values)
        if candidates is None:
            return Counter()
        found = self.count(candidates) if len(candidates) else Counter()
        found[f"{self.label}{SHARE_OF}15"] = len(candidates)
        if not pa.types.is_decimal(values.type):
            big = pa.scalar(1_000_000_000_000_000, values.type)
            wide = pc.greater_equal(values, big)
            if pa.types.is_signed_integer(values.type):
                wide = pc.or_(wide, pc.less_equal(values, pa.scalar(-1_000_000_000_000_000, values.type)))
            found[f"{self.label}{SHARE_OF}long"] = pc.sum(wide).as_py() or 0
        found[f"{self.label}{SHARE_OF}all"] = len(values) - values.null_count
        return found

    @staticmethod
    def chance(matches: int, looked_at: Mapping[str, int]) -> bool:
        """True when an integer column's NIR matches are what a hash-derived id column holds by chance.

        Why: BIGINT ids derived from a keyed hash (event, person, note ids) spread over the 64-bit
        range; about 5 in 100 000 have 15 digits, and about 1 in 200 of those passes NIR
        validation — a few per lake of a million events, always about 0.5 % of its 15-digit
        values. So in a column whose values are mostly longer than a NIR (>= 90 %: hash-spread),
        NIR matches up to 2 + 2 % of its 15-digit values are chance (dismissed, listed); more are
        NIRs put there (a finding). In any other integer column (counts, codes, a column of
        NIRs) every match is a finding. A lone NIR slipped into a hash-id column is the case
        this rule gives up: it cannot be told from chance.
        """
        spread = looked_at.get("long", 0) >= 0.9 * looked_at.get("all", 0) > 0
        return spread and matches <= 2 + 0.02 * looked_at.get("15", 0)

    @staticmethod
    def _fifteen_digits(values: pa.Array) -> pa.Array | None:
        """The values with NIR length, as strings (None: the type cannot hold one)."""
        kind = values.type
        if pa.types.is_decimal(kind):
            text = pc.cast(values, pa.string())
            return text.filter(pc.equal(pc.utf8_length(text), 15))
        if kind.bit_width < 64:  # at most 10 digits: never a NIR
            return None
        # Compared in the column's own type: a cast of a large UINT64 to INT64 would fail.
        low, high = pa.scalar(100_000_000_000_000, kind), pa.scalar(1_000_000_000_000_000, kind)
        return pc.cast(values.filter(pc.and_(pc.greater_equal(values, low), pc.less(values, high))), pa.string())


class NirBodyDetector(ContextPatternDetector):
    """A NIR written without its 2-digit key (``NIR : 1 80 05 75 056 123``), after a context word:
    ``NIR``, ``NSS``, ``INS``, ``matricule``, ``sécu`` or ``sécurité sociale``, at most 30
    characters before it in the same cell, with no digit between.

    Why the context: 13 digits alone are a millisecond timestamp (``1712345678901`` even has a
    NIR's structure) as often as a NIR body, and without a key there is no checksum to tell them
    apart. Validation: the 13 characters must be a possible NIR (:func:`parse_nir` of the body
    with its computed key: sex 1/2/3/4/7/8, month 01-12, 20-42 or 50-99, département 01-99,
    2A/2B or 97x/98x, order not 000). A key that follows is part of the match: a valid one makes
    a whole NIR (the ``NIR`` detector's finding, not this one's), a wrong one (a typo) is still
    this body after its context word.
    """

    label = "NIR_BODY"
    core = f"{_NIR_BODY}(?:{_NIR_SEP}?[0-9]{{2}})?"
    context = "nir|nss|ins|matricule|s[ée]cu|s[ée]curit[ée][ \u00a0]+sociale"
    window = 30
    longest = 22  # 13 characters and a key, 7 separators
    gap = "[^0-9]*"

    def validate(self, match: re.Match[str]) -> bool:
        text = match.group()
        if not self.has_context(match) or _is_nir(text) or not _one_separator_kind(text, _NIR_SEPARATORS):
            return False
        body = "".join(ch for ch in text if ch not in _NIR_SEPARATORS).upper()[:13]
        return isinstance(parse_nir(body + nir_key(body)), Nir)


class PhoneDetector(PatternDetector):
    """French phone numbers: ``0[1-9]`` + 8 digits, or ``+33``/``0033`` (optional ``(0)``) + 9 digits.

    Digits go by pairs after the first two, with one kind of separator or none: that is how
    numbers are written, and it keeps dates, times and amounts out.
    """

    label = "PHONE"
    core = f"(?:(?:\\+|00)33{_SEP}?(?:\\(0\\){_SEP}?)?|0)[1-9](?:{_SEP}?[0-9]{{2}}){{4}}"

    def validate(self, match: re.Match[str]) -> bool:
        return _one_separator_kind(match.group().replace("(0)", ""))


class EmailDetector(PatternDetector):
    """E-mail addresses: a well-formed local part, ``@``, dotted domain ending in a 2-24 letter TLD."""

    label = "EMAIL"
    core = "[A-Za-z0-9._%+\\-]+@[A-Za-z0-9](?:[A-Za-z0-9\\-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9\\-]+)*\\.[A-Za-z]{2,24}"

    def validate(self, match: re.Match[str]) -> bool:
        local, _, domain = match.group().partition("@")
        if local.startswith(".") or local.endswith(".") or ".." in local:
            return False
        return all(label and not label.startswith("-") and not label.endswith("-") for label in domain.split("."))


# Any keyed value the lake holds: pseudonym (v), record hash (r), keyed sender id (i), file fingerprint (f).
_KEYED_VALUE = re.compile(r"[virf][1-9][0-9]{0,8}:[A-Za-z0-9_\-]{43}")


class DeathActDetector(ContextPatternDetector):
    """An INSEE death act number: 9 digits standing alone, with a word of its context (``acte``,
    ``décès``, ``death``) in the 25 characters before it, in the same cell.

    Why the context: 9 digits alone are also a FINESS (every letterhead prints one), a SNOMED CT
    id (``419099009``, the death finding itself) or a SIREN, all legitimate in the lake. An act
    number that lands whole in an id column is the ``SENDER_ID`` check's; this detector finds
    one written into text (a message, an attribute, a letter, a log).
    """

    label = "DEATH_ACT"
    core = "[0-9]{9}"
    context = "acte|d[ée]c[èe]s|death"  # not "actes" (CCAM)
    window = 25
    longest = 9

    def validate(self, match: re.Match[str]) -> bool:
        return self.has_context(match)


_DAY = "(?:0?[1-9]|[12][0-9]|3[01])"
_MONTH = "(?:0?[1-9]|1[0-2])"
_YEAR = "(?:1[89][0-9]{2}|20[0-9]{2})"
_MONTH_NAMES = (
    "(?i:janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[ûu]t|septembre|octobre|novembre|d[ée]cembre"
    "|janv?\\.|f[ée]vr?\\.|avr\\.|juil\\.|sept?\\.|oct\\.|nov\\.|d[ée]c\\.)"
)
_BLANK = "[\\s\u00a0]{1,3}"


class BirthDateDetector(ContextPatternDetector):
    """A date written after a birth context word in the same cell: ``né le 12/03/1950``,
    ``Née le 1er janvier 1950``, ``né(e) le 12-03-1950``, ``DDN : 12.03.1950``, ``date de
    naissance du patient : 1950-03-12``, ``naissance : 12 mars 1950``, ``born 1950-03-12``.

    Dates: day/month/year with one kind of separator (``/``, ``-``, ``.``; a 2- or 4-digit year),
    ISO ``yyyy-mm-dd``, or a French day, month name and year (``1er``, ``févr.``).

    Why the context: dates are everywhere in a lake (every event has one) and a birth date is
    not told from them by its shape. The word must start at most 30 characters before the date,
    and only punctuation, spaces and a few small words (``le``, ``du``, ``patient``, ``on``...)
    may lie between: ``naissance prématurée ; sortie le 12/03/2024`` is not a birth date.
    """

    label = "BIRTH_DATE"
    core = (
        f"{_DAY}[/.\\-]{_MONTH}[/.\\-](?:{_YEAR}|[0-9]{{2}})"
        f"|{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
        f"|(?:1er|{_DAY}){_BLANK}{_MONTH_NAMES}{_BLANK}{_YEAR}"
    )
    context = (
        f"n(?:é|ée|é\\(e\\)|ee|e\\(e\\)){_BLANK}le|ddn|dob|naissance|born"
        f"|date{_BLANK}of{_BLANK}birth|birth(?:{_BLANK})?date"
    )
    window = 30
    longest = 24  # "1er" + blanks + "septembre" + blanks + year
    # Between word and date: non-word characters and small words only (no other word, no digit).
    gap = "(?:[^\\w]|(?<![^\\W\\d_])(?:le|la|les|du|de|des|l'|on|the|of|is|patiente?|enfant|child)(?![^\\W\\d_]))*"

    def validate(self, match: re.Match[str]) -> bool:
        text = match.group()
        separators = {ch for ch in text if ch in "/.-"}
        return len(separators) <= 1 and self.has_context(match)


class SenderNumberDetector(PatternDetector):
    """Stay, invoice and referral numbers as this platform's senders write them: an upper-case
    prefix of one to three letters, a hexadecimal batch part, then one or two hyphenated counters
    (``S1f-2041-7``, ``E1f-2041-12``, ``SIG1f-2041``).

    Why a shape and not the values: the scanner never reads the senders' files or the synthetic
    ground truth. The shape was chosen against what the lake legitimately holds: codes
    (``CIM-10``, ``4548-4``, ``DEQP003``) have no hexadecimal part before their hyphen, and a
    match inside a keyed value (a pseudonym's base64url can spell ``-C1-23-``) is not a finding.
    A deployment whose senders number otherwise adds its own detector.
    """

    label = "SENDER_NUMBER"
    core = "[A-Z]{1,3}[0-9a-f]{1,16}-[0-9]{1,12}(?:-[0-9]{1,12})?"

    def validate(self, match: re.Match[str]) -> bool:
        start, end = match.span()
        return not any(k.start() <= start and end <= k.end() for k in _KEYED_VALUE.finditer(match.string))


# --- column checks: rules on the values of named columns ------------------------------------


class ColumnCheck(ABC):
    """A rule on the values of some columns of some tables (the catalog's contracts), where a
    pattern over every cell could not decide: a sender's id has no universal shape, but a column
    meant to hold keyed ids may hold nothing else.

    Column checks read the data cells of string columns only (data and change-data files), never
    the Delta log, file names or footers. ``applies(table, column)`` says whether the rule holds
    for a column as the scanner names it (``record_id``, ``events[].visit_key``,
    ``attributes.value``); ``count`` returns how many cells of a string array break it.
    """

    label: ClassVar[str]
    # An RE2 pattern every cell the check could count matches, folded into the scanner's one pass
    # over each string array so that ``count`` gets those cells only; None: ``count`` reads them all.
    prefilter: str | None = None

    @abstractmethod
    def applies(self, table: str, column: str) -> bool:
        """True when the rule holds for ``column`` of ``table`` (``zone.name``)."""

    @abstractmethod
    def count(self, values: pa.Array) -> int:
        """Cells of ``values`` (a string array) that break the rule."""


class SenderIdFormCheck(ColumnCheck):
    """``SENDER_ID``: every value of a column holding sender-local ids has the edge's keyed form.

    Built from the catalog (:meth:`from_catalog`: columns marked ``sender_id`` or
    ``sender_id_fields``), so a new id column is covered by declaring it, not by editing the scanner.
    """

    label = "SENDER_ID"

    def __init__(self, columns: Mapping[str, Iterable[str]]) -> None:
        self._columns = {table: frozenset(names) for table, names in columns.items()}
        self._keyed = f"^(?:{KEYED_ID_PATTERN})$"

    @classmethod
    def from_catalog(cls) -> SenderIdFormCheck:
        from pdp.lake.catalog import load_catalog

        return cls({t.qualified_name: [p for c in t.columns for p in c.sender_id_paths] for t in load_catalog()})

    def columns(self, table: str) -> frozenset[str]:
        """The sender-id columns of ``table`` (``zone.name``)."""
        return self._columns.get(table, frozenset())

    def applies(self, table: str, column: str) -> bool:
        return column in self.columns(table)

    def count(self, values: pa.Array) -> int:
        keyed = pc.match_substring_regex(values, self._keyed)
        return int(pc.sum(pc.invert(keyed)).as_py() or 0)  # nulls stay null: a missing id is not a leak


_UUID = "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"


class SenderUuidCheck(ColumnCheck):
    """``SENDER_UUID``: a UUID (8-4-4-4-12 hex digits, FHIR's resource id: ``Patient/<uuid>``,
    ``urn:uuid:<uuid>``) standing alone in a data cell of a string column, outside a keyed value.

    Why: a FHIR sender's resource ids are handles on its patient like stay numbers, and they
    have one shape everywhere, so unlike stay numbers they can be looked for in every column,
    not only in the catalog's ``sender_id`` columns (checked by ``SENDER_ID``, left to it here).
    The platform's own ids are not in that shape (run ids and commit tokens are ``uuid4().hex``,
    batch ids ``<prefix>-<time>-<hex>``, as of this writing no catalog column holds a dashed
    UUID); a column the platform fills with dashed UUIDs of its own is declared
    ``platform_uuid: true`` in the catalog and skipped. Delta's own UUIDs (``txnId``, table id,
    part-file names) are never looked at: column checks read data cells only.
    """

    label = "SENDER_UUID"

    def __init__(self, exempt: Mapping[str, Iterable[str]]) -> None:
        """``exempt``: per table, column paths (and their nested paths) the check skips."""
        self._exempt = {table: frozenset(names) for table, names in exempt.items()}
        self.prefilter = f"(?:^|[^{_WORD}]){_UUID}(?:$|[^{_WORD}])"
        self._pattern = re.compile(f"(?<![{_WORD}]){_UUID}(?![{_WORD}])")

    @classmethod
    def from_catalog(cls, tables: Iterable[TableDef] | None = None) -> SenderUuidCheck:
        """Skips each table's ``platform_uuid`` columns and its sender-id paths (``SENDER_ID``'s)."""
        if tables is None:
            from pdp.lake.catalog import load_catalog

            tables = load_catalog()
        return cls({t.qualified_name: [*(c.name for c in t.columns if c.platform_uuid),
                                       *(p for c in t.columns for p in c.sender_id_paths)] for t in tables})

    def applies(self, table: str, column: str) -> bool:
        exempt = self._exempt.get(table, frozenset())
        return not any(column == name or column.startswith((f"{name}.", f"{name}[]")) for name in exempt)

    def count(self, values: pa.Array) -> int:
        candidates = values.filter(pc.match_substring_regex(values, self.prefilter))
        return sum(_count_distinct(candidates, self._find).values())

    def _find(self, text: str) -> set[str]:
        for match in self._pattern.finditer(text):
            start, end = match.span()
            if not any(k.start() <= start and end <= k.end() for k in _KEYED_VALUE.finditer(text)):
                return {self.label}
        return set()


def default_column_checks() -> list[ColumnCheck]:
    """The catalog's sender-id columns, and FHIR ids anywhere else."""
    return [SenderIdFormCheck.from_catalog(), SenderUuidCheck.from_catalog()]


# --- folding text for the known-identity detector --------------------------------------------

_LIGATURE_CLASS = "[" + "".join(source for source, _ in LIGATURES) + "]"


def _fold_array(values: pa.Array) -> pa.Array:
    """The vectorised first half of :func:`fold_tokens`: upper case, no marks (split on ``[^A-Z0-9]+`` next).

    Unicode work (NFKD, marks, ligatures) runs on the non-ASCII cells only: most cells of a
    lake are codes and pseudonyms, and it is the expensive part.
    """
    upper = pc.ascii_upper(values)
    non_ascii = pc.fill_null(pc.invert(pc.string_is_ascii(values)), False)
    if pc.any(non_ascii).as_py():
        subset = values.filter(non_ascii)
        if pc.any(pc.match_substring_regex(subset, _LIGATURE_CLASS)).as_py():
            for source, target in LIGATURES:
                subset = pc.replace_substring(subset, source, target)
        subset = pc.utf8_upper(pc.replace_substring_regex(pc.utf8_normalize(subset, form="NFKD"), r"\p{M}+", ""))
        upper = pc.replace_with_mask(upper, non_ascii, subset.cast(upper.type))
    return upper


def _grams(tokens: Sequence[str], sizes: Iterable[int]) -> Iterator[tuple[tuple[str, ...], int]]:
    """Every run of consecutive tokens of the given sizes, with its start position."""
    for size in sizes:
        for start in range(len(tokens) - size + 1):
            yield tuple(tokens[start : start + size]), start


NAME_GAP = 2
"""Tokens allowed between a known surname and a first name of its bearer for a ``KNOWN_NAME``: a
title, a particle or a second first name ("Paul et Marie MARTIN", "MARTIN épouse Paul")."""


class KnownIdentityDetector(Detector):
    """The vault's own people: their names and their addresses, wherever they appear in a cell.

    The false-positive rule. Surnames are also words, streets, saints and places (MARTIN is
    a known birth name *and* "rue Saint-Martin", "Clinique Saint-Martin"), so a surname alone
    inside a longer text is never a finding. A cell is flagged:

    - ``KNOWN_NAME`` when it contains a known person's birth or used name (as consecutive
      tokens) *and*, next to it (at most ``NAME_GAP`` tokens between them, on either side), one
      of the first names of a known person bearing that name: "Paul MARTIN", "MARTIN, Paul",
      "Dr Paul Martin", "Paul et Marie MARTIN". A surname and a first name far apart in a long
      text are two words, not a name: in the notes of the 1 M-person lake, "son neveu ... urines
      claires" paired the surnames NEVEU and PETIT with the first name CLAIRE. A street named after
      a known person with that person's first name ("rue Paul Martin") is flagged: it is
      indistinguishable, and rare; the finding names the column for a reviewer to judge.
    - ``KNOWN_SURNAME`` when the whole cell is a known birth or used name of at least three
      letters ("Martin", "LE GALL") *and* the column holds at least three distinct known
      surnames so (column-level evidence, ``min_distinct``): that is a column of names, e.g. a
      name copied into the lake. A code column that happens to contain a surname is not: the
      PMSI diagnosis role "DAS" is a French surname, and so are "BLANC", "PETIT" or "ROUGE";
      one or two such coincidences in a column are listed as dismissed, not failed.
    - ``KNOWN_ADDRESS`` when it contains a known person's address line as consecutive tokens,
      and that address line has a house number and a distinctive word (not a street type,
      article or saint's prefix): "12 rue Saint-Martin" is an address, "rue Saint-Martin" or
      "Le Bourg" is a place shared by many and never flagged by itself.

    Tokens come from :func:`fold_tokens` on both sides (accents, case and punctuation do not
    matter). Only the vault's names are compared: a name of someone unknown to the vault is not
    found (that is what the edge's de-identification is for). Names split across two columns of
    one row are not joined: columns are scanned one by one.
    """

    labels = ("KNOWN_NAME", "KNOWN_SURNAME", "KNOWN_ADDRESS")
    min_distinct: ClassVar[Mapping[str, int]] = {"KNOWN_SURNAME": 3}

    def __init__(self, hasher: NameTokenHasher) -> None:
        self._hash = hasher.hash
        self._first_names: dict[str, set[str]] = {}  # surname phrase hash → first-name phrase hashes
        self._exact: dict[str, int] = {}  # surname phrase hash → index (the evidence of LABEL#n)
        self._addresses: set[str] = set()
        self._anchor_tokens: set[str] = set()
        self._sizes: dict[str, set[int]] = {"surname": set(), "first": set(), "address": set(), "exact": set()}
        self._people = 0
        # A first name that is an article or a preposition ("LE" of a "LE GALL" typed as given
        # names) is every sentence's: "auscultation pulmonaire claire sur le plan" is no name.
        self._particles = {self._hash((word,)) for word in PARTICLES}

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_records(cls, records: Iterable[VaultRecord]) -> KnownIdentityDetector:
        """The detector for these records, under a throw-away key (tests, or records already in hand)."""
        detector = cls(NameTokenHasher(os.urandom(32)))
        for record in records:
            surnames = [n for n in (record.birth_name, record.used_name) if n]
            detector.add_person([
                (kind, detector._hash(phrase), size) for kind, size, phrase in
                person_phrases(surnames=surnames, first_names=list(record.first_names or ()),
                               address=record.address_line)
            ])
        return detector

    @classmethod
    def from_vault(cls, vault: IdentityVault) -> KnownIdentityDetector:
        """The detector for every person in ``vault``, from its name-token index: nothing is decrypted.

        Needs the ``nametoken`` key only (not the vault key): the scanner compares keyed hashes.
        """
        hasher, rows = vault.name_token_index()
        detector = cls(hasher)
        person: list[tuple[str, str, int]] = []
        current = None
        for holder, kind, token, size in rows:  # ordered by holder (one person)
            if holder != current and person:
                detector.add_person(person)
                person = []
            current = holder
            person.append((kind, token, size))
        if person:
            detector.add_person(person)
        return detector

    def add_person(self, rows: Iterable[tuple[str, str, int]]) -> None:
        """Add one person's hashed phrases ``(kind, token hash, size)``."""
        self._people += 1
        rows = list(rows)
        firsts = {token for kind, token, _ in rows if kind == "first"} - self._particles
        for kind, token, size in rows:
            if kind in self._sizes:
                self._sizes[kind].add(size)
            if kind == "surname":
                self._first_names.setdefault(token, set()).update(firsts)
            elif kind == "exact":
                self._exact.setdefault(token, len(self._exact))
            elif kind == "address":
                self._addresses.add(token)
            elif kind == "anchor":
                self._anchor_tokens.add(token)

    @property
    def people(self) -> int:
        """Number of vault records the detector was built from."""
        return self._people

    # -- matching ---------------------------------------------------------------------------

    def find(self, text: str) -> set[str]:
        return {label.partition("#")[0] for label in self._labels(text)}

    def _labels(self, text: str) -> set[str]:
        tokens = fold_tokens(text)
        found: set[str] = set()
        if not tokens:
            return found
        if len(tokens) in self._sizes["exact"]:
            surname = self._exact.get(self._hash(tokens))
            if surname is not None:
                found.add(f"KNOWN_SURNAME#{surname}")
        for gram, start in _grams(tokens, self._sizes["surname"]):
            firsts = self._first_names.get(self._hash(gram))
            if firsts and self._has_first_name(tokens, start, len(gram), firsts):
                found.add("KNOWN_NAME")
                break
        if any(self._hash(gram) in self._addresses for gram, _ in _grams(tokens, self._sizes["address"])):
            found.add("KNOWN_ADDRESS")
        return found

    def _has_first_name(self, tokens: tuple[str, ...], start: int, size: int, firsts: set[str]) -> bool:
        """True when a first name of ``firsts`` stands next to the surname at ``start``: ending at most
        ``NAME_GAP`` tokens before it or starting at most ``NAME_GAP`` tokens after it."""
        widest = max(self._sizes["first"], default=0) + NAME_GAP
        before = tokens[max(0, start - widest) : start]
        after = tokens[start + size : start + size + widest]
        for gram, at in _grams(before, self._sizes["first"]):
            if len(before) - (at + len(gram)) <= NAME_GAP and self._hash(gram) in firsts:
                return True
        return any(at <= NAME_GAP and self._hash(gram) in firsts for gram, at in _grams(after, self._sizes["first"]))

    def _anchors(self, words: pa.Array) -> pa.Array:
        """The distinct words of ``words`` whose keyed hash is an anchor (ST/STE read as SAINT/SAINTE)."""
        distinct = [w for w in pc.unique(words).to_pylist() if w]
        return pa.array([w for w in distinct if self._hash((SAINTS.get(w, w),)) in self._anchor_tokens],
                        type=pa.string())

    def count(self, values: pa.Array) -> Counter[str]:
        if self._people == 0 or len(values) == 0:
            return Counter()
        # Candidates: cells holding at least one anchor token (hashed once per distinct word), then the rule.
        words = pc.split_pattern_regex(_fold_array(values), "[^A-Z0-9]+")  # ST/STE are not mapped here
        flat = pc.list_flatten(words)
        anchors = self._anchors(flat)
        if len(anchors) == 0:
            return Counter()
        rows = pc.unique(pc.list_parent_indices(words).filter(pc.is_in(flat, value_set=anchors)))
        return _count_distinct(values.take(rows), self._labels)


def default_detectors(known: KnownIdentityDetector | None = None) -> list[Detector]:
    """The pattern detectors, plus the known-identity detector when the vault could be read."""
    detectors: list[Detector] = [
        NirDetector(), NirBodyDetector(), PhoneDetector(), EmailDetector(), SenderNumberDetector(),
        DeathActDetector(), BirthDateDetector(),
    ]
    if known is not None:
        detectors.append(known)
    return detectors


# --- report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """Cells of one column of one table that one detector flagged; counts only, never values."""

    table: str
    column: str
    detector: str
    cells: int
    files: int


@dataclass(frozen=True)
class UnreadableFile:
    """A file the scanner could not read: where (partition values masked) and the error class."""

    table: str
    path: str
    error: str


@dataclass
class ScanReport:
    """What was scanned and what was found."""

    lake_root: str
    findings: list[Finding] = field(default_factory=list)
    dismissed: list[Finding] = field(default_factory=list)  # matches short of a column rule (not failures)
    unreadable: list[UnreadableFile] = field(default_factory=list)
    tables: int = 0
    versions: int = 0
    data_files: int = 0
    change_files: int = 0
    log_files: int = 0
    other_files: int = 0
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    detectors: tuple[str, ...] = ()
    known_people: int | None = None

    @property
    def files(self) -> int:
        return self.data_files + self.change_files + self.log_files + self.other_files

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def exit_code(self) -> int:
        """0 when nothing was found and every file was read, else 1."""
        return 0 if self.clean else 1

    def counts(self) -> dict[str, int]:
        """Cells found per detector over the whole lake."""
        out: Counter[str] = Counter()
        for finding in self.findings:
            out[finding.detector] += finding.cells if finding.detector != UNREADABLE else finding.files
        return dict(out)


# --- the scan --------------------------------------------------------------------------------


def _open_root(lake_root: str | Path) -> tuple[pafs.FileSystem, str]:
    text = str(lake_root)
    if _URI.match(text):
        # Spark names S3 `s3a://` (Hadoop's connector); Arrow knows the same store as `s3://` (endpoint and
        # credentials from the AWS_* environment, e.g. AWS_ENDPOINT_URL for MinIO).
        uri = "s3://" + text[len("s3a://"):] if text.lower().startswith("s3a://") else text
        try:
            filesystem, path = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowException, ValueError) as exc:
            raise LeakScanError(f"lake root {text}: cannot open ({type(exc).__name__})") from None
    else:
        filesystem, path = pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix()
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        raise LeakScanError(f"lake root {text} is not a directory")
    return filesystem, path.rstrip("/") or "/"


def _masked(relative: str) -> str:
    """A path inside a table with partition values hidden (``nir=…`` could be the leak itself)."""
    return "/".join(f"{part.split('=', 1)[0]}=…" if "=" in part else part for part in relative.split("/"))


class _Scanner:
    """One scan: the detectors, the counters, and one method per kind of file."""

    def __init__(
        self, filesystem: pafs.FileSystem, root: str, detectors: Sequence[Detector],
        column_checks: Sequence[ColumnCheck] = (),
    ) -> None:
        self.fs = filesystem
        self.root = root
        self.detectors = list(detectors)
        self.column_checks = list(column_checks)
        self.patterns = [d for d in self.detectors if isinstance(d, PatternDetector)]
        self.others = [d for d in self.detectors if not isinstance(d, PatternDetector)]
        self.integer_detectors = [d for d in self.detectors if callable(getattr(d, "count_integers", None))]
        # One RE2 pass finds the cells any pattern detector or prefiltered column check could match;
        # each then looks at those only.
        self.any_pattern = "|".join([*(f"(?:{d.prefilter})" for d in self.patterns),
                                     *(f"(?:{c.prefilter})" for c in self.column_checks if c.prefilter is not None)])
        self.cells: Counter[tuple[str, str, str]] = Counter()
        self.files: Counter[tuple[str, str, str]] = Counter()
        self.min_distinct = {label: n for d in self.detectors for label, n in d.min_distinct.items()}
        self.evidence: dict[tuple[str, str, str], set[int]] = {}  # distinct matched values, capped
        self.chance = {label: rule for d in self.detectors
                       if (rule := getattr(d, "chance", None)) for label in d.labels}
        self.looked_at: dict[tuple[str, str, str], Counter[str]] = {}  # per column: what `chance` weighs
        self.report = ScanReport(lake_root=root, detectors=(
            *(label for d in detectors for label in d.labels), *(c.label for c in self.column_checks)))

    # -- counting ---------------------------------------------------------------------------

    def _text(self, values: pa.Array, checks: Sequence[ColumnCheck] = ()) -> Counter[str]:
        """Labels found in a string array (nulls ignored), and the cells breaking each of ``checks``."""
        if len(values) == 0 or values.null_count == len(values):
            return Counter()
        found: Counter[str] = Counter()
        candidates = values.filter(pc.match_substring_regex(values, self.any_pattern)) if self.any_pattern else values
        if self.patterns and len(candidates):
            for detector in self.patterns:
                found.update(detector.count(candidates))
        for detector in self.others:
            found.update(detector.count(values))
        for check in checks:
            found[check.label] += check.count(values if check.prefilter is None else candidates)
        return found

    def _strings(self, texts: list[str]) -> Counter[str]:
        found: Counter[str] = Counter()
        for start in range(0, len(texts), _BATCH_ROWS):
            found.update(self._text(pa.array(texts[start : start + _BATCH_ROWS], type=pa.string())))
        return found

    def _array(
        self, column: str, values: pa.Array, into: Counter[tuple[str, str]],
        checks: Sequence[tuple[ColumnCheck, str]] = (),
    ) -> None:
        """Scan one Arrow array of any type, recursing into nested types; counts go to ``into``.

        ``checks``: the column checks, each with the file's table (``zone.name``).
        """
        kind = values.type
        if isinstance(values, pa.ChunkedArray):
            for chunk in values.chunks:
                self._array(column, chunk, into, checks)
            return
        if pa.types.is_dictionary(kind):
            self._array(column, values.dictionary_decode(), into, checks)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
            text = values.cast(pa.large_string()) if pa.types.is_string_view(kind) else values
            applied = [check for check, table in checks if check.applies(table, column)]
            for label, count in self._text(text, applied).items():
                into[(column, label)] += count
        elif (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
              or pa.types.is_binary_view(kind)):
            self._array(column, _decode(values), into, checks)
        elif pa.types.is_struct(kind):
            for index in range(kind.num_fields):
                self._array(f"{column}.{kind.field(index).name}", values.field(index), into, checks)
        elif pa.types.is_map(kind):
            # The entries (struct<key, value>) of this slice: a map's offsets over its child struct array.
            entries = pa.ListArray.from_arrays(values.offsets, values.values)
            self._array(column, entries.flatten(), into, checks)
        elif (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
              or pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind)):
            self._array(f"{column}[]", pc.list_flatten(values), into, checks)
        elif pa.types.is_integer(kind) or (pa.types.is_decimal(kind) and kind.scale == 0):
            for detector in self.integer_detectors:
                for label, count in detector.count_integers(values).items():
                    into[(column, label)] += count

    def _merge(self, table: str, found: Counter[tuple[str, str]]) -> None:
        """Add one file's counts; ``LABEL#n`` labels also record ``n`` as evidence for ``min_distinct``."""
        in_file: set[tuple[str, str, str]] = set()
        for (column, tagged), count in found.items():
            if not count:
                continue
            if SHARE_OF in tagged:
                label, _, what = tagged.partition(SHARE_OF)
                self.looked_at.setdefault((table, column, label), Counter())[what] += count
                continue
            label, _, evidence = tagged.partition("#")
            key = (table, column, label)
            self.cells[key] += count
            in_file.add(key)
            if evidence:
                seen = self.evidence.setdefault(key, set())
                if len(seen) < self.min_distinct.get(label, 0):
                    seen.add(int(evidence))
        for key in in_file:
            self.files[key] += 1

    def _unreadable(self, table: str, relative: str, column: str, exc: BaseException) -> None:
        self.files[(table, column, UNREADABLE)] += 1
        self.cells[(table, column, UNREADABLE)] += 0
        self.report.unreadable.append(UnreadableFile(table, _masked(relative), type(exc).__name__))

    # -- files ------------------------------------------------------------------------------

    def parquet(self, table: str, path: str, relative: str, *, data: bool) -> None:
        """Every column of a parquet file, batch by batch, and its footer metadata."""
        found: Counter[tuple[str, str]] = Counter()
        checks = [(c, table) for c in self.column_checks]
        try:
            with self.fs.open_input_file(path) as handle:
                parquet = pq.ParquetFile(handle)
                metadata = parquet.metadata
                footer = [
                    _decode_bytes(value)
                    for key, value in (metadata.metadata or {}).items()
                    if not key.startswith(b"ARROW:schema")
                ]
                for label, count in self._strings(footer).items():
                    found[(FOOTER_COLUMN, label)] += count
                for name in dict.fromkeys(parquet.schema_arrow.names):
                    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=[name], use_threads=False):
                        for index, column in enumerate(batch.schema.names):
                            self._array(column, batch.column(index), found, checks)
                rows = metadata.num_rows
        except Exception as exc:  # any failure is a finding; its message may quote data
            self._merge(table, found)
            self._unreadable(table, relative, OTHER_FILE_COLUMN, exc)
            return
        self._merge(table, found)
        self.report.rows += rows
        if data:
            self.report.data_files += 1
        else:
            self.report.change_files += 1

    def log_file(self, table: str, path: str, relative: str) -> None:
        """A ``_delta_log`` file: JSON actions (commits, .crc), checkpoint parquet, or raw text."""
        leaves: list[str] = []
        try:
            if path.endswith(".parquet"):
                with self.fs.open_input_file(path) as handle:
                    for batch in pq.ParquetFile(handle).iter_batches(batch_size=4_096, use_threads=False):
                        for row in batch.to_pylist():
                            _walk(row, leaves)
                        self._flush(table, leaves, DELTA_LOG_COLUMN)
            else:
                for line in self._lines(path):
                    try:
                        _walk(json.loads(line), leaves)
                    except ValueError:
                        leaves.append(line)
                    if len(leaves) >= _BATCH_ROWS:
                        self._flush(table, leaves, DELTA_LOG_COLUMN)
            self._flush(table, leaves, DELTA_LOG_COLUMN)
        except Exception as exc:  # see parquet()
            self._unreadable(table, relative, DELTA_LOG_COLUMN, exc)
            return
        self.report.log_files += 1

    def other_file(self, table: str, path: str, relative: str) -> None:
        """Any other file, as text lines (hidden checksums, deletion vectors, stray files).

        A Hadoop checksum sidecar (``.<name>.crc``) whose bytes are exactly the CRC32s of its
        sibling file is skipped: its content is a function of a file scanned in its own right,
        and its random bytes once spelt ``aQi@k.my`` (a false EMAIL that failed `make demo`).
        Any other ``.crc`` file is read as text like the rest.
        """
        lines: list[str] = []
        try:
            if _is_checksum_of_sibling(self.fs, path):
                self.report.other_files += 1
                return
            for line in self._lines(path):
                lines.append(line)
                if len(lines) >= _BATCH_ROWS:
                    self._flush(table, lines, OTHER_FILE_COLUMN)
            self._flush(table, lines, OTHER_FILE_COLUMN)
        except Exception as exc:  # see parquet()
            self._unreadable(table, relative, OTHER_FILE_COLUMN, exc)
            return
        self.report.other_files += 1

    def strings(self, table: str, column: str, texts: list[str]) -> None:
        """Scan a few strings (partition values, file names) as cells of ``column``."""
        self._flush(table, list(texts), column)

    def _flush(self, table: str, texts: list[str], column: str) -> None:
        if texts:
            if column in (PATH_COLUMN, DELTA_LOG_COLUMN, OTHER_FILE_COLUMN):
                # Spark's own part-file names (task number + random UUID) are not data: masked, because
                # "part-00337-38057935-..." once read as the phone number 0033 7 38 05 79 35.
                texts[:] = [_SPARK_PART_FILE.sub("part-<n>-<uuid>", t) for t in texts]
            found = self._strings(texts)
            self._merge(table, Counter({(column, label): count for label, count in found.items()}))
            texts.clear()

    def _lines(self, path: str) -> Iterator[str]:
        with self.fs.open_input_stream(path) as stream:
            pending = b""
            while True:
                chunk = stream.read(_MAX_LINE)
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    yield _decode_bytes(line)
                if len(pending) >= _MAX_LINE:  # a "line" longer than the cap is cut into cells
                    yield _decode_bytes(pending)
                    pending = b""
            if pending:
                yield _decode_bytes(pending)

    # -- findings ---------------------------------------------------------------------------

    def findings(self) -> tuple[list[Finding], list[Finding]]:
        """(findings, dismissed): a label short of its ``min_distinct`` evidence in a column, or
        within chance in an integer column (its detector's ``chance``), is dismissed."""
        kept: list[Finding] = []
        dismissed: list[Finding] = []
        for key in sorted(set(self.cells) | set(self.files)):
            finding = Finding(*key, cells=self.cells[key], files=self.files[key])
            needed = self.min_distinct.get(key[2], 0)
            short = len(self.evidence.get(key, ())) < needed
            if key in self.looked_at and key[2] in self.chance and self.chance[key[2]](self.cells[key],
                                                                                   self.looked_at[key]):
                short = True  # chance matches among hash-derived ids, not a column of NIRs
            (dismissed if short else kept).append(finding)
        return kept, dismissed


def _decode_bytes(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _decode(values: pa.Array) -> pa.Array:
    """Binary cells as UTF-8 text (invalid bytes replaced), so text hidden in BINARY is still read."""
    if pa.types.is_fixed_size_binary(values.type) or pa.types.is_binary_view(values.type):
        values = values.cast(pa.large_binary())
    try:
        text = values.cast(pa.large_string() if pa.types.is_large_binary(values.type) else pa.string())
        text.validate(full=True)
        return text
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else _decode_bytes(v) for v in values.to_pylist()], type=pa.large_string())


def _walk(value: Any, out: list[str]) -> None:
    """Collect the scalar leaves of a JSON-like value; strings holding JSON objects are walked too."""
    if isinstance(value, dict):
        for item in value.values():
            _walk(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, out)
    elif isinstance(value, str):
        stripped = value.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                nested = json.loads(value)
            except ValueError:
                out.append(value)
            else:
                _walk(nested, out)
        else:
            out.append(value)
    elif isinstance(value, bytes):
        out.append(_decode_bytes(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        out.append(str(value))


@dataclass
class _Table:
    name: str
    root: str
    data: list[tuple[str, int]] = field(default_factory=list)
    change: list[tuple[str, int]] = field(default_factory=list)
    log: list[tuple[str, int]] = field(default_factory=list)
    other: list[tuple[str, int]] = field(default_factory=list)


def _inventory(filesystem: pafs.FileSystem, root: str) -> tuple[list[_Table], _Table]:
    """Every file under the root, grouped by Delta table; files outside any table go to ``loose``."""
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    directories = {info.path.rstrip("/") for info in infos if info.type == pafs.FileType.Directory}
    roots = {d.rsplit("/", 1)[0] for d in directories if d.rsplit("/", 1)[-1] == "_delta_log"}
    tables = {r: _Table(_table_name(root, r), r) for r in roots}
    loose = _Table("(outside any Delta table)", root)
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        path = info.path
        owner = _owner(path, roots, root)
        target = tables[owner] if owner is not None else loose
        relative = path[len(target.root) + 1 :] if target is not loose else path[len(root) + 1 :]
        entry = (path, int(info.size or 0))
        first = relative.split("/", 1)[0]
        if target is loose:
            (target.data if path.endswith(".parquet") else target.other).append(entry)
        elif first == "_delta_log":
            target.log.append(entry)
        elif not path.endswith(".parquet"):
            target.other.append(entry)
        elif first == "_change_data":
            target.change.append(entry)
        else:
            target.data.append(entry)
    return sorted(tables.values(), key=lambda t: t.name), loose


def _owner(path: str, roots: set[str], root: str) -> str | None:
    parent = path.rsplit("/", 1)[0]
    while len(parent) >= len(root):
        if parent in roots:
            return parent
        if "/" not in parent:
            break
        parent = parent.rsplit("/", 1)[0]
    return None


def _is_checksum_of_sibling(filesystem: Any, path: str) -> bool:
    """True when `path` is ``.<name>.crc`` holding Hadoop's CRC32 checksums of ``<name>`` beside it."""
    folder, _, name = path.rpartition("/")
    if not (name.startswith(".") and name.endswith(".crc")):
        return False
    sibling = f"{folder}/{name[1:-4]}"
    try:
        with filesystem.open_input_stream(path) as stream:
            sums = stream.read()
        if len(sums) < 8 or sums[:4] != b"crc\x00" or (len(sums) - 8) % 4:
            return False
        chunk = int.from_bytes(sums[4:8], "big")
        if chunk <= 0:
            return False
        expected = bytearray(sums[:8])
        with filesystem.open_input_stream(sibling) as stream:
            while block := stream.read(chunk):
                expected += zlib.crc32(block).to_bytes(4, "big")
    except OSError:
        return False
    return bytes(expected) == sums


def _table_name(root: str, table_root: str) -> str:
    relative = table_root[len(root) + 1 :] if table_root != root else table_root.rsplit("/", 1)[-1]
    return relative.replace("/", ".")


def scan_lake(
    lake_root: str | Path,
    *,
    vault: IdentityVault | None = None,
    known: KnownIdentityDetector | None = None,
    detectors: Sequence[Detector] | None = None,
    column_checks: Sequence[ColumnCheck] | None = None,
) -> ScanReport:
    """Scan every file under ``lake_root`` for direct identifiers; see the module docstring.

    ``vault`` adds the vault's known people (names, addresses) to the pattern detectors;
    ``known`` gives an already built detector instead (reused across scans), and
    ``detectors`` replaces the whole list. ``column_checks`` (default: :func:`default_column_checks`
    unless ``detectors`` is given, as for a search of given pseudonyms) checks the catalog's
    sender-id columns. Raises :class:`LeakScanError` if the root is not a
    directory; any unreadable file is an ``UNREADABLE`` finding, never an exception.
    """
    started = time.perf_counter()
    filesystem, root = _open_root(lake_root)
    if known is None and vault is not None:
        known = KnownIdentityDetector.from_vault(vault)
    if column_checks is None:
        column_checks = default_column_checks() if detectors is None else []
    scanner = _Scanner(filesystem, root, detectors if detectors is not None else default_detectors(known),
                       column_checks)
    report = scanner.report
    report.known_people = known.people if known is not None else None
    tables, loose = _inventory(filesystem, root)
    for table in [*tables, loose]:
        is_table = table is not loose
        if is_table:
            report.tables += 1
            report.versions += len({m.group(1) for path, _ in table.log
                                    if (m := _VERSION_FILE.match(path.rsplit("/", 1)[-1]))})
        partitions: dict[str, set[str]] = {}
        names: list[str] = []
        for path, size in [*table.data, *table.change, *table.log, *table.other]:
            report.bytes += size
            relative = path[len(table.root) + 1 :]
            parts = relative.split("/")
            names.append(parts[-1])
            for part in parts[:-1]:
                if "=" in part:
                    key, _, value = part.partition("=")
                    partitions.setdefault(key, set()).add(unquote(value))
        for key, values in sorted(partitions.items()):
            scanner.strings(table.name, key, sorted(values))
        scanner.strings(table.name, PATH_COLUMN, names)
        for path, _ in table.data:
            scanner.parquet(table.name, path, path[len(table.root) + 1 :], data=True)
        for path, _ in table.change:
            scanner.parquet(table.name, path, path[len(table.root) + 1 :], data=False)
        for path, _ in table.log:
            scanner.log_file(table.name, path, path[len(table.root) + 1 :])
        for path, _ in table.other:
            scanner.other_file(table.name, path, path[len(table.root) + 1 :])
    report.findings, report.dismissed = scanner.findings()
    report.seconds = time.perf_counter() - started
    return report
