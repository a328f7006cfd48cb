"""Every splittable format under hostile input: a file cut into parts parses as the whole file.

For random, mutated and grown files and any target size, the parts that
:func:`pdp.ingest.split.plan_parts` plans, each parsed alone (:func:`pdp.ingest.parse.parse_file`
with ``part=``, in order, one duplicate set), yield exactly the whole file's outcomes in the same
order: same positions, raw bytes, reasons and messages. This is the parse half of the split
(the fold and the engines are ``tests/ingest/test_ingest_split.py``'s): what decides where a cut
may fall (quoted fields spanning lines, HL7 blocks outside messages, oversized segments,
undecodable lines, blank lines) is checked on inputs no one wrote by hand.
"""

from __future__ import annotations

import re

import pytest
import test_fuzz_parsers  # noqa: F401 - registers the hypothesis profiles
from fuzz_harness import CORPUS, FORMATS, TODAY, _root, apply, seed, spec_for
from hypothesis import given
from hypothesis import strategies as st

from pdp.ingest.dedupe import FingerprintSet
from pdp.ingest.parse import parse_file
from pdp.ingest.parsers.base import get_parser
from pdp.ingest.spec import SourceSpec
from pdp.ingest.split import plan_parts

SPLITTABLE = sorted(f for f in FORMATS if get_parser(f).split is not None)


def _small_limits(format_name: str) -> SourceSpec:
    """The fuzz spec with a record limit of 300 bytes: oversized lines and segments are cheap to make."""
    spec = spec_for(format_name)
    return spec.model_copy(update={"limits": spec.limits.model_copy(update={"max_record_bytes": 300})})


def _same_as_whole(format_name: str, data: bytes, target: int, spec: SourceSpec | None = None) -> int:
    """Parse `data` whole and in parts of about `target` bytes; returns the number of parts."""
    spec = spec or spec_for(format_name)
    root = _root(format_name)
    path = root / FORMATS[format_name][1]
    path.write_bytes(data)
    whole = list(parse_file(spec, path, root, today=TODAY))
    parts = plan_parts(spec, path, target)
    if not parts:
        return 1
    seen = FingerprintSet()
    split = [o for p in parts for o in parse_file(spec, path, root, today=TODAY, seen=seen, part=p)]
    if not split:  # no part yielded a row: the fold reads the file whole (its own verdict, e.g. no record)
        assert all(o.position == 0 for o in whole)
        return len(parts)
    assert split == whole
    return len(parts)


def test_the_splittable_formats() -> None:
    assert SPLITTABLE == ["delimited", "fhir_bulk_ndjson", "fhir_bundle_ndjson", "fhir_questionnaire_response_ndjson",
                          "fixed_width", "hl7v2_oru"]


@pytest.mark.parametrize("format_name", SPLITTABLE)
def test_a_grown_valid_file_at_every_target(format_name: str) -> None:
    data = seed(format_name) * 4
    assert max(_same_as_whole(format_name, data, target) for target in range(1, len(data), 7)) > 2


@pytest.mark.parametrize("format_name", SPLITTABLE)
def test_mutated_files_in_parts(format_name: str) -> None:
    from test_fuzz_parsers import _op

    base = seed(format_name) * 3

    @given(st.lists(_op, min_size=1, max_size=6), st.integers(min_value=1, max_value=4096))
    def check(ops: list[tuple], target: int) -> None:
        _same_as_whole(format_name, apply(base, ops), target)

    check()


@pytest.mark.parametrize("format_name", SPLITTABLE)
def test_random_bytes_in_parts(format_name: str) -> None:
    @given(st.binary(max_size=2048), st.integers(min_value=1, max_value=512))
    def check(data: bytes, target: int) -> None:
        _same_as_whole(format_name, data, target)

    check()


def _pieces(format_name: str) -> list[bytes]:
    """Lines (or HL7 segments) of the seed, and the awkward ones a cut must respect."""
    data = seed(format_name)
    if format_name == "hl7v2_oru":
        own = [s for s in re.split(rb"[\r\n]+", data) if s]
        extra = [b"BHS|^~\\&|x", b"BTS|2", b"BTS|x", b"FHS|^~\\&", b"FTS|1", b"ZZZ|outside", b"\x0b" + own[0],
                 b"\x1c", *[b"ZZZ|" + b"o" * 120] * 4]
        big = [b"BHS|" + b"x" * 400, b"MSH|" + b"^" * 400]  # oversized: rarer (no cut after one)
        return own * 3 + extra * 2 + big
    own = data.splitlines()
    extra = [b"", b"   ", b"\xe9t\xe9", "été".encode(), b"x" * 400, b'S1;"open', b'close";x', b'"a;b";"c"']
    return own + extra


@pytest.mark.parametrize("format_name", SPLITTABLE)
def test_files_of_awkward_pieces_in_parts(format_name: str) -> None:
    """Files made of the format's own lines and awkward ones (open quotes, blank, oversized, other
    encodings, HL7 envelope and orphan segments), with LF, CRLF or CR ends, cut at any target."""
    pieces = _pieces(format_name)
    head = [pieces[0]] if format_name == "delimited" else []
    spec = _small_limits(format_name)

    @given(st.lists(st.sampled_from(pieces), min_size=1, max_size=40), st.sampled_from([b"\n", b"\r\n", b"\r"]),
           st.integers(min_value=1, max_value=600), st.booleans())
    def check(lines: list[bytes], end: bytes, target: int, final: bool) -> None:
        if end == b"\r" and format_name != "hl7v2_oru":
            end = b"\n"
        data = end.join(head + lines) + (end if final else b"")
        _same_as_whole(format_name, data, target, spec)

    check()


def test_an_oversized_hl7_envelope_segment_is_no_envelope_in_parts() -> None:
    """A BHS over the record limit is read as segments outside a message, not as a batch header:
    a cut after it would carry the wrong batch state, so no part starts after it."""
    data = (CORPUS / "hl7v2_oru" / "seed-batch.hl7").read_bytes()
    messages = data[data.index(b"MSH|"):data.index(b"BTS|")]
    grown = b"BHS|" + b"x" * 400 + b"\r" + messages * 3 + b"BTS|6\r" + messages
    spec = _small_limits("hl7v2_oru")
    for target in range(1, len(grown), 11):
        _same_as_whole("hl7v2_oru", grown, target, spec)
    assert _same_as_whole("hl7v2_oru", messages * 4, 50, spec) > 2
