"""The pipeline's modes: which mode a batch gets, what the small mode's silver covers, the shared lock.

No Spark: these are the choices the one ingest loop (pdp/ingest/pipeline.py) makes before it writes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pdp.ingest.linking import kept_rows
from pdp.ingest.lock import IngestBusy, ingest_lock
from pdp.ingest.modes import BATCH, SMALL, SMALL_MAX_BYTES, mode_for
from pdp.ingest.pipeline import _present


def _row(person: str | None, *domains: str, record_id: str | None = None) -> dict:
    return {"person_pseudonym": person, "record_id": record_id, "events": [{"domain": d} for d in domains]}


@pytest.mark.parametrize(
    ("size", "limit", "mode"),
    [
        (1_000, SMALL_MAX_BYTES, SMALL),  # a lab drop of a few messages
        (SMALL_MAX_BYTES, SMALL_MAX_BYTES, SMALL),
        (SMALL_MAX_BYTES + 1, SMALL_MAX_BYTES, BATCH),  # a backlog: rows staged on disk
        (1_000, 0, BATCH),  # 0: every micro-batch in batch mode
    ],
)
def test_a_batch_gets_the_small_mode_only_when_it_is_small(size: int, limit: int, mode: object) -> None:
    assert mode_for(size, small_max_bytes=limit) is mode


def test_the_modes_differ_in_costs_only() -> None:
    assert (BATCH.staging, BATCH.log_lookup, BATCH.linkage, BATCH.silver) == ("disk", "all", "always", "batch")
    assert (SMALL.staging, SMALL.log_lookup, SMALL.linkage, SMALL.silver) == (
        "memory", "fingerprints", "when_needed", "present")
    assert BATCH.shuffle_partitions is None and SMALL.shuffle_partitions == 1


def test_small_silver_covers_the_event_domains_and_persons_present() -> None:
    rows = [_row("p1", "measurement"), _row("p2", "measurement", "observation")]
    assert _present(rows) == ({"measurement", "observation"}, {"p1", "p2"})


@pytest.mark.parametrize(
    "row",
    [_row(None), _row("p1", "death"), _row("p1", "text")],
    ids=["a commune (no person)", "a death", "a report's facts"],
)
def test_rows_the_small_silver_does_not_cover_get_the_batch_silver(row: dict) -> None:
    assert _present([_row("p1", "measurement"), row]) is None


def test_kept_rows_take_their_persons_pseudonym_and_leave_the_withheld_out() -> None:
    rows = [_row("batch-a", "measurement"), _row("batch-b", "measurement"), _row("p3", "measurement")]
    kept = kept_rows(rows, {"batch-a": "person-a", "batch-b": "person-b"}, withheld={"person-b"})
    assert [r["person_pseudonym"] for r in kept] == ["person-a", "p3"]


def test_the_batch_refuses_a_held_lock_and_the_feed_waits_for_it(tmp_path: Path) -> None:
    lock = tmp_path / "ingest.lock"
    with ingest_lock(lock, wait=False), pytest.raises(IngestBusy, match="another ingest is running"), \
            ingest_lock(lock, wait=False):
        pass
    held, released = threading.Event(), threading.Event()

    def batch() -> None:
        with ingest_lock(lock, wait=False):
            held.set()
            time.sleep(0.5)
            released.set()

    thread = threading.Thread(target=batch)
    thread.start()
    held.wait(5)
    with ingest_lock(lock, wait=True):
        assert released.is_set(), "the feed took the lock while the batch held it"
    thread.join()
