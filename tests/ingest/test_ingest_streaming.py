"""Parsers stream: memory stays bounded however large the file (tracemalloc peaks, not timings).

A parser that read its file whole would peak above the file's size (bytes, then text, then
rows); these files are tens of MB and the budgets are a fraction of that. What grows with the
file is only the batch's duplicate detection (a 64-bit fingerprint per record, measured apart).
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from ingest_helpers import CsvFile, Hl7File, copy_into, files_of

from pdp.ingest import Quarantined, Registry, SourceSpec, parse_file
from pdp.ingest.dedupe import FingerprintSet, fingerprint

MiB = 1 << 20


def _peak(spec: SourceSpec, path: Path, root: Path) -> tuple[int, int, int]:
    """(records parsed, quarantined, peak traced bytes) of one streamed parse."""
    parsed = quarantined = 0
    tracemalloc.start()
    try:
        for outcome in parse_file(spec, path, root):
            if isinstance(outcome, Quarantined):
                quarantined += 1
            else:
                parsed += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return parsed, quarantined, peak


def _no_dedup(spec: SourceSpec) -> SourceSpec:
    return spec.model_copy(update={"validation": spec.validation.model_copy(update={"duplicates": "off"})})


def _pharmacy_file(source: CsvFile, path: Path, rows: int) -> int:
    """`rows` delivery lines cycled from `source`, each its own invoice; the file's size in bytes."""
    invoice = source.column("num_facture")
    path.parent.mkdir(exist_ok=True)
    with path.open("wb") as out:
        out.write((";".join(source.header) + source.newline).encode(source.encoding))
        for i in range(rows):
            row = list(source.rows[i % len(source.rows)])
            row[invoice] = f"BIG-{i}"
            out.write((";".join(row) + source.newline).encode(source.encoding))
    return path.stat().st_size


@pytest.mark.slow
def test_pharmacy_rows_stream_in_memory_that_does_not_grow_with_the_file(
    territory: Path, registry: Registry, tmp_path: Path
) -> None:
    """Two files, one five times the other: the parse's peak stays where it was.

    Duplicate detection is off here: it is the one part that grows with the file (at most 32
    bytes a record, the next test). Before, one 200 000-row file under tracemalloc (95 s of
    the suite) against a fixed budget; two sizes prove the same with 60 000 rows and say more.
    """
    source = CsvFile.load(territory / files_of(territory, "pharmacy", encoding="latin-1")[0])
    spec = _no_dedup(registry["pharmacy"])
    peaks, sizes = [], []
    for rows in (10_000, 50_000):
        path = tmp_path / "pharmacy" / f"rows-{rows}.csv"
        sizes.append(_pharmacy_file(source, path, rows))
        parsed, quarantined, peak = _peak(spec, path, tmp_path)
        assert (parsed, quarantined) == (rows, 0)
        peaks.append(peak)
    small, big = peaks
    assert sizes[1] > 6 * MiB
    # a parser holding its file (bytes, then text, then rows) would peak at several times its size
    assert big < sizes[1] / 6, f"peak {big / MiB:.1f} MiB for a {sizes[1] / MiB:.0f} MiB file"
    assert big < small + MiB / 2, f"peak {small / MiB:.2f} -> {big / MiB:.2f} MiB for five times the rows"


def test_duplicate_detection_costs_at_most_32_bytes_per_record() -> None:
    tracemalloc.start()
    try:
        seen = FingerprintSet()
        for i in range(200_000):
            seen.add(fingerprint(f"BIG-{i}", b""))
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(seen) == 200_000
    assert current < 200_000 * 32


@pytest.mark.slow
def test_a_large_hl7_batch_streams_message_by_message(territory: Path, registry: Registry, tmp_path: Path) -> None:
    batch = Hl7File.load(copy_into(territory, files_of(territory, "labs")[0], tmp_path))
    template = batch.messages
    messages = 4_000
    with batch.path.open("wb") as out:
        out.write(b"".join(s + batch.end for s in batch.head))
        for i in range(messages):
            msh, *rest = template[i % len(template)]
            fields = msh.split(b"|")
            fields[9] = f"BIG{i:08d}".encode()
            out.write(b"\r".join([b"|".join(fields), *rest]) + batch.end)
        out.write(f"BTS|{messages}".encode() + batch.end + b"FTS|1" + batch.end)
    size = batch.path.stat().st_size

    parsed, quarantined, peak = _peak(_no_dedup(registry["lab_hl7"]), batch.path, tmp_path)
    assert (parsed, quarantined) == (messages, 0)
    assert peak < min(size / 4, 3 * MiB), f"peak {peak / MiB:.1f} MiB for a {size / MiB:.1f} MiB file"
