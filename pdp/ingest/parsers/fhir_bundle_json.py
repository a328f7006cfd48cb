"""FHIR R4 ``Bundle`` JSON files as servers and generators send them: one Bundle per file.

Why a format of its own: a FHIR server's ``$everything`` or search, a document, or a
synthetic-patient generator writes one Bundle per file — pretty-printed or not, several MB,
of any ``Bundle.type`` (transaction, batch, collection, searchset, document...) — with
entries that point at each other by ``fullUrl`` (``urn:uuid:...``) or by relative
``Type/id`` references. Such a file is read whole (a JSON document cannot be streamed by
line), its entries indexed by ``fullUrl`` and ``Type/id``, then read one entry at a time
(:mod:`pdp.ingest.parsers.fhir_entries`): one record or one quarantine row per resource,
so one bad entry costs that entry only; an entry of a type the platform does not read is
counted as skipped (per type), neither a record nor a quarantine row. A file that is not JSON,
not a Bundle, or whose Bundle elements (outside its entries) are not valid FHIR is one
file-level row. :func:`bundle_outcomes` is also how ``fhir_bundle_ndjson`` reads each of its
lines (one Bundle a line): one reading of a Bundle for both formats.

Measured (``pdp bench fhir``: 40 generator-style bundles, 18 016 resources, 24.8 MB pretty-printed /
15.7 MB compact, on a shared 2-core machine): 7.2 MB/s of the files as sent (4.5 MB/s of compact
JSON), ~5 200 resources/s per CPU-second through parse and edge, every read resource validated;
``fhir_bundle_ndjson`` on the same bundles, when it still validated each line's Bundle whole:
3.5 MB/s, ~4 000 resources/s (it now reads them as this format does). The R4B
models' validation is about three quarters of the time (per resource it is faster than one
whole-Bundle validation, and it is what lets one bad entry cost that entry only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, BinaryIO

from pdp.ingest.model import IdentityFields, ParseOutcome, Quarantined
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.parsers.fhir_entries import checked_identity, entry_outcome, raw_of, validated
from pdp.ingest.parsers.fhir_ndjson import PRODUCES, FhirOptions, ResourceIndex
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.validate import Invalid

__all__ = ["PRODUCES", "BundleReferences", "bundle_outcomes", "parse_fhir_bundle_json"]


@parser("fhir_bundle_json", options=FhirOptions, produces=PRODUCES, whole_file=True)
def parse_fhir_bundle_json(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """One FHIR R4 Bundle per JSON file, any type: one record per resource, references resolved between entries."""
    opts: FhirOptions = ctx.spec.parser_options  # type: ignore[assignment]
    try:
        bundle = json.loads(stream.read())
    except UnicodeDecodeError:
        yield ctx.quarantine(0, ReasonCode.ENCODING_INVALID, "file: bytes not in UTF-8 (JSON text)")
        return
    except (ValueError, RecursionError):
        yield ctx.quarantine(0, ReasonCode.FHIR_JSON_INVALID, "file: not a JSON document")
        return
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        yield ctx.quarantine(0, ReasonCode.FHIR_VALIDATION, "file: not a FHIR Bundle (resourceType)")
        return
    yield from bundle_outcomes(bundle, ctx, opts)


def bundle_outcomes(
    bundle: dict[str, Any], ctx: FileContext, opts: FhirOptions, *, line: int | None = None, raw: bytes = b""
) -> Iterator[ParseOutcome]:
    """One record or one quarantine row per entry of a Bundle (none for a skipped type, counted by
    :func:`~pdp.ingest.parsers.fhir_entries.entry_outcome`), references resolved among its entries.

    The Bundle's own elements (all but its entries) are validated first: a fault there is one row
    for the whole Bundle, and nothing of it is read. Where rows are: a Bundle file (`line` None)
    puts entry ``i`` at position ``i + 1`` and its own faults at position 0 (the file); a Bundle
    NDJSON line puts every row at `line`, its own faults with the line's bytes `raw`, and names
    ``Bundle.entry[i]`` in an entry's message (several entries share the line's position).
    """
    entries = bundle.get("entry") or []
    try:
        if not isinstance(entries, list):
            raise Invalid(ReasonCode.FHIR_VALIDATION, "Bundle.entry: not a list")
        validated({key: value for key, value in bundle.items() if key != "entry"})
    except Invalid as fault:
        yield ctx.quarantine(line or 0, fault.reason, fault.message, raw)
        return
    refs = BundleReferences(bundle)
    for index, entry in enumerate(entries):
        position = index + 1 if line is None else line
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            method = ((entry.get("request") or {}) if isinstance(entry, dict) else {}).get("method")
            if method != "DELETE":  # a transaction's delete carries no resource: nothing to read
                yield ctx.quarantine(position, ReasonCode.FHIR_VALIDATION, f"Bundle.entry[{index}]: no resource",
                                     raw_of(entry) if isinstance(entry, dict) else b"")
            continue
        outcome = entry_outcome(resource, position, raw_of(resource), ctx, opts, refs)
        if isinstance(outcome, Quarantined) and line is not None:
            outcome = replace(outcome, message=f"Bundle.entry[{index}] {outcome.message}")
        if outcome is not None:
            yield outcome


class BundleReferences:
    """References resolved among one bundle's entries (``fullUrl``, ``Type/id``, absolute URLs),
    each Patient validated and keyed once for all the resources about it."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self._index = ResourceIndex(bundle)
        self._patients: dict[int, IdentityFields | Invalid] = {}
        self._valid: set[int] = set()  # ids of entries validated (alive as long as the bundle)

    def resolve(self, reference: dict[str, Any] | None) -> dict[str, Any] | None:
        if not isinstance(reference, dict):
            return None
        text = reference.get("reference")
        if not isinstance(text, str) or not text:
            return None
        found = self._index.by_ref.get(text)
        if found is None and "/" in text and not text.startswith("urn:"):
            parts = text.split("/_history/")[0].rstrip("/").split("/")
            found = self._index.by_ref.get("/".join(parts[-2:]))
        return found

    def validate_once(self, resource: dict[str, Any]) -> None:
        if id(resource) not in self._valid:
            validated(resource)
            self._valid.add(id(resource))

    def patient(self, reference: dict[str, Any] | None, ctx: FileContext, opts: FhirOptions) -> IdentityFields:
        target = self.resolve(reference)
        if target is None or target.get("resourceType") != "Patient":
            raise Invalid(ReasonCode.IDENTITY_MISSING, "subject: no Patient entry of the bundle resolved")
        known = self._patients.get(id(target))
        if known is None:
            try:
                self.validate_once(target)
                known = checked_identity(target, self, ctx, opts)
            except Invalid as fault:
                known = fault
            self._patients[id(target)] = known
        if isinstance(known, Invalid):
            raise Invalid(known.reason, f"subject {known.message}")
        return known
