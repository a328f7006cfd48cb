"""Parsers by format name; see :mod:`pdp.ingest.parsers.base` for the registry and the contract.

Built-in formats: ``delimited`` (generic, spec-mapped), ``fixed_width`` (spec-mapped),
``hl7v2_oru`` (HL7 v2 ORU^R01 batches), ``fhir_bundle_ndjson`` (FHIR R4 Bundles, one a line),
``fhir_bundle_json`` (a FHIR R4 Bundle a file), ``fhir_bulk_ndjson`` (FHIR Bulk Data exports: one
resource a line) — the three read resource by resource — ``fhir_questionnaire_response_ndjson``
(FHIR R4 QuestionnaireResponses, PREM / PROM, one a line) and ``report_index`` (free-text reports
through their index).
"""

from __future__ import annotations

from pdp.ingest.parsers.base import FileContext, ParserInfo, get_parser, parser, parser_names

__all__ = ["FileContext", "ParserInfo", "get_parser", "parser", "parser_names"]
