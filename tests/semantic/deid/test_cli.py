"""`pdp nlp deid`: JSON out; binary, badly encoded or empty input is one line on stderr, exit 2."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pdp.cli import main

LETTER = "Mme Jeanne MARTIN, DDN : 14/03/1950, sous Metformine.\n"


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: bytes = b""):
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(stdin)))
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_stdin_with_identity(deid, monkeypatch, capsys) -> None:
    identity = '{"birth_name": "Martin", "first_names": "Jeanne"}'
    code, out, err = run(monkeypatch, capsys, ["nlp", "deid", "-", "--identity", identity], LETTER.encode())
    assert code == 0 and err == ""
    result = json.loads(out)
    assert result["text"] == "Mme <PRENOM> <NOM>, DDN : <DATE_NAISSANCE>, sous Metformine.\n"
    assert [(s["type"], s["start"], s["end"]) for s in result["spans"]] == [
        ("PRENOM", 4, 10), ("NOM", 11, 17), ("DATE_NAISSANCE", 25, 35)
    ]


def test_file_and_identity_file(deid, monkeypatch, capsys, tmp_path: Path) -> None:
    doc, ident = tmp_path / "doc.txt", tmp_path / "id.json"
    doc.write_text(LETTER, encoding="utf-8")
    ident.write_text(json.dumps({"first_names": ["Jeanne"]}), encoding="utf-8")
    code, out, _ = run(monkeypatch, capsys, ["nlp", "deid", str(doc), "--identity", str(ident)])
    assert code == 0 and "Jeanne" not in out and "MARTIN" not in out


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary input"),
        ("Mme Jeanne MARTIN".encode("latin-1") + "é".encode("latin-1"), "not UTF-8 text"),
        (b"", "empty input"),
        (b"  \n\t", "empty input"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(deid, monkeypatch, capsys, tmp_path: Path, data: bytes, message: str):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    for argv, stdin in ((["nlp", "deid", str(path)], b""), (["nlp", "deid", "-"], data)):
        code, out, err = run(monkeypatch, capsys, argv, stdin)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err
        assert "MARTIN" not in err and "Traceback" not in err


def test_bad_identity_names_no_value(deid, monkeypatch, capsys) -> None:
    code, _out, err = run(monkeypatch, capsys, ["nlp", "deid", "-", "--identity", '{"phone": 612345678}'], b"x")
    assert code == 2 and "identity.phone" in err and "612345678" not in err
