"""The edge's inbox: single resources pushed by an API route, waiting for the next ``pdp ingest``.

Why an inbox and not an ingest per request: the API holds no Spark and must answer in
milliseconds, while the edge's commit (vault, bronze, silver) is a batch. So the route checks
the resource with the very parser the batch will use — the same quarantine reasons, one
definition — and writes it as a one-line NDJSON file under ``<var>/inbox/<folder>/``, laid out
as an ingest root: the source spec's globs match it, and ``pdp ingest`` takes the inbox in
after its own directory. A file is written to a temporary name, then renamed (a reader never
sees half a line), readable by the platform's user only (it is nominative, like any raw source
at the edge, and never leaves it).

Example::

    >>> accepted = accept(b'{"resourceType": "QuestionnaireResponse", ...}', source="questionnaires")  # doctest: +SKIP
    >>> accepted.receipt                                                                              # doctest: +SKIP
    'q-3f0c...'
"""

from __future__ import annotations

import io
import os
import secrets
import string
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pdp.config import Settings, get_settings
from pdp.ingest.model import Quarantined, SourceRecord
from pdp.ingest.parsers.base import FileContext, get_parser
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.registry import load_registry

__all__ = ["Accepted", "InboxError", "Refused", "accept", "inbox_dir", "pending", "remove_ingested"]


class InboxError(ValueError):
    """The named source cannot take a pushed resource (unknown, held back, or its parser does not
    yield one record per resource): a programming or configuration error, not a bad resource.

    Why an exception and not ``assert``: asserts vanish under ``python -O``, and the inbox would
    then write a file the batch cannot read (or fail later with a bare KeyError).
    """


@dataclass(frozen=True, slots=True)
class Accepted:
    """The resource is in the inbox: its receipt (not derived from its content) and what it holds."""

    receipt: str
    file: str  # relative to the inbox
    events: int
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """The resource would be quarantined: the reason code and a value-free message."""

    reason: ReasonCode
    message: str


def inbox_dir(settings: Settings | None = None) -> Path:
    """``<var>/inbox``: an ingest root the next ``pdp ingest`` reads after its own directory."""
    return (settings or get_settings()).var_dir / "inbox"


def pending(settings: Settings | None = None) -> bool:
    """Whether the inbox holds any file (``pdp ingest`` then ingests it too)."""
    root = inbox_dir(settings)
    return root.is_dir() and any(p.is_file() for p in root.rglob("*.ndjson"))


def accept(
    raw: bytes, *, source: str, settings: Settings | None = None, today: date | None = None
) -> Accepted | Refused:
    """Parse one resource (one NDJSON line) with `source`'s parser; write it to the inbox if it would land."""
    if b"\n" in raw or b"\r" in raw:
        return Refused(ReasonCode.FHIR_JSON_INVALID, "the resource must be one line of JSON")
    spec = load_registry().specs.get(source)
    if spec is None:
        raise InboxError(f"inbox: no source named {source!r}")
    if spec.hold_back or spec.format is None:
        raise InboxError(f"inbox: source {source!r} is held back; the edge does not read it")
    folder = spec.files[0].split("/", 1)[0]
    # letters only: a receipt never looks like a phone number or a NIR to the audit log's checks
    receipt = f"{folder[:1]}-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(20))
    rel = f"{folder}/inbox-{receipt}.ndjson"
    ctx = FileContext(spec=spec, file=rel, today=today or date.today())
    outcomes = list(get_parser(spec.format).func(io.BytesIO(raw + b"\n"), ctx))
    if len(outcomes) != 1:
        return Refused(ReasonCode.FILE_NO_RECORDS, "one resource expected")
    outcome = outcomes[0]
    if isinstance(outcome, Quarantined):
        return Refused(outcome.reason_code, outcome.message)
    if not isinstance(outcome, SourceRecord):
        raise InboxError(f"inbox: the {spec.format} parser yielded a {type(outcome).__name__}, not a record")
    path = inbox_dir(settings) / rel
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return Accepted(receipt, rel, len(outcome.events), tuple(sorted({e.code.split("/")[0] for e in outcome.events})))


def remove_ingested(root: Path, files: list[tuple[str, bool]]) -> int:
    """Delete the inbox files an ingest committed (`files`: relative path, balanced); returns how many.

    Why delete: once in the vault (sealed) and the lake (pseudonymised), the nominative copy has
    no further use at the edge; the ingestion log keeps the file's keyed fingerprint. A file whose
    counts do not reconcile stays for the data engineer.
    """
    removed = 0
    for rel, balanced in files:
        path = root / rel
        if balanced and path.is_file():
            path.unlink()
            removed += 1
    return removed
