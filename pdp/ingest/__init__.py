"""Ingest: the source registry, one parser per format, quarantine with reasons, reconciliation.

Public surface (the rest is internal)::

    from pdp.ingest import load_registry, parse_directory

    run = parse_directory(root, load_registry())
    for outcome in run:               # SourceRecord (identity + events) or Quarantined (reason, no values)
        ...
    run.counts, run.held_back, run.unmatched

Names load lazily: importing the package does not import the parsers' libraries (python-hl7,
fhir.resources) until a spec or a parser is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.ingest.model import Event, IdentityFields, ParseOutcome, Quarantined, SourceRecord
    from pdp.ingest.parse import Counts, DirectoryParse, Tally, parse_directory, parse_file
    from pdp.ingest.parsers.base import FileContext, parser
    from pdp.ingest.parsers.fhir_models import fhir_error_location
    from pdp.ingest.reasons import ReasonCode
    from pdp.ingest.registry import (
        Discovery,
        Registry,
        SpecError,
        discover,
        load_registry,
        sources_list,
        sources_validate,
        validate_spec,
    )
    from pdp.ingest.spec import SourceSpec

_HOME = {
    "Event": "model",
    "IdentityFields": "model",
    "ParseOutcome": "model",
    "Quarantined": "model",
    "SourceRecord": "model",
    "ReasonCode": "reasons",
    "SourceSpec": "spec",
    "FileContext": "parsers.base",
    "parser": "parsers.base",
    "fhir_error_location": "parsers.fhir_models",
    "Discovery": "registry",
    "Registry": "registry",
    "SpecError": "registry",
    "discover": "registry",
    "load_registry": "registry",
    "sources_list": "registry",
    "sources_validate": "registry",
    "validate_spec": "registry",
    "Counts": "parse",
    "DirectoryParse": "parse",
    "Tally": "parse",
    "parse_directory": "parse",
    "parse_file": "parse",
}
__all__ = [
    "Counts",
    "DirectoryParse",
    "Discovery",
    "Event",
    "FileContext",
    "IdentityFields",
    "ParseOutcome",
    "Quarantined",
    "ReasonCode",
    "Registry",
    "SourceRecord",
    "SourceSpec",
    "SpecError",
    "Tally",
    "discover",
    "fhir_error_location",
    "load_registry",
    "parse_directory",
    "parse_file",
    "parser",
    "sources_list",
    "sources_validate",
    "validate_spec",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
