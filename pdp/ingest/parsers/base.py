"""The parser registry: a parser is a function registered under a format name, with its contract.

Why a registry: a source spec names its format (``format: delimited``) and the registry
resolves it, so a new format is one module with one decorated function and the specs that
use it — no dispatch table to edit. Each parser declares what it writes: its options model
(validated when a spec is loaded, so a bad spec stops before any file is read), whether
identity and events come from the spec's mapping (``mapped``) or from the format itself,
and which event domains it can produce.

Example::

    @parser("delimited", options=DelimitedOptions, mapped=True)
    def parse_delimited(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
        ...

A parser reads one seekable binary stream, yields one outcome per record in file order
(file-level problems at position 0), and never raises for bad input: every fault becomes a
:class:`~pdp.ingest.model.Quarantined` row through ``ctx.quarantine``. What it reads but the
platform does not (a FHIR Claim) is neither: it tells ``ctx.skip(kind)``, counted per kind. It holds one record at
a time, bounded by the spec's ``limits`` (:mod:`pdp.ingest.limits`): a larger line or message
is RECORD_TOO_LARGE, a deeper JSON document JSON_TOO_DEEP. ``tests/fuzz`` checks all of this
for every registered parser with random, mutated and truncated files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydantic import BaseModel

from pdp.ingest.model import ParseOutcome, Quarantined
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.validate import Checks

if TYPE_CHECKING:
    from pdp.ingest.encoding import FileEncoding
    from pdp.ingest.known import KnownPersons
    from pdp.ingest.spec import SourceSpec
    from pdp.ingest.split import FilePart, Splitter

__all__ = ["BUILTIN_PARSERS", "FileContext", "ParseFunction", "ParserInfo", "get_parser", "parser", "parser_names"]

ParseFunction = Callable[[BinaryIO, "FileContext"], Iterator[ParseOutcome]]

BUILTIN_PARSERS = (
    "pdp.ingest.parsers.delimited",
    "pdp.ingest.parsers.fixed_width",
    "pdp.ingest.parsers.hl7_oru",
    "pdp.ingest.parsers.fhir_ndjson",
    "pdp.ingest.parsers.fhir_bundle_json",
    "pdp.ingest.parsers.fhir_bulk",
    "pdp.ingest.parsers.fhir_questionnaire",
    "pdp.ingest.parsers.report_index",
)


@dataclass(frozen=True, slots=True)
class ParserInfo:
    """A registered parser and its declared contract."""

    name: str
    func: ParseFunction
    options: type[BaseModel] | None
    mapped: bool  # identity/events/attributes come from the spec's mapping
    produces: tuple[str, ...]  # event domains it can yield when not mapped (mapped: the spec's events)
    description: str
    whole_file: bool = False  # reads a file whole (a JSON document): parse_file refuses one over limits.max_file_bytes
    split: Splitter | None = None  # how a large file is cut into tasks (pdp.ingest.split); None: one task a file


_PARSERS: dict[str, ParserInfo] = {}
_LOADED = False


def parser(
    name: str,
    *,
    options: type[BaseModel] | None = None,
    mapped: bool = False,
    produces: tuple[str, ...] = (),
    whole_file: bool = False,
    split: Splitter | None = None,
) -> Callable[[ParseFunction], ParseFunction]:
    """Register `func` as the parser of format `name` (a second, different function is an error).

    `whole_file`: the parser must hold a whole file in memory (a JSON document, not lines);
    :func:`pdp.ingest.parse.parse_file` then quarantines a file larger than the spec's
    ``limits.max_file_bytes`` (FILE_TOO_LARGE) without calling it. `split`: the format can be cut
    into parts read as separate tasks (:mod:`pdp.ingest.split`); the parser then takes the file's
    encoding from :meth:`FileContext.file_encoding` and any file-level state from ``ctx.part``.
    """

    def register(func: ParseFunction) -> ParseFunction:
        existing = _PARSERS.get(name)
        if existing is not None and existing.func.__qualname__ != func.__qualname__:
            raise ValueError(f"parser {name!r} is already registered by {existing.func.__module__}")
        doc = (func.__doc__ or "").strip().splitlines()
        _PARSERS[name] = ParserInfo(name, func, options, mapped, tuple(produces), doc[0] if doc else "", whole_file,
                                    split)
        return func

    return register


def _load_builtins() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in BUILTIN_PARSERS:
            import_module(module)


def get_parser(name: str) -> ParserInfo:
    """The parser registered as `name` (KeyError if none)."""
    _load_builtins()
    return _PARSERS[name]


def parser_names() -> list[str]:
    _load_builtins()
    return sorted(_PARSERS)


@dataclass(frozen=True, slots=True)
class FileContext:
    """What a parser knows about the file it reads: its spec, its path (relative to the ingest
    root, as quarantine and bronze record it) and the run's checks."""

    spec: SourceSpec
    file: str
    today: date
    root: Path | None = None  # the ingest root: an index's documents are read from it
    known: KnownPersons | None = None  # the vault's linkage view, at the edge (None: a parse outside ingest)
    skipped: Counter[str] = field(default_factory=Counter, compare=False, repr=False)  # see skip()
    part: FilePart | None = None  # the part of a split file being read (None: the whole file)
    _cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def source(self) -> str:
        return self.spec.name

    @property
    def checks(self) -> Checks:
        checks = self._cache.get("checks")
        if checks is None:
            v = self.spec.validation
            checks = self._cache["checks"] = Checks(
                min_date=v.dates.min,
                max_date=v.dates.max or self.today,
                code_systems=frozenset(self.spec.code_systems),
                required_identity=self.spec.required_identity,
                check_nir=v.check_nir,
                check_codes=v.check_codes,
                skipped=self.skipped,
            )
        return checks  # type: ignore[return-value]

    def file_encoding(self, stream: BinaryIO) -> FileEncoding:
        """The file's encoding: decided once for the whole file when it was split (a part alone could
        be decided otherwise: its bytes may all be ASCII), else decided here on the stream."""
        from pdp.ingest.encoding import detect_encoding

        if self.part is not None and self.part.encoding is not None:
            return self.part.encoding
        return detect_encoding(stream, self.spec.encoding, latin1_fallback=self.spec.latin1_fallback)

    def skip(self, kind: str) -> None:
        """Count one item the parser read and the platform does not (a FHIR resource of a type no
        table holds): not a record, not quarantine, but accounted for (``Counts.skipped_resources``).
        `kind` is a type name, never a value of the file."""
        self.skipped[kind] += 1

    def quarantine(self, position: int, reason: ReasonCode, message: str, raw: bytes = b"") -> Quarantined:
        return Quarantined(
            source=self.spec.name, file=self.file, position=position, reason_code=reason, message=message, raw=raw
        )
