"""A file that disappears or becomes unreadable mid-run fails that file with a clear reason and is
never logged `complete`: with the file back, the next run lands it, once.

Why not fail the whole batch: the batch's other files are sound, and committing them is safe
(every write is insert-only on keyed hashes); what must never happen is the lost file being
logged as ingested — its fingerprint was taken at discovery, so a `complete` row would make
every later run skip the file for good. `pdp ingest` exits 3 with one warning line per such
file (tests/ingest/test_ingest_partial_files.py runs the CLI).

The faults are real and deterministic: the batch runs in-process, in file order, and the first
file's parser (the real delimited parser, registered again under a test format) removes the
batch's second file and puts a directory where the third was before it yields its first record,
as an operator's clean-up or a sender's re-upload would between discovery and parsing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from ingest_helpers import CsvFile, lake_settings
from pyspark.sql import SparkSession

from pdp.ingest import ParseOutcome, Registry
from pdp.ingest.parsers.base import FileContext, get_parser, parser
from pdp.ingest.pipeline import ingest_directory
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore

pytestmark = [pytest.mark.spark, pytest.mark.slow]

_FAULT: list[Callable[[str], None]] = []  # what the first parsed file does to the batch's other files


@parser("test_delimited_fault_injected", options=get_parser("delimited").options,
         produces=get_parser("delimited").produces)
def _delimited_with_fault(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """The delimited parser, after running the pending fault once (given the file being parsed)."""
    while _FAULT:
        _FAULT.pop()(ctx.file)
    yield from get_parser("delimited").func(stream, ctx)


def _vanish(path: Path) -> None:  # an operator's clean-up
    path.unlink()


def _unreadable(path: Path) -> None:  # root reads any mode: a directory in the file's place cannot be read
    path.unlink()
    path.mkdir()


def test_files_lost_mid_run_are_partial_and_land_once_they_are_back(
    spark: SparkSession, tmp_path: Path, territory: Path, registry: Registry,
) -> None:
    """One batch of three files: parsing the first removes the second and puts a directory in the
    third's place. Both are `partial` with their error, the first lands; the re-run, with the two
    files back, lands them and nothing else, once."""
    var = tmp_path / "var"
    settings = lake_settings(var)
    KeyStore.from_settings(settings).init()
    first, second = sorted((territory / "pmsi").glob("*.csv"))[:2]
    # three files of distinct stays: the second split in two halves, each with the header
    sent = CsvFile.load(second)
    half = len(sent.rows) // 2
    batch = tmp_path / "batch" / "pmsi"
    batch.mkdir(parents=True)
    shutil.copy(first, batch / "a.csv")
    originals = {}
    for name, rows in (("b.csv", sent.rows[:half]), ("c.csv", sent.rows[half:])):
        originals[name] = sent.text(rows).encode(sent.encoding)
        (batch / name).write_bytes(originals[name])
    specs = dict(registry.specs)
    specs["pmsi"] = specs["pmsi"].model_copy(update={"format": "test_delimited_fault_injected"})
    faulty = Registry(specs=specs)
    lake = var / "lake"
    faults = {"pmsi/b.csv": (_vanish, "FileNotFoundError"), "pmsi/c.csv": (_unreadable, "IsADirectoryError")}

    def others_lost(parsed: str) -> None:
        assert parsed == "pmsi/a.csv", "the files are parsed in order"
        for name, (fault, _) in faults.items():
            fault(batch.parent / name)

    _FAULT.append(others_lost)
    report = ingest_directory(batch.parent, spark=spark, settings=settings, registry=faulty, workers=0)
    assert not _FAULT, "the fault ran"
    by_file = {f.file: f for f in report.files}
    for name, (_, error) in faults.items():
        gone = by_file[name]
        assert gone.partial and error in (gone.stopped or "") and gone.landed == 0, gone
    assert sorted(f.file for f in report.partial_files()) == sorted(faults)
    assert by_file["pmsi/a.csv"].landed == len(CsvFile.load(first).rows) and not by_file["pmsi/a.csv"].partial
    log = LakeTable(spark, "ops.ingestion_log", lake_root=str(lake)).read()
    assert sorted((r.file, r.status) for r in log.collect()) == [
        ("pmsi/a.csv", "complete"), ("pmsi/b.csv", "partial"), ("pmsi/c.csv", "partial")]

    for name, data in originals.items():
        path = batch / name
        shutil.rmtree(path) if path.is_dir() else None
        path.write_bytes(data)
    again = ingest_directory(batch.parent, spark=spark, settings=settings, workers=0)
    assert not again.partial_files() and sorted(f.file for f in again.files if not f.skipped) == sorted(faults)

    complete = LakeTable(spark, "ops.ingestion_log", lake_root=str(lake)).read().where("status = 'complete'")
    assert sorted(r.file for r in complete.collect()) == ["pmsi/a.csv", "pmsi/b.csv", "pmsi/c.csv"]
    bronze = LakeTable(spark, "bronze.records", lake_root=str(lake)).read()
    assert bronze.count() == bronze.select("record_hash").distinct().count() == sum(
        len(CsvFile.load(p).rows) for p in (first, second)), "every stay once"
