"""The lake's layout for incremental work: person buckets (issue 14).

A batch brings a few persons; its MERGEs and person refreshes should read and rewrite only the
files that hold them. So bronze.records and the silver tables keyed by person (person,
observation_period, death) carry ``person_bucket`` = ``pmod(xxhash64(pseudonym), B)`` (=
``pmod(person_id, B)``), a Delta generated column declared in their catalog files
(``bucket: {of: ..., buckets: B}``), and are partitioned by it. A batch computes its persons'
buckets in the job that counts them, and names them as literals in its MERGE conditions
(:meth:`pdp.lake.LakeTable.merge` ``within``) and in its read of bronze, so Delta prunes the other
buckets' files. Bucket numbers are not person values: the log may hold them.

Why Hive-style partitions and not liquid clustering (``cluster_by``, which the catalog also
accepts): Delta 4.4 prunes a MERGE's target by literal predicates on partition columns
deterministically, from the log alone; clustering prunes by min/max statistics, which only
separate buckets after an OPTIMIZE has clustered the files — every batch's new files span all
its buckets until then.

Why the event tables are not bucketed: their insert-only MERGE is keyed by the event id, and its
check that no other record holds the same id (see :mod:`pdp.ingest.silver`) must see every row
with that id, whatever its person; pruning to the batch's buckets would hide a colliding id held
by a person of another bucket. A partition derived from the id would keep the check exact but
prune nothing for a batch of more events than buckets.

Existing lakes: a table created before the layout (no bucket column) stops ``create()`` with one
line saying so (rebuild by ingesting into a new lake); a table whose bucket count differs from
the catalog's is a schema difference, never a silent mismatch of literal buckets.

Measured with ``pdp bench increment --persons 2000 --json`` (46 316 records; the increment is
20 HL7 lab results of 20 known persons), before (main at 932bf8c) and after this layout and the
silver changes of :func:`pdp.ingest.silver.build_silver`, back to back, on the shared 2-core
machine with other engineers' Spark jobs running (load average 16-18 before, 20 after — the
absolute seconds are noisy, the counts are not):

=====================================  ==============  ==============
increment of 20 lab results             before          after (B=16)
=====================================  ==============  ==============
silver seconds                          117.6           57.8
Spark SQL executions (whole ingest)     134             78
Delta commits                           5               5
person + period rows rewritten (copied) 1 922 + 1 913   1 328 + 1 319
person + period files rewritten         4 + 4 (all)     11 + 11 of 16
bytes of bronze+silver files read       45.2 MB         27.8 MB
full ingest's silver seconds            379.8           408.7
=====================================  ==============  ==============

Why B = 16, and its limit: a full batch writes about one file per bucket and per bucketed table
(bronze 27 files after the two batches instead of 9; silver.person 16 instead of 1), so B sets the
small-file count at this size; the 20 persons of the increment fall in 11 of the 16 buckets, so a
batch prunes only when its persons are few against B. At a territory of 10^5-10^6 persons the
files are large enough for B = 64-256 (then set it in the four catalog files, one number); at
2 000 persons more buckets would mostly add tiny files. Liquid clustering was not measured.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["person_bucket", "person_buckets", "spark_xxhash64"]

_M = (1 << 64) - 1
_P1, _P2, _P3, _P4, _P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                           0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _M, 31) * _P1) & _M


def _merge(acc: int, val: int) -> int:
    return ((acc ^ _round(0, val)) * _P1 + _P4) & _M


def spark_xxhash64(text: str, seed: int = 42) -> int:
    """Spark's ``xxhash64`` of a string (XXH64 of its UTF-8 bytes, seed 42), as a signed 64-bit int."""
    data = text.encode("utf-8")
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed & _M, (seed - _P1) & _M]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _round(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M
        for k in range(4):
            h = _merge(h, v[k])
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h = ((_rotl(h ^ _round(0, int.from_bytes(data[i:i + 8], "little")), 27) * _P1) + _P4) & _M
        i += 8
    if i + 4 <= n:
        h = ((_rotl(h ^ (int.from_bytes(data[i:i + 4], "little") * _P1 & _M), 23) * _P2) + _P3) & _M
        i += 4
    while i < n:
        h = (_rotl(h ^ (data[i] * _P5 & _M), 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h - (1 << 64) if h >= 1 << 63 else h


def person_bucket(pseudonym: str, buckets: int) -> int:
    """The bucket Delta computes for `pseudonym`: ``pmod(xxhash64(pseudonym), buckets)``."""
    return spark_xxhash64(pseudonym) % buckets


def person_buckets(pseudonyms: Iterable[str], buckets: int | None = None) -> list[int] | None:
    """The sorted buckets of `pseudonyms` under the catalog's bucket count (None: no bucketed table)."""
    if buckets is None:
        from pdp.lake.catalog import load_catalog

        buckets = load_catalog().person_buckets
    if buckets is None:
        return None
    return sorted({person_bucket(p, buckets) for p in pseudonyms})
