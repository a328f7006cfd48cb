"""The fuzz harness: bytes in, one file parsed the way the ingest parses it, the properties checked.

Used by the hypothesis tests (``test_fuzz_parsers.py``, a short budget in ``make test``) and by
the coverage-guided targets (``atheris_target.py``, ``make fuzz``). For one format and one
input it writes the bytes as a source file under a fresh ingest root, runs
:func:`pdp.ingest.parse.parse_file` (the level at which a file is parsed: what the batch,
the parallel fan-out and the lab feed all call), counts the outcomes with the project's own
:class:`~pdp.ingest.parse.Tally`, and checks:

* never raises: no exception escapes, and no outcome is PARSER_ERROR (what ``parse_file`` or a
  parser's safety net turns an exception into): every fault has a reason code of its own;
* never hangs: each outcome comes within ``time_bound`` seconds of the previous one (SIGALRM,
  re-armed per outcome, raising :class:`Hang`, which no parser's ``except Exception`` swallows);
* bounded memory: with ``trace_memory``, the peak of Python allocations between two outcomes
  stays under ``memory_bound`` bytes (tracemalloc), whatever the input's size;
* everything accounted for: ``records_in == parsed + quarantined`` (Tally), record positions
  unique and increasing, and every non-blank line (HL7: every segment) of the file belongs to
  exactly one outcome, unless one file-level row stands for the whole file;
* nothing nominative in a message or a log line: no identity value of the corpus seeds
  (``nominative.txt``) present in the input shows in a quarantine message or in what the
  parse logged.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

from pdp.ingest import Quarantined, SourceRecord, SourceSpec, load_registry
from pdp.ingest.encoding import detect_encoding
from pdp.ingest.parse import Tally, parse_file
from pdp.ingest.reasons import ReasonCode

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DOCUMENTS = HERE / "documents"
TODAY = date(2026, 7, 1)

# format → (built-in spec it is fuzzed with, the file's path under the ingest root)
FORMATS: dict[str, tuple[str, str]] = {
    "delimited": ("pmsi", "pmsi/fuzz.csv"),
    "fixed_width": ("insee_deaths", "insee/deces.txt"),
    "hl7v2_oru": ("lab_hl7", "labs/fuzz.hl7"),
    "fhir_bundle_ndjson": ("gp_fhir", "gp/fuzz.ndjson"),
    "fhir_questionnaire_response_ndjson": ("questionnaires", "questionnaires/fuzz.ndjson"),
    "report_index": ("reports", "reports/index.csv"),
    # formats no built-in source uses: their specs are tests/fuzz/specs/<source>.yml
    "fhir_bundle_json": ("fuzz_bundles", "fuzz_bundles/p1.json"),
    "fhir_bulk_ndjson": ("fuzz_bulk", "fuzz_bulk/export/Patient.ndjson"),
}
SPECS = HERE / "specs"
# formats whose line holds several records (a Bundle's resources): its records share the line's position
SHARED_POSITIONS = frozenset({"fhir_bundle_ndjson"})
# the fuzzed specs' limits: small, so that "huge" inputs stay cheap to generate
LIMITS = {"max_record_bytes": 64 * 1024, "max_json_depth": 64, "max_document_bytes": 64 * 1024}
WHOLE_FILE = frozenset(
    {
        ReasonCode.FILE_EMPTY,
        ReasonCode.FILE_NO_RECORDS,
        ReasonCode.FILE_UNREADABLE,
        ReasonCode.FILE_TOO_LARGE,
        ReasonCode.HEADER_MISMATCH,
    }
)


class Hang(BaseException):  # not Exception: a parser's `except Exception` must not swallow it
    """An outcome took longer than the harness's time bound."""


class PropertyFailed(AssertionError):
    """A fuzz property does not hold for this input."""


@cache
def spec_for(format_name: str) -> SourceSpec:
    """The built-in spec of `format_name`'s source with the fuzz limits (reports: rules only, no NER)."""
    from pdp.ingest import validate_spec

    name = FORMATS[format_name][0]
    own = SPECS / f"{name}.yml"
    base = validate_spec(own) if own.is_file() else load_registry().specs[name]
    data = base.model_dump(mode="json", exclude_defaults=False)
    data["limits"] = LIMITS
    if format_name == "report_index":
        data["options"] = {**data["options"], "ner": False}
    return SourceSpec.model_validate(data)


def corpus_files(format_name: str) -> list[Path]:
    folder = CORPUS / format_name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def seed(format_name: str) -> bytes:
    """The smallest valid sample of the format (its ``seed-*`` corpus file)."""
    seeds = [p for p in corpus_files(format_name) if p.name.startswith("seed")]
    return min(seeds, key=lambda p: p.stat().st_size).read_bytes()


@dataclass
class Result:
    outcomes: list[SourceRecord | Quarantined] = field(default_factory=list)
    slowest: float = 0.0
    peak: int = 0

    @property
    def reasons(self) -> list[str]:
        return [str(o.reason_code) for o in self.outcomes if isinstance(o, Quarantined)]


class _Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _captured_logs() -> Iterator[_Logs]:
    root = logging.getLogger()
    handler, level = _Logs(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def fire(signum: int, frame: object) -> None:
        raise Hang(f"no outcome within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@cache
def _root(format_name: str) -> Path:
    """One ingest root per format for the process (a fresh directory per input costs more than a parse)."""
    shm = Path("/dev/shm")
    base = os.environ.get("PDP_FUZZ_TMP") or (shm if shm.is_dir() else None)  # atheris exits without atexit
    root = Path(tempfile.mkdtemp(prefix=f"pdp-fuzz-{format_name}-", dir=base))
    atexit.register(shutil.rmtree, root, True)
    if format_name == "report_index":
        _documents(root)
    # warm-up, neither timed nor traced: lazy imports (fhir.resources, Presidio) are paid once, not per record
    path = root / FORMATS[format_name][1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(seed(format_name))
    for _ in parse_file(spec_for(format_name), path, root, today=TODAY):
        pass
    if format_name.startswith("fhir_"):  # every model a mutation may name is built once, here (tens of MB)
        from pdp.ingest.parsers.fhir_entries import READ_TYPES
        from pdp.ingest.parsers.fhir_models import model_class

        for kind in (*READ_TYPES, "Bundle", "Medication", "QuestionnaireResponse", "Claim", "Composition"):
            model_class(kind)
    return root


def run(
    format_name: str,
    data: bytes,
    *,
    time_bound: float = 10.0,
    trace_memory: bool = False,
    memory_bound: int = 32 << 20,
) -> Result:
    """Parse `data` as a file of `format_name` and check every property (raises PropertyFailed).

    ``PDP_FUZZ_DUMP=DIR`` keeps each failing input there (the reports hide inputs: they hold identities).
    """
    try:
        return _run(format_name, data, time_bound=time_bound, trace_memory=trace_memory, memory_bound=memory_bound)
    except (PropertyFailed, Hang):
        dump = os.environ.get("PDP_FUZZ_DUMP")
        if dump:
            Path(dump).mkdir(parents=True, exist_ok=True)
            (Path(dump) / f"{format_name}-{hash(data) & 0xFFFFFFFF:08x}").write_bytes(data)
        raise


def _run(format_name: str, data: bytes, *, time_bound: float, trace_memory: bool, memory_bound: int) -> Result:
    from pdp.ingest.parsers.base import get_parser

    spec = spec_for(format_name)
    if get_parser(spec.format).whole_file:  # a JSON document is held whole (max_file_bytes bounds the file)
        memory_bound += 4 * len(data)
    root = _root(format_name)
    rel = FORMATS[format_name][1]
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    result = Result()
    tally = Tally()
    tally.start(spec.name, rel)
    outcomes = parse_file(spec, path, root, today=TODAY, skipped=tally.skipped(spec.name, rel))
    if trace_memory:
        tracemalloc.start()
    try:
        with _alarm(time_bound), _captured_logs() as logs:
            started = time.perf_counter()
            if trace_memory:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            for outcome in tally.track(outcomes):
                now = time.perf_counter()
                result.slowest = max(result.slowest, now - started)
                if trace_memory:
                    current, peak = tracemalloc.get_traced_memory()
                    result.peak = max(result.peak, peak - base)
                    if peak - base > memory_bound:
                        raise PropertyFailed(f"{peak - base} bytes held for one outcome (bound {memory_bound})")
                result.outcomes.append(outcome)
                signal.setitimer(signal.ITIMER_REAL, time_bound)
                started = time.perf_counter()
                if trace_memory:
                    tracemalloc.reset_peak()
                    base = current
    finally:
        if trace_memory:
            tracemalloc.stop()
    for line in logs.lines:
        _value_free(line, data)
    check(format_name, data, result, tally.counts()[(spec.name, rel)])
    return result


def _documents(root: Path) -> None:
    """The reports' documents the corpus index rows point at."""
    if DOCUMENTS.is_dir():
        for doc in DOCUMENTS.rglob("*.txt"):
            target = root / doc.relative_to(DOCUMENTS)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(doc.read_bytes())


def check(format_name: str, data: bytes, result: Result, counts: object) -> None:
    outcomes = result.outcomes
    fail = PropertyFailed
    if not counts.balanced:  # type: ignore[attr-defined]
        raise fail(f"counts do not balance: {counts}")
    from pdp.ingest.parsers.fhir_entries import READ_TYPES, REFERENCED_TYPES, is_fhir_type

    for kind in counts.skipped_resources:  # type: ignore[attr-defined]
        if not is_fhir_type(kind) or kind in READ_TYPES | REFERENCED_TYPES:  # a type name, never a value
            raise fail(f"skipped {kind!r}: not a FHIR type the parsers skip")
    if not outcomes:
        raise fail("no outcome at all (an empty file is FILE_EMPTY)")
    for o in outcomes:
        if isinstance(o, Quarantined):
            if not isinstance(o.reason_code, ReasonCode):
                raise fail(f"reason {o.reason_code!r} is not a ReasonCode")
            if o.reason_code is ReasonCode.PARSER_ERROR:
                raise fail(f"PARSER_ERROR at position {o.position}: {o.message}")
            _value_free(o.message, data)
    positions = [o.position for o in outcomes if o.position > 0]
    if format_name in SHARED_POSITIONS:
        if positions != sorted(positions):
            raise fail(f"record positions not in file order: {positions[:20]}")
    elif positions != sorted(set(positions)):
        raise fail(f"record positions not unique and increasing: {positions[:20]}")
    if any(isinstance(o, Quarantined) and o.position == 0 and o.reason_code in WHOLE_FILE for o in outcomes):
        if positions:
            raise fail("a whole-file row beside records")
        return
    header_row = any(
        isinstance(o, Quarantined) and o.position == 0 and o.reason_code in (ReasonCode.ENCODING_INVALID,
                                                                              ReasonCode.RECORD_TOO_LARGE)
        for o in outcomes
    )
    if header_row and format_name in ("delimited", "report_index"):
        if positions:
            raise fail("an undecodable or oversized header beside records")
        return
    _accounted(format_name, data, outcomes)


@cache
def _nominative() -> tuple[bytes, ...]:
    """The identity values of the corpus seeds (synthetic persons): never to be quoted in a message."""
    path = HERE / "nominative.txt"
    return tuple(line.encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _value_free(message: str, data: bytes) -> None:
    """No identity value of the input in a message."""
    for value in _nominative():
        if value in data and value.decode() in message:
            raise PropertyFailed(f"a message quotes an identity value: {message!r}")


def _lines(data: bytes, format_name: str) -> list[tuple[int, bool]]:
    """(line number, blank) of the file, as the line-based parsers number them."""
    import io

    spec = spec_for(format_name)
    encoding = detect_encoding(io.BytesIO(data), spec.encoding, latin1_fallback=spec.latin1_fallback)
    body = data[encoding.start:]
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, start=1):
        raw = line[:-1] if line.endswith(b"\r") else line
        text = encoding.decode(raw) if len(raw) <= LIMITS["max_record_bytes"] else None
        out.append((number, text is not None and not text.strip()))
    return out


def _not_read(resource: object) -> bool:
    """A well-formed resource of a type the FHIR parsers do not read (skipped and counted, or read by reference)."""
    from pdp.ingest.parsers.fhir_entries import READ_TYPES, is_fhir_type

    return isinstance(resource, dict) and is_fhir_type(resource.get("resourceType")) and (
        resource["resourceType"] not in READ_TYPES)


def _not_read_lines(data: bytes, format_name: str) -> set[int]:
    """Line numbers that may yield no outcome: a resource the FHIR parsers do not read (Bulk), a Bundle
    whose every entry is one (or a transaction's delete)."""
    import json

    out = set()
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            continue
        bulk = format_name == "fhir_bulk_ndjson" and _not_read(item)
        bundle = format_name == "fhir_bundle_ndjson" and isinstance(item, dict) and _nothing_read(item.get("entry"))
        if bulk or bundle:
            out.add(number)
    return out


def _nothing_read(entries: object) -> bool:
    """Bundle entries all of types not read (or a transaction's deletes): a Bundle line that yields no outcome."""
    def skipped(entry: object) -> bool:
        if not isinstance(entry, dict):
            return False
        request = entry.get("request")
        delete = entry.get("resource") is None and isinstance(request, dict) and request.get("method") == "DELETE"
        return delete or _not_read(entry.get("resource"))

    return isinstance(entries, list) and bool(entries) and all(skipped(e) for e in entries)


def _accounted(format_name: str, data: bytes, outcomes: list[SourceRecord | Quarantined]) -> None:
    """Every non-blank line (HL7: segment) belongs to exactly one outcome."""
    records = [o for o in outcomes if o.position > 0]
    if format_name == "hl7v2_oru":
        segments = [s.strip(b"\x0b\x1c") for s in re.split(rb"[\r\n]+", data)]
        segments = [s for s in segments if s]
        messages = sum(1 for s in segments if s[:3] == b"MSH")
        if len(records) < messages:
            raise PropertyFailed(f"{messages} MSH segments, {len(records)} records")
        big = any(isinstance(o, Quarantined) and o.reason_code is ReasonCode.RECORD_TOO_LARGE for o in records)
        envelope = sum(1 for s in segments if s[:3] in (b"FHS", b"BHS", b"BTS", b"FTS"))
        covered = sum(o.raw.count(b"\r") for o in records)
        if not big and covered + envelope != len(segments):
            raise PropertyFailed(f"{len(segments)} segments, {covered} in records and {envelope} in envelopes")
        if [o.position for o in records] != list(range(1, len(records) + 1)):
            raise PropertyFailed("message positions are not 1..n")
        return
    if format_name == "fhir_bundle_json":  # one JSON document: entries, not lines (positions checked above)
        return
    lines = _lines(data, format_name)
    csv_like = format_name in ("delimited", "report_index")
    if csv_like:
        lines = lines[1:]  # the header
    wanted = {n - 1 if csv_like else n for n, blank in lines if not blank}
    got = {o.position for o in records}
    if not got <= {n - 1 if csv_like else n for n, _ in lines}:
        raise PropertyFailed(f"positions outside the file's lines: {sorted(got - wanted)[:10]}")
    optional: set[int] = set()
    if format_name in ("fhir_bulk_ndjson", "fhir_bundle_ndjson"):  # a type that is not a record: skipped (counted)
        optional = _not_read_lines(data, format_name)
    if not csv_like:
        if not wanted - optional <= got <= wanted:
            raise PropertyFailed(f"lines without outcome: {sorted(wanted - optional - got)[:10]}")
        return
    # a CSV record may span lines (a quoted field): a line without outcome must follow a record's start
    covered: set[int] = set()
    ends = [o.position for o in records[1:]] + [max((n for n, _ in lines), default=0) + 1]
    for o, end in zip(records, ends, strict=True):
        too_large = isinstance(o, Quarantined) and o.reason_code is ReasonCode.RECORD_TOO_LARGE
        span = end - o.position if too_large else o.raw.count(b"\n") + 1 if format_name == "delimited" else 1
        covered.update(range(o.position, o.position + span))
    missing = sorted(wanted - covered)
    if format_name == "delimited" and missing:
        raise PropertyFailed(f"lines without outcome: {missing[:10]}")
    if missing and (not got or missing[0] < min(got)):
        raise PropertyFailed(f"lines without outcome: {missing[:10]}")


# --- inputs: mutations of a valid file, and the hostile pieces they are made of --------------------

TOKENS: tuple[bytes, ...] = (
    b"\x00", b"\x00" * 64,                                        # NUL bytes
    b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff",                    # BOMs (UTF-8, UTF-16 LE/BE)
    b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80", b"\xe9", b"\x80\x9c",  # invalid UTF-8, C1
    b"\r", b"\n", b"\r\n", b"\n\n\n", b"\x0b", b"\x1c", b"\x85", "\u2028".encode(),  # terminators, MLLP framing
    b'"', b'""', b'"\n', b';', b',', b'";"',                      # CSV quoting and delimiters
    b"|", b"^", b"~", b"\\", b"&", b"MSH|^~\\&|", b"MSH|||||", b"MSH|^^^^|", b"\rOBX|", b"\rPID|", b"\rMSH|",
    b"\\X00\\", b"\\X\\", b"\\H\\", b"\\.br\\", b"\\Zzz\\", b"\\E", b"\\.sk99999\\", b"\\C2842\\", b"\\M\\",  # escapes
    b"[", b"{", b"]", b"}", b'{"a":', b"null", b"1e999", b"-0", b'"\\ud800"', b'"\\u0000"', b"[[[[[[[[[[" * 20,
    b'"resourceType":"Bundle"', b'"resourceType":"Patient"', b'"entry":[', b'"item":[{"linkId":"x","item":[',
)


def apply(base: bytes, ops: list[tuple]) -> bytes:
    """A mutated copy of `base`: each op is (kind, offset, ...); offsets wrap around the current length."""
    data = bytearray(base)
    for kind, offset, *args in ops:
        at = offset % (len(data) + 1)
        if kind == "flip" and data:
            data[at % len(data)] = args[0]
        elif kind == "insert":
            data[at:at] = args[0]
        elif kind == "delete":
            del data[at:at + args[0]]
        elif kind == "truncate":
            del data[at:]
        elif kind == "repeat":  # a slice repeated: repeated segments, lines, fields
            piece = bytes(data[at:at + args[0]])
            data[at:at] = piece * args[1]
        elif kind == "line":  # one line or segment repeated
            lines = re.split(rb"(?<=[\r\n])", bytes(data))
            index = offset % len(lines)
            lines[index:index] = [lines[index]] * args[0]
            data = bytearray(b"".join(lines))
        elif kind == "huge":  # a field made huge (over the fuzz limit of one record)
            data[at:at] = bytes([args[0]]) * args[1]
    return bytes(data)


def nested_json(resource_type: str, depth: int, *, inside: str = "entry") -> bytes:
    """One NDJSON line: a `resource_type` whose `inside` holds `depth` nested arrays and objects."""
    core = '[{"a":' * depth + "1" + "}]" * depth
    return f'{{"resourceType":"{resource_type}","{inside}":{core}}}\n'.encode()
