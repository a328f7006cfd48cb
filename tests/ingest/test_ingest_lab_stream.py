"""The lab feed: files dropped into a running stream reach silver exactly once, bad messages are
quarantined with their reason, and the lake ends up as `pdp ingest` would have left it.

No timing is asserted here (shared, loaded machines): `pdp bench labfeed` measures the latency.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
from ingest_helpers import Hl7File, lake_settings
from pyspark.sql import SparkSession

from pdp.config import Settings
from pdp.ingest.pipeline import IngestReport, ingest_directory
from pdp.ingest.stream import start_lab_stream
from pdp.lake import LakeTable
from pdp.pseudonym.keys import KeyStore
from pdp.synth import generate

pytestmark = [pytest.mark.spark, pytest.mark.slow]

_WAIT_S = 300  # a bound for a stuck stream, not a latency requirement


def _settings(var: Path, master_key: str) -> Settings:
    return lake_settings(var, master_key)  # fmt: skip


def _drop(content: bytes, landing: Path, name: str) -> None:
    """Drop a file as a sender must: written under another name, then renamed (atomic)."""
    part = landing / f"{name}.part"
    part.write_bytes(content)
    part.rename(landing / name)


def _wait(reports: list[IngestReport], n: int) -> None:
    deadline = time.monotonic() + _WAIT_S
    while len(reports) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(reports) >= n, f"micro-batch {n} never came"


def _split(lab: Hl7File) -> tuple[bytes, bytes, int]:
    """(file A, file B, OBX count of B's good messages): B holds later results of three persons
    A already has with their own NIR (the feed's no-linkage case) and one message with its OBR
    after its OBX; A holds every other message (new persons: the feed runs linkage)."""
    pid = [next(s for s in m if s.startswith(b"PID")) for m in lab.messages]
    later = [i for i in range(len(pid)) if b"INS-NIR" in pid[i] and pid[i] in pid[:i]]
    chosen, persons = [], set()
    for i in later:
        if pid[i] not in persons:
            chosen.append(i)
            persons.add(pid[i])
        if len(chosen) == 3:
            break
    assert len(chosen) == 3, "the synthetic lab file has repeat patients with a NIR"
    broken = list(lab.messages[0])
    obr = next(i for i, s in enumerate(broken) if s.startswith(b"OBR"))
    broken[obr], broken[obr + 1] = broken[obr + 1], broken[obr]

    def batch(messages: list[list[bytes]]) -> bytes:
        tail = [f"BTS|{len(messages)}".encode(), b"FTS|1"]
        return Hl7File(lab.path, lab.head, messages, tail, lab.end).dump()

    a = batch([m for i, m in enumerate(lab.messages) if i not in chosen])
    b = batch([*(lab.messages[i] for i in chosen), broken])
    return a, b, sum(s.startswith(b"OBX") for i in chosen for s in lab.messages[i])


def _rows(spark: SparkSession, lake: str, table: str, columns: list[str]) -> list[tuple]:
    return sorted(tuple(r) for r in LakeTable(spark, table, lake_root=lake).read().select(*columns).collect())


def test_files_dropped_into_the_running_feed_reach_silver_once(tmp_path: Path, spark: SparkSession) -> None:
    master_key = base64.b64encode(os.urandom(32)).decode("ascii")
    settings = _settings(tmp_path / "var", master_key)
    KeyStore.from_settings(settings).init()
    source = tmp_path / "src"
    generate(source, persons=300, seed=9, territory="douaisis", workers=1)
    lab = Hl7File.load(sorted((source / "labs").glob("*.hl7"))[0])
    file_a, file_b, obx_b = _split(lab)
    obx_a = file_a.count(b"\rOBX|")
    landing = tmp_path / "landing"
    landing.mkdir()
    reports: list[IngestReport] = []
    query = start_lab_stream(landing, spark=spark, settings=settings, trigger_seconds=1, on_batch=reports.append)
    lake = settings.lake_uri

    def count(table: str) -> int:
        return LakeTable(spark, table, lake_root=lake).read().count()

    try:
        _drop(file_a, landing, "a.hl7")
        _wait(reports, 1)
        assert query.isActive, "a processing-time trigger keeps the feed running between files"
        assert reports[0].totals() == (len(file_a.split(b"MSH|")) - 1,) * 2 + (0,)
        assert count("silver.measurement") == obx_a

        _drop(file_b, landing, "b.hl7")
        _wait(reports, 2)
        (b_report,) = reports[1].files
        assert (b_report.records_in, b_report.landed, b_report.quarantined) == (4, 3, 1)
        assert reports[1].relinked == 0 and set(reports[1].link_rules) == {"deterministic_nir"}  # no linkage needed
        assert count("silver.measurement") == obx_a + obx_b
        quarantined = [(q.file, q.record_position, q.reason_code)
                       for q in LakeTable(spark, "ops.quarantine", lake_root=lake).read().collect()]
        assert quarantined == [("labs/b.hl7", 4, "HL7_SEGMENT_ORDER")]

        before = {t: count(t) for t in ("bronze.records", "silver.measurement", "ops.quarantine", "ops.ingestion_log")}
        _drop(file_a, landing, "a-again.hl7")  # the same bytes under another name
        _wait(reports, 3)
        assert [f.skipped for f in reports[2].files] == [True]
        assert {t: count(t) for t in before} == before
        measurement = LakeTable(spark, "silver.measurement", lake_root=lake).read()
        assert measurement.select("measurement_id").distinct().count() == obx_a + obx_b
    finally:
        query.stop()

    # the same files through `pdp ingest`, one batch each, in a lake keyed the same way: same lake
    reference = _settings(tmp_path / "ref", master_key)
    shutil.copytree(settings.key_store, reference.key_store)
    for name, content in (("a.hl7", file_a), ("b.hl7", file_b)):
        batch = tmp_path / f"batch-{name}"
        (batch / "labs").mkdir(parents=True)
        (batch / "labs" / name).write_bytes(content)
        ingest_directory(batch, spark=spark, settings=reference)
    compared = {
        "bronze.records": ["record_hash", "person_pseudonym", "link_rule", "file", "record_position"],
        "silver.measurement": ["measurement_id", "person_id", "person_pseudonym", "concept", "value", "start_date"],
        "silver.person": ["person_id", "person_pseudonym", "gender", "year_of_birth", "location_id", "gp_rpps",
                          "first_seen", "last_seen", "sources"],
        "silver.observation_period": ["person_id", "start_date", "end_date", "event_count"],
        "ops.quarantine": ["record_hash", "file", "record_position", "reason_code"],
    }  # fmt: skip
    for table, columns in compared.items():
        assert _rows(spark, lake, table, columns) == _rows(spark, reference.lake_uri, table, columns), table


def test_the_feeds_copies_of_dropped_files_are_this_users_alone(tmp_path: Path, spark: SparkSession,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A micro-batch's copies of the dropped HL7 files are nominative until it ends: folders 0700, files
    0600 whatever the umask, and gone afterwards (the pipeline itself is the test above's)."""
    from pdp.ingest.feed import LabFeed

    settings = _settings(tmp_path / "var", base64.b64encode(os.urandom(32)).decode("ascii"))
    KeyStore.from_settings(settings).init()
    feed = LabFeed(spark, settings=settings)
    seen: dict[str, int] = {}

    def run(staging: Path, mode: object) -> IngestReport:
        for path in [staging.parent, *staging.rglob("*")]:
            seen[str(path.relative_to(staging.parent))] = path.stat().st_mode & 0o777
        return IngestReport(batch_id="test")

    monkeypatch.setattr(feed.pipeline, "run", run)
    old = os.umask(0o022)
    try:
        feed.ingest([("a.hl7", b"MSH|^~\\&|LAB"), ("b.hl7", b"MSH|^~\\&|LAB")])
    finally:
        os.umask(old)
    files = {k: v for k, v in seen.items() if k.endswith(".hl7")}
    assert len(files) == 2 and set(files.values()) == {0o600}, seen
    assert {v for k, v in seen.items() if k not in files and "/" in k} == {0o700}, seen
    assert seen["."] == 0o700, seen
    assert not list((settings.var_dir / "stream-staging").iterdir())
