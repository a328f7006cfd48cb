"""Parse files and directories into outcomes, and reconcile what went in with what came out.

Why this layer: every parser yields records and quarantine rows; what must hold for every
file whatever its format is handled here once — an unreadable or empty file becomes a
file-level quarantine row instead of an exception, a parser that yields nothing yields
FILE_NO_RECORDS, a file too large for a parser that reads files whole is FILE_TOO_LARGE
(the spec's ``limits``), a crash in a parser stops that file only (PARSER_ERROR, position 0: the
records read before it stand, the rest is never read, and the file is *partial*, read again by
the next run) instead of stopping the batch, and the second occurrence of a record in the batch
becomes DUPLICATE_RECORD. Everything streams: one record at a time leaves a parser.

Reconciliation (:class:`Counts`, per file): ``records_in = parsed + quarantined``. A
file-level row (position 0) is one record in when the file yields nothing else (empty file,
header only, header mismatch); when the file also yields records (an HL7 batch whose trailer
count is wrong, a CSV with undeclared columns), it is counted apart in ``file_issues``. What a
parser read but skipped (FHIR resources of types the platform does not read) is neither a
record nor quarantine: counted per type in ``skipped_resources``.

Example::

    run = parse_directory(root)
    for outcome in run:
        ...                       # SourceRecord → edge; Quarantined → ops.quarantine
    run.counts                    # {(source, file): Counts}; run.held_back; run.unmatched
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pdp.ingest.dedupe import FingerprintSet
from pdp.ingest.model import ParseOutcome, Quarantined, SourceRecord
from pdp.ingest.parsers.base import FileContext, get_parser
from pdp.ingest.reasons import READ_STOPPED, ReasonCode
from pdp.ingest.registry import Discovery, Registry, discover
from pdp.ingest.spec import SourceSpec

if TYPE_CHECKING:
    from pdp.ingest.known import KnownPersons
    from pdp.ingest.split import FilePart

__all__ = ["Counts", "DirectoryParse", "Duplicates", "Tally", "parse_directory", "parse_file"]

_EMPTY_PROBE = 1 << 16


def parse_file(
    spec: SourceSpec,
    path: Path | str,
    root: Path | str,
    *,
    today: date | None = None,
    seen: FingerprintSet | None = None,
    known: KnownPersons | None = None,
    skipped: Counter[str] | None = None,
    part: FilePart | None = None,
) -> Iterator[ParseOutcome]:
    """Every outcome of one file (or of one `part` of a split file), in file order; nothing for a
    held-back source.

    `seen` carries duplicate detection across files (one set per source for a batch); without
    it, duplicates are detected within the file unless the spec turns them off. `known`: the
    vault's view of known persons, for parsers that de-identify text (the edge passes it).
    `skipped`: counts, per type, what the parser skipped (:meth:`FileContext.skip`), as the file is read.
    `part` (:mod:`pdp.ingest.split`): positions are moved to the whole file's, a later part that
    re-reads the file's head drops its copy of the head's file-level rows (a stop row stays), and a
    part that yields nothing says nothing (whether the *file* holds no record is the fold's to decide).
    """
    if spec.hold_back or spec.format is None:
        return
    path, root = Path(path), Path(root)
    ctx = FileContext(spec=spec, file=path.relative_to(root).as_posix(), today=today or date.today(), root=root,
                      known=known, skipped=Counter() if skipped is None else skipped, part=part)
    if seen is None and spec.validation.duplicates != "off":
        seen = FingerprintSet()
    try:
        stream = path.open("rb") if part is None else _open_part(path, part)
    except OSError as exc:
        yield ctx.quarantine(0, ReasonCode.FILE_UNREADABLE, f"cannot open the file ({type(exc).__name__})")
        return
    with stream:
        head = stream.read(_EMPTY_PROBE) if part is None else _probe(path)
        if len(head) < _EMPTY_PROBE and not head.removeprefix(b"\xef\xbb\xbf").strip():
            if part is None or part.first:
                yield ctx.quarantine(0, ReasonCode.FILE_EMPTY, "the file has no content")
            return
        stream.seek(0)
        yielded = False
        info = get_parser(spec.format)
        if info.whole_file and os.fstat(stream.fileno()).st_size > spec.limits.max_file_bytes:
            limit = spec.limits.max_file_bytes
            yield ctx.quarantine(0, ReasonCode.FILE_TOO_LARGE, f"file over limits.max_file_bytes ({limit})")
            return
        parse = info.func
        last = part.before if part is not None else 0  # position of the last record read: where a stop leaves
        shift = part.offset if part is not None else 0
        try:
            for outcome in parse(stream, ctx):
                if outcome.position == 0:
                    if part is not None and not part.first and part.repeats_head and not _stops(outcome):
                        continue  # the first part yields the file's own rows
                elif shift:
                    outcome = replace(outcome, position=outcome.position + shift)
                yielded = True
                last = max(last, outcome.position)
                if (
                    seen is not None
                    and isinstance(outcome, SourceRecord)
                    and not seen.add_record(outcome.record_id, outcome.raw)
                ):
                    what = "sender record id and bytes" if outcome.record_id else "record bytes"
                    outcome = ctx.quarantine(
                        outcome.position,
                        ReasonCode.DUPLICATE_RECORD,
                        f"same {what} as an earlier record of this batch",
                        outcome.raw,
                    )
                yield outcome
        except OSError as exc:
            yielded = True
            yield ctx.quarantine(0, ReasonCode.FILE_UNREADABLE,
                                 f"reading stopped ({type(exc).__name__}) {stopped_after(last)}")
        except Exception as exc:  # a parser bug must not stop the batch: the file says where it stopped
            yielded = True
            yield ctx.quarantine(0, ReasonCode.PARSER_ERROR,
                                 f"parser {spec.format} raised {type(exc).__name__} {stopped_after(last)}")
        if not yielded and part is None:
            yield ctx.quarantine(0, ReasonCode.FILE_NO_RECORDS, "the file holds no record")


def _stops(outcome: ParseOutcome) -> bool:
    return isinstance(outcome, Quarantined) and outcome.reason_code in READ_STOPPED


def _open_part(path: Path, part: FilePart) -> BinaryIO:
    from pdp.ingest.split import open_part

    return open_part(path, part)


def _probe(path: Path) -> bytes:
    """The whole file's first bytes: whether the *file* is empty, not the part."""
    with path.open("rb") as stream:
        return stream.read(_EMPTY_PROBE)


def stopped_after(last: int) -> str:
    """How a stop row's message says where reading ended (a position, never a value)."""
    return f"after record {last}; the rest of the file was not read"


@dataclass(frozen=True, slots=True)
class Counts:
    """Reconciliation of one file: ``records_in == parsed + quarantined`` always.

    A file whose reading stopped (a :data:`~pdp.ingest.reasons.READ_STOPPED` row) is *partial*:
    ``records_in`` counts the records read before the stop, ``stopped`` says why (reason code and
    its value-free message, naming the exception type), and ``unread_from`` is the position of the
    first record never read (how many follow it is unknown until a parser reads them).
    ``skipped_resources``: per type, what the parser read and skipped (FHIR resources of types the
    platform does not read): not records (outside ``records_in``), not quarantine.
    """

    records_in: int
    parsed: int
    quarantined: int
    file_issues: int = 0  # file-level rows beside records (not records themselves)
    stopped: str | None = None
    unread_from: int | None = None
    skipped_resources: dict[str, int] = field(default_factory=dict, hash=False)

    @property
    def partial(self) -> bool:
        return self.stopped is not None

    @property
    def balanced(self) -> bool:
        return self.records_in == self.parsed + self.quarantined


class Tally:
    """Counts per (source, file), fed outcome by outcome (streaming)."""

    def __init__(self) -> None:
        # parsed, record-level quarantined, file-level rows, last position read
        self._files: dict[tuple[str, str], list[int]] = {}
        self._stops: dict[tuple[str, str], str] = {}  # why reading stopped: "REASON: message"
        self._skipped: dict[tuple[str, str], Counter[str]] = {}

    def start(self, source: str, file: str) -> None:
        self._files.setdefault((source, file), [0, 0, 0, 0])

    def skipped(self, source: str, file: str) -> Counter[str]:
        """The file's count of skipped items per type, for :func:`parse_file` to fill as it reads."""
        self._files.setdefault((source, file), [0, 0, 0, 0])
        return self._skipped.setdefault((source, file), Counter())

    def add(self, outcome: ParseOutcome) -> ParseOutcome:
        quarantined = isinstance(outcome, Quarantined)
        reason = (outcome.reason_code, outcome.message) if isinstance(outcome, Quarantined) else None
        self.count(outcome.source, outcome.file, quarantined=quarantined, position=outcome.position, reason=reason)
        return outcome

    def count(
        self, source: str, file: str, *, quarantined: bool, position: int, reason: tuple[str, str] | None = None
    ) -> None:
        """One output row of a file: the same rule for parse outcomes and the edge's rows.

        A quarantined row at position 0 is file-level (see :meth:`counts` for how it counts);
        `reason` (code, message) of a file-level row in :data:`READ_STOPPED` makes the file partial.
        """
        row = self._files.setdefault((source, file), [0, 0, 0, 0])
        row[3] = max(row[3], position)
        if quarantined and position == 0 and reason is not None and reason[0] in READ_STOPPED:
            self._stops.setdefault((source, file), f"{reason[0]}: {reason[1]}")
        if quarantined:
            row[2 if position == 0 else 1] += 1
        else:
            row[0] += 1

    def extend(self, later: Tally) -> None:
        """Add the rows of `later`, read after everything counted here (the next part of a split
        file): the counts are those of one tally fed both in order."""
        for key, (parsed, quarantined, file_rows, last) in later._files.items():
            row = self._files.setdefault(key, [0, 0, 0, 0])
            row[:] = [row[0] + parsed, row[1] + quarantined, row[2] + file_rows, max(row[3], last)]
        for key, stop in later._stops.items():
            self._stops.setdefault(key, stop)
        for key, kinds in later._skipped.items():
            self._skipped.setdefault(key, Counter()).update(kinds)

    def stopped(self, source: str, file: str) -> bool:
        """Whether reading of the file stopped (a part after the stop was never read in one pass)."""
        return (source, file) in self._stops

    def last(self, source: str, file: str) -> int:
        """Position of the last row counted for the file (0: none)."""
        return self._files.get((source, file), [0, 0, 0, 0])[3]

    def empty(self, source: str, file: str) -> bool:
        """Whether the file yielded no row at all."""
        return not any(self._files.get((source, file), [0, 0, 0, 0])[:3])

    def track(self, outcomes: Iterable[ParseOutcome]) -> Iterator[ParseOutcome]:
        for outcome in outcomes:
            yield self.add(outcome)

    def counts(self) -> dict[tuple[str, str], Counts]:
        out = {}
        for key, (parsed, quarantined, file_rows, last) in self._files.items():
            stopped = self._stops.get(key)
            skipped = dict(sorted(self._skipped.get(key, Counter()).items()))
            if stopped is not None:  # the stop row is a file issue, never a record: in = what was read
                out[key] = Counts(parsed + quarantined, parsed, quarantined, file_issues=file_rows, stopped=stopped,
                                  unread_from=last + 1, skipped_resources=skipped)
            elif parsed + quarantined == 0:
                out[key] = Counts(records_in=file_rows, parsed=0, quarantined=file_rows, skipped_resources=skipped)
            else:
                out[key] = Counts(parsed + quarantined, parsed, quarantined, file_issues=file_rows,
                                  skipped_resources=skipped)
        return out

    def total(self) -> Counts:
        values = list(self.counts().values())
        skipped: Counter[str] = Counter()
        for c in values:
            skipped.update(c.skipped_resources)
        return Counts(
            records_in=sum(c.records_in for c in values),
            parsed=sum(c.parsed for c in values),
            quarantined=sum(c.quarantined for c in values),
            file_issues=sum(c.file_issues for c in values),
            skipped_resources=dict(sorted(skipped.items())),
        )


class Duplicates:
    """The batch's duplicate sets, the one rule for what a DUPLICATE_RECORD is across files.

    Scope ``per_source`` (the default): one set per source for the whole batch, filled in file
    order, so the second occurrence of a record is the duplicate even when the first was in an
    earlier file. ``per_file``: :func:`parse_file` makes a fresh set per file. ``off``: none.

    Files parsed apart (in worker processes, each with its own set) are reconciled here in
    file order: :meth:`admit` takes a file's fingerprints only if none was seen in an earlier
    file of its source; otherwise the caller re-parses that file with :meth:`seen`, which
    yields exactly what a single in-order pass would have. A batch that stages its fingerprints
    instead (:mod:`pdp.ingest.staged_duplicates`) re-parses such a file with :meth:`holding`: the
    sets then hold only what that file's records met earlier, not the whole batch's.

    `key`: the key the sets fingerprint records under (:class:`FingerprintSet`); None: unkeyed.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key
        self._per_source: dict[str, FingerprintSet] = {}
        self._file: tuple[str, str] | None = None  # per_file scope, a split file: the file whose parts run
        self._per_file = FingerprintSet(key=key)

    @classmethod
    def holding(cls, spec: SourceSpec, values: Iterable[int], part_of: str | None = None, *,
                key: bytes | None = None) -> Duplicates:
        """Sets for re-parsing one file (or part) of `spec` in order: `values`, the fingerprints its
        records met in earlier files (or parts), are what :meth:`seen` hands :func:`parse_file`."""
        duplicates = cls(key)
        seen = duplicates.seen(spec, part_of)
        for value in values if seen is not None else ():
            seen.add(value)
        return duplicates

    def seen(self, spec: SourceSpec, part_of: str | None = None) -> FingerprintSet | None:
        """The set to hand :func:`parse_file` for the next file of `spec` (None: per file or off).

        `part_of`: the file when what is parsed next is a part of it (:mod:`pdp.ingest.split`): scope
        ``per_file`` then keeps one set across the file's parts, in order.
        """
        if spec.validation.duplicates == "per_file" and part_of is not None:
            if self._file != (spec.name, part_of):
                self._file, self._per_file = (spec.name, part_of), FingerprintSet(key=self._key)
            return self._per_file
        if spec.validation.duplicates != "per_source":
            return None
        if spec.name not in self._per_source:
            self._per_source[spec.name] = FingerprintSet(key=self._key)
        return self._per_source[spec.name]

    def admit(self, spec: SourceSpec, fingerprints: Iterable[int], part_of: str | None = None) -> bool:
        """Add a file's (or a file part's) fingerprints (parsed apart, duplicates within it already removed).

        False, and nothing added, when one of them was seen in an earlier file of the source
        (or, scope ``per_file``, an earlier part of the file).
        """
        seen = self.seen(spec, part_of)
        if seen is None:
            return True
        values = list(fingerprints)
        if any(value in seen for value in values):
            return False
        for value in values:
            seen.add(value)
        return True


class DirectoryParse(Iterator[ParseOutcome]):
    """The outcomes of every file of an ingest root (iterate once), with its discovery and counts."""

    def __init__(self, discovery: Discovery, *, today: date | None = None) -> None:
        self.discovery = discovery
        self.tally = Tally()
        self._today = today or date.today()
        self._outcomes = self._run()

    def __next__(self) -> ParseOutcome:
        return next(self._outcomes)

    def _run(self) -> Iterator[ParseOutcome]:
        duplicates = Duplicates()
        for spec, path in self.discovery.to_parse:
            rel = path.relative_to(self.discovery.root).as_posix()
            self.tally.start(spec.name, rel)
            outcomes = parse_file(spec, path, self.discovery.root, today=self._today, seen=duplicates.seen(spec),
                                  skipped=self.tally.skipped(spec.name, rel))
            yield from self.tally.track(outcomes)

    @property
    def counts(self) -> dict[tuple[str, str], Counts]:
        return self.tally.counts()

    @property
    def held_back(self) -> list[tuple[SourceSpec, Path]]:
        return self.discovery.held_back

    @property
    def unmatched(self) -> tuple[Path, ...]:
        return self.discovery.unmatched


def parse_directory(root: Path | str, registry: Registry | None = None, *, today: date | None = None) -> DirectoryParse:
    """Every source's files under `root`, parsed lazily; held-back and unmatched files are reported
    on the result (``held_back``, ``unmatched``), not parsed."""
    return DirectoryParse(discover(root, registry), today=today)
