"""The leak scanner finds direct identifiers in every table, retained version, change file and log file.

Real Delta tables written by Spark (session fixture), a real identity vault on SQLite with a
real key store; a few cases use pyarrow-written files where Spark cannot produce the layout
(a corrupt file, a partition directory named after a value).
"""

from __future__ import annotations

import base64
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from rich.console import Console

from pdp.config import Settings
from pdp.governance import create_all, make_engine
from pdp.governance.leak_scan import (
    DELTA_LOG_COLUMN,
    UNREADABLE,
    BirthDateDetector,
    DeathActDetector,
    EmailDetector,
    KnownIdentityDetector,
    LeakScanError,
    NirBodyDetector,
    NirDetector,
    PhoneDetector,
    ScanReport,
    SenderIdFormCheck,
    SenderNumberDetector,
    SenderUuidCheck,
    _fold_array,
    fold_tokens,
    scan_lake,
)
from pdp.governance.leak_scan_cli import render, run_scan
from pdp.lake.catalog import ColumnDef, TableDef
from pdp.lake.sparkconf import RETENTION_CHECK, scoped_conf
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.nir import nir_key
from pdp.pseudonym.vault import IdentityVault, VaultRecord

NIR_BODY = "1800575056123"
NIR = NIR_BODY + nir_key(NIR_BODY)  # a valid NIR (structure and key)
NIR_SPACED = f"{NIR[0]} {NIR[1:3]} {NIR[3:5]} {NIR[5:7]} {NIR[7:10]} {NIR[10:13]} {NIR[13:]}"
BAD_KEY = NIR_BODY + f"{(int(nir_key(NIR_BODY)) + 1) % 97:02d}"  # same digits, wrong key
PHONE = "06 12 34 56 78"
EMAIL = "paul.martin@example.fr"
KNOWN_ADDRESS = "12 rue des Lilas"

# Pseudonyms, codes, digests, run ids, dates: what a clean lake holds, and what a careless
# scanner flags (digit runs inside hex and base64, long numbers, a saint's street). Run ids are
# written as the platform makes them (uuid4().hex): an 8-4-4-4-12 UUID in a data column is a FHIR
# resource id (SENDER_UUID) unless the catalog declares the column `platform_uuid`; the lake's own
# UUIDs (part-file names, the log's txnId and table id) are still there, written by Spark.
CLEAN_ROWS = [
    (1, "v1:Qm9uam91ciBsZSBtb25kZQ", "E11.9", "rue Saint-Martin", "9f86d081884c7d659a2feaa0c55ad015" * 2,
     "4f20126427dc469a8e0de317273f8338", BAD_KEY, "2024-01-02 03:04:05"),
    (2, "v1:0612345678abcdefABCDEF", "I50.0", "Clinique Saint-Martin", "0612345678aa" * 5 + "beef",
     "9e3bcb5ea2a24a9e94bbe384f9bf6d20", "123456789012345", "2001-01-15"),
    (3, "v1:x_180057505612342_yzAB", "Z00.0", "Martin-Église", "deadbeef" * 8, "00000000000000000000000000000000",
     "999999999999999", "1999-12-31T23:59:59Z"),
]  # fmt: skip
CLEAN_SCHEMA = "id long, person string, code string, place string, digest string, run string, num string, at string"


def _vault_record(**traits: object) -> VaultRecord:
    return VaultRecord.model_validate(traits)


PEOPLE = {
    "v1:AAAAAAAAAAAAAAAAAAAAAA": _vault_record(
        birth_name="MARTIN", first_names=("Paul",), address_line=KNOWN_ADDRESS, nir=NIR, phone=PHONE, email=EMAIL
    ),
    "v1:BBBBBBBBBBBBBBBBBBBBBB": _vault_record(birth_name="Lefèvre", used_name="DUPONT", first_names=("Jean-Marie",)),
}


@pytest.fixture()
def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode("ascii")


@pytest.fixture()
def vault(tmp_path: Path, master_key: str) -> Iterator[IdentityVault]:
    """A real vault (temp SQLite, temp key store) holding two known people."""
    store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master_key))
    store.init()
    engine = make_engine(f"sqlite:///{tmp_path / 'gov.db'}")
    create_all(engine)
    vault = IdentityVault(engine, store)
    vault.upsert_many(PEOPLE)
    yield vault
    engine.dispose()


def _create(spark, path: Path, schema: str, *, cdf: bool = False, stats: bool = True, partition: str = "") -> str:
    """A Delta table as the lake makes them (no deletion vectors), optionally with CDF / no statistics."""
    props = {"delta.enableDeletionVectors": "false", "delta.enableChangeDataFeed": str(cdf).lower()}
    if not stats:
        props["delta.dataSkippingNumIndexedCols"] = "0"
    spark.sql(
        f"CREATE TABLE delta.`{path}` ({schema}) USING DELTA"
        + (f" PARTITIONED BY ({partition})" if partition else "")
        + " TBLPROPERTIES (" + ", ".join(f"'{k}' = '{v}'" for k, v in props.items()) + ")"
    )
    return str(path)


def _append(spark, path: str, rows: list[tuple], schema: str) -> None:
    spark.createDataFrame(rows, schema).coalesce(1).write.format("delta").mode("append").save(path)


def _only(report: ScanReport) -> set[tuple[str, str, str]]:
    return {(f.table, f.column, f.detector) for f in report.findings}


def _rendered(report: ScanReport, **kwargs: object) -> str:
    buffer = io.StringIO()
    render(report, Console(file=buffer, width=200, color_system=None), **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


# --- detectors, no Spark --------------------------------------------------------------------------------


def test_nir_detector_needs_a_valid_key_and_a_standalone_number() -> None:
    nir = NirDetector()
    assert nir.find(NIR) == {"NIR"}
    assert nir.find(f"NIR : {NIR_SPACED}.") == {"NIR"}
    assert nir.find("2 80 05 2A 004 123 " + nir_key("280052A004123")) == {"NIR"}  # Corsica
    assert nir.find(BAD_KEY) == set(), "a 15-digit number with an invalid key is not a NIR"
    assert nir.find(NIR + "9") == set() and nir.find("x" + NIR) == set(), "inside a longer token"
    values = pa.array([NIR, BAD_KEY, None, f"a {NIR_SPACED} b", "123456789012345"])
    assert nir.count(values) == {"NIR": 2}
    # with what the chance rule weighs: 15-digit numbers, longer ones, all values
    assert nir.count_integers(pa.array([int(NIR), int(BAD_KEY), 42, None], pa.int64())) == {
        "NIR": 1, "NIR%15": 2, "NIR%long": 0, "NIR%all": 3}
    assert not nir.chance(1, {"15": 2, "long": 0, "all": 3}), "not hash-spread: every match counts"
    assert nir.chance(2, {"15": 20, "long": 10**6, "all": 10**6}) and not nir.chance(3, {"15": 20, "long": 10**6,
                                                                                          "all": 10**6})


def test_phone_and_email_detectors() -> None:
    phone, email = PhoneDetector(), EmailDetector()
    for text in ("0612345678", PHONE, "06.12.34.56.78", "+33 6 12 34 56 78", "+33612345678", "0033 (0)6 12 34 56 78",
                 f"tel: {PHONE}"):
        assert phone.find(text) == {"PHONE"}, text
    for text in ("0012345678", "06 12.34 56 78", "2024-01-02 03:04:05", "a0612345678", "06123456789", "1.0612345678e9"):
        assert phone.find(text) == set(), text
    assert email.find(f"contact <{EMAIL}>") == {"EMAIL"}
    for text in ("x@y", "Object@6d06d69c", ".a@b.fr", "a..b@c.fr", "a@-b.fr"):
        assert email.find(text) == set(), text


def test_known_identity_rule_name_pairs_whole_surnames_and_numbered_addresses() -> None:
    known = KnownIdentityDetector.from_records(PEOPLE.values())
    assert known.people == 2
    assert known.find("Paul MARTIN") == {"KNOWN_NAME"}
    assert known.find("Dr Martin, Paul (médecin)") == {"KNOWN_NAME"}
    assert known.find("JEAN MARIE LEFEVRE") == {"KNOWN_NAME"}
    assert known.find("Jean-Marie Dupont") == {"KNOWN_NAME"}, "used name"
    assert known.find("vu avec Paul et Marie MARTIN ce jour") == {"KNOWN_NAME"}, "two tokens between"
    assert known.find("MARTIN, hospitalisé, Paul") == {"KNOWN_NAME"}
    # A surname and a first name far apart in a long text are two words (NEVEU ... CLAIRE).
    assert known.find("Paul vient avec son fils et MARTIN") == set()
    assert known.find("MARTIN signale que le bilan de Paul") == set()
    # A "LE GALL" typed as given names beside the first name as surname (a swapped identity):
    # the article is no first name, the rest of it is.
    swapped = KnownIdentityDetector.from_records([_vault_record(birth_name="CLAIRE", first_names=("LE", "GALL"))])
    assert swapped.find("auscultation pulmonaire claire sur le plan") == set()
    assert swapped.find("Claire Gall") == {"KNOWN_NAME"}
    assert known.find("martin") == {"KNOWN_SURNAME"}
    assert known.find("Lefèvre") == {"KNOWN_SURNAME"}
    assert known.find("12, Rue des Lilas 59500 Douai") == {"KNOWN_ADDRESS"}
    # Surnames inside places, other people's first names, un-numbered streets: not a person.
    for text in ("rue Saint-Martin", "Clinique Saint-Martin", "Marie Martin", "Martin Martin", "rue des Lilas",
                 "14 rue des Lilas", "Jean Lefèvre-Utile", "Paul", "v1:AAAAAAAAAAAAAAAAAAAAAA"):
        assert known.find(text) == set(), text
    counted = known.count(pa.array(["Paul Martin", "rue Saint-Martin", None, "Paul Martin", "MARTIN", "dupont"]))
    assert counted["KNOWN_NAME"] == 2
    surnames = {label: n for label, n in counted.items() if label.startswith("KNOWN_SURNAME#")}
    assert sorted(surnames.values()) == [1, 1], "bare surnames carry which surname matched (an index, not the value)"


def test_array_fold_and_python_fold_agree_on_tokens() -> None:
    """The vectorised candidate search must never miss a cell the per-cell rule would flag."""
    texts = ["Lefèvre", "Œuvre de l'Élysée", "STRAßE", "Łódź", "São Tomé", "d'Arcy–Smith", "Ærø", "ÉLOÏSE", "12,rue"]
    folded = pc.split_pattern_regex(_fold_array(pa.array(texts)), "[^A-Z0-9]+").to_pylist()
    for text, tokens in zip(texts, folded, strict=True):
        assert tuple(t for t in tokens if t) == fold_tokens(text), text


def test_missing_lake_root_is_an_error_and_exit_2(tmp_path: Path) -> None:
    with pytest.raises(LeakScanError, match="not a directory"):
        scan_lake(tmp_path / "nowhere")
    buffer = io.StringIO()
    settings = Settings(_env_file=None, lake_uri=str(tmp_path / "nowhere"))
    assert run_scan(settings, console=Console(file=buffer), use_vault=False) == 2
    assert "not a directory" in buffer.getvalue()


# --- pyarrow-written layouts -----------------------------------------------------------------------------


def _fake_delta(root: Path) -> Path:
    (root / "_delta_log").mkdir(parents=True)
    (root / "_delta_log" / "00000000000000000000.json").write_text('{"commitInfo":{"operation":"WRITE"}}\n')
    return root


def test_partition_values_nested_and_binary_columns_are_scanned(tmp_path: Path) -> None:
    table = _fake_delta(tmp_path / "lake" / "gold" / "contacts")
    partition = table / "phone=06%2012%2034%2056%2078"
    partition.mkdir()
    contact = pa.struct([("emails", pa.list_(pa.string())), ("extra", pa.map_(pa.string(), pa.binary()))])
    pq.write_table(
        pa.table({
            "id": pa.array([1, 2], pa.int64()),
            "contact": pa.array(
                [
                    {"emails": ["none", EMAIL], "extra": [("k", b"nothing")]},
                    {"emails": [], "extra": [("t", b"0612345678")]},
                ],
                contact,
            ),
            "blob": pa.array([NIR.encode() + b"\xff\xfe", b"\x00\x01"], pa.binary()),
            "nir_number": pa.array([int(NIR), int(BAD_KEY)], pa.int64()),
        }),
        partition / "part-0.parquet",
    )
    report = scan_lake(tmp_path / "lake")
    assert _only(report) == {
        ("gold.contacts", "phone", "PHONE"),
        ("gold.contacts", "contact.emails[]", "EMAIL"),
        ("gold.contacts", "contact.extra.value", "PHONE"),
        ("gold.contacts", "blob", "NIR"),
        ("gold.contacts", "nir_number", "NIR"),
    }
    assert all(f.cells == 1 for f in report.findings)
    assert report.rows == 2 and report.tables == 1 and report.data_files == 1


def test_a_chance_nir_among_hash_ids_is_dismissed_but_nirs_slipped_into_ids_are_not(tmp_path: Path) -> None:
    """BIGINT ids from a keyed hash hold NIR-valid 15-digit numbers by chance (about 1 in 200 of
    their 15-digit values): dismissed. NIRs put into an id column outnumber those: a finding
    (`make demo` once failed on one such chance id in silver.measurement)."""
    import random

    rng = random.Random(7)
    ids = [rng.getrandbits(63) for _ in range(20_000)]  # a 64-bit hash's spread: almost never 15 digits
    detector = NirDetector()
    not_nirs = [n for n in (rng.randrange(10**14, 10**15) for _ in range(400)) if not detector.find(str(n))][:199]
    table = _fake_delta(tmp_path / "lake" / "silver" / "measurement")
    pq.write_table(pa.table({
        "chance_id": pa.array([*ids, *not_nirs, int(NIR)] + [None] * 2, pa.int64()),
        "slipped_id": pa.array([*ids, int(NIR), int(NIR), int(NIR)] + [None] * 199, pa.int64()),
    }), table / "part-0.parquet")
    report = scan_lake(tmp_path / "lake")
    assert _only(report) == {("silver.measurement", "slipped_id", "NIR")}
    assert {(f.table, f.column, f.detector, f.cells) for f in report.dismissed} == {
        ("silver.measurement", "chance_id", "NIR", 1)
    }


def test_files_outside_tables_are_read_too(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "tmp").mkdir(parents=True)
    (lake / "tmp" / "export.csv").write_text(f"id;mail\n1;{EMAIL}\n", encoding="utf-8")
    report = scan_lake(lake)
    assert _only(report) == {("(outside any Delta table)", "_file", "EMAIL")}
    assert report.tables == 0 and report.other_files == 1


def _chunk_whose_crc(test: Callable[[bytes], bool], seed: bytes) -> bytes:
    """A 512-byte chunk whose big-endian CRC32 passes `test` (found by counting, in well under a second)."""
    import zlib

    for n in range(10_000_000):
        chunk = (seed + n.to_bytes(8, "big")).ljust(512, b"\x00")
        if test(zlib.crc32(chunk).to_bytes(4, "big")):
            return chunk
    raise AssertionError("no chunk found")


def test_checksum_sidecar_is_skipped_only_when_it_is_the_siblings_crc(tmp_path: Path) -> None:
    import zlib

    letters = set(b"abcdefghijklmnopqrstuvwxyz")
    alnum = letters | set(b"0123456789")
    # Two chunks whose CRC32 bytes read "xx@x" then ".yy" + a separator: an address-like string in the sidecar.
    first = _chunk_whose_crc(lambda c: c[0] in alnum and c[1] in alnum and c[2] == ord("@") and c[3] in alnum, b"a")
    second = _chunk_whose_crc(
        lambda c: c[0] == ord(".") and c[1] in letters and c[2] in letters and c[3] in b" \n;", b"b"
    )
    data = first + second
    sums = b"".join(zlib.crc32(c).to_bytes(4, "big") for c in (first, second))
    sidecar = b"crc\x00" + (512).to_bytes(4, "big") + sums
    lake = tmp_path / "lake"
    (lake / "tmp").mkdir(parents=True)
    (lake / "tmp" / "part.bin").write_bytes(data)
    (lake / "tmp" / ".part.bin.crc").write_bytes(sidecar)
    assert scan_lake(lake).findings == []
    (lake / "tmp" / ".other.bin.crc").write_bytes(sidecar)  # same bytes, no sibling they are the checksums of
    assert _only(scan_lake(lake)) == {("(outside any Delta table)", "_file", "EMAIL")}


# --- real Delta tables written by Spark -------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow
def test_clean_spark_table_exits_zero_even_with_lookalikes(spark, tmp_path: Path, vault: IdentityVault,
                                                           master_key: str) -> None:
    lake = tmp_path / "lake"
    path = _create(spark, lake / "silver" / "events", CLEAN_SCHEMA, cdf=True)
    _append(spark, path, CLEAN_ROWS, CLEAN_SCHEMA)
    spark.sql(f"UPDATE delta.`{path}` SET code = 'E11' WHERE id = 1")
    report = scan_lake(lake, vault=vault)
    assert report.findings == [], _only(report)
    assert report.exit_code == 0
    assert (report.tables, report.versions, report.known_people) == (1, 3, 2)
    assert report.change_files >= 1 and report.log_files >= 3 and report.rows >= 3 + 1 + 2

    settings = Settings(_env_file=None, lake_uri=str(lake), db_url=f"sqlite:///{tmp_path / 'gov.db'}",
                        key_store=tmp_path / "keys", master_key=master_key)
    buffer = io.StringIO()
    assert run_scan(settings, console=Console(file=buffer, width=300)) == 0
    out = buffer.getvalue()
    assert "no direct identifier found in 1 tables" in out and "2 known people" in out and "warning" not in out


@pytest.mark.spark
def test_nir_in_a_column_is_reported_by_table_column_count_never_value(spark, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    schema = "id long, note string"
    path = _create(spark, lake / "silver" / "notes", schema)
    _append(spark, path, [(1, f"patient {NIR_SPACED}"), (2, "rien"), (3, NIR)], schema)
    report = scan_lake(lake)
    column = [f for f in report.findings if f.column == "note"]
    assert [(f.table, f.column, f.detector, f.cells, f.files) for f in column] == [
        ("silver.notes", "note", "NIR", 2, 1)
    ]
    assert ("silver.notes", DELTA_LOG_COLUMN, "NIR") in _only(report), "min/max statistics copy the NIR into the log"
    assert report.exit_code == 1
    out = _rendered(report, vault_warning="no master key")
    assert "silver.notes" in out and "note" in out and "NIR" in out and "warning" in out
    for text in (out, repr(report), str(report.findings)):
        assert NIR not in text and NIR_SPACED not in text and NIR_BODY not in re.sub(r"\D", "", text)


@pytest.mark.spark
@pytest.mark.slow
def test_nir_deleted_in_a_later_version_is_still_found(spark, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    schema = "id long, nir string"
    path = _create(spark, lake / "silver" / "people", schema, stats=False)
    _append(spark, path, [(1, NIR), (2, "none")], schema)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id = 1")
    assert [r.nir for r in spark.read.format("delta").load(path).collect()] == ["none"], "gone from the current version"
    report = scan_lake(lake)
    assert _only(report) == {("silver.people", "nir", "NIR")}, "found in the retained file of version 1"
    assert report.versions == 3


@pytest.mark.spark
@pytest.mark.slow
def test_old_value_in_change_data_is_found(spark, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    schema = "id long, phone string"
    path = _create(spark, lake / "silver" / "contacts", schema, cdf=True, stats=False)
    _append(spark, path, [(1, PHONE), (2, "none")], schema)
    spark.sql(f"UPDATE delta.`{path}` SET phone = 'redacted' WHERE id = 1")
    before = scan_lake(lake)
    assert _only(before) == {("silver.contacts", "phone", "PHONE")}
    assert before.findings[0].files == 2, "the removed data file and the change-data pre-image"
    # Drop the removed data file: the pre-image in _change_data alone must still be found.
    table = lake / "silver" / "contacts"
    for file in table.glob("part-*.parquet"):
        if PHONE in pq.read_table(file).column("phone").to_pylist():
            file.unlink()
    after = scan_lake(lake)
    assert [(f.column, f.detector, f.cells, f.files) for f in after.findings] == [("phone", "PHONE", 1, 1)]
    assert after.change_files >= 1


@pytest.mark.spark
@pytest.mark.slow
def test_statistics_in_delta_log_reveal_a_phone_after_vacuum(spark, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    schema = "id long, phone string"
    path = _create(spark, lake / "silver" / "calls", schema)
    _append(spark, path, [(1, PHONE), (2, "06 98 76 54 32")], schema)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id IN (1, 2)")
    with scoped_conf(spark, {RETENTION_CHECK: "false"}):
        spark.sql(f"VACUUM delta.`{path}` RETAIN 0 HOURS")
    assert not list((lake / "silver" / "calls").glob("part-*.parquet")), "data files physically erased"
    report = scan_lake(lake)
    assert _only(report) == {("silver.calls", DELTA_LOG_COLUMN, "PHONE")}
    assert report.findings[0].cells >= 2, "min and max statistics"


@pytest.mark.spark
def test_known_vault_name_and_address_found_street_not(spark, tmp_path: Path, vault: IdentityVault,
                                                       master_key: str) -> None:
    lake = tmp_path / "lake"
    schema = "id long, comment string, place string, contact string, who string, role string"
    path = _create(spark, lake / "gold" / "letters", schema, stats=False)
    rows = [
        (1, "RDV avec Paul Martin", "rue Saint-Martin", f"écrire à {EMAIL}", "Martin", "MARTIN"),
        (2, "rien", "Clinique Saint-Martin", "none", "DUPONT", "DP"),
        (3, "courrier", f"{KNOWN_ADDRESS}, 59500 Douai", "none", "Lefèvre", "MARTIN"),
    ]
    _append(spark, path, rows, schema)
    report = scan_lake(lake, vault=vault)
    assert _only(report) == {
        ("gold.letters", "comment", "KNOWN_NAME"),
        ("gold.letters", "place", "KNOWN_ADDRESS"),
        ("gold.letters", "contact", "EMAIL"),
        ("gold.letters", "contact", "KNOWN_NAME"),  # the e-mail's local part is the known full name
        ("gold.letters", "who", "KNOWN_SURNAME"),  # three distinct known surnames: a column of names
    }
    # A code column whose one value is also a surname ("DAS" in PMSI) is dismissed, not failed.
    assert [(d.column, d.detector, d.cells) for d in report.dismissed] == [("role", "KNOWN_SURNAME", 2)]
    assert {(f.column, f.detector): f.cells for f in report.findings} == {
        ("comment", "KNOWN_NAME"): 1,
        ("place", "KNOWN_ADDRESS"): 1,
        ("contact", "EMAIL"): 1,
        ("contact", "KNOWN_NAME"): 1,
        ("who", "KNOWN_SURNAME"): 3,
    }

    # Without the master key: pattern detectors only, said on a warning line, exit still by findings.
    no_key = Settings(_env_file=None, lake_uri=str(lake), db_url=f"sqlite:///{tmp_path / 'gov.db'}",
                      key_store=tmp_path / "keys")
    buffer = io.StringIO()
    assert run_scan(no_key, console=Console(file=buffer, width=300)) == 1
    out = buffer.getvalue()
    assert "identity vault not used" in out and "pattern detectors only" in out
    assert "EMAIL" in out and "KNOWN_NAME" not in out
    with_key = Settings(_env_file=None, lake_uri=str(lake), db_url=f"sqlite:///{tmp_path / 'gov.db'}",
                        key_store=tmp_path / "keys", master_key=master_key)
    buffer = io.StringIO()
    assert run_scan(with_key, console=Console(file=buffer, width=300)) == 1
    out = buffer.getvalue()
    assert "KNOWN_NAME" in out and "KNOWN_ADDRESS" in out and "warning" not in out
    assert "dismissed by a column rule" in out and "gold.letters.role" in out
    for value in ("Paul", "Martin", "Lilas", "Douai", "Dupont", "Lef", EMAIL):
        assert value.lower() not in out.lower()


@pytest.mark.spark
def test_corrupt_parquet_file_is_unreadable_and_fails_the_scan(spark, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    schema = "id long, region string"
    path = _create(spark, lake / "silver" / "regions", schema, partition="region")
    _append(spark, path, [(1, "north"), (2, "south")], schema)
    victim = sorted((lake / "silver" / "regions").glob("region=*/part-*.parquet"))[0]
    victim.write_bytes(b"PAR1 this is not a parquet file PAR1")
    report = scan_lake(lake)
    assert report.exit_code == 1
    assert _only(report) == {("silver.regions", "_file", UNREADABLE)}
    assert report.findings[0].files == 1 and report.data_files == 1
    [unreadable] = report.unreadable
    assert unreadable.path.startswith("region=…/part-") and "north" not in unreadable.path
    out = _rendered(report)
    assert "UNREADABLE" in out and "region=…/" in out and "leak scan failed" in out


@pytest.mark.spark
@pytest.mark.slow
def test_scan_throughput_on_a_million_rows(spark, tmp_path: Path) -> None:
    """~1M rows × 6 columns written by Spark; the scan must stay well above 50k rows/s (measured ~700k on 2 cores)."""
    lake = tmp_path / "lake"
    schema = "event_id long, person string, code string, label string, event_date date, value double"
    path = _create(spark, lake / "silver" / "big", schema)
    spark.sql(
        "SELECT id AS event_id,"
        " concat('v1:', substr(base64(sha2(cast(id AS string), 256)), 1, 22)) AS person,"
        " element_at(array('E11.9', 'I50.0', 'Z00.0', 'N18.3'), cast(id % 4 AS int) + 1) AS code,"
        " element_at(array('Consultation médecin généraliste', 'Clinique Saint-Martin', 'HbA1c', 'ECG de repos'),"
        "   cast(id % 4 AS int) + 1) AS label,"
        " date_add(DATE'2020-01-01', cast(id % 1500 AS int)) AS event_date, rand(1) AS value"
        " FROM range(1000000)"
    ).repartition(2).write.format("delta").mode("append").save(path)
    known = KnownIdentityDetector.from_records(PEOPLE.values())
    started = time.perf_counter()
    report = scan_lake(lake, known=known)
    elapsed = time.perf_counter() - started
    assert report.findings == [] and report.rows == 1_000_000
    rate = report.rows / elapsed
    print(f"leak scan: {report.rows:,} rows, {report.bytes / 1e6:.1f} MB in {elapsed:.2f} s = {rate:,.0f} rows/s, "
          f"{report.bytes / 1e6 / elapsed:.1f} MB/s")
    assert rate > 50_000


def test_spark_part_file_names_are_not_read_as_phone_numbers(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "tmp").mkdir(parents=True)
    name = "part-00337-38057935-a847-4dff-8bf8-be77e8f3ef8f.c000.snappy.parquet"
    pq.write_table(pa.table({"n": [1]}), lake / "tmp" / name)
    assert scan_lake(lake).findings == []
    (lake / "tmp" / "export-0033738057935.csv").write_text("nothing\n", encoding="utf-8")  # not Spark's: read
    assert _only(scan_lake(lake)) == {("(outside any Delta table)", "_path", "PHONE")}


# --- sender-local ids: keyed form in the catalog's id columns, shapes elsewhere -------------------------------

KEYED = "i1:" + "A" * 20 + "-C1-23-" + "b" * 16  # a keyed id whose base64url happens to spell a number's shape


def test_sender_number_shape_is_found_alone_never_in_codes_or_keyed_values() -> None:
    detector = SenderNumberDetector()
    for text in ("S1f-2041-7", "facture E1f-2041-12", "SIG1f-2041", "séjour (Sb-3-1)"):
        assert detector.find(text) == {"SENDER_NUMBER"}, text
    for text in ("CIM-10", "4548-4", "DEQP003", "E11.9", "HL7-ACTCODE", KEYED, "v1:" + "x" * 10 + "-Sa-12-" + "y" * 26,
                 "4f201264-27dc-469a-8e0d-e317273f8338", "prem_coordination@1/score", "hba1c@12-40", "xS1f-2041"):
        assert detector.find(text) == set(), text
    values = pa.array(["S1f-2041-7", KEYED, None, "E11.9", "S1f-2041-7"])
    assert detector.count(values) == {"SENDER_NUMBER": 2}


def test_sender_id_columns_come_from_the_catalog_and_only_keyed_values_pass() -> None:
    check = SenderIdFormCheck.from_catalog()
    assert check.columns("bronze.records") == {"record_id", "events[].visit_key"}
    assert check.columns("silver.visit_occurrence") == {"visit_key"}
    assert check.columns("silver.person") == frozenset()
    keyed = "i12:" + "Qm9uam91ciBsZSBtb25kZQ_-" + "a" * 19
    assert check.count(pa.array([keyed, None, "i1:" + "A" * 43])) == 0, "a missing id is not a leak"
    assert check.count(pa.array(["Encounter/enc-1", "123456789", keyed + "x", "v1:" + "A" * 43, keyed])) == 4


def test_death_act_number_needs_its_context_word() -> None:
    death = DeathActDetector()
    for text in ("numero_acte 123456789 refused", "Acte de décès n° 123456789", "décès (acte 123456789)"):
        assert death.find(text) == {"DEATH_ACT"}, text
    for text in ("123456789", "419099009", "Établissement FINESS 292915162", "acte 3400930000000",
                 "contact : 123456789", "3 actes CCAM, FINESS 292915162",
                 "décès" + " " * 30 + "123456789"):
        assert death.find(text) == set(), text


@pytest.mark.spark
def test_a_clear_sender_id_planted_in_silver_and_a_death_act_in_quarantine_are_found(spark, tmp_path: Path) -> None:
    from datetime import date, datetime

    from pdp.lake import LakeTable, RunInfo

    lake = tmp_path / "lake"
    run = RunInfo(run_id="r1", job="test", definitions_version="t")
    visits = LakeTable(spark, "silver.visit_occurrence", lake_root=str(lake)).create()
    base = {"person_id": 1, "person_pseudonym": "v1:" + "P" * 43, "vocabulary": "PMSI-UNIT", "source_code": "MCO",
            "concept": None, "concept_id": 2, "start_date": date(2024, 5, 2), "end_date": None, "status": None,
            "provider": "590000123", "source": "pmsi", "source_file": "pmsi/590000123.csv",
            "record_hash": "r1:" + "R" * 43, "batch_id": "b1"}
    rows = [base | {"visit_occurrence_id": 1, "visit_key": KEYED}, base | {"visit_occurrence_id": 2, "visit_key": None},
            base | {"visit_occurrence_id": 3, "visit_key": "S1f-2041-7"}]  # the stay number in clear
    schema = visits.definition.spark_schema()
    visits.append(spark.createDataFrame([tuple(r[n] for n in schema.names) for r in rows], schema), run=run)
    quarantine = LakeTable(spark, "ops.quarantine", lake_root=str(lake)).create()
    schema = quarantine.definition.spark_schema()
    row = {"batch_id": "b1", "source": "insee_deaths", "file": "insee/deces.txt", "record_position": 1,
           "reason_code": "VALUE_INVALID", "message": "numero_acte 123456789 refused", "record_hash": "r1:" + "Q" * 43,
           "quarantined_at": datetime(2024, 5, 2, 10, 0)}
    quarantine.append(spark.createDataFrame([tuple(row[n] for n in schema.names)], schema), run=run)
    report = scan_lake(lake)
    found = {(f.table, f.column, f.detector): f.cells for f in report.findings}
    assert found[("silver.visit_occurrence", "visit_key", "SENDER_ID")] == 1, "the keyed and the null pass"
    assert found[("silver.visit_occurrence", "visit_key", "SENDER_NUMBER")] == 1
    assert found[("ops.quarantine", "message", "DEATH_ACT")] == 1
    assert not {c for t, c, _ in found if t == "silver.visit_occurrence"} - {"visit_key", DELTA_LOG_COLUMN}
    assert not {c for t, c, _ in found if t == "ops.quarantine"} - {"message", DELTA_LOG_COLUMN}
    assert report.exit_code == 1 and {"SENDER_ID", "DEATH_ACT", "SENDER_NUMBER"} <= set(report.detectors)
    out = _rendered(report)
    assert "S1f-2041-7" not in out and "123456789" not in out


# --- identifiers in the forms the first detectors missed ----------------------------------------------------

NIR_BODY_SPACED = NIR_SPACED[:-3]  # "1 80 05 75 056 123": the 13 characters without their key
FHIR_ID = "4f201264-27dc-469a-8e0d-e317273f8338"


def test_nir_written_with_slashes_or_underscores_is_found() -> None:
    nir = NirDetector()
    slashed, underscored = NIR_SPACED.replace(" ", "/"), NIR_SPACED.replace(" ", "_")
    corsica = "2/80/05/2A/004/123/" + nir_key("280052A004123")
    for text in (slashed, underscored, corsica, f"NIR : {slashed}.", f"nss={underscored};", f"{NIR[:5]}/{NIR[5:]}"):
        assert nir.find(text) == {"NIR"}, text
    for text in (BAD_KEY[0] + "/" + BAD_KEY[1:], "/".join([NIR[0], NIR[1:3], NIR[3:5], NIR[5:7]]) + " " + NIR[7:],
                 "x_" + underscored, underscored + "_x", "2024/01/02", "pmsi/590000123.csv", "1/2/3/4"):
        assert nir.find(text) == set(), "wrong key, two kinds of separator, glued, or not a NIR at all"
    assert nir.count(pa.array([slashed, underscored, None, BAD_KEY.replace("0", "/0", 1)])) == {"NIR": 2}


def test_a_nir_without_its_key_is_found_after_a_context_word_only() -> None:
    """13 digits alone are a millisecond timestamp as often as a NIR body: the context word decides."""
    body = NirBodyDetector()
    wrong_key = f"{NIR_BODY_SPACED} {(int(nir_key(NIR_BODY)) + 1) % 97:02d}"
    for text in (f"NIR : {NIR_BODY}", f"N° sécu {NIR_BODY_SPACED}", "n° de Sécurité Sociale: 2 80 05 2A 004 123",
                 f"Matricule INS {NIR_BODY}", f"NSS={NIR_BODY}", f"nir {NIR_BODY_SPACED.replace(' ', '/')}",
                 f"NIR (sans clé) : {NIR_BODY}", f"nir : {wrong_key}", "n° secu: 1 80 05 971 23 123"):
        assert body.find(text) == {"NIR_BODY"}, text
    for text in (NIR_BODY, f"horodatage {NIR_BODY}", f"INSEE {NIR_BODY}", f"NIR : {NIR}", f"NIR : {NIR_SPACED}",
                 "NIR : 5800575056123", "NIR : 1801375056123", "NIR : 1804575056123", "NIR : 1800500056123",
                 "NIR : 1800575056000", f"NIR {' ' * 40}{NIR_BODY}", f"NIR : {NIR_BODY}7", f"NIR : x{NIR_BODY}",
                 f"NIR : {NIR_BODY[:7]} {NIR_BODY[7:10]}-{NIR_BODY[10:]}", "event_ms 1712345678901"):
        assert body.find(text) == set(), "no context, a whole NIR (NIR's), an impossible structure, or not alone"
    values = pa.array([f"NIR : {NIR_BODY}", NIR_BODY, None, f"NIR : {NIR}", f"nss {NIR_BODY}", "1712345678901"])
    assert body.count(values) == {"NIR_BODY": 2}


def test_a_birth_date_is_found_after_its_context_word_only() -> None:
    """Dates are everywhere in a lake (events); a birth date is one its text says is a birth date."""
    birth = BirthDateDetector()
    for text in ("né le 12/03/1950", "Née le 1er janvier 1950", "né(e) le 12-03-1950", "DDN : 12.03.1950",
                 "Date de naissance : 1950-03-12", "naissance : 12 mars 1950", "Patient born 1950-03-12",
                 "NÉE LE 3 AOÛT 1950", "date de naissance du patient : 02/11/50", "DOB 3/7/1950",
                 "Mme X, née le 14 février 1948, vue ce jour", "birthdate: 1950-03-12"):
        assert birth.find(text) == {"BIRTH_DATE"}, text
    for text in ("12/03/1950", "2024-01-02", "consultation le 12/03/2024", "vu par René le 12/03/2024",
                 "né le 32/03/1950", "né le 12/13/1950", "né le 12/03-1950", f"naissance{' ' * 40}12/03/1950",
                 "né le 12/03/19501", "il ne le sait que depuis le 12/03/2024", "né le 1950", "stillborn 2024-01-02",
                 "naissance prématurée ; sortie le 12 mars 2024", "date de naissance : inconnue, vu le 12/03/2024"):
        assert birth.find(text) == set(), text
    values = pa.array(["né le 12/03/1950", "2024-01-02", None, "DDN : 12.03.1950", "né le 12/03/1950"])
    assert birth.count(values) == {"BIRTH_DATE": 3}


def test_a_fhir_uuid_in_a_data_column_is_a_sender_id_unless_the_catalog_declares_the_column() -> None:
    check = SenderUuidCheck.from_catalog()
    assert check.label == "SENDER_UUID"
    assert check.applies("silver.note", "note_text") and check.applies("bronze.records", "attributes.value")
    assert check.applies("gold.not_in_the_catalog", "anything"), "a table the catalog does not know: every column"
    assert not check.applies("silver.visit_occurrence", "visit_key"), "a sender-id column: SENDER_ID's to judge"
    assert not check.applies("bronze.records", "events[].visit_key")
    assert check.applies("bronze.records", "events[].code")
    keyed = "i1:AAAA-" + FHIR_ID + "-b"  # 43 base64url characters that happen to spell a UUID
    values = pa.array([FHIR_ID, f"Patient/{FHIR_ID}", f"urn:uuid:{FHIR_ID.upper()}", None, FHIR_ID.replace("-", ""),
                       "x" + FHIR_ID, FHIR_ID + "_1", keyed, "2024-01-02", "4548-4"])
    assert check.count(values) == 3

    # A column the platform fills with its own UUIDs is declared in the catalog, never listed in the scanner.
    declared = TableDef.model_validate({
        "name": "exports", "zone": "ops", "description": "Export jobs.",
        "columns": [{"name": "export_id", "type": "STRING", "description": "uuid4 of the export.",
                     "platform_uuid": True},
                    {"name": "note", "type": "STRING", "description": "Free text."}]})
    exempt = SenderUuidCheck.from_catalog([declared])
    assert not exempt.applies("ops.exports", "export_id") and exempt.applies("ops.exports", "note")
    with pytest.raises(ValidationError, match="platform_uuid"):
        ColumnDef(name="visit_key", type="STRING", description="d", sender_id=True, platform_uuid=True)
    with pytest.raises(ValidationError, match="platform_uuid"):
        ColumnDef(name="p", type="STRING", description="d", pseudonym=True, platform_uuid=True)


def test_new_forms_are_found_in_a_lake_and_the_delta_logs_own_uuids_are_not(tmp_path: Path) -> None:
    """Through `scan_lake` with its defaults: each form above lands in a table and is reported by
    column and count; the UUIDs Delta writes itself (file names, txnId, table id) are no finding."""
    import json

    table = _fake_delta(tmp_path / "lake" / "silver" / "notes")
    part = "part-00000-38057935-a847-4dff-8bf8-be77e8f3ef8f.c000.snappy.parquet"
    with (table / "_delta_log" / "00000000000000000001.json").open("w", encoding="utf-8") as log:
        for action in ({"commitInfo": {"operation": "WRITE", "txnId": "9e3bcb5e-a2a2-4a9e-94bb-e384f9bf6d20"}},
                       {"metaData": {"id": "0b7e3a52-5d1c-4f7e-9a41-7c2f0e5d8b19", "format": {"provider": "parquet"}}},
                       {"add": {"path": part, "size": 1, "dataChange": True}}):
            log.write(json.dumps(action) + "\n")
    texts = [NIR_SPACED.replace(" ", "/"), f"NIR : {NIR_BODY}", "Mme née le 12/03/1950", f"Patient/{FHIR_ID}",
             "consultation le 12/03/2024 à 10:00", "horodatage 1712345678901", None]
    pq.write_table(pa.table({"id": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts, pa.string()),
                             "batch_id": ["b-20240102T030405-1a2b3c"] * len(texts)}), table / part)
    report = scan_lake(tmp_path / "lake")
    assert {(f.table, f.column, f.detector): f.cells for f in report.findings} == {
        ("silver.notes", "text", "NIR"): 1,
        ("silver.notes", "text", "NIR_BODY"): 1,
        ("silver.notes", "text", "BIRTH_DATE"): 1,
        ("silver.notes", "text", "SENDER_UUID"): 1,
    }
    assert {"NIR_BODY", "BIRTH_DATE", "SENDER_UUID"} <= set(report.detectors)
    out = _rendered(report)
    for value in (NIR_BODY, "1950", FHIR_ID, FHIR_ID[:8]):
        assert value not in out and value not in repr(report)
