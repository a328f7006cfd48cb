"""A parser (or the edge) that raises mid-file: the file is `partial`, never `complete`, and the next run finishes it.

The faulty parser is a real one registered by this module under its own format name: the
built-in delimited parser, made to raise after a few records (a parser bug) or to hand the edge
a malformed record (a bug the edge trips on), then "fixed" by turning the fault off. A spec in
a directory of its own (``PDP_SOURCES_DIR``) points a sender's folder at it, as an operator
would. Everything else is the real pipeline on a real Delta lake.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from ingest_helpers import copy_into, files_of
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pdp.config import Settings, get_settings
from pdp.ingest.model import ParseOutcome, SourceRecord
from pdp.ingest.parsers.base import FileContext, get_parser, parser
from pdp.ingest.registry import SOURCES_DIR
from pdp.ingest.staging import BRONZE_SCHEMA, Stage
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SECRET = "Dupont 1 84 12 75 123 456 78"  # what a careless exception message could quote
AFTER = 3  # records read before the fault
_FAULT: dict[str, str | None] = {"mode": None}
_DELIMITED = get_parser("delimited")


@parser("test_flaky_delimited", options=_DELIMITED.options, mapped=True, produces=_DELIMITED.produces)
def flaky_delimited(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """The delimited parser, with a bug after AFTER records while the test says so."""
    for index, outcome in enumerate(_DELIMITED.func(stream, ctx)):
        if index == AFTER and _FAULT["mode"] == "parser":
            raise RuntimeError(f"cannot read {SECRET}")
        if index == AFTER and _FAULT["mode"] == "edge" and isinstance(outcome, SourceRecord):
            outcome = dataclasses.replace(outcome, attributes=(("broken",),))  # the edge's dict() raises on it
        yield outcome


@pytest.fixture()
def ingest_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A var/ of its own, a spec sending `flaky/*.csv` (PMSI layout) to the faulty parser, the keys."""
    specs = tmp_path / "specs"
    specs.mkdir()
    spec = yaml.safe_load((SOURCES_DIR / "pmsi.yml").read_text(encoding="utf-8"))
    spec.update(name="flaky_pmsi", format="test_flaky_delimited", files=["flaky/*.csv"])
    (specs / "flaky_pmsi.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    var = tmp_path / "var"
    for key, value in {"PDP_VAR_DIR": var, "PDP_LAKE_URI": var / "lake", "PDP_DB_URL": f"sqlite:///{var / 'pdp.db'}",
                       "PDP_KEY_STORE": var / "keys", "PDP_SOURCES_DIR": specs,
                       "PDP_MASTER_KEY": base64.b64encode(os.urandom(32)).decode("ascii")}.items():
        monkeypatch.setenv(key, str(value))
    get_settings.cache_clear()
    settings = get_settings()
    KeyStore.from_settings(settings).init()
    yield settings
    _FAULT["mode"] = None
    get_settings.cache_clear()  # before the environment is restored: the next read sees the session's


def _batch(territory: Path, root: Path) -> tuple[str, str]:
    """One PMSI file for the built-in spec, another for the faulty one: (the good file, the flaky file)."""
    first, second = files_of(territory, "pmsi")[:2]
    copy_into(territory, first, root)
    (root / "flaky").mkdir(parents=True)
    (root / "flaky" / "export.csv").write_bytes((territory / second).read_bytes())
    return first, "flaky/export.csv"


def _cli(args: list[str]) -> int:
    from pdp.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _log(spark: SparkSession, settings: Settings) -> list[tuple]:
    rows = LakeTable(spark, "ops.ingestion_log", lake_root=settings.lake_uri).read().collect()
    return sorted((r.file, r.status, r.records_in, r.records_landed, r.records_quarantined) for r in rows)


def test_a_parser_that_raises_mid_file_leaves_it_partial_and_the_fixed_rerun_completes_it_once(
    spark: SparkSession, territory: Path, tmp_path: Path, ingest_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings, root = ingest_env, tmp_path / "in"
    good, flaky = _batch(territory, root)
    lines = len((root / flaky).read_bytes().splitlines()) - 1  # rows under the header
    _FAULT["mode"] = "parser"

    assert _cli(["ingest", str(root)]) == 3, "committed, with a partial file: the documented exit"
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and flaky in warnings[0] and "RuntimeError" in warnings[0], err[-800:]
    assert "partial" in warnings[0] and "error:" not in err
    assert SECRET not in out + err and "cannot read" not in out + err, "the exception's message is never shown"
    assert "driver peak MiB at each stage's end: lookup" in out, "an operator sees what the driver held, per stage"

    first = _log(spark, settings)
    assert [(f, s) for f, s, *_ in first] == [(flaky, "partial"), (good, "complete")]
    _, _, read, landed, quarantined = first[0]
    assert read == AFTER and landed + quarantined == AFTER
    lake = settings.lake_uri
    bronze = LakeTable(spark, "bronze.records", lake_root=lake).read()
    assert bronze.where(F.col("file") == flaky).count() == landed
    stops = (LakeTable(spark, "ops.quarantine", lake_root=lake).read()
             .where((F.col("file") == flaky) & (F.col("record_position") == 0)).collect())
    assert [s.reason_code for s in stops] == ["PARSER_ERROR"]
    assert "RuntimeError" in stops[0].message and f"after record {AFTER}" in stops[0].message
    assert SECRET not in stops[0].message

    _FAULT["mode"] = None  # the parser is fixed
    assert _cli(["ingest", str(root)]) == 0
    capsys.readouterr()
    second = _log(spark, settings)
    assert [(f, s) for f, s, *_ in second] == [(flaky, "complete"), (flaky, "partial"), (good, "complete")], \
        "the partial file is read again, the complete one is not"
    _, _, read, landed_all, quarantined_all = second[0]
    assert read == lines and landed_all + quarantined_all == lines
    mine = bronze.where(F.col("file") == flaky)
    assert mine.count() == landed_all == mine.select("record_hash").distinct().count(), "each record landed once"
    conditions = mine.select(F.explode("events").alias("e")).where("e.domain = 'condition'").count()
    silver = (LakeTable(spark, "silver.condition_occurrence", lake_root=lake).read()
              .where(F.col("source_file") == flaky))
    assert silver.count() == conditions == silver.select("condition_occurrence_id").distinct().count()


def test_an_edge_fault_on_one_record_stops_that_file_only(
    spark: SparkSession, territory: Path, tmp_path: Path, ingest_env: Settings
) -> None:
    from pdp.ingest.pipeline import ingest_directory

    root = tmp_path / "in"
    good, flaky = _batch(territory, root)
    _FAULT["mode"] = "edge"
    report = ingest_directory(root, spark=spark, settings=ingest_env, workers=0)
    files = {f.file: f for f in report.files}
    assert files[good].stopped is None and files[good].records_in > 0
    stopped = files[flaky]
    assert stopped.partial and stopped.balanced and stopped.records_in == AFTER
    assert stopped.stopped is not None and stopped.stopped.startswith("PARSER_ERROR: edge raised ValueError")
    assert stopped.unread_from == AFTER + 1
    assert [f.file for f in report.partial_files()] == [flaky]
    assert [(f, s) for f, s, *_ in _log(spark, ingest_env)] == [(flaky, "partial"), (good, "complete")]


def test_a_failed_files_staging_part_is_removed_not_left_without_footer(tmp_path: Path) -> None:
    stage = Stage(tmp_path, BRONZE_SCHEMA, part="part-000001.parquet")
    stage.add(dict.fromkeys(BRONZE_SCHEMA.names))
    stage.flush()  # the writer is open: the part has no footer yet, unreadable
    with pytest.raises(pa.ArrowInvalid):
        pq.read_table(stage.path)
    stage.discard()
    assert not list(tmp_path.iterdir()) and stage.close() is None
