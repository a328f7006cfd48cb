"""Size limits of the ingest edge: how large one record, one JSON document or one whole file may be.

Why limits: the edge receives files nobody here wrote. Without a bound, one line of 2 GB
without a newline, a JSON document nested a million levels deep or an HL7 message with a
million OBX is read whole into memory (or overflows the interpreter's stack), and one
hostile file stops the batch. With a bound, it is one quarantine row with a clear reason
(RECORD_TOO_LARGE, JSON_TOO_DEEP, FILE_TOO_LARGE) and the rest of the file parses. A record
within the byte limit but made only of separators (``;;;;``, ``^^^^``) is bounded too
(``max_record_fields``): parsers make one object per piece.

Where: one model, :class:`Limits`, the ``limits`` key of a source spec (unknown keys are
errors like everywhere in a spec); the defaults below are far beyond any real export, so a
spec sets them only to be stricter::

    limits:
      max_record_bytes: 1048576     # a line (CSV, fixed width, NDJSON) or an HL7 message
      max_json_depth: 64            # nesting of one JSON document (FHIR)
      max_file_bytes: 104857600     # a file a format must read whole
      max_document_bytes: 2000000   # a report's document (read whole, de-identified)
      max_record_fields: 100000     # separators in one record (CSV row, HL7 message)

Messages name the limit and the sizes found, never a value of the record.

Measured: the per-line bound costs nothing visible (lines are read with ``readline(limit)``);
the JSON depth check walks a document only when it has more brackets than the limit, which
every GP bundle has. On 400 bundles of a 1 M-person territory's GP file (11.6 KiB each, ad hoc,
2026-12-07, the machine busy with an ingest): 73-81 µs a bundle, one level at a time; the
earlier walk (a stack of (node, depth) pairs, ``isinstance`` against a union) took 204-223 µs,
about 4 % of a GP parse worker's time in a sampled profile of a 1 M-person ingest. Its
decoding (``json.loads``) takes 117 µs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Limits", "json_too_deep"]

MiB = 1 << 20


class Limits(BaseModel):
    """Bounds on what one source's files may hold (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_record_bytes: int = Field(default=16 * MiB, ge=64)
    max_json_depth: int = Field(default=100, ge=8, le=500)  # Python's own JSON decoder gives up near 1000
    max_file_bytes: int = Field(default=1024 * MiB, ge=64)
    max_document_bytes: int = Field(default=2_000_000, ge=64)  # a report's text, read whole and de-identified
    # separators in one record (CSV delimiters, HL7 field/component/repetition separators): each makes
    # an object, and python-hl7's are ~400 bytes (60 KB of "^" held 26 MiB); real records have hundreds
    max_record_fields: int = Field(default=100_000, ge=100)


def json_too_deep(text: str, value: Any, limit: int) -> bool:
    """True when the decoded JSON `value` (``json.loads(text)``) nests deeper than `limit`.

    Cheap for the common case: a document with at most `limit` brackets cannot be deeper.
    Otherwise the containers are walked one level at a time. `value` is what ``json.loads``
    returns: its objects and arrays are exactly ``dict`` and ``list`` (the exact type tests
    are a third of the walk's cost cheaper than ``isinstance``).
    """
    if text.count("{") + text.count("[") <= limit:
        return False
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 1
    while level:
        if depth > limit:
            return True
        below = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1
    return False
