"""Encoding decisions per file, as French senders' exports need them."""

from __future__ import annotations

import io

import pytest

from pdp.ingest.encoding import detect_encoding, iter_lines

UTF8_LINE = "DUPONT;Hélène;12/05/1980\r\n".encode()
LATIN1_LINE = "DURAND;Noël;01/02/1970\r\n".encode("latin-1")
ASCII_LINE = b"MARTIN;Paul;03/04/1960\r\n"

CASES = [
    ("UTF-8 with BOM", b"\xef\xbb\xbf" + UTF8_LINE, False, ("utf-8", 3, "bom")),
    ("plain UTF-8", ASCII_LINE + UTF8_LINE, False, ("utf-8", 0, "utf-8")),
    ("ASCII only", ASCII_LINE * 3, False, ("utf-8", 0, "utf-8")),
    ("Latin-1 allowed", ASCII_LINE + LATIN1_LINE, True, ("latin-1", 0, "latin-1")),
    ("Latin-1 not allowed", ASCII_LINE + LATIN1_LINE, False, ("utf-8", 0, "not-utf-8")),
    ("mixed UTF-8 and Latin-1", UTF8_LINE + LATIN1_LINE, True, ("utf-8", 0, "mixed")),
]


@pytest.mark.parametrize(("label", "data", "fallback", "expected"), CASES, ids=[c[0] for c in CASES])
def test_one_decision_per_file(label: str, data: bytes, fallback: bool, expected: tuple) -> None:
    found = detect_encoding(io.BytesIO(data), "auto", latin1_fallback=fallback)
    assert (found.codec, found.start, found.decision) == expected


def test_a_mixed_file_refuses_only_its_latin1_lines() -> None:
    stream = io.BytesIO(UTF8_LINE + LATIN1_LINE + ASCII_LINE)
    lines = list(iter_lines(stream, detect_encoding(stream, latin1_fallback=True)))
    assert [(n, text is None) for n, _, text in lines] == [(1, False), (2, True), (3, False)]
    assert lines[0][2] == "DUPONT;Hélène;12/05/1980" and lines[1][1] == LATIN1_LINE[:-2]


def test_windows_1252_bytes_are_not_latin1_text() -> None:
    stream = io.BytesIO(ASCII_LINE + "CŒUR;Zoé;01/01/1990\r\n".encode("cp1252"))
    lines = list(iter_lines(stream, detect_encoding(stream, latin1_fallback=True)))
    assert lines[1][2] is None  # 0x8C is a C1 control in Latin-1: refused, not turned into text


def test_a_utf8_character_across_the_scan_chunks_is_not_a_fault() -> None:
    data = b"a" * ((1 << 18) - 1) + "é\n".encode()  # "é" straddles the first 256 KiB boundary
    assert detect_encoding(io.BytesIO(data)).decision == "utf-8"


def test_an_explicit_encoding_skips_the_scan() -> None:
    found = detect_encoding(io.BytesIO(b"\xef\xbb\xbf" + ASCII_LINE), "utf-8")
    assert (found.codec, found.start, found.decision) == ("utf-8", 3, "declared")
