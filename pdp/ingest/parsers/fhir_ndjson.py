"""FHIR R4 Bundles as NDJSON (one Bundle a line, GP software exports), and the helpers every FHIR parser shares.

Why one resource at a time: a GP's line holds a patient's whole file at that GP (years of
visits, problems, prescriptions), and one bad code, impossible date or invalid resource must
cost that resource only, never the patient's file. So a line is read as
:mod:`pdp.ingest.parsers.fhir_bundle_json` reads a Bundle file — the same code
(:func:`~pdp.ingest.parsers.fhir_bundle_json.bundle_outcomes`, then
:func:`~pdp.ingest.parsers.fhir_entries.entry_outcome` per entry): one record or one quarantine
row per resource, every row at the line's position, a quarantined entry's message naming its
``Bundle.entry[i]`` (element paths and error types, never a value). Resources of the types the
platform does not read (Claim, ExplanationOfBenefit, CarePlan...) are neither: they are counted
per type as *skipped* (``Counts.skipped_resources``, printed by ``pdp ingest``).

What stays one row for the whole line: a line that is not JSON (FHIR_JSON_INVALID), not a JSON
object or not a Bundle (FHIR_VALIDATION), bytes not in the file's encoding (ENCODING_INVALID),
over the spec's ``limits.max_record_bytes`` (RECORD_TOO_LARGE, never held whole), nested deeper
than ``limits.max_json_depth`` (JSON_TOO_DEEP, checked before any validation: deep nesting would
otherwise exhaust the interpreter's stack and lose the file), a Bundle whose own elements (all
but its entries) are not valid FHIR, and a Bundle without any entry (FIELD_MISSING).

Record ids are ``Type/id`` of the resource and visit keys ``Encounter/id``: sender-local, so the
edge lands only their keyed hashes, as for every source.

Shared by every FHIR parser: the spec options of FR Core identity (:class:`FhirIdentityOptions`),
the NDJSON line loop (:func:`fhir_lines`, :func:`fhir_resources`), the value-free reading of a
validation error, and the reading of a FR Core Patient (:func:`patient_identity`).

Measured (``pdp bench fhir``: 40 generator-style bundles, 18 016 resources, 15.7 MB one a line,
on a shared 2-core machine): 4.6 MB/s, ~5 300 resources/s per CPU-second through parse and edge,
every read resource validated (``fhir_bundle_json`` on the same bundles: ~5 600 resources/s);
when this format still validated each line's Bundle whole: 3.5 MB/s, ~4 000 resources/s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pdp.ingest.encoding import Oversize, iter_lines
from pdp.ingest.limits import json_too_deep
from pdp.ingest.model import IdentityFields, ParseOutcome, Quarantined, SourceRecord
from pdp.ingest.parsers.base import FileContext, parser
from pdp.ingest.parsers.fhir_models import fhir_error_location
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.split import split_lines
from pdp.ingest.validate import Checks, Invalid

__all__ = [
    "PRODUCES",
    "FhirIdentityOptions",
    "FhirOptions",
    "ResourceIndex",
    "checked_patient",
    "contained_subject",
    "fhir_lines",
    "fhir_resources",
    "parse_fhir_ndjson",
    "patient_identity",
    "record_or_quarantine",
]

_DATE_ERRORS = frozenset(  # pydantic's error types of an impossible date (2023-02-30), in a date or a dateTime
    {"date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact", "datetime_parsing",
     "datetime_from_date_parsing", "date_type"}
)
_Options = TypeVar("_Options", bound=BaseModel)
_BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
_NOT_IDENTITY_NAMES = frozenset({"nickname", "anonymous"})  # never a birth or used name
_FR_CORE_INSEE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code"


class FhirIdentityOptions(BaseModel):
    """Where a FHIR Patient carries identity (FR Core): shared by every FHIR parser."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nir_systems: list[str] = Field(default_factory=lambda: ["urn:oid:1.2.250.1.213.1.4.8"])
    rpps_systems: list[str] = Field(default_factory=lambda: ["http://rpps.fr"])
    idnps_systems: list[str] = Field(default_factory=lambda: ["urn:oid:1.2.250.1.71.4.2.1"])  # "8" + RPPS
    insee_code_extensions: list[str] = Field(default_factory=lambda: [_FR_CORE_INSEE])
    birth_place_extensions: list[str] = Field(
        default_factory=lambda: ["http://hl7.org/fhir/StructureDefinition/patient-birthPlace"]
    )


class FhirOptions(FhirIdentityOptions):
    """Options of the ``fhir_bundle_ndjson`` parser: identifier systems and coding systems."""

    coding_systems: dict[str, str] = Field(min_length=1)  # coding system URL → code system name

    def code_systems_used(self) -> set[str]:
        return set(self.coding_systems.values())


PRODUCES = ("condition", "drug", "measurement", "observation", "procedure", "visit")
"""Event domains of the FHIR parsers that read clinical resources (:mod:`pdp.ingest.parsers.fhir_entries`)."""


@parser("fhir_bundle_ndjson", options=FhirOptions, produces=PRODUCES, split=split_lines)
def parse_fhir_ndjson(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """NDJSON of FHIR R4 Bundles, one a line: one record per resource, references resolved within its line."""
    # fhir_bundle_json imports this module's helpers: its bundle reading is imported when a file is read
    from pdp.ingest.parsers.fhir_bundle_json import bundle_outcomes

    opts: FhirOptions = ctx.spec.parser_options  # type: ignore[assignment]
    for item in fhir_lines(stream, ctx, "Bundle"):
        if isinstance(item, Quarantined):
            yield item
            continue
        position, raw, bundle = item
        if not bundle.get("entry"):
            yield ctx.quarantine(position, ReasonCode.FIELD_MISSING, "Bundle.entry: none (no resource to read)", raw)
            continue
        yield from bundle_outcomes(bundle, ctx, opts, line=position, raw=raw)


def fhir_lines(
    stream: BinaryIO, ctx: FileContext, resource_type: str
) -> Iterator[Quarantined | tuple[int, bytes, dict[str, Any]]]:
    """The FHIR NDJSON line loop shared by the FHIR parsers: (position, raw, JSON object) per line that
    is a JSON object of `resource_type`, not yet validated as FHIR.

    Anything else is a quarantine row for the whole line (RECORD_TOO_LARGE, ENCODING_INVALID,
    JSON_TOO_DEEP, FHIR_JSON_INVALID or FHIR_VALIDATION) whose message never quotes a value.
    """
    encoding = ctx.file_encoding(stream)
    limits = ctx.spec.limits
    for position, raw, text in iter_lines(stream, encoding, max_bytes=limits.max_record_bytes):
        if isinstance(text, Oversize):
            yield ctx.quarantine(position, ReasonCode.RECORD_TOO_LARGE, text.message, raw)
            continue
        if text is None:
            yield ctx.quarantine(position, ReasonCode.ENCODING_INVALID, "line: bytes not in the file's encoding", raw)
            continue
        if not text.strip():
            continue
        depth = f"JSON nested deeper than limits.max_json_depth ({limits.max_json_depth})"
        try:
            resource = json.loads(text)
        except RecursionError:  # deeper than the decoder's own bound
            yield ctx.quarantine(position, ReasonCode.JSON_TOO_DEEP, depth, raw)
            continue
        except ValueError:
            yield ctx.quarantine(position, ReasonCode.FHIR_JSON_INVALID, "line is not valid JSON", raw)
            continue
        if json_too_deep(text, resource, limits.max_json_depth):
            yield ctx.quarantine(position, ReasonCode.JSON_TOO_DEEP, depth, raw)
            continue
        if not isinstance(resource, dict):
            yield ctx.quarantine(position, ReasonCode.FHIR_JSON_INVALID, "line is not a JSON object", raw)
            continue
        if resource.get("resourceType") != resource_type:
            yield ctx.quarantine(position, ReasonCode.FHIR_VALIDATION, f"resourceType is not {resource_type}", raw)
            continue
        yield position, raw, resource


def fhir_resources(
    stream: BinaryIO, ctx: FileContext, resource_type: str, model: type[BaseModel]
) -> Iterator[Quarantined | tuple[int, bytes, dict[str, Any]]]:
    """:func:`fhir_lines`, each resource validated whole by the R4B `model`: for formats whose line is
    one record (a QuestionnaireResponse). A validation failure is FHIR_VALIDATION or DATE_INVALID,
    the message naming element paths and error types, never a value.
    """
    for item in fhir_lines(stream, ctx, resource_type):
        if isinstance(item, Quarantined):
            yield item
            continue
        position, raw, resource = item
        try:
            model.model_validate(resource)
        except ValidationError as exc:
            yield ctx.quarantine(position, *_validation_fault(exc, resource_type), raw)
            continue
        except (ValueError, TypeError, LookupError) as exc:  # fhir.resources' own errors (unknown resource type...)
            yield ctx.quarantine(position, ReasonCode.FHIR_VALIDATION, f"{resource_type}: {type(exc).__name__}", raw)
            continue
        yield position, raw, resource


def _validation_fault(exc: ValidationError, root: str = "Bundle") -> tuple[ReasonCode, str]:
    """Reason and value-free message: element paths and pydantic error types only."""
    errors = exc.errors()
    reason = ReasonCode.DATE_INVALID if all(e["type"] in _DATE_ERRORS for e in errors) else ReasonCode.FHIR_VALIDATION
    first = errors[0]
    path = fhir_error_location(root, first)
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return reason, f"{path}: {first['type']}{more}"


class ResourceIndex:
    """Resources of one bundle (or one resource's contained resources), resolvable by reference."""

    def __init__(self, bundle: dict[str, Any], *, contained: bool = False) -> None:
        self.entries: list[tuple[int, dict[str, Any]]] = []
        self.by_ref: dict[str, dict[str, Any]] = {}
        for index, entry in enumerate(bundle.get("entry") or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue  # not a resource: the entry's own row says so
            self.entries.append((index, resource))
            if isinstance(entry.get("fullUrl"), str) and entry["fullUrl"]:
                self.by_ref[entry["fullUrl"]] = resource
            if resource.get("id"):
                self.by_ref[f"{resource.get('resourceType')}/{resource['id']}"] = resource
                if contained:
                    self.by_ref[f"#{resource['id']}"] = resource

    def resolve(self, reference: dict[str, Any] | None) -> dict[str, Any] | None:
        if not isinstance(reference, dict):
            return None
        return self.by_ref.get(reference.get("reference", ""))


def record_or_quarantine(
    build: Callable[[dict[str, Any], int, bytes, FileContext, _Options], SourceRecord],
    resource: dict[str, Any], position: int, raw: bytes, ctx: FileContext, opts: _Options,
) -> ParseOutcome:
    """The record ``build`` makes of one resource, or its fault as a quarantine row: the one rule
    of every FHIR parser.

    A validation fault (:class:`~pdp.ingest.validate.Invalid`) keeps its reason; any other
    exception is an extraction bug that costs this resource only (PARSER_ERROR, named by the
    exception's type: its text may quote a value), never the rest of the file.
    """
    try:
        return build(resource, position, raw, ctx, opts)
    except Invalid as fault:
        return ctx.quarantine(position, fault.reason, fault.message, raw)
    except Exception as exc:
        return ctx.quarantine(position, ReasonCode.PARSER_ERROR, f"extraction raised {type(exc).__name__}", raw)


def contained_subject(resource: dict[str, Any]) -> tuple[dict[str, Any] | None, ResourceIndex]:
    """The resource's ``subject`` resolved among its ``contained`` resources (``#id``), and their index
    (the Patient's own references, e.g. its GP, resolve in it too)."""
    contained = ResourceIndex({"entry": [{"resource": r} for r in resource.get("contained") or []]}, contained=True)
    return contained.resolve(resource.get("subject")), contained


def checked_patient(
    patient: dict[str, Any] | None, resources: ResourceIndex, ctx: FileContext, opts: FhirIdentityOptions,
    *, missing: str,
) -> IdentityFields:
    """The checked identity of the FR Core Patient a resource is about; IDENTITY_MISSING (``missing``:
    its value-free message) when there is no Patient. One reading for every FHIR parser."""
    if patient is None or patient.get("resourceType") != "Patient":
        raise Invalid(ReasonCode.IDENTITY_MISSING, missing)
    return ctx.checks.identity(patient_identity(patient, resources, opts), "%Y-%m-%d", where="Patient")


def patient_identity(
    patient: dict[str, Any], resources: ResourceIndex, opts: FhirIdentityOptions
) -> dict[str, str | None]:
    """A FR Core Patient's identity texts for ``Checks.identity``: one reading for every FHIR source."""
    texts: dict[str, str | None] = {}
    for identifier in patient.get("identifier") or []:
        if identifier.get("system") in opts.nir_systems:
            texts["nir"] = (identifier.get("value") or "").strip()
    names = [n for n in patient.get("name") or [] if n.get("use") not in _NOT_IDENTITY_NAMES]
    by_use = {n.get("use"): n for n in reversed(names)}
    birth = by_use.get("maiden") or by_use.get("official") or by_use.get("usual") or (names[0] if names else {})
    texts["birth_name"] = (birth.get("family") or "").strip()
    given_in = birth if birth.get("given") else by_use.get("official") or next((n for n in names if n.get("given")), {})
    texts["first_names"] = ", ".join(g.strip() for g in given_in.get("given") or [] if g.strip())
    used = by_use.get("usual") or (by_use.get("official") if birth is by_use.get("maiden") else None)
    if used is not None and used is not birth:
        texts["used_name"] = (used.get("family") or "").strip()
    birth_date = patient.get("birthDate") or _birth_time(patient)
    texts["birth_date"] = birth_date[:10] if isinstance(birth_date, str) else birth_date  # a time is not identity
    texts["sex"] = {"male": "M", "female": "F"}.get(patient.get("gender", ""), patient.get("gender"))
    addresses = [a for a in patient.get("address") or [] if a.get("use") != "old"]
    home = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else None)
    if home:
        texts["address_line"] = " ".join(line.strip() for line in home.get("line") or [] if line.strip())
        texts["postcode"] = home.get("postalCode")
        texts["commune_code"] = _extension_code(home, opts.insee_code_extensions)
    for extension in patient.get("extension") or []:
        if extension.get("url") in opts.birth_place_extensions:
            texts["birth_place"] = _extension_code(extension.get("valueAddress") or {}, opts.insee_code_extensions)
    for telecom in patient.get("telecom") or []:
        system = telecom.get("system")
        if system in ("phone", "email") and system not in texts:
            texts[system] = telecom.get("value")
    for reference in patient.get("generalPractitioner") or []:
        rpps = _practitioner_rpps(resources.resolve(reference), opts)
        if rpps:
            texts["gp_rpps"] = rpps
            break
    return texts


def _birth_time(patient: dict[str, Any]) -> str | None:
    """The ``patient-birthTime`` extension's dateTime (on ``_birthDate`` as FHIR puts it, or on the Patient)."""
    for extension in [*((patient.get("_birthDate") or {}).get("extension") or []), *(patient.get("extension") or [])]:
        if extension.get("url") == _BIRTH_TIME and isinstance(extension.get("valueDateTime"), str):
            return extension["valueDateTime"]
    return None


def _extension_code(element: dict[str, Any], urls: list[str]) -> str | None:
    for extension in element.get("extension") or []:
        if extension.get("url") in urls:
            return (extension.get("valueCoding") or {}).get("code") or extension.get("valueCode")
    return None


def _practitioner_rpps(practitioner: dict[str, Any] | None, opts: FhirIdentityOptions) -> str | None:
    if not practitioner or practitioner.get("resourceType") != "Practitioner":
        return None
    for identifier in practitioner.get("identifier") or []:
        value = identifier.get("value") or ""
        if identifier.get("system") in opts.rpps_systems and value:
            return value
        if identifier.get("system") in opts.idnps_systems and len(value) == 12 and value[0] == "8":
            return value[1:]
    return None


def _coding(concept: dict[str, Any] | None, where: str, opts: FhirOptions) -> tuple[str, str]:
    """(code system, code) of the first coding in a system the spec maps."""
    for coding in (concept or {}).get("coding") or []:
        system = opts.coding_systems.get(coding.get("system", ""))
        if system is not None and coding.get("code"):
            return system, coding["code"]
    raise Invalid(ReasonCode.CODE_UNKNOWN, f"{where}: no coding in a system the spec maps")


def _day(value: str | None, where: str, checks: Checks) -> Any:
    if not value:
        raise Invalid(ReasonCode.FIELD_MISSING, f"{where}: no date")
    if len(value) < 10:
        raise Invalid(ReasonCode.DATE_INVALID, f"{where}: partial date")
    return checks.date(value[:10], "%Y-%m-%d", where)


def _period_start(resource: dict[str, Any], prefix: str) -> str | None:
    return resource.get(f"{prefix}DateTime") or (resource.get(f"{prefix}Period") or {}).get("start")
