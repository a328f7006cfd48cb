"""`pdp keys rotate`: a new pseudonym key version, and every pseudonym re-keyed to it.

How linkage survives: the vault keeps, encrypted, the canonical identity bytes that made each
pseudonym (`VaultRecord.canonical`). Rotation recomputes HMAC(new key, canonical) for every
vault row, giving an old → new mapping that holds pseudonyms only (not nominative); each lake
table with a pseudonym column is re-mapped in one atomic MERGE, then the vault rows are
renamed, then the old key version is retired.

At national scale (68 M persons) nothing holds the whole mapping in the driver: the vault is
walked a page at a time (:data:`PAGE` rows, keyset-paged by pseudonym), each page's mapping is
appended to a Parquet work area beside the lake (:class:`pdp.lake.WorkArea`), and the lake's
MERGEs and purge read it from there as a DataFrame, joined on the executors. The vault is then
renamed page by page, reading the mapping back from the work area, one transaction per page.
Driver memory is bounded by the page, not by the population. Canonical identity bytes never
enter Spark (a DataFrame made from local rows would carry them inside its plan): only
pseudonyms do. The price is a second read of the vault (a pre-check before the key changes).

The purge: after the re-keying MERGEs, the files of earlier versions and the change-data files
still hold the old pseudonyms, which the old key reverses. Rotation therefore ends with the
opposition's purge (:func:`pdp.lake.erase_pseudonyms` over every old pseudonym): those files
are removed, so an old key no longer reverses anything in the lake (the price is time travel
to versions before the rotation, as for an erasure).

Crash safety: the steps are ordered so that a re-run finishes the job. While the old version
is not retired, the mapping can be recomputed from the vault rows still under it; a table
already re-mapped has no old pseudonym left (its MERGE matches nothing); the vault is renamed
last, page by page — each page's `follow` callback (the opposition registry) runs before the
page is renamed, so a crash between the two leaves nothing the re-run cannot find — and the
key is retired after the last page. `rotate_pseudonym_key` first resumes any unfinished
rotation (an active previous version still present in the vault) before it starts a new one.

Measured (``pdp bench rotate --persons 100000``: SQLite vault, three events per person in one
Delta table, 2-core machine at load average 5-10 with other jobs running): paged, the driver's
Python heap peaked at 86.9 MiB against 418.8 MiB for the same rotation in one page (×4.8; the
one-page peak grows with the population, the paged one with the page). Time per stage, paged:
check 39 s, map 77 s, lake MERGE 43 s, purge 32 s, vault rename 275 s of 468 s — all of it
under ``tracemalloc``, which slows the Python-heavy stages most. Untraced, the rename (SQLite,
re-encrypting each linkage row and rewriting its blocking and name-token index rows, one
process) runs at 1 469 persons/s (``pdp bench vault --persons 20000``, load average 21): 68 M
persons would take ~13 h on one core. It stays the stage that limits rotation; its pages are
independent, so it parallelises by pseudonym range when that matters.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.pseudonymise import Pseudonymiser
from pdp.pseudonym.vault import IdentityVault

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from pdp.lake import Catalog

__all__ = ["PAGE", "RotationError", "RotationReport", "remap_lake", "rotate_pseudonym_key"]

PAGE = 20_000  # vault rows decrypted, and mapping rows held, per page
_MAPPING_SCHEMA = "old string, new string"


class RotationError(RuntimeError):
    """Rotation cannot proceed safely (one line, no identity value)."""


@dataclass
class RotationReport:
    old_version: int
    new_version: int
    vault_rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # table → rows re-mapped
    purged: list[dict[str, object]] = field(default_factory=list)  # per table: files holding old pseudonyms removed
    mapped: int = 0  # old → new pairs computed (vault rows under the old version when the run began)
    resumed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # stage → wall time (check, map, lake, purge, vault)


@contextmanager
def _stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(seconds.get(name, 0.0) + time.perf_counter() - started, 2)


def _old_versions(store: KeyStore, vault: IdentityVault) -> list[int]:
    current = store.current("pseudonym").version
    active = [i.version for i in store.status() if i.purpose == "pseudonym" and i.status != "retired"]
    return [v for v in active if v != current and vault.pseudonym_page(prefix=f"v{v}:", limit=1)] or [
        v for v in active if v != current
    ]


def _mapping_pages(vault: IdentityVault, store: KeyStore, old: int, page: int = PAGE) -> Iterator[dict[str, str]]:
    """old → new pseudonym for every vault row of version `old`, one page at a time (in pseudonym order)."""
    pseudonymiser = Pseudonymiser(store)
    after = ""
    while olds := vault.pseudonym_page(prefix=f"v{old}:", after=after, limit=page):
        records = vault.linkage_view(olds)  # the linkage view holds the canonical bytes: no sealed record is opened
        missing = sum(1 for p in olds if p not in records or records[p].canonical is None)
        if missing:
            raise RotationError(
                f"{missing} vault record(s) lack their canonical identity: they cannot be re-keyed "
                "(re-ingest their sources first); nothing was changed"
            )
        yield {p: pseudonymiser.pseudonym_of_bytes(base64.b64decode(records[p].canonical or "")) for p in olds}
        after = olds[-1]


def remap_lake(
    spark: SparkSession, catalog: Catalog, mapping: Mapping[str, str] | DataFrame, run_id: str,
    lake_root: str | Path | None,
) -> dict[str, int]:
    """Re-key every lake column flagged `pseudonym: true` with `mapping` (old → new), one MERGE per table.

    Used by key rotation (a DataFrame ``old, new`` read from its work area) and by linkage when
    known persons turn out to be one person (a small dict).
    """
    from pyspark.sql import DataFrame

    from pdp.lake import LakeTable, RunInfo

    run = RunInfo(run_id=run_id, job="keys.rotate", definitions_version="pseudonym-rotation/1")
    if isinstance(mapping, DataFrame):
        frame = mapping
    else:
        frame = spark.createDataFrame(sorted(mapping.items()), _MAPPING_SCHEMA)
    done: dict[str, int] = {}
    for name in catalog.names():
        definition = catalog.table(name)
        columns = [c.name for c in definition.columns if c.pseudonym]
        table = LakeTable(spark, definition, lake_root=lake_root)
        if not columns or not table.exists():
            continue
        rows = 0
        # silver's person_id is xxhash64 of the pseudonym: it follows the pseudonym it derives from
        derived = {"person_id": "xxhash64(m.new)"} if "person_id" in definition.column_names else None
        for column in columns:
            commit = table.remap(column, frame, run=run, also_set=derived)
            rows += int(commit.metric("numTargetRowsUpdated") or 0) if commit else 0
        done[name] = rows
    return done


def _has_pseudonym_columns(catalog: Catalog) -> bool:
    return any(c.pseudonym for name in catalog.names() for c in catalog.table(name).columns)


def _pages_of(frame: DataFrame, page: int) -> Iterator[dict[str, str]]:
    """The mapping read back from the work area, `page` pairs at a time (a partition at a time in the driver)."""
    chunk: dict[str, str] = {}
    for row in frame.toLocalIterator():
        chunk[row.old] = row.new
        if len(chunk) >= page:
            yield chunk
            chunk = {}
    if chunk:
        yield chunk


def rotate_pseudonym_key(
    *,
    store: KeyStore,
    vault: IdentityVault,
    spark: SparkSession | None = None,
    catalog: Catalog | None = None,
    lake_root: str | Path | None = None,
    run_id: str = "keys-rotate",
    follow: Callable[[Mapping[str, str]], object] | None = None,
    page: int = PAGE,
) -> RotationReport:
    """Resume any unfinished rotation, else rotate; re-key the lake and the vault; retire the old key.

    `spark` and `catalog` may be None only when no lake table exists yet (nothing to re-map).
    `follow` is called with each page of old → new pseudonyms just before the vault renames them
    (``pdp keys rotate`` passes the opposition registry's ``follow``).
    """
    seconds: dict[str, float] = {}
    pending = _old_versions(store, vault)
    resumed = bool(pending)
    if resumed:
        old = min(pending)
    else:
        old = store.current("pseudonym").version
        with _stage(seconds, "check"):
            for _ in _mapping_pages(vault, store, old, page):  # fail closed before the key changes
                pass
        store.rotate("pseudonym")
    new = store.current("pseudonym").version
    report = RotationReport(old_version=old, new_version=new, resumed=resumed, seconds=seconds)
    lake = spark is not None and catalog is not None and _has_pseudonym_columns(catalog)
    if not lake and catalog is not None and _has_pseudonym_columns(catalog):
        raise RotationError("the lake has pseudonym columns: rotation needs a Spark session to re-map them")
    if lake:
        assert spark is not None and catalog is not None
        _rotate_lake_and_vault(report, store, vault, spark, catalog, lake_root, run_id, follow, page)
    else:
        with _stage(report.seconds, "vault"):
            for mapping in _mapping_pages(vault, store, old, page):
                report.mapped += len(mapping)
                if follow is not None:
                    follow(mapping)
                report.vault_rows += vault.repseudonymise(mapping)
    store.retire("pseudonym", old)
    return report


def _rotate_lake_and_vault(
    report: RotationReport, store: KeyStore, vault: IdentityVault, spark: SparkSession, catalog: Catalog,
    lake_root: str | Path | None, run_id: str, follow: Callable[[Mapping[str, str]], object] | None, page: int,
) -> None:
    from pdp.lake import RunInfo, WorkArea, erase_pseudonyms

    old, new = report.old_version, report.new_version
    area = WorkArea(spark, f"rotation-v{old}-v{new}", lake_root)
    area.remove()  # start empty: a crashed run's pages are never mixed with this run's
    try:
        with _stage(report.seconds, "map"):
            for mapping in _mapping_pages(vault, store, old, page):
                report.mapped += len(mapping)
                area.append(spark.createDataFrame(sorted(mapping.items()), _MAPPING_SCHEMA))
        if report.mapped:
            frame = area.read()
            with _stage(report.seconds, "lake"):
                report.tables = remap_lake(spark, catalog, frame, run_id, lake_root)
            run = RunInfo(run_id=f"{run_id}-purge", job="keys.rotate", definitions_version="pseudonym-rotation/1")
            with _stage(report.seconds, "purge"):
                report.purged = [r.as_dict() for r in erase_pseudonyms(
                    spark, frame.select("old"), run=run, lake_root=lake_root, catalog=catalog,
                    reason=f"key rotation v{old} -> v{new}: files holding old pseudonyms removed")]
            with _stage(report.seconds, "vault"):
                for mapping in _pages_of(frame, page):
                    if follow is not None:
                        follow(mapping)
                    report.vault_rows += vault.repseudonymise(mapping)
    finally:
        area.remove()  # old → new pairs link the two keys' pseudonyms: never left behind
