"""What the fuzzing found, one named test each (its input is kept in tests/fuzz/corpus/<format>/crash-*),
and the hostile inputs the issue names, each against the parser that must survive it.

Found (each raised out of the parser, so ``parse_file`` quarantined the rest of the file as
PARSER_ERROR, or worse):

* a delimited or index header with a bare CR or an open quote: ``csv.Error`` from the header;
* MSH-2 with a repeated separator (``^\\~\\&``): an ``AssertionError`` inside python-hl7;
* an HL7 escape sequence python-hl7 cannot decode: it *logged the whole field* (a name) at ERROR;
* a FHIR line nested deeper than Python's JSON decoder allows: ``RecursionError``;
* HL7 formatting escapes with a count: ``\\.sp3000000000\\`` made python-hl7 build a string of
  three billion line breaks (5.7 GiB for a 600-byte message), ``\\.skx\\`` raised ``ValueError``;
* a 60 KB name in a report index row: the de-identifier compiled a pattern from it for 10 s;
* a report index row whose document path has a NUL byte (``ValueError``) or a too-long name
  (``OSError``, which even turned the whole index into one FILE_UNREADABLE row).
"""

from __future__ import annotations

import pytest
from fuzz_harness import CORPUS, nested_json, run, seed

from pdp.ingest import Quarantined

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")


def _crash(format_name: str, name: str) -> bytes:
    return (CORPUS / format_name / name).read_bytes()


def _reasons(format_name: str, data: bytes) -> list[str]:
    return run(format_name, data).reasons


# --- crashes found -----------------------------------------------------------------------------------


def test_delimited_header_with_a_bare_cr_is_a_header_mismatch_not_a_crash() -> None:
    assert _reasons("delimited", _crash("delimited", "crash-header-bare-cr.csv")) == ["HEADER_MISMATCH"]


def test_report_index_header_with_an_open_quote_is_a_header_mismatch_not_a_crash() -> None:
    assert _reasons("report_index", _crash("report_index", "crash-header-open-quote.csv")) == ["HEADER_MISMATCH"]


def test_hl7_msh2_with_a_repeated_separator_is_malformed_not_an_assertion() -> None:
    assert _reasons("hl7v2_oru", _crash("hl7v2_oru", "crash-repeated-encoding-characters.hl7")) == ["HL7_MALFORMED"]


def test_hl7_escape_that_does_not_decode_logs_no_field_value(caplog: pytest.LogCaptureFixture) -> None:
    """The harness fails on any identity value in a log line; caplog double-checks."""
    with caplog.at_level("DEBUG"):
        result = run("hl7v2_oru", _crash("hl7v2_oru", "crash-escape-logs-field-value.hl7"))
    assert result.reasons == []  # the message lands, its bad escape kept as sent
    assert "LOPEZ" not in caplog.text


def test_hl7_logs_stay_silent_after_a_logging_reconfiguration(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn's dictConfig at API start re-enabled loggers silenced by `disabled` (seen in CI, after the API tests)."""
    import logging.config

    import pdp.ingest.parsers.hl7_oru  # noqa: F401 - silenced at import, as in a process that ingested before
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    with caplog.at_level("DEBUG"):
        run("hl7v2_oru", _crash("hl7v2_oru", "crash-escape-logs-field-value.hl7"))
    assert "LOPEZ" not in caplog.text


def test_fhir_line_deeper_than_the_json_decoder_is_json_too_deep_and_the_file_goes_on() -> None:
    result = run("fhir_bundle_ndjson", _crash("fhir_bundle_ndjson", "crash-json-deeper-than-decoder.ndjson"))
    assert result.reasons == ["JSON_TOO_DEEP"]
    assert {o.position for o in result.outcomes if not isinstance(o, Quarantined)} == {1}  # the bundle before it landed


def test_questionnaire_items_deeper_than_the_json_decoder_are_json_too_deep() -> None:
    data = _crash("fhir_questionnaire_response_ndjson", "crash-json-deeper-than-decoder.ndjson")
    result = run("fhir_questionnaire_response_ndjson", data)
    assert result.reasons == ["JSON_TOO_DEEP"] and len(result.outcomes) == 2


@pytest.mark.parametrize("name", ["crash-document-path-nul.csv", "crash-document-name-too-long.csv"])
def test_report_document_path_the_os_refuses_is_document_missing_for_that_row_only(name: str) -> None:
    assert _reasons("report_index", _crash("report_index", name)) == ["DOCUMENT_MISSING"]


# --- hostile inputs named by the issue ---------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["fhir_bundle_ndjson", "fhir_questionnaire_response_ndjson"])
@pytest.mark.parametrize("depth", [65, 500, 100_000])
def test_deep_json_nesting(fmt: str, depth: int) -> None:
    resource = "Bundle" if fmt == "fhir_bundle_ndjson" else "QuestionnaireResponse"
    data = seed(fmt) + nested_json(resource, depth, inside="entry" if resource == "Bundle" else "item")
    reasons = _reasons(fmt, data)
    # past the fuzz limit (64 levels): too deep, or a line over the fuzz record limit (64 KiB)
    assert reasons == (["JSON_TOO_DEEP"] if depth < 5000 else ["RECORD_TOO_LARGE"])


@pytest.mark.parametrize("fmt", ["delimited", "fixed_width", "hl7v2_oru", "fhir_bundle_ndjson",
                                 "fhir_questionnaire_response_ndjson", "report_index"])
def test_huge_field_is_record_too_large_in_bounded_memory(fmt: str) -> None:
    """A 16 MiB field in the middle of a valid file: one RECORD_TOO_LARGE row, the rest parses, memory stays
    far below the field's size (the fuzz limit is 64 KiB a record; the encoding scan reads 1 MiB pieces)."""
    data = seed(fmt)
    cut = data.index(b"\n", len(data) // 3) if b"\n" in data[len(data) // 3:] else len(data) // 2
    if fmt == "hl7v2_oru":
        cut = data.index(b"PID|") + 4
    huge = data[:cut] + b"X" * (16 << 20) + data[cut:]
    result = run(fmt, huge, trace_memory=True, memory_bound=4 << 20)
    assert "RECORD_TOO_LARGE" in result.reasons
    assert result.peak < 4 << 20


@pytest.mark.parametrize("fmt", ["delimited", "fixed_width", "hl7v2_oru", "fhir_bundle_ndjson", "report_index"])
@pytest.mark.parametrize("piece", [b"\x00", b"\x00" * 300, b"\xc3\x28", b"\xed\xa0\x80", b"\xff\xfe", b"\xfe\xff"])
def test_nul_bytes_and_invalid_utf8_inside_a_record(fmt: str, piece: bytes) -> None:
    data = seed(fmt)
    middle = data.index(b"\n", len(data) // 2) - 5 if b"\n" in data[len(data) // 2:] else len(data) // 2
    run(fmt, data[:middle] + piece + data[middle:])


@pytest.mark.parametrize("fmt", ["delimited", "fixed_width", "hl7v2_oru", "fhir_bundle_ndjson",
                                 "fhir_questionnaire_response_ndjson", "report_index"])
@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_a_file_in_utf16_or_utf32_is_refused_with_a_reason(fmt: str, codec: str) -> None:
    """UTF-16 (with its BOM) is what a spreadsheet's "Unicode text" export writes: refused, never a crash."""
    text = seed(fmt).decode("utf-8", "replace")
    result = run(fmt, text.encode(codec))
    assert result.reasons and all(r != "PARSER_ERROR" for r in result.reasons)
    assert not [o for o in result.outcomes if not hasattr(o, "reason_code")], "nothing lands from UTF-16"


@pytest.mark.parametrize(
    ("msh", "reason"),
    [
        (b"MSH#^~\\&#", "HL7_TRUNCATED"),     # another field separator: MSH's fields are not found
        (b"MSH|^~\\&\\|", "HL7_MALFORMED"),    # repeated escape character
        (b"MSH|^^^^|", "HL7_MALFORMED"),        # every encoding character the same
        (b"MSH|A~\\&|", "HL7_MALFORMED"),       # a letter as a separator
        (b"MSH||~\\&|", "HL7_TRUNCATED"),       # MSH-2 empty: fields shift
        (b"MSH|^~|", "HL7_MALFORMED"),          # MSH-2 too short
        (b"MSH\r|^~\\&|", "HL7_TRUNCATED"),     # a segment break inside MSH
    ],
)
def test_hl7_wrong_delimiters_in_msh1_msh2(msh: bytes, reason: str) -> None:
    data = seed("hl7v2_oru").replace(b"MSH|^~\\&|", msh)
    result = run("hl7v2_oru", data)
    assert reason in result.reasons


@pytest.mark.parametrize("segment", [b"PID", b"OBX", b"NTE", b"MSH", b"BHS", b"ZZZ"])
def test_hl7_repeated_segments(segment: bytes) -> None:
    data = seed("hl7v2_oru")
    start = data.index(b"\r" + segment) + 1 if b"\r" + segment in data else data.index(b"\r") + 1
    end = data.index(b"\r", start) + 1
    line = data[start:end] if data[start:end].startswith(segment) else segment + b"|1|x\r"
    run("hl7v2_oru", data[:start] + line * 1000 + data[start:])


@pytest.mark.parametrize(
    "escape", [b"\\X00\\", b"\\X\\", b"\\XZZ\\", b"\\H\\", b"\\.br\\", b"\\.sk9999999\\", b"\\.skx\\", b"\\C2842\\",
               b"\\M\\", b"\\Zzz\\", b"\\", b"\\\\", b"\\E\\\\"]
)
def test_hl7_escape_sequences(escape: bytes) -> None:
    data = seed("hl7v2_oru")
    for field in (b"|LOPEZ", b"|4548-4", b"|8.2|", b"|contr"):
        if field in data:
            data = data.replace(field, field[:2] + escape + field[2:], 1)
    run("hl7v2_oru", data)


@pytest.mark.parametrize(
    "row",
    [
        b'"S7-9-1";"592014611";"MCO";"13/02/2024";"22/02/2024";"8";"";"A09.9";"I10";"";"";"HAMEL";"";"Pierre";'
        b'"17/05/1937";"1";"59178";"59950";"59028"',
        b'S7-9-1;592014611;MCO;13/02/2024;22/02/2024;8;"a ""b"" c";A09.9;I10;;;HAMEL;;Pierre;17/05/1937;1;;;',
        b'S7-9-1;592014611;MCO;13/02/2024;22/02/2024;8;"a\nb\r\nc";A09.9;I10;;;HAMEL;;Pierre;17/05/1937;1;;;',
        b'S7-9-1;592014611;MCO;13/02/2024;22/02/2024;8;"unclosed;A09.9;I10;;;HAMEL;;Pierre;17/05/1937;1;;;',
        b'S7-9-1;592014611;MCO;13/02/2024;22/02/2024;8;a"b;A09.9;I10;;;HAMEL;;Pierre;17/05/1937;1;;;',
        b'"";"";"";"";"";"";"";"";"";"";"";"";"";"";"";"";"";"";"";""',
        b'"\n' * 2000,
        b"S7-9-1;592014611;MCO;13/02/2024;22/02/2024;8;\rx;A09.9;I10;;;HAMEL;;Pierre;17/05/1937;1;;;",
    ],
    ids=["all-quoted", "embedded-quotes", "embedded-newlines", "unclosed", "quote-mid-field", "empty-quoted",
         "quote-lines", "bare-cr"],
)
def test_csv_embedded_quotes_and_newlines(row: bytes) -> None:
    data = seed("delimited")
    run("delimited", data + row + b"\n" + data.split(b"\n", 2)[1] + b"\n")


def test_hl7_formatting_escape_with_a_huge_count_allocates_nothing_of_its_size() -> None:
    """``\\.sp3000000000\\`` in an address asked python-hl7 for three billion line breaks (found by the
    fuzzing: 5.7 GiB for a 600-byte message): a few bytes of a record must not cost gigabytes."""
    data = _crash("hl7v2_oru", "crash-escape-repeat-count.hl7")
    result = run("hl7v2_oru", data, trace_memory=True, memory_bound=4 << 20)
    assert result.reasons == []


def test_hl7_escape_with_a_count_that_is_not_a_number_is_dropped_not_a_parser_error() -> None:
    assert _reasons("hl7v2_oru", _crash("hl7v2_oru", "crash-escape-count-not-a-number.hl7")) == []


def test_report_index_name_of_60_kb_is_refused_before_the_deidentifier_compiles_it() -> None:
    """Found by ``make fuzz``: a 60 KB birth name kept the de-identifier compiling its pattern for 10 s
    (and 16 MB, within the default record limit, for hours): a name over 200 characters is VALUE_INVALID."""
    result = run("report_index", _crash("report_index", "crash-name-of-60-kb.csv"), time_bound=5.0)
    assert result.reasons == ["VALUE_INVALID"] and len(result.outcomes) == 2
