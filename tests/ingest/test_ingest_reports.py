"""The reports' index at the edge, row by row: what lands, what is quarantined and why.

Each case is an index row (and its letter) as a sender might send it, with the reason code it
must get. No Spark: the parser is called as the edge's worker calls it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.ingest import Registry
from pdp.ingest.model import Quarantined, SourceRecord
from pdp.ingest.parse import parse_file
from pdp.ingest.reasons import ReasonCode
from pdp.ingest.spec import SourceSpec

HEADER = "doc_id,file,doc_type,date,nir,birth_name,used_name,first_names,birth_date,sex\n"
LETTER = "Compte rendu de consultation.\nMme Jeanne DURAND, née le 14/03/1950, diabète de type 2.\n"


@pytest.fixture(scope="module")
def spec(registry: Registry) -> SourceSpec:
    """The built-in reports spec, rules-only de-identification (the spaCy model is not under test)."""
    data = registry.specs["reports"].model_dump(exclude_unset=True)
    data["options"] = {**data.get("options", {}), "ner": False}
    return SourceSpec.model_validate(data)


def write(root: Path, rows: list[bytes], letters: dict[str, str] | None = None,
          header: bytes = HEADER.encode()) -> Path:
    (root / "reports" / "d1").mkdir(parents=True, exist_ok=True)
    for name, text in (letters or {"reports/d1/D1.txt": LETTER}).items():
        (root / name).write_text(text, encoding="utf-8")
    index = root / "reports" / "index.csv"
    index.write_bytes(header + b"".join(rows))
    return index


def row(doc_id: str = "D1", doc_type: str = "consultation_note", birth_name: str = "DURAND") -> bytes:
    return f"{doc_id},reports/d1/D1.txt,{doc_type},2024-05-02,,{birth_name},,Jeanne,1950-03-14,F\n".encode()


def outcomes(spec: SourceSpec, index: Path, root: Path) -> list[SourceRecord | Quarantined]:
    return list(parse_file(spec, index, root))


def test_a_known_document_type_lands_as_the_spec_names_it(spec: SourceSpec, tmp_path: Path) -> None:
    (record,) = outcomes(spec, write(tmp_path, [row()]), tmp_path)
    assert isinstance(record, SourceRecord)
    assert record.attribute("note_type") == "consultation_note"
    assert "DURAND" not in (record.attribute("note_text") or "")


@pytest.mark.parametrize(("doc_type", "reason"), [
    ("lettre_de_sortie", "VALUE_INVALID"),       # a sender's own label, not in the spec's doc_types
    ("Consultation_Note", "VALUE_INVALID"),      # the vocabulary is exact, like a mapping's map
    ("<script>", "VALUE_INVALID"),
    ("", "FIELD_MISSING"),
])
def test_a_document_type_outside_the_spec_is_quarantined(spec: SourceSpec, tmp_path: Path, doc_type: str,
                                                         reason: str) -> None:
    good, bad = outcomes(spec, write(tmp_path, [row("D0"), row("D1", doc_type)]), tmp_path)
    assert isinstance(good, SourceRecord)
    assert isinstance(bad, Quarantined) and (bad.position, bad.reason_code) == (2, reason)
    assert doc_type not in bad.message or not doc_type


def test_the_vocabulary_is_declared_in_the_spec_not_in_code(registry: Registry) -> None:
    spec = registry.specs["reports"]
    assert spec.options["doc_types"] == {"discharge_letter": "discharge_letter",
                                         "consultation_note": "consultation_note"}
    data = spec.model_dump(exclude_unset=True)
    data["options"] = {k: v for k, v in data["options"].items() if k != "doc_types"}
    with pytest.raises(ValueError, match="doc_types"):
        SourceSpec.model_validate(data)


def test_a_latin1_index_row_is_an_encoding_fault_not_a_parser_crash(spec: SourceSpec, tmp_path: Path) -> None:
    latin = row("D2", birth_name="LEFÈVRE").decode("utf-8").encode("latin-1")
    results = outcomes(spec, write(tmp_path, [row("D0"), latin, row("D3")]), tmp_path)
    assert [type(r).__name__ for r in results] == ["SourceRecord", "Quarantined", "SourceRecord"]
    bad = results[1]
    assert isinstance(bad, Quarantined) and (bad.position, bad.reason_code) == (2, "ENCODING_INVALID")
    assert "LEF" not in bad.message


def test_an_undecodable_header_is_one_file_level_encoding_fault(spec: SourceSpec, tmp_path: Path) -> None:
    header = HEADER.replace("doc_id", "doc_idé").encode("latin-1")
    (fault,) = outcomes(spec, write(tmp_path, [row()], header=header), tmp_path)
    assert isinstance(fault, Quarantined) and (fault.position, fault.reason_code) == (0, "ENCODING_INVALID")


class FakeVault:
    """The vault's linkage view of one known person (pseudonym "P-" + birth name), counting reads."""

    def __init__(self, known: dict[str, object]) -> None:
        self.known, self.reads = known, []

    def linkage_view(self, pseudonyms: list[str]) -> dict[str, object]:
        self.reads.append(len(pseudonyms))
        return {p: self.known[p] for p in pseudonyms if p in self.known}


def test_the_vaults_names_of_a_known_person_are_redacted_read_once_per_chunk(spec: SourceSpec,
                                                                              tmp_path: Path) -> None:
    from pdp.ingest.known import KnownPersons
    from pdp.pseudonym.vault import VaultRecord

    letter = "Mme Jeanne MARTIN-LEFEVRE, suivie pour un diabète de type 2. Dossier MARTIN-LEFEVRE.\n"
    vault = FakeVault({"P-DURAND": VaultRecord(birth_name="DURAND", used_name="MARTIN-LEFEVRE",
                                               first_names=("JEANNE",))})
    known = KnownPersons(lambda identity: f"P-{identity.birth_name}", lambda: vault)  # type: ignore[arg-type,return-value]
    rows = [row(f"D{i}", birth_name="DURAND" if i % 2 else "BERNARD") for i in range(300)]
    index = write(tmp_path, rows, {"reports/d1/D1.txt": letter})
    results = list(parse_file(spec, index, tmp_path, known=known))
    assert len(results) == 300 and all(isinstance(r, SourceRecord) for r in results)
    assert vault.reads == [2, 2], "one vault read per chunk of index rows (256), not per document"
    durand, bernard = results[1], results[0]
    assert "MARTIN-LEFEVRE" not in (durand.attribute("note_text") or "")
    assert (durand.attribute("note_text") or "").count("<NOM>") == 2
    assert "Dossier MARTIN-LEFEVRE" in (bernard.attribute("note_text") or ""), \
        "an unknown person's letter keeps only what the row and the generic recognizers find"


def test_without_a_known_person_nothing_is_read(spec: SourceSpec, tmp_path: Path) -> None:
    from pdp.ingest.known import KnownPersons

    def no_vault() -> None:
        raise AssertionError("the vault is not opened when no identity could be keyed")

    known = KnownPersons(lambda identity: None, no_vault)  # type: ignore[arg-type]
    (record,) = list(parse_file(spec, write(tmp_path, [row()]), tmp_path, known=known))
    assert isinstance(record, SourceRecord) and known.reads == 0


@pytest.mark.parametrize("batch_chars", [None, 5_000_000], ids=["default", "all-in-one-batch"])
def test_a_document_the_model_cannot_read_is_quarantined_alone_among_its_batch(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_chars: int | None
) -> None:
    """Documents are de-identified in batches; one that fails (longer than spaCy's 1 M characters,
    within the 2 MB document limit) is DEID_FAILED, and the others still land: whether it went
    alone (a batch stops short of 1 M characters) or, with a larger cap, in one batch with them."""
    from pdp.ingest.parsers import report_index

    if batch_chars is not None:
        monkeypatch.setattr(report_index, "_DEID_BATCH_CHARS", batch_chars)
    data = registry.specs["reports"].model_dump(exclude_unset=True)
    with_model = SourceSpec.model_validate(data)
    assert with_model.parser_options.ner  # the model runs, as in production
    long_letter = LETTER + "suivi. " * 200_000
    letters = {"reports/d1/D1.txt": LETTER, "reports/d1/D2.txt": long_letter, "reports/d1/D3.txt": LETTER}
    rows = [row("D1"), row("D2").replace(b"D1.txt", b"D2.txt"), row("D3").replace(b"D1.txt", b"D3.txt")]
    index = write(tmp_path, rows, letters)

    got = outcomes(with_model, index, tmp_path)

    assert [type(o).__name__ for o in got] == ["SourceRecord", "Quarantined", "SourceRecord"]
    assert got[1].reason_code == ReasonCode.DEID_FAILED and got[1].raw.endswith(long_letter.encode())
    assert all("DURAND" not in dict(o.attributes)["note_text"] for o in (got[0], got[2]))


def test_rows_refused_before_and_after_their_document_is_read_keep_file_order_across_batches(
    spec: SourceSpec, tmp_path: Path
) -> None:
    """Over more rows than a batch holds: a row refused on its own (unknown type), one whose document
    is missing, and rows that land come out in the index's order, each with its reason."""
    rows = []
    for i in range(70):
        if i % 7 == 3:
            rows.append(row(f"D{i}", doc_type="no_such_type"))
        elif i % 11 == 5:
            rows.append(row(f"D{i}").replace(b"D1.txt", b"missing.txt"))
        else:
            rows.append(row(f"D{i}"))
    got = outcomes(spec, write(tmp_path, rows), tmp_path)

    assert [o.position for o in got] == list(range(1, 71))
    expected = ["VALUE_INVALID" if i % 7 == 3 else "DOCUMENT_MISSING" if i % 11 == 5 else "landed"
                for i in range(70)]
    assert [o.reason_code.value if isinstance(o, Quarantined) else "landed" for o in got] == expected
    assert all(o.attribute("note_text") and "DURAND" not in o.attribute("note_text")
               for o in got if isinstance(o, SourceRecord))
