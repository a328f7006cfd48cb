"""One large file as several edge tasks gives exactly what the file read whole gives.

A small batch built from the synthetic territory, split with a tiny ``PDP_EDGE_SPLIT_BYTES`` so
that every file of a splittable format becomes several tasks, with the awkward places where a
wrong cut shows: UTF-8 with a BOM and CRLF (a cut inside "é" or between CR and LF), a Latin-1
file whose last part alone would be decided UTF-8 (the encoding is decided once per file), a
quoted field spanning lines, a record repeated far from its first occurrence (a duplicate
across parts), blank lines, a bad row, a last line without newline, a GP bundle carrying a
Claim (skipped, counted). The reference is the in-process, unsplit run; the split runs are
worker processes and Spark tasks. Rows are compared whole (keyed record hash, position,
reason, message), with the counts and the vault records the edge gathered.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import split_faults
import yaml
from ingest_helpers import edge_run, lake_settings

from pdp.config import Settings
from pdp.ingest import Registry, load_registry
from pdp.ingest.encoding import FileEncoding
from pdp.ingest.fanout import BatchContext, FileTask, split_tasks
from pdp.ingest.registry import SOURCES_DIR
from pdp.ingest.split import line_cuts, plan_parts
from pdp.pseudonym.keys import KeyStore

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SPLIT = 2048  # bytes per task in the split runs: every territory file here is several parts


def _rows(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _fields(row: bytes, index: int, value: bytes) -> bytes:
    parts = row.split(b";")
    parts[index] = value
    return b";".join(parts)


@pytest.fixture(scope="module")
def batch(territory: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("split") / "src"
    shutil.copytree(territory, root, ignore=shutil.ignore_patterns("ground_truth", "reports", "gp", "insee"))
    pmsi = sorted((root / "pmsi").glob("*.csv"))
    utf8 = next(p for p in pmsi if p.read_bytes().startswith(b"\xef\xbb\xbf"))
    latin = next(p for p in pmsi if not p.read_bytes().startswith(b"\xef\xbb\xbf"))
    assert b"\r\n" in utf8.read_bytes() and b"\r\n" in latin.read_bytes()
    # Latin-1 file: ASCII rows at its end, then a row in UTF-8: the file is "mixed" (UTF-8, its Latin-1
    # rows refused); decided alone, a part of Latin-1 rows would land them
    rows = _rows(latin)
    ascii_rows = [r for r in rows[1:] if r.isascii()][:25]
    tail = [_fields(r, 0, b"S9-%d" % i) for i, r in enumerate(ascii_rows)]
    tail.append(_fields(_fields(ascii_rows[0], 0, b"S9-99"), 11, b"BAILLY\xc3\xa9"))
    latin.write_bytes(latin.read_bytes().rstrip(b"\r\n") + b"\r\n" + b"\r\n".join(tail))  # no final newline
    # UTF-8 file: a row repeated far below (a duplicate across parts), a blank line, a row with too
    # few fields, and a quoted field spanning two lines near the end
    rows = _rows(utf8)
    quoted = _fields(rows[3], 0, b"S8-1").replace(b";MCO;", b';"MCO\r\nsuite";', 1)
    utf8.write_bytes(b"\r\n".join([*rows, rows[2], b"", b"S8-2;1;2", quoted, *rows[4:9]]) + b"\r\n")
    pharmacy = sorted((root / "pharmacy").glob("*.csv"))[0]
    rows = _rows(pharmacy)
    pharmacy.write_bytes(b"\n".join([*rows, rows[1], b"", b"E9-1;x"]))
    # fixed width: the INSEE deaths file, grown with copies (duplicates), a blank line and a short line
    deaths = territory / "insee" / "deces.txt"
    (root / "insee").mkdir()
    lines = _rows(deaths)
    (root / "insee" / "deces.txt").write_bytes(b"\n".join(lines * 8 + [b"", b"TROP COURT", *lines[:2]]) + b"\n")
    # NDJSON: a GP file's first bundles, one carrying a Claim (skipped), then a line that is not JSON
    gp = sorted((territory / "gp").glob("*.ndjson"))[0]
    bundles = gp.read_bytes().splitlines()[:6]
    first = json.loads(bundles[0])
    first["entry"].append({"resource": {"resourceType": "Claim", "id": "claim-1"}})
    (root / "gp").mkdir()
    (root / "gp" / gp.name).write_bytes(
        b"\n".join([json.dumps(first, ensure_ascii=False).encode(), *bundles[1:], b"{not json"]) + b"\n")
    # HL7: a segment block outside any message after the BHS and a trailer count off by two in one
    # lab's batch; the other's batch left without its BTS/FTS trailer (only the last part may say so)
    first, second = sorted((root / "labs").glob("*.hl7"))
    data = first.read_bytes().replace(b"\rMSH|", b"\rZZZ|outside\rMSH|", 1)
    first.write_bytes(re.sub(rb"BTS\|(\d+)", lambda m: b"BTS|" + str(int(m[1]) + 2).encode(), data))
    second.write_bytes(second.read_bytes().split(b"BTS|")[0])
    return root


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("split-var")
    s = lake_settings(var, base64.b64encode(os.urandom(32)).decode("ascii"))
    KeyStore.from_settings(s).init()
    key_file = var / "master.key"  # Spark executors open the key store from a file, never from the closure
    key_file.write_text(s.master_key.get_secret_value())
    key_file.chmod(0o600)
    return s.model_copy(update={"master_key": None, "master_key_file": key_file})


@pytest.fixture(scope="module")
def whole(batch: Path, registry: Registry, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return edge_run(batch, registry, settings, tmp_path_factory.mktemp("whole"), split=0)


def _same(split: dict, whole: dict) -> None:
    for key in whole:
        if key != "tasks":
            assert split[key] == whole[key], key


def test_split_parts_in_worker_processes_give_what_the_whole_files_give(
    batch: Path, registry: Registry, settings: Settings, whole: dict, tmp_path: Path
) -> None:
    split = edge_run(batch, registry, settings, tmp_path / "s", workers=2, split=SPLIT)
    _same(split, whole)
    by_file = split["tasks"]
    for rel in ("pharmacy", "pmsi", "insee/deces.txt", "gp/", "questionnaires/", "labs/"):
        assert all(n > 2 for f, n in by_file.items() if f.startswith(rel)), (rel, by_file)
    assert all(n == 1 for n in whole["tasks"].values())
    assert whole["bronze"] and whole["vault"]
    reasons = whole["by_reason"]
    assert reasons.get("DUPLICATE_RECORD") and reasons.get("FIELD_COUNT") and reasons.get("RECORD_LENGTH")
    gp = next(c for (s, _), c in whole["counts"].items() if s == "gp_fhir")
    assert gp.skipped_resources == {"Claim": 1}
    labs = [c for (s, _), c in sorted(whole["counts"].items()) if s == "lab_hl7"]
    assert [c.file_issues for c in labs] == [1, 1]  # the trailer's count; the batch left open
    assert reasons.get("HL7_SEGMENT_ORDER") == 1  # the segments outside a message: one record


def test_split_parts_as_spark_tasks_give_what_the_whole_files_give(
    batch: Path, registry: Registry, settings: Settings, whole: dict, spark, tmp_path: Path
) -> None:
    split = edge_run(batch, registry, settings, tmp_path / "s", spark=spark, split=SPLIT)
    _same(split, whole)
    assert sum(split["tasks"].values()) > 3 * len(split["tasks"])


def test_every_line_a_part(batch: Path, registry: Registry, settings: Settings, whole: dict, tmp_path: Path) -> None:
    """A target of one byte: every cut after the first line allowed, the header alone never a part."""
    split = edge_run(batch, registry, settings, tmp_path / "s", workers=2, split=1)
    _same(split, whole)


def test_the_encoding_is_decided_once_for_the_whole_file(batch: Path, registry: Registry) -> None:
    """The Latin-1 PMSI file with one UTF-8 row is *mixed* (UTF-8, its Latin-1 rows refused): a part
    of Latin-1 rows alone would be decided Latin-1 and land them."""
    import io

    from pdp.ingest.encoding import detect_encoding

    latin = next(p for p in sorted((batch / "pmsi").glob("*.csv")) if not p.read_bytes().startswith(b"\xef"))
    parts = plan_parts(registry.specs["pmsi"], latin, SPLIT)
    assert len(parts) > 2 and {p.encoding for p in parts} == {FileEncoding("utf-8", 0, "mixed")}
    data = latin.read_bytes()
    alone = {detect_encoding(io.BytesIO(data[p.start:p.end]), latin1_fallback=True).decision for p in parts}
    assert "latin-1" in alone
    assert not data.endswith(b"\n")


def test_cuts_fall_after_a_line_never_inside_a_character_or_a_crlf() -> None:
    import io

    data = "h\r\n" + "".join(f"é{i:03d}é\r\n" for i in range(50))
    raw = data.encode("utf-8")
    for target in range(1, 40):
        cuts = line_cuts(io.BytesIO(raw), FileEncoding("utf-8", 0, "utf-8"), target, header_lines=1)
        assert cuts
        for cut in cuts:
            assert raw[cut.start - 2:cut.start] == b"\r\n"
            assert raw[:cut.start].count(b"\n") - 1 == cut.offset  # records before it, header excluded


def test_no_cut_where_a_quoted_field_may_be_open() -> None:
    import io

    lines = [b"h;q"] + [b"%d;x" % i for i in range(20)] + [b'20;"a', b'b"'] + [b"%d;x" % i for i in range(21, 60)]
    raw = b"\n".join(lines) + b"\n"
    enc = FileEncoding("utf-8", 0, "utf-8")
    cuts = line_cuts(io.BytesIO(raw), enc, 1, header_lines=1, quote=b'"', quiet_lines=10)
    starts = [raw[:c.start].count(b"\n") for c in cuts]  # line index each part starts at (0 = header)
    quote_open, quote_close = 21, 22
    assert starts[: quote_open - 1] == list(range(2, quote_open + 1))  # the first part: header and a line
    assert not [s for s in starts if quote_open < s <= quote_close + 10]  # quiet: 10 lines after the quote
    assert quote_close + 11 in starts


def test_a_format_that_cannot_split_stays_one_task(batch: Path, registry: Registry, settings: Settings) -> None:
    """A JSON Bundle a file, or an index whose rows open other files: one task however large."""
    from pdp.ingest.parsers.base import get_parser

    assert get_parser("fhir_bundle_json").split is None and get_parser("report_index").split is None
    index = batch / "reports" / "index.csv"
    index.parent.mkdir(exist_ok=True)
    index.write_bytes(b"doc_id,file\n" + b"d,x.txt\n" * 100)
    tasks = [FileTask(0, "reports", index, "reports/index.csv", index.stat().st_size)]
    context = BatchContext(settings.model_copy(update={"edge_split_bytes": 100}), registry, batch, batch, "b",
                           datetime.now(UTC), None)
    assert split_tasks(tasks, context) == tasks
    assert plan_parts(registry.specs["reports"], index, 100) == ()
    pmsi = sorted((batch / "pmsi").glob("*.csv"))[0]
    assert len(plan_parts(registry.specs["pmsi"], pmsi, 100)) > 2  # the same target cuts a CSV


@pytest.fixture(scope="module")
def flaky(batch: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Registry]:
    """A PMSI file read by a parser that raises on a marked record, which sits in a later part."""
    specs = tmp_path_factory.mktemp("flaky-specs")
    spec = yaml.safe_load((SOURCES_DIR / "pmsi.yml").read_text(encoding="utf-8"))
    spec.update(name="flaky_pmsi", format="test_split_flaky_delimited", files=["flaky/*.csv"])
    (specs / "flaky_pmsi.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    registry = load_registry(settings=settings.model_copy(update={"sources_dir": str(specs)}))
    root = tmp_path_factory.mktemp("flaky") / "src"
    (root / "flaky").mkdir(parents=True)
    rows = _rows(sorted((batch / "pmsi").glob("*.csv"))[0])
    marked = _fields(rows[30], 0, b"S7-" + split_faults.MARK)
    (root / "flaky" / "export.csv").write_bytes(b"\n".join([*rows[:30], marked, *rows[30:]]) + b"\n")
    # a later file resends a record read before the stop (the duplicate) and one of the unread tail
    # (one pass never met it: it lands), whichever task read the tail
    (root / "flaky" / "export2.csv").write_bytes(b"\n".join([rows[0], rows[5], rows[40]]) + b"\n")
    return root, registry


def test_a_part_that_raises_leaves_the_file_partial_as_the_whole_file_does(
    flaky: tuple[Path, Registry], settings: Settings, spark, tmp_path: Path
) -> None:
    root, registry = flaky
    spark.sparkContext.addPyFile(split_faults.__file__)
    whole = edge_run(root, registry, settings, tmp_path / "w", split=0)
    counts = whole["counts"][("flaky_pmsi", "flaky/export.csv")]
    assert counts.partial and counts.unread_from == 30 and counts.records_in == 29
    assert "after record 29" in counts.stopped
    resent = whole["counts"][("flaky_pmsi", "flaky/export2.csv")]
    assert (resent.records_in, resent.parsed, resent.quarantined) == (2, 1, 1)
    assert whole["by_reason"] == {"DUPLICATE_RECORD": 1, "PARSER_ERROR": 1}
    # split 1: the marked record opens its part; staged: the duplicates across tasks found on Spark
    engines = ({"workers": 2}, {"spark": spark}, {"workers": 2, "fold_on": spark}, {"spark": spark, "fold_on": spark})
    for number, (split, engine) in enumerate((split, engine) for split in (SPLIT, 1) for engine in engines):
        run = edge_run(root, registry, settings, tmp_path / f"s{number}", split=split, **engine)
        _same(run, whole)
        assert run["tasks"]["flaky/export.csv"] > 1


def test_a_file_read_further_in_order_than_apart_is_met_by_the_later_files(
    batch: Path, settings: Settings, spark, tmp_path: Path
) -> None:
    """The edge raises on a record of file a: one pass stops a there. File b resends that record first:
    in one pass a duplicate (never reaching the edge), so b is read on; apart, b's own task stopped on
    it. File c resends a record of b's tail: a duplicate in one pass, which a staged batch finds only if
    what b's in-order re-run read is staged again for c."""
    specs = tmp_path / "specs"
    specs.mkdir()
    spec = yaml.safe_load((SOURCES_DIR / "pmsi.yml").read_text(encoding="utf-8"))
    spec.update(name="edge_flaky", format="test_split_edge_flaky_delimited", files=["flaky/*.csv"])
    (specs / "edge_flaky.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    registry = load_registry(settings=settings.model_copy(update={"sources_dir": str(specs)}))
    root = tmp_path / "src"
    (root / "flaky").mkdir(parents=True)
    rows = _rows(sorted((batch / "pmsi").glob("*.csv"))[0])
    marked = _fields(rows[3], 0, b"S6-" + split_faults.EDGE_MARK)
    (root / "flaky" / "a.csv").write_bytes(b"\n".join([rows[0], *rows[1:3], marked, *rows[3:10]]) + b"\n")
    (root / "flaky" / "b.csv").write_bytes(b"\n".join([rows[0], marked, rows[20], rows[21]]) + b"\n")
    (root / "flaky" / "c.csv").write_bytes(b"\n".join([rows[0], rows[21], rows[22]]) + b"\n")
    spark.sparkContext.addPyFile(split_faults.__file__)
    whole = edge_run(root, registry, settings, tmp_path / "w", split=0)
    counts = {rel: (c.records_in, c.parsed, c.quarantined, c.partial) for (_, rel), c in whole["counts"].items()}
    assert counts == {"flaky/a.csv": (2, 2, 0, True), "flaky/b.csv": (3, 2, 1, False),
                      "flaky/c.csv": (2, 1, 1, False)}
    engines = ({"workers": 2}, {"workers": 2, "fold_on": spark}, {"spark": spark, "fold_on": spark})
    for number, engine in enumerate(engines):
        _same(edge_run(root, registry, settings, tmp_path / f"r{number}", split=0, **engine), whole)


def _lake_rows(spark, settings: Settings, table: str) -> list[str]:
    from pdp.lake import LakeTable

    per_run = {"batch_id", "ingested_at", "started_at", "finished_at", "quarantined_at"}
    frame = LakeTable(spark, table, lake_root=settings.lake_uri).read()
    kept = [c for c in frame.columns if c not in per_run]
    return sorted(repr(r.asDict(recursive=True)) for r in frame.select(*kept).collect())


def test_pdp_ingest_split_logs_lands_and_resends_as_whole_files(
    batch: Path, settings: Settings, spark, tmp_path: Path
) -> None:
    """The whole pipeline: the ingestion log's per-file rows (status, counts, fingerprint), bronze,
    quarantine and the report are those of the unsplit run; a second run skips every file."""
    from pdp.ingest.pipeline import ingest_directory

    root = tmp_path / "src"
    shutil.copytree(batch, root, ignore=shutil.ignore_patterns("gp", "questionnaires", "reports"))
    out = {}
    for name, split, workers in (("whole", 0, 0), ("split", SPLIT, 2)):
        var = tmp_path / name
        run = settings.model_copy(update={"var_dir": var, "lake_uri": str(var / "lake"),
                                          "db_url": f"sqlite:///{var / 'pdp.db'}", "edge_split_bytes": split})
        report = ingest_directory(root, spark=spark, settings=run, workers=workers)
        files = {(f.source, f.file): (f.records_in, f.landed, f.quarantined, f.file_issues, f.stopped)
                 for f in report.files}
        if split:  # the split files' resend (a whole file's: tests/ingest/test_ingest_edge_pipeline.py)
            again = ingest_directory(root, spark=spark, settings=run, workers=workers)
            assert all(f.skipped for f in again.files), "a byte-identical resend adds nothing"
        out[name] = {"report": files, "engine": (report.parse_engine, report.parse_workers, report.parse_tasks > 20),
                     **{t: _lake_rows(spark, run, t) for t in ("ops.ingestion_log", "bronze.records",
                                                                "ops.quarantine")}}
    assert out["split"]["engine"] == ("processes", 2, True) and out["whole"]["engine"] == ("processes", 0, False)
    for key in ("report", "ops.ingestion_log", "bronze.records", "ops.quarantine"):
        assert out["split"][key] == out["whole"][key], key
    assert len(out["whole"]["ops.ingestion_log"]) == len(out["whole"]["report"])


def test_a_file_gone_before_planning_runs_whole(registry: Registry, tmp_path: Path) -> None:
    """Planning reads the file: one that cannot be read stays one task, which reports it (FILE_UNREADABLE)."""
    assert plan_parts(registry.specs["pmsi"], tmp_path / "gone.csv", 1) == ()
