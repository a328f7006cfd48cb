"""FHIR Bulk Data Access exports (``$export``): NDJSON, one resource a line, one file per resource type.

Why a format of its own: a server's bulk export writes ``Patient.ndjson``,
``Condition.ndjson``, ``Observation.ndjson``... in one directory, and a resource points to
its patient by ``Patient/<id>`` in *another* file. Each file is streamed line by line (one
resource in memory at a time, however large the file) and each line is one record or one
quarantine row (:mod:`pdp.ingest.parsers.fhir_entries`). References across files resolve
through an index of the export directory built once per directory and run (the same for
every file of the export): the Patients of ``patient_files`` kept as their checked identity
(or their fault), never as resources, and the resources of ``reference_files`` (Medication,
Practitioner: small) by ``Type/id``. A Condition whose Patient is absent from the export is
IDENTITY_MISSING; one whose Patient is invalid gets that Patient's reason.

List in the spec's ``files`` the resource files the platform reads (Patient, Encounter,
Condition, Observation, MedicationRequest, MedicationStatement, Procedure) and in
``companions`` the files only read through references (Medication, Practitioner); a line of
another type (Claim, ExplanationOfBenefit...) is skipped and counted per type
(``Counts.skipped_resources``), neither a record nor a quarantine row.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import Field

from pdp.ingest.encoding import detect_encoding, iter_lines
from pdp.ingest.model import IdentityFields, ParseOutcome
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.parsers.fhir_bundle_json import PRODUCES
from pdp.ingest.parsers.fhir_entries import REFERENCED_TYPES, checked_identity, entry_outcome, validated
from pdp.ingest.parsers.fhir_ndjson import FhirOptions
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.split import split_lines
from pdp.ingest.validate import Invalid

__all__ = ["ExportReferences", "FhirBulkOptions", "parse_fhir_bulk_ndjson"]


class FhirBulkOptions(FhirOptions):
    """Options of ``fhir_bulk_ndjson``: where, beside the file read, the export's Patients and referenced
    resources are (globs in the file's own directory)."""

    # servers name the files Patient.ndjson, Patient.2.ndjson or 1.Patient.ndjson
    patient_files: list[str] = Field(default_factory=lambda: ["Patient*.ndjson", "*.Patient.ndjson"], min_length=1)
    reference_files: list[str] = Field(
        default_factory=lambda: ["Medication*.ndjson", "*.Medication.ndjson", "Practitioner*.ndjson",
                                 "*.Practitioner.ndjson"]
    )


@parser("fhir_bulk_ndjson", options=FhirBulkOptions, produces=PRODUCES, split=split_lines)
def parse_fhir_bulk_ndjson(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """FHIR Bulk Data ($export) NDJSON: one resource a line, one file per type, references resolved across files."""
    opts: FhirBulkOptions = ctx.spec.parser_options  # type: ignore[assignment]
    refs = _LazyExport(ctx, opts)
    encoding = ctx.file_encoding(stream)
    for position, raw, text in iter_lines(stream, encoding):
        if text is None:
            yield ctx.quarantine(position, ReasonCode.ENCODING_INVALID, "line: bytes not in the file's encoding", raw)
            continue
        if not text.strip():
            continue
        try:
            resource = json.loads(text)
        except (ValueError, RecursionError):
            yield ctx.quarantine(position, ReasonCode.FHIR_JSON_INVALID, "line is not valid JSON", raw)
            continue
        if not isinstance(resource, dict):
            yield ctx.quarantine(position, ReasonCode.FHIR_JSON_INVALID, "line is not a JSON object", raw)
            continue
        outcome = entry_outcome(resource, position, raw, ctx, opts, refs)
        if outcome is not None:
            yield outcome


def _key(reference: dict[str, Any] | None) -> str | None:
    """``Type/id`` of a relative or absolute reference (history versions dropped)."""
    if not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    if not isinstance(text, str) or "/" not in text:
        return None
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    return "/".join(parts[-2:])


class ExportReferences:
    """One export directory's Patients (checked identities) and referenced resources, by ``Type/id``."""

    def __init__(self, directory: Path, ctx: FileContext, opts: FhirBulkOptions) -> None:
        self.resources: dict[str, dict[str, Any]] = {}
        self.patients: dict[str, IdentityFields | Invalid] = {}
        self._valid: set[str] = set()  # keys of referenced resources validated
        for resource in _resources(directory, opts.reference_files, ctx):
            if resource.get("id"):
                self.resources[f"{resource.get('resourceType')}/{resource['id']}"] = resource
        for resource in _resources(directory, opts.patient_files, ctx):
            if resource.get("resourceType") != "Patient" or not resource.get("id"):
                continue
            try:
                validated(resource)
                known: IdentityFields | Invalid = checked_identity(resource, self, ctx, opts)
            except Invalid as fault:
                known = fault
            except Exception as exc:  # an extraction bug costs this Patient's resources only
                known = Invalid(ReasonCode.PARSER_ERROR, f"Patient: extraction raised {type(exc).__name__}")
            self.patients[resource["id"]] = known

    def resolve(self, reference: dict[str, Any] | None) -> dict[str, Any] | None:
        key = _key(reference)
        return self.resources.get(key) if key else None

    def validate_once(self, resource: dict[str, Any]) -> None:
        """Validated once if it is one of the export's referenced resources; every time otherwise (a line)."""
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if self.resources.get(key) is not resource:
            validated(resource)
        elif key not in self._valid:
            validated(resource)
            self._valid.add(key)

    def patient(self, reference: dict[str, Any] | None, ctx: FileContext, opts: FhirOptions) -> IdentityFields:
        key = _key(reference)
        known = self.patients.get(key[len("Patient/"):]) if key and key.startswith("Patient/") else None
        if known is None:
            raise Invalid(ReasonCode.IDENTITY_MISSING, "subject: no Patient of the export resolved")
        if isinstance(known, Invalid):
            raise Invalid(known.reason, f"subject {known.message}")
        return known


def _resources(directory: Path, patterns: list[str], ctx: FileContext) -> Iterator[dict[str, Any]]:
    """Every JSON object of the matching files, streamed (bad lines are quarantined where they are parsed)."""
    paths = sorted({p for pattern in patterns for p in directory.glob(pattern) if p.is_file()})
    for path in paths:
        with path.open("rb") as stream:
            encoding = detect_encoding(stream, ctx.spec.encoding, latin1_fallback=ctx.spec.latin1_fallback)
            for _, _, text in iter_lines(stream, encoding):
                if not text or not text.strip():
                    continue
                try:
                    resource = json.loads(text)
                except (ValueError, RecursionError):
                    continue
                if isinstance(resource, dict):
                    yield resource


_EXPORTS: OrderedDict[tuple[Any, ...], ExportReferences] = OrderedDict()
_EXPORTS_KEPT = 2  # an export's index is reused by its other files; two directories at most in memory


class _LazyExport:
    """The export index, built only when a resource needs it (a Patient file does not), shared by the
    files of one export directory (same spec, same run day, same Patient and reference files)."""

    def __init__(self, ctx: FileContext, opts: FhirBulkOptions) -> None:
        self._ctx, self._opts = ctx, opts
        self._index: ExportReferences | None = None

    def _export(self) -> ExportReferences:
        if self._index is None:
            root = self._ctx.root or Path(".")
            directory = (root / self._ctx.file).parent
            files = sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns)
                for pattern in (*self._opts.patient_files, *self._opts.reference_files)
                for p in directory.glob(pattern) if p.is_file()
            )
            key = (self._ctx.spec.name, self._ctx.spec.version, str(directory.resolve()), self._ctx.today, tuple(files))
            index = _EXPORTS.get(key)
            if index is None:
                index = ExportReferences(directory, self._ctx, self._opts)
                _EXPORTS[key] = index
                while len(_EXPORTS) > _EXPORTS_KEPT:
                    _EXPORTS.popitem(last=False)
            _EXPORTS.move_to_end(key)
            self._index = index
        return self._index

    def resolve(self, reference: dict[str, Any] | None) -> dict[str, Any] | None:
        return self._export().resolve(reference)

    def patient(self, reference: dict[str, Any] | None, ctx: FileContext, opts: FhirOptions) -> IdentityFields:
        return self._export().patient(reference, ctx, opts)

    def validate_once(self, resource: dict[str, Any]) -> None:
        if self._index is None and resource.get("resourceType") not in REFERENCED_TYPES:
            validated(resource)  # a line of the file read: no need to build the export's index for it
        else:
            self._export().validate_once(resource)
