"""The bad-input corpus: each fault, built from a good synthetic file, lands in quarantine with its
own reason code at its own position; the file's other records still parse (no batch abort);
records in = parsed + quarantined; and no quarantine message echoes a value of the record."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from ingest_helpers import CsvFile, Hl7File, NominativeScanner, copy_into, files_of, manifest_records, parse_root

from pdp.ingest import ReasonCode, Registry
from pdp.ingest.validate import NOT_A_UNIT

R = ReasonCode


@dataclass(frozen=True)
class Expect:
    """What a mutated file must give: quarantine rows as (position, reason), and records parsed."""

    quarantined: list[tuple[int, ReasonCode]]
    parsed: int


Mutation = Callable[[Path, int], Expect]  # (copied file, its manifest record count) -> expectation


@dataclass(frozen=True)
class Case:
    name: str
    folder: str
    encoding: str | None
    mutate: Mutation


# --- HL7 ------------------------------------------------------------------------------------------


def hl7_truncated(path: Path, n: int) -> Expect:
    batch = Hl7File.load(path)
    batch.messages[2][-1] = batch.messages[2][-1][:15]  # cut inside the last OBX: "OBX|2|NM|1558-6"
    batch.save()
    return Expect([(3, R.HL7_TRUNCATED)], n - 1)


def hl7_file_cut_short(path: Path, n: int) -> Expect:
    data = Hl7File.load(path).dump()
    last = data.rfind(b"MSH|")
    path.write_bytes(data[: last + 40])  # the last message ends inside its MSH; no BTS/FTS trailer
    return Expect([(0, R.HL7_BATCH_COUNT), (n, R.HL7_TRUNCATED)], n - 1)


def hl7_segment_order(path: Path, n: int) -> Expect:
    batch = Hl7File.load(path)
    message = batch.messages[1]
    obr = next(i for i, s in enumerate(message) if s.startswith(b"OBR"))
    message[obr], message[obr + 1] = message[obr + 1], message[obr]  # OBX before its OBR
    batch.save()
    return Expect([(2, R.HL7_SEGMENT_ORDER)], n - 1)


def hl7_message_type(path: Path, n: int) -> Expect:
    batch = Hl7File.load(path)
    batch.messages[3][0] = batch.messages[3][0].replace(b"ORU^R01^ORU_R01", b"ADT^A08^ADT_A01")
    batch.save()
    return Expect([(4, R.HL7_MESSAGE_TYPE)], n - 1)


def hl7_batch_count(path: Path, n: int) -> Expect:
    batch = Hl7File.load(path)
    batch.tail[0] = f"BTS|{n + 2}".encode()
    batch.save()
    return Expect([(0, R.HL7_BATCH_COUNT)], n)


def hl7_wrong_encoding(path: Path, n: int) -> Expect:
    batch = Hl7File.load(path)
    index = next(i for i, m in enumerate(batch.messages) if not b"".join(m).isascii())
    batch.messages[index] = [s.decode("utf-8").encode("latin-1") for s in batch.messages[index]]  # MSH-18 still UTF-8
    batch.save()
    return Expect([(index + 1, R.ENCODING_INVALID)], n - 1)


def hl7_loinc_check_digit(path: Path, n: int) -> Expect:
    batch = Hl7File.load(path)
    index = next(i for i, m in enumerate(batch.messages) if any(b"|4548-4^" in s for s in m))
    batch.messages[index] = [s.replace(b"|4548-4^", b"|4548-5^") for s in batch.messages[index]]
    batch.save()
    return Expect([(index + 1, R.CODE_UNKNOWN)], n - 1)


def _hba1c_unit(path: Path, unit: bytes, code: bytes = b"4548-4") -> int:
    """The first HbA1c result's unit (OBX-6) replaced by `unit` (and its LOINC code by `code`); its
    message's position."""
    batch = Hl7File.load(path)
    index = next(i for i, m in enumerate(batch.messages) if any(b"|4548-4^" in s for s in m))
    message = batch.messages[index]
    obx = next(j for j, s in enumerate(message) if b"|4548-4^" in s)
    fields = message[obx].split(b"|")
    fields[3] = fields[3].replace(b"4548-4", code)
    fields[6] = unit
    message[obx] = b"|".join(fields)
    batch.save()
    return index + 1


def hl7_unit_no_rule_reads(path: Path, n: int) -> Expect:
    """An HbA1c in g/L: the rules read HbA1c in % and cannot convert it (pdp/semantic/units.yml)."""
    return Expect([(_hba1c_unit(path, b"g/L^g/L^UCUM"), R.UNIT_UNKNOWN)], n - 1)


def hl7_unit_typed_freely_for_a_rule(path: Path, n: int) -> Expect:
    return Expect([(_hba1c_unit(path, b"Jeanne DUPONT 0612345678"), R.UNIT_UNKNOWN)], n - 1)


# --- FHIR -----------------------------------------------------------------------------------------


def _ndjson(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _records_of(line: bytes) -> int:
    """Records of a GP bundle line: one per resource, its Practitioners aside (read through references)."""
    return sum(1 for e in json.loads(line)["entry"] if e["resource"]["resourceType"] != "Practitioner")


def fhir_invalid_json(path: Path, n: int) -> Expect:
    lines = _ndjson(path)
    records = _records_of(lines[4])
    lines[4] = lines[4][: len(lines[4]) // 2]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return Expect([(5, R.FHIR_JSON_INVALID)], n - records)  # a line that is not JSON: one row for the line


def _edit_bundle(path: Path, line: int, edit: Callable[[dict], None]) -> None:
    lines = _ndjson(path)
    bundle = json.loads(lines[line - 1])
    edit(bundle)
    lines[line - 1] = json.dumps(bundle, ensure_ascii=False).encode()
    path.write_bytes(b"\n".join(lines) + b"\n")


def _resource(bundle: dict, kind: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)


def fhir_resource_invalid(path: Path, n: int) -> Expect:
    _edit_bundle(path, 3, lambda b: _resource(b, "Encounter").update(status={"code": "finished"}))
    return Expect([(3, R.FHIR_VALIDATION)], n - 1)


def fhir_unknown_element_named_after_the_patient(path: Path, n: int) -> Expect:
    """An element the model does not know is the sender's key: its name could name the patient."""
    def edit(bundle: dict) -> None:
        key = re.sub(r"[^A-Za-z]+", "_", _resource(bundle, "Patient")["name"][0]["family"])
        _resource(bundle, "Encounter")[key] = True
    _edit_bundle(path, 3, edit)
    return Expect([(3, R.FHIR_VALIDATION)], n - 1)


def fhir_impossible_birth_date(path: Path, n: int) -> Expect:
    _edit_bundle(path, 7, lambda b: _resource(b, "Patient").update(birthDate="1980-02-31"))
    records = _records_of(_ndjson(path)[6])  # the Patient and every resource about it: the Patient's reason
    return Expect([(7, R.DATE_INVALID)] * records, n - records)


def fhir_unmapped_coding(path: Path, n: int) -> Expect:
    def edit(bundle: dict) -> None:
        for coding in _resource(bundle, "Observation")["code"]["coding"]:
            coding["system"] = "https://sia.invalid/local-codes"

    lines = _ndjson(path)
    line = next(i for i, raw in enumerate(lines, 1) if b'"Observation"' in raw)
    _edit_bundle(path, line, edit)
    return Expect([(line, R.CODE_UNKNOWN)], n - 1)


def fhir_encounter_class_typed_freely(path: Path, n: int) -> Expect:
    """An Encounter without a type is coded by its class, an ActCode: a name typed there is
    CODE_UNKNOWN, never landed as a code."""
    def edit(bundle: dict) -> None:
        encounter = _resource(bundle, "Encounter")
        encounter.pop("type", None)
        encounter["class"]["code"] = "Dr Jeanne DUPONT"

    lines = _ndjson(path)
    line = next(i for i, raw in enumerate(lines, 1) if b'"Encounter"' in raw)
    _edit_bundle(path, line, edit)
    return Expect([(line, R.CODE_UNKNOWN)], n - 1)


# --- delimited ------------------------------------------------------------------------------------


def _edit_csv(path: Path, edit: Callable[[CsvFile], int], reason: ReasonCode, n: int) -> Expect:
    table = CsvFile.load(path)
    row = edit(table)
    table.save()
    return Expect([(row + 1, reason)], n - 1)


def pmsi_impossible_date(path: Path, n: int) -> Expect:
    return _edit_csv(path, lambda t: (t.set(4, "date_entree", "31/02/2024"), 4)[1], R.DATE_INVALID, n)


def pmsi_end_before_start(path: Path, n: int) -> Expect:
    def edit(t: CsvFile) -> int:
        row = t.row_where(lambda r: r["date_entree"] != r["date_sortie"])
        t.set(row, "date_sortie", t.rows[row][t.column("date_entree")].replace("/20", "/19"))
        return row

    return _edit_csv(path, edit, R.DATE_OUT_OF_RANGE, n)


def pmsi_unknown_code(path: Path, n: int) -> Expect:
    return _edit_csv(path, lambda t: (t.set(6, "dp", "E11.999"), 6)[1], R.CODE_UNKNOWN, n)


def pmsi_missing_identity(path: Path, n: int) -> Expect:
    return _edit_csv(path, lambda t: (t.set(2, "nom_naissance", ""), 2)[1], R.IDENTITY_MISSING, n)


def pmsi_invalid_nir_key(path: Path, n: int) -> Expect:
    def edit(t: CsvFile) -> int:
        row = t.row_where(lambda r: len(r["nir"]) == 15)
        nir = t.rows[row][t.column("nir")]
        t.set(row, "nir", nir[:13] + f"{(int(nir[13:]) + 1) % 98:02d}")
        return row

    return _edit_csv(path, edit, R.NIR_INVALID, n)


def pmsi_field_count(path: Path, n: int) -> Expect:
    return _edit_csv(path, lambda t: (t.rows[3].append("surplus"), 3)[1], R.FIELD_COUNT, n)


def pmsi_empty_file(path: Path, n: int) -> Expect:
    path.write_bytes(b"")
    return Expect([(0, R.FILE_EMPTY)], 0)


def pmsi_header_only(path: Path, n: int) -> Expect:
    table = CsvFile.load(path)
    path.write_bytes(table.text(rows=[]).encode(table.encoding))
    return Expect([(0, R.FILE_NO_RECORDS)], 0)


def pmsi_header_mismatch(path: Path, n: int) -> Expect:
    table = CsvFile.load(path)
    table.header[table.column("dp")] = "diag_principal"
    table.save()
    return Expect([(0, R.HEADER_MISMATCH)], 0)


def pharmacy_extra_columns(path: Path, n: int) -> Expect:
    table = CsvFile.load(path)
    table.header.append("mutuelle")
    for row in table.rows:
        row.append("MGEN")
    table.save()
    return Expect([(0, R.EXTRA_COLUMNS)], n)  # flagged once; every record still parses


def pharmacy_duplicate(path: Path, n: int) -> Expect:
    table = CsvFile.load(path)
    table.rows.append(list(table.rows[10]))
    table.save()
    return Expect([(n + 1, R.DUPLICATE_RECORD)], n)


def pharmacy_value_invalid(path: Path, n: int) -> Expect:
    return _edit_csv(path, lambda t: (t.set(8, "quantite", "deux"), 8)[1], R.VALUE_INVALID, n)


def pharmacy_cip13_check_digit(path: Path, n: int) -> Expect:
    def edit(t: CsvFile) -> int:
        cip = t.rows[5][t.column("cip13")]
        t.set(5, "cip13", cip[:12] + str((int(cip[12]) + 1) % 10))
        return 5

    return _edit_csv(path, edit, R.CODE_UNKNOWN, n)


def social_wrong_encoding(path: Path, n: int) -> Expect:
    table = CsvFile.load(path)
    row = table.row_where(lambda r: not ";".join(r.values()).isascii())
    lines = table.text().encode(table.encoding).split(b"\n")
    lines[row + 1] = lines[row + 1].decode("utf-8").encode("latin-1")  # one Latin-1 row in a UTF-8 export
    path.write_bytes(b"\n".join(lines))
    return Expect([(row + 1, R.ENCODING_INVALID)], n - 1)


def social_reason_typed_freely(path: Path, n: int) -> Expect:
    """A referral reason is free text in the structures' exports: only the wordings the spec maps land
    (as codes); one typed otherwise, here with a name and a phone number, is the record's fault."""
    return _edit_csv(path, lambda t: (t.set(1, "motif", "Isolement - Mme Jeanne DUPONT tel 06 12 34 56 78"), 1)[1],
                     R.VALUE_INVALID, n)


def deaths_record_length(path: Path, n: int) -> Expect:
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:150]
    path.write_bytes(b"\n".join(lines))
    return Expect([(2, R.RECORD_LENGTH)], n - 1)


def latin1_pmsi_future_stay(path: Path, n: int) -> Expect:
    return _edit_csv(path, lambda t: (t.set(7, "date_sortie", "01/01/2099"), 7)[1], R.DATE_OUT_OF_RANGE, n)


CASES = [
    Case("truncated HL7 message", "labs", None, hl7_truncated),
    Case("HL7 file cut short", "labs", None, hl7_file_cut_short),
    Case("HL7 with wrong segment order", "labs", None, hl7_segment_order),
    Case("HL7 message that is not ORU^R01", "labs", None, hl7_message_type),
    Case("HL7 batch count disagrees", "labs", None, hl7_batch_count),
    Case("HL7 message in another charset than MSH-18", "labs", "utf-8", hl7_wrong_encoding),
    Case("LOINC code with a wrong check digit", "labs", None, hl7_loinc_check_digit),
    Case("HbA1c in a unit no rule can read", "labs", None, hl7_unit_no_rule_reads),
    Case("unit typed freely for a value a rule reads", "labs", None, hl7_unit_typed_freely_for_a_rule),
    Case("invalid FHIR JSON", "gp", None, fhir_invalid_json),
    Case("FHIR resource failing validation", "gp", None, fhir_resource_invalid),
    Case("FHIR element the model does not know", "gp", None, fhir_unknown_element_named_after_the_patient),
    Case("FHIR impossible birth date", "gp", None, fhir_impossible_birth_date),
    Case("FHIR coding in an unmapped system", "gp", None, fhir_unmapped_coding),
    Case("FHIR encounter class typed freely", "gp", None, fhir_encounter_class_typed_freely),
    Case("impossible date (31/02)", "pmsi", None, pmsi_impossible_date),
    Case("stay ending before it starts", "pmsi", None, pmsi_end_before_start),
    Case("stay in the future (Latin-1 file)", "pmsi", "latin-1", latin1_pmsi_future_stay),
    Case("unknown CIM-10 code", "pmsi", None, pmsi_unknown_code),
    Case("missing identity", "pmsi", None, pmsi_missing_identity),
    Case("invalid NIR key", "pmsi", "latin-1", pmsi_invalid_nir_key),
    Case("row with an extra field", "pmsi", None, pmsi_field_count),
    Case("empty file", "pmsi", None, pmsi_empty_file),
    Case("header-only CSV", "pmsi", "utf-8-sig", pmsi_header_only),
    Case("header lacking a declared column", "pmsi", None, pmsi_header_mismatch),
    Case("extra columns", "pharmacy", None, pharmacy_extra_columns),
    Case("duplicate record", "pharmacy", None, pharmacy_duplicate),
    Case("quantity that is not a number", "pharmacy", "latin-1", pharmacy_value_invalid),
    Case("CIP13 with a wrong check digit", "pharmacy", None, pharmacy_cip13_check_digit),
    Case("wrong encoding (Latin-1 row in a UTF-8-only source)", "social", None, social_wrong_encoding),
    Case("referral reason typed freely", "social", None, social_reason_typed_freely),
    Case("fixed-width line of the wrong length", "insee", None, deaths_record_length),
]


def _source_file(territory: Path, case: Case) -> str:
    candidates = files_of(territory, case.folder, encoding=case.encoding)
    if case.folder == "insee":
        return "insee/deces.txt"
    if case.folder == "labs":  # a lab reporting HbA1c in % (the others send it in mmol/mol)
        return next((rel for rel in candidates if b"|4548-4^" in (territory / rel).read_bytes()), candidates[0])
    if case.folder == "social":  # the biggest referral list (one has a single row)
        return max(candidates, key=lambda rel: (territory / rel).stat().st_size)
    return candidates[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_lands_in_quarantine_with_its_reason(
    case: Case, territory: Path, registry: Registry, scanner: NominativeScanner, tmp_path: Path
) -> None:
    rel = _source_file(territory, case)
    n = manifest_records(territory)[rel]
    expect = case.mutate(copy_into(territory, rel, tmp_path), n)

    got = parse_root(tmp_path, registry)

    assert got.reasons == sorted((p, str(r)) for p, r in expect.quarantined)
    assert len(got.records) == expect.parsed  # the file's other records parse: no batch abort
    ((_, file), counts), *others = got.counts.items()
    assert not others and file == rel
    assert counts.balanced and counts.parsed == expect.parsed
    assert all(q.file == rel and q.source == got.records[0].source for q in got.quarantined if got.records)
    assert all(q.raw for q in got.quarantined if not q.file_level)  # the edge can key a record hash
    scanner.assert_clean(got.quarantined)


def test_file_level_rows_count_as_one_record_in_when_the_file_yields_nothing_else(
    territory: Path, registry: Registry, tmp_path: Path
) -> None:
    rel = files_of(territory, "pmsi")[0]
    pmsi_empty_file(copy_into(territory, rel, tmp_path), 0)
    counts = parse_root(tmp_path, registry).counts[("pmsi", rel)]
    assert (counts.records_in, counts.parsed, counts.quarantined, counts.file_issues) == (1, 0, 1, 0)


def test_file_level_rows_beside_records_are_file_issues(territory: Path, registry: Registry, tmp_path: Path) -> None:
    rel = files_of(territory, "labs")[0]
    n = manifest_records(territory)[rel]
    hl7_batch_count(copy_into(territory, rel, tmp_path), n)
    counts = parse_root(tmp_path, registry).counts[("lab_hl7", rel)]
    assert (counts.records_in, counts.parsed, counts.quarantined, counts.file_issues) == (n, n, 0, 1)


def test_the_issues_corpus_has_one_reason_code_per_kind_of_fault() -> None:
    """The issue's list of bad inputs: thirteen kinds, thirteen distinct reason codes."""
    required = {
        "truncated HL7 message": R.HL7_TRUNCATED,
        "HL7 with wrong segment order": R.HL7_SEGMENT_ORDER,
        "invalid FHIR JSON": R.FHIR_JSON_INVALID,
        "FHIR resource failing validation": R.FHIR_VALIDATION,
        "impossible date (31/02)": R.DATE_INVALID,
        "unknown CIM-10 code": R.CODE_UNKNOWN,
        "wrong encoding (Latin-1 row in a UTF-8-only source)": R.ENCODING_INVALID,
        "duplicate record": R.DUPLICATE_RECORD,
        "missing identity": R.IDENTITY_MISSING,
        "invalid NIR key": R.NIR_INVALID,
        "empty file": R.FILE_EMPTY,
        "header-only CSV": R.FILE_NO_RECORDS,
        "extra columns": R.EXTRA_COLUMNS,
    }
    assert len(set(required.values())) == len(required)
    assert set(required) <= {c.name for c in CASES}


def test_a_parser_crash_quarantines_the_rest_of_the_file_without_stopping_the_batch(
    territory: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdp.ingest import mapping

    for rel in (files_of(territory, "pmsi")[0], "insee/communes.csv"):
        copy_into(territory, rel, tmp_path)
    real_build = mapping.RecordBuilder.build

    def build(self, values, position, raw, ctx):  # type: ignore[no-untyped-def]
        if ctx.source == "pmsi" and position == 3:
            raise RuntimeError("a bug")
        return real_build(self, values, position, raw, ctx)

    monkeypatch.setattr(mapping.RecordBuilder, "build", build)
    got = parse_root(tmp_path, registry)
    pmsi = [q for q in got.quarantined if q.source == "pmsi"]
    assert [(q.position, q.reason_code) for q in pmsi] == [(0, R.PARSER_ERROR)]
    assert "a bug" not in pmsi[0].message
    assert sum(r.source == "pmsi" for r in got.records) == 2
    assert sum(r.source == "insee_communes" for r in got.records) == 20  # the next file still parses


def test_the_scanner_catches_a_value_in_a_message(scanner: NominativeScanner, territory: Path) -> None:
    """The message scanner used above can fail: a name, a NIR or a date in a message is found."""
    row = (territory / "ground_truth" / "identities.csv").read_text(encoding="utf-8").splitlines()[1].split(",")
    nir, birth_name, birth_date = row[1], row[3], row[7]
    assert scanner.leaks(f"nom_naissance: {birth_name.title()} is odd")
    assert scanner.leaks(f"nir {nir} refused")
    assert scanner.leaks(f"born {date.fromisoformat(birth_date).strftime('%d/%m/%Y')}")
    assert not scanner.leaks("nir: NIR_KEY")


def test_a_mapping_crash_costs_one_record_not_the_file(
    territory: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdp.ingest import mapping

    rel = files_of(territory, "pmsi")[0]
    copy_into(territory, rel, tmp_path)
    real_events = mapping._EventMaker.events
    victim = CsvFile.load(tmp_path / rel).rows[4][0]  # num_sejour of the 5th stay

    def events(self, values, checks):  # type: ignore[no-untyped-def]
        if values["num_sejour"] == victim:
            raise ZeroDivisionError
        return real_events(self, values, checks)

    monkeypatch.setattr(mapping._EventMaker, "events", events)
    got = parse_root(tmp_path, registry)
    assert got.reasons == [(5, "PARSER_ERROR")]
    assert len(got.records) == manifest_records(territory)[rel] - 1


def test_a_file_that_is_not_hl7_is_quarantined_in_bounded_blocks(
    territory: Path, registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "labs").mkdir()
    (tmp_path / "labs" / "export.hl7").write_bytes(b"patient;test;value\n" * 2500)
    got = parse_root(tmp_path, registry)
    assert got.reasons == [(1, "HL7_SEGMENT_ORDER"), (2, "HL7_SEGMENT_ORDER"), (3, "HL7_SEGMENT_ORDER")]
    assert not got.records and got.counts[("lab_hl7", "labs/export.hl7")].balanced


def test_a_mapped_value_is_met_whatever_its_apostrophes_spaces_or_case(
    territory: Path, registry: Registry, tmp_path: Path
) -> None:
    """Office suites turn ' into ’ and people retype labels: the spec's map still knows them."""
    rel = max(files_of(territory, "social"), key=lambda r: (territory / r).stat().st_size)
    path = copy_into(territory, rel, tmp_path)
    table = CsvFile.load(path)
    table.set(1, "motif", "AIDE à l’ouverture  de droits ")
    table.save()
    got = parse_root(tmp_path, registry)
    assert not got.quarantined
    record = next(r for r in got.records if r.position == 2)
    assert [e.code for e in record.events] == ["rights_access"]


@pytest.mark.parametrize("typed", [b"Jeanne DUPONT 0612345678", b"DUPONT", b"06.12.34.56.78", b"12/03/57"])
def test_a_unit_that_is_not_a_unit_is_left_out_counted_and_its_value_lands(
    typed: bytes, territory: Path, registry: Registry, tmp_path: Path
) -> None:
    """A result no rule reads (TSH) whose unit field holds a name, a phone number or a date: the
    result lands without it, the message is not quarantined (its other results are good), and the
    file's report counts what was left out."""
    rel = _source_file(territory, Case("", "labs", None, hl7_unit_no_rule_reads))
    n = manifest_records(territory)[rel]
    position = _hba1c_unit(copy_into(territory, rel, tmp_path), typed, code=b"3016-3")
    got = parse_root(tmp_path, registry)
    assert not got.quarantined and len(got.records) == n
    (record,) = [r for r in got.records if r.position == position]
    (tsh,) = [e for e in record.events if e.code == "3016-3"]
    assert tsh.unit is None and tsh.value is not None
    assert typed.decode() not in repr([(e.unit, e.source_value) for r in got.records for e in r.events])
    ((_, counts),) = got.counts.items()
    assert counts.skipped_resources == {NOT_A_UNIT: 1}
