"""The HL7 v2.5 lab writer: every message must read back with python-hl7 (and validate with
hl7apy) carrying the identity, codes, values and units that went in."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import hl7
import pytest
from builders import (
    BOM_LAB,
    GP_A,
    LATIN1_LAB,
    UTF8_LAB,
    EventFactory,
    identity_of_factory,
    make_person,
    make_world,
    sample_persons,
    synthetic_population,
)
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from pdp.synth.formats.hl7_lab import (
    MEASUREMENT_RULES,
    NIR_OID,
    SOURCE,
    abnormal_flag,
    escape,
    lab_file_path,
    local_patient_id,
    render_lab_messages,
    to_charset,
)
from pdp.synth.model import Person
from pdp.synth.output import RECORD_LINKS, Rendered
from pdp.synth.world import World

WITHOUT_NIR = (2,)
REFERENCE_DAY = date(2025, 6, 2)


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


@pytest.fixture(scope="module")
def persons() -> list[Person]:
    return sample_persons()


@pytest.fixture(scope="module")
def rendered(persons: list[Person], world: World) -> list[Rendered]:
    return render_lab_messages(persons, world, identity_of_factory(WITHOUT_NIR))


@pytest.fixture(scope="module")
def files(rendered: list[Rendered], tmp_path_factory: pytest.TempPathFactory) -> dict[str, hl7.File]:
    """The lab files written as the generator writes them, read back from disk."""
    return {path: hl7.parse_file(text) for path, text in read_back(rendered, tmp_path_factory.mktemp("labs")).items()}


def write_files(rendered: list[Rendered], root: Path) -> dict[str, Path]:
    """Header once, chunk texts, footer with {count}: the generator's file contract."""
    texts: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    specs = {}
    for r in rendered:
        texts[r.spec.path].append(r.text)
        counts[r.spec.path] += r.records
        specs[r.spec.path] = r.spec
    paths = {}
    for rel, chunks in texts.items():
        spec = specs[rel]
        body = spec.header + "".join(chunks) + spec.footer.replace("{count}", str(counts[rel]))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.encode(spec.encoding))
        paths[rel] = path
    return paths


def read_back(rendered: list[Rendered], root: Path) -> dict[str, str]:
    """Each lab file decoded with its declared encoding (BOM stripped for utf-8-sig)."""
    encodings = {r.spec.path: r.spec.encoding for r in rendered}
    return {
        rel: path.read_bytes().decode(encodings[rel])
        for rel, path in write_files(rendered, root).items()
        if rel != RECORD_LINKS.path
    }


def messages_of(files: dict[str, hl7.File]) -> list[hl7.Message]:
    return [message for parsed in files.values() for batch in parsed for message in batch]


def links_of(rendered: list[Rendered]) -> list[list[str]]:
    return [r.text.strip().split(",") for r in rendered if r.spec == RECORD_LINKS]


def order_of(message: hl7.Message) -> str:
    """The sender record id the platform reads: the lab (MSH-4) and the filler order number (OBR-3)."""
    return f"{message['MSH.F4']}|{message.segment('OBR')[3][0][0]}"


def message_for(files: dict[str, hl7.File], rendered: list[Rendered], person_id: int) -> list[hl7.Message]:
    ids = {rid for source, _f, rid, pid in links_of(rendered) if int(pid) == person_id}
    return [m for m in messages_of(files) if order_of(m) in ids]


def test_one_file_per_lab_with_batch_envelope(files: dict[str, hl7.File], rendered: list[Rendered]) -> None:
    assert set(files) == {lab_file_path(f.finess) for f in (UTF8_LAB, LATIN1_LAB, BOM_LAB)}
    records = {r.spec.path: r.records for r in rendered if r.spec != RECORD_LINKS}
    for path, parsed in files.items():
        finess = path.removeprefix("labs/").removesuffix(".hl7")
        assert str(parsed.header[0]) == "FHS"
        assert str(parsed.header[3]) == finess
        assert len(parsed) == 1, "one batch per file"
        batch = parsed[0]
        assert str(batch.header[0]) == "BHS"
        assert int(str(batch.trailer[1])) == len(batch) == records[path], "BTS-1 counts the messages"
        assert int(str(parsed.trailer[1])) == 1, "FTS-1 counts the batches"


def test_messages_are_oru_r01_v25_from_the_lab(files: dict[str, hl7.File]) -> None:
    for path, parsed in files.items():
        finess = path.removeprefix("labs/").removesuffix(".hl7")
        for message in parsed[0]:
            assert str(message["MSH.F2"]) == "^~\\&"
            assert str(message["MSH.F3"]) == finess
            assert str(message["MSH.F4"]) == finess
            assert str(message["MSH.F5"]) == "PDP"
            assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
            assert str(message["MSH.F12"]) == "2.5"
            assert len(str(message["MSH.F10"])) == 20
            assert [str(s[0]) for s in message][:5] == ["MSH", "PID", "PV1", "ORC", "OBR"]


def test_control_ids_are_unique_and_orders_linked_to_the_right_person(
    files: dict[str, hl7.File], rendered: list[Rendered]
) -> None:
    control_ids = [str(m["MSH.F10"]) for m in messages_of(files)]
    assert len(control_ids) == len(set(control_ids)) == 4
    orders = [order_of(m) for m in messages_of(files)]
    links = links_of(rendered)
    assert sorted(rid for _s, _f, rid, _p in links) == sorted(orders) and len(set(orders)) == 4
    for source, file, rid, _pid in links:
        assert source == SOURCE
        assert any(order_of(m) == rid for m in files[file][0])
    assert sorted({int(p) for *_rest, p in links}) == [1, 2, 5], "persons 3 and 4 have no lab result"


def test_identity_with_nir_birth_and_used_names(files: dict[str, hl7.File], rendered: list[Rendered]) -> None:
    messages = message_for(files, rendered, 1)
    assert len(messages) == 2, "two days at the same lab: two orders"
    for m in messages:
        assert len(str(m["PID.F3.R1.C1"])) == 15
        assert str(m["PID.F3.R1.C4.S2"]) == NIR_OID
        assert str(m["PID.F3.R1.C5"]) == "INS"
        assert str(m["PID.F3.R2.C5"]) == "PI"
        assert str(m["PID.F5.R1.C1"]) == "LEFÈVRE"
        assert str(m["PID.F5.R1.C2"]) == "Marie-Hélène"
        assert str(m["PID.F5.R1.C3"]) == "Marie-Hélène Françoise"
        assert str(m["PID.F5.R1.C7"]) == "L"
        assert str(m["PID.F5.R2.C1"]) == "DUPONT-MÉNARD"
        assert str(m["PID.F5.R2.C7"]) == "D"
        assert str(m["PID.F7"]) == "19611102"
        assert str(m["PID.F8"]) == "F"
        assert str(m["PID.F11.R1.C1"]) == "3 impasse de l'Église"
        assert str(m["PID.F11.R1.C5"]) == "59500"
        assert str(m["PID.F11.R2.C7"]) == "BDL"
        assert str(m["OBR.F16.R1.C1"]) == f"8{GP_A.rpps}"


def test_nir_matches_the_source_identity(
    persons: list[Person], files: dict[str, hl7.File], rendered: list[Rendered]
) -> None:
    for m in message_for(files, rendered, 1):
        assert str(m["PID.F3.R1.C1"]) == persons[0].identity.nir


def test_person_without_nir_only_has_the_local_id(
    persons: list[Person], files: dict[str, hl7.File], rendered: list[Rendered], world: World
) -> None:
    (m,) = message_for(files, rendered, 2)
    pid3 = m.segment("PID")[3]
    assert len(pid3) == 1, "a single PID-3 repetition"
    assert str(m["PID.F3.R1.C5"]) == "PI"
    assert str(m["PID.F3.R1.C1"]) == local_patient_id(world.seed, LATIN1_LAB.finess, 2)
    assert persons[1].identity.nir not in str(m)
    assert NIR_OID not in str(m)
    assert len(m.segment("PID")[5]) == 1, "no used name, no second PID-5 repetition"


def test_results_codes_values_units_ranges_flags(files: dict[str, hl7.File], rendered: list[Rendered]) -> None:
    first, second = sorted(message_for(files, rendered, 1), key=lambda m: str(m["OBR.F7"]))
    obx = [
        (
            str(s[2]),
            first.unescape(str(s[3][0][0])),
            first.unescape(str(s[3][0][1])),
            str(s[3][0][2]),
            str(s[5]),
            str(s[6][0][0]),
            str(s[6][0][2]),
            str(s[7]),
            str(s[8]),
            str(s[11]),
        )
        for s in first.segments("OBX")
    ]
    assert obx == [
        ("NM", "4548-4", "Hémoglobine A1c/Hémoglobine totale", "LN", "7.5", "%", "UCUM", "4.0-6.0", "H", "F"),
        (
            "NM",
            "1558-6",
            "Glucose à jeun [Masse/Volume] Sérum/Plasma",
            "LN",
            "1.38",
            "g/L",
            "UCUM",
            "0.70-1.10",
            "H",
            "F",
        ),
        ("NM", "2160-0", "Créatinine [Masse/Volume] Sérum/Plasma", "LN", "5.2", "mg/L", "UCUM", "6.0-12.0", "L", "F"),
    ]
    assert [str(s[1]) for s in first.segments("OBX")] == ["1", "2", "3"]
    assert all(str(s[14]).startswith("20240304") for s in first.segments("OBX"))
    egfr = second.segments("OBX")[1]
    assert (str(egfr[3][0][0]), str(egfr[5]), str(egfr[6][0][0]), str(egfr[7]), str(egfr[8])) == (
        "62238-1",
        "58",
        "mL/min/{1.73_m2}",
        ">60",
        "L",
    )


def test_missing_value_and_unknown_test(files: dict[str, hl7.File], rendered: list[Rendered]) -> None:
    (m2,) = message_for(files, rendered, 2)
    bnp = m2.segments("OBX")[2]
    assert (str(bnp[5]), str(bnp[8]), str(bnp[11])) == ("", "", "X"), "no value: status X, no flag"
    (m5,) = message_for(files, rendered, 5)
    unknown = m5.segments("OBX")[1]
    assert str(unknown[3][0][0]) == "2345-7"
    assert (str(unknown[5]), str(unknown[7]), str(unknown[8])) == ("5.4", "", ""), "no rule: no range, no flag"


def test_delimiters_in_text_are_escaped_and_round_trip(world: World) -> None:
    label = "Test | a ^ b & c ~ d \\ e"
    unit = "mg/L|x"
    factory = EventFactory("esc")
    person = make_person(
        90,
        birth_name="O'BRIEN^SMITH",
        first_names=("Anne|Marie",),
        events=[factory.measurement("ldl", REFERENCE_DAY, 1.2, "lab", UTF8_LAB.finess, label=label, unit=unit)],
    )
    (lab_file, _link) = render_lab_messages([person], world, identity_of_factory())
    raw = lab_file.text
    assert "\\F\\" in raw and "\\S\\" in raw and "\\T\\" in raw and "\\R\\" in raw and "\\E\\" in raw
    message = hl7.parse(raw)
    assert len(message.segments("OBX")[0]) == 15, "no extra field from an unescaped |"
    assert message.extract_field("OBX", 1, 3, 1, 2) == label
    assert message.extract_field("OBX", 1, 6, 1, 1) == unit
    assert message.extract_field("PID", 1, 5, 1, 1) == "O'BRIEN^SMITH"
    assert message.extract_field("PID", 1, 5, 1, 3) == "Anne|Marie"


def test_escape_covers_every_delimiter_and_line_breaks() -> None:
    assert escape("a|b^c&d~e\\f") == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    assert escape("line\r\nnext\u2028end") == "line  next end"


def test_latin1_lab_transliterates_and_ends_messages_with_crlf(
    rendered: list[Rendered], tmp_path: Path, files: dict[str, hl7.File]
) -> None:
    lab = next(r for r in rendered if r.spec.path == lab_file_path(LATIN1_LAB.finess))
    assert lab.spec.encoding == "latin-1"
    (lab.spec.header + lab.text + lab.spec.footer).encode("latin-1")  # raises if anything is unencodable
    assert "Œ" not in lab.text and "“" not in lab.text
    assert lab.text.endswith("\r\n")
    assert lab.text.count("\n") == lab.records and lab.text.count("\r\nMSH|") == lab.records - 1
    assert lab.spec.header.count("\r\n") == 2 and lab.spec.footer.count("\r\n") == 2
    (message,) = files[lab.spec.path][0]
    assert str(message["PID.F5.R1.C1"]) == "COEURDEROY"
    assert str(message["PID.F5.R1.C3"]) == "Jean-Marie Noël", "é/ë exist in latin-1: kept"
    assert str(message["MSH.F18"]) == "8859/1"
    potassium = message.extract_field("OBX", 2, 3, 1, 2)
    assert potassium == 'Potassium | sérum ^ plasma & ~ test \\ "K+"'


def test_utf8_labs_declare_their_charset_and_keep_bare_cr(rendered: list[Rendered]) -> None:
    for lab in (UTF8_LAB, BOM_LAB):
        r = next(r for r in rendered if r.spec.path == lab_file_path(lab.finess))
        assert r.spec.encoding == lab.encoding
        assert "\n" not in r.text + r.spec.header + r.spec.footer
        assert "|UNICODE UTF-8" in r.text


def test_bom_file_starts_with_bom_and_parses(rendered: list[Rendered], tmp_path: Path) -> None:
    path = write_files(rendered, tmp_path)[lab_file_path(BOM_LAB.finess)]
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfFHS|")
    parsed = hl7.parse_file(data.decode("utf-8-sig"))
    assert len(parsed[0]) == 1


def test_to_charset_never_fails_nor_injects_delimiters() -> None:
    text = "CŒUR “x” – ｜ 中 µ É"
    out = to_charset(text, "latin-1")
    out.encode("latin-1")
    assert out == 'COEUR "x" - ? ? µ É'
    assert to_charset(text, "utf-8") == text


def test_abnormal_flags_follow_the_reference_ranges() -> None:
    rule = MEASUREMENT_RULES["4548-4"]
    assert [abnormal_flag(v, rule) for v in (3.9, 4.0, 6.0, 6.1)] == ["L", "N", "N", "H"]
    assert abnormal_flag(59, MEASUREMENT_RULES["62238-1"]) == "L"
    assert abnormal_flag(31, MEASUREMENT_RULES["9318-7"]) == "H"
    assert abnormal_flag(1.0, None) == ""


def test_messages_validate_with_hl7apy(files: dict[str, hl7.File]) -> None:
    for message in messages_of(files):
        parsed = parse_message(str(message), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
        assert len(parsed.oru_r01_patient_result.oru_r01_order_observation.oru_r01_observation) >= 1


def test_output_is_deterministic_and_chunk_independent(persons: list[Person], world: World) -> None:
    identity_of = identity_of_factory(WITHOUT_NIR)
    whole = render_lab_messages(persons, world, identity_of)
    assert whole == render_lab_messages(persons, world, identity_of)
    split = render_lab_messages(persons[:2], world, identity_of) + render_lab_messages(persons[2:], world, identity_of)

    def by_file(rendered: list[Rendered]) -> dict[str, str]:
        out: dict[str, str] = defaultdict(str)
        for r in rendered:
            out[r.spec.path] += r.text
        return dict(out)

    assert by_file(whole) == by_file(split)
    assert {r.spec for r in whole} == {r.spec for r in split}, "same header whatever the chunk"


def test_local_patient_ids_are_distinct_and_stable() -> None:
    ids = {local_patient_id(1, "590000011", pid) for pid in range(50_000)}
    assert len(ids) == 50_000
    assert local_patient_id(1, "590000011", 7) == local_patient_id(1, "590000011", 7)
    assert local_patient_id(1, "590000011", 7) != local_patient_id(1, "590000029", 7)
    assert local_patient_id(1, "590000011", 7) != "7".zfill(10)


def test_synthetic_population_round_trips(tmp_path: Path) -> None:
    world = make_world()
    persons = synthetic_population(2000, world)
    identity_of = identity_of_factory(range(1000, 3000, 7))
    rendered = render_lab_messages(persons, world, identity_of)
    texts = read_back(rendered, tmp_path).values()
    # python-hl7's fast splitter for counts and ids; its full parser on a sample (it is slow).
    messages = [m for text in texts for m in hl7.split_file(text)]
    expected_orders = sum(len({(e.facility, e.day) for e in p.events if e.channel == "lab"}) for p in persons)
    assert len(messages) == expected_orders == len(links_of(rendered))
    assert sum(m.count("\rOBX|") for m in messages) == sum(1 for p in persons for e in p.events if e.channel == "lab")
    orders = {order_of(hl7.parse(m)) for m in messages[::10]}
    assert len(orders) == len(messages[::10])
    assert orders <= {rid for _s, _f, rid, _p in links_of(rendered)}
