"""Quarantine reason codes: one stable code per way a record or a file can fail.

Why a closed list: the quarantine table, the ingestion log, the tests and the people who fix
senders' exports all key on these codes; a free-text reason could neither be counted nor be
guaranteed free of the record's content. Each code says *what kind* of fault; the message
beside it (written by the validator) says *where* (field names, segment names, counts),
never a value from the record.

File-level codes are quarantined at position 0: they describe the file, not one record.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FILE_LEVEL", "READ_STOPPED", "REASONS", "ReasonCode"]


class ReasonCode(StrEnum):
    """Why the edge refused a record (or a whole file, at position 0)."""

    # files
    FILE_EMPTY = "FILE_EMPTY"
    FILE_NO_RECORDS = "FILE_NO_RECORDS"
    FILE_UNREADABLE = "FILE_UNREADABLE"
    ENCODING_INVALID = "ENCODING_INVALID"
    PARSER_ERROR = "PARSER_ERROR"
    FILE_TOO_LARGE = "FILE_TOO_LARGE"
    # size limits of any record (pdp.ingest.limits)
    RECORD_TOO_LARGE = "RECORD_TOO_LARGE"
    JSON_TOO_DEEP = "JSON_TOO_DEEP"
    # delimited and fixed-width layouts
    HEADER_MISMATCH = "HEADER_MISMATCH"
    EXTRA_COLUMNS = "EXTRA_COLUMNS"
    FIELD_COUNT = "FIELD_COUNT"
    RECORD_LENGTH = "RECORD_LENGTH"
    # HL7 v2
    HL7_TRUNCATED = "HL7_TRUNCATED"
    HL7_SEGMENT_ORDER = "HL7_SEGMENT_ORDER"
    HL7_MESSAGE_TYPE = "HL7_MESSAGE_TYPE"
    HL7_MALFORMED = "HL7_MALFORMED"
    HL7_BATCH_COUNT = "HL7_BATCH_COUNT"
    # FHIR
    FHIR_JSON_INVALID = "FHIR_JSON_INVALID"
    FHIR_VALIDATION = "FHIR_VALIDATION"
    FHIR_NOT_A_FACT = "FHIR_NOT_A_FACT"
    SURVEY_STATUS = "SURVEY_STATUS"
    # content, shared by every parser (pdp.ingest.validate)
    IDENTITY_MISSING = "IDENTITY_MISSING"
    FIELD_MISSING = "FIELD_MISSING"
    NIR_INVALID = "NIR_INVALID"
    DATE_INVALID = "DATE_INVALID"
    DATE_OUT_OF_RANGE = "DATE_OUT_OF_RANGE"
    CODE_UNKNOWN = "CODE_UNKNOWN"
    VALUE_INVALID = "VALUE_INVALID"
    UNIT_UNKNOWN = "UNIT_UNKNOWN"
    DUPLICATE_RECORD = "DUPLICATE_RECORD"
    # governance
    OPPOSED = "OPPOSED"
    # free text
    DOCUMENT_MISSING = "DOCUMENT_MISSING"
    DEID_FAILED = "DEID_FAILED"
    # the lake
    ID_COLLISION = "ID_COLLISION"


REASONS: dict[ReasonCode, str] = {
    ReasonCode.FILE_EMPTY: "the file has no bytes (or only a byte-order mark and blank lines)",
    ReasonCode.FILE_NO_RECORDS: "the file has a header or batch envelope but no record",
    ReasonCode.FILE_UNREADABLE: "the file could not be opened or read",
    ReasonCode.ENCODING_INVALID: "bytes that the file's (or message's declared) encoding cannot decode",
    ReasonCode.PARSER_ERROR: "the parser stopped on an unexpected error; records after this point were not read",
    ReasonCode.FILE_TOO_LARGE: "a file over the spec's limits.max_file_bytes, for a format that reads files whole",
    ReasonCode.RECORD_TOO_LARGE: "a line, a record, an HL7 message or a document larger than the spec's limits",
    ReasonCode.JSON_TOO_DEEP: "a JSON document nested deeper than the spec's limits.max_json_depth",
    ReasonCode.HEADER_MISMATCH: "the header lacks a column the spec requires",
    ReasonCode.EXTRA_COLUMNS: "the header has columns the spec does not declare",
    ReasonCode.FIELD_COUNT: "a row with a different number of fields than the header",
    ReasonCode.RECORD_LENGTH: "a fixed-width line of the wrong length",
    ReasonCode.HL7_TRUNCATED: "an HL7 message cut short: missing required segments or fields",
    ReasonCode.HL7_SEGMENT_ORDER: "HL7 segments out of the ORU^R01 order",
    ReasonCode.HL7_MESSAGE_TYPE: "an HL7 message that is not ORU^R01",
    ReasonCode.HL7_MALFORMED: "an HL7 message the HL7 library cannot parse",
    ReasonCode.HL7_BATCH_COUNT: "the batch trailer's message count disagrees with the messages found",
    ReasonCode.FHIR_JSON_INVALID: "a line that is not a JSON object",
    ReasonCode.FHIR_VALIDATION: "a FHIR resource that fails the R4 model's validation",
    ReasonCode.FHIR_NOT_A_FACT: "a FHIR resource that records no fact: a condition refuted or entered in error, a "
    "resource entered in error, cancelled or not done, an observation without a value (dataAbsentReason)",
    ReasonCode.SURVEY_STATUS: "a questionnaire response not completed or amended (in progress, stopped, in error)",
    ReasonCode.IDENTITY_MISSING: "no birth name or no birth date (a person's record the edge cannot key)",
    ReasonCode.FIELD_MISSING: "a field the spec requires is empty",
    ReasonCode.NIR_INVALID: "a NIR of the wrong shape or with a wrong control key",
    ReasonCode.DATE_INVALID: "a date that cannot be parsed or does not exist (31/02)",
    ReasonCode.DATE_OUT_OF_RANGE: "a date in the future, before the allowed minimum, or an end before its start",
    ReasonCode.CODE_UNKNOWN: "a code that is not valid in its code system, or a code system the spec does not declare",
    ReasonCode.VALUE_INVALID: "a value of the wrong type (not a number, not in the spec's value map)",
    ReasonCode.UNIT_UNKNOWN: "a measurement the rules read, in a unit the platform cannot convert to theirs "
    "(pdp/semantic/units.yml), or without a unit where its concept comes in several: an IFCC HbA1c read as a "
    "percentage would be wrong",
    ReasonCode.DUPLICATE_RECORD: "the same record (same sender id or same bytes) already seen in this batch",
    ReasonCode.OPPOSED: "the person objected (opposition registry): the record is withheld at the edge, never landed",
    ReasonCode.DOCUMENT_MISSING: "an index row whose document is absent, outside the source's documents or not text",
    ReasonCode.DEID_FAILED: "the de-identification of a document failed: nothing of it may land",
    ReasonCode.ID_COLLISION: "an event whose 64-bit silver id another record's event already holds: the record is "
    "in bronze, this event is not in silver (pdp.ingest.silver gives the odds)",
}

FILE_LEVEL: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.FILE_EMPTY,
        ReasonCode.FILE_NO_RECORDS,
        ReasonCode.FILE_UNREADABLE,
        ReasonCode.PARSER_ERROR,
        ReasonCode.FILE_TOO_LARGE,
        ReasonCode.HEADER_MISMATCH,
        ReasonCode.EXTRA_COLUMNS,
        ReasonCode.HL7_BATCH_COUNT,
    }
)
"""Codes that (can) describe a whole file; ENCODING_INVALID and RECORD_TOO_LARGE are file-level only for
an undecodable or oversized header."""

READ_STOPPED: frozenset[ReasonCode] = frozenset({ReasonCode.PARSER_ERROR, ReasonCode.FILE_UNREADABLE})
"""File-level codes (position 0) saying the file was not read to its end: a parser or the edge
raised, or reading failed. Such a file is ``partial`` in the ingestion log (what was read before
the stop lands), never ``complete``, so the next run reads it again (:class:`pdp.ingest.parse.Tally`)."""
