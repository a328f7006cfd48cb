"""A file that disappears or becomes unreadable mid-run fails that file with a clear reason and is
never logged `complete`: with the file back, the next run lands it, once.

Why not fail the whole batch: the batch's other files are sound, and committing them is safe
(every write is insert-only on keyed hashes); what must never happen is the lost file being
logged as ingested — its fingerprint was taken at discovery, so a `complete` row would make
every later run skip the file for good. `pdp ingest` exits 3 with one warning line per such
file (tests/ingest/test_ingest_partial_files.py runs the CLI).

The fault is real and deterministic: the batch runs in-process, in file order, and the first
file's parser (the real delimited parser, registered again under a test format) removes the
batch's other file — or puts a directory where it was — before it yields its first record, as
an operator's clean-up or a sender's re-upload would between discovery and parsing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from ingest_helpers import CsvFile, lake_settings
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

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


def _vanish(path: Path) -> None:
    path.unlink()


def _unreadable(path: Path) -> None:  # root reads any mode: a directory in the file's place cannot be read
    path.unlink()
    path.mkdir()


def test_a_file_lost_mid_run_is_partial_and_lands_once_it_is_back(
    spark: SparkSession, tmp_path: Path, territory: Path, registry: Registry,
) -> None:
    var = tmp_path / "var"
    settings = lake_settings(var)
    KeyStore.from_settings(settings).init()
    files = sorted((territory / "pmsi").glob("*.csv"))[:2]
    assert len(files) == 2
    specs = dict(registry.specs)
    specs["pmsi"] = specs["pmsi"].model_copy(update={"format": "test_delimited_fault_injected"})
    faulty = Registry(specs=specs)
    lake = var / "lake"
    for number, (fault, error) in enumerate(((_vanish, "FileNotFoundError"), (_unreadable, "IsADirectoryError"))):
        batch = tmp_path / f"batch{number}" / "pmsi"  # names of its own: no file of it is logged yet
        batch.mkdir(parents=True)
        for path in files:
            shutil.copy(path, batch / f"r{number}-{path.name}")
        lost: list[Path] = []

        def other_file_lost(parsed: str, fault: Callable[[Path], None] = fault, lost: list[Path] = lost,
                            batch: Path = batch) -> None:
            lost.extend(p for p in batch.iterdir() if f"pmsi/{p.name}" != parsed)
            fault(lost[0])

        _FAULT.append(other_file_lost)
        report = ingest_directory(batch.parent, spark=spark, settings=settings, registry=faulty, workers=0)
        assert not _FAULT and lost, "the fault ran"
        gone = next(f for f in report.files if f.file == f"pmsi/{lost[0].name}")
        assert gone.partial and error in (gone.stopped or "") and gone.landed == 0, gone
        assert [f.file for f in report.partial_files()] == [gone.file]
        log = LakeTable(spark, "ops.ingestion_log", lake_root=str(lake)).read().where(F.col("file") == gone.file)
        assert [r.status for r in log.collect()] == ["partial"]

        shutil.rmtree(lost[0]) if lost[0].is_dir() else None
        shutil.copy(territory / "pmsi" / lost[0].name.split("-", 1)[1], lost[0])
        again = ingest_directory(batch.parent, spark=spark, settings=settings, workers=0)
        assert not again.partial_files() and [f.file for f in again.files if not f.skipped] == [gone.file]

    complete = LakeTable(spark, "ops.ingestion_log", lake_root=str(lake)).read().where("status = 'complete'")
    assert sorted(r.file for r in complete.collect()) == sorted(f"pmsi/r{n}-{p.name}" for n in (0, 1) for p in files)
    bronze = LakeTable(spark, "bronze.records", lake_root=str(lake)).read()
    assert bronze.count() == bronze.select("record_hash").distinct().count() == sum(
        len(CsvFile.load(p).rows) for p in files), "every stay once"
