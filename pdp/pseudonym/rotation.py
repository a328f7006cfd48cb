"""`pdp keys rotate`: a new pseudonym key version, and every pseudonym re-keyed to it.

How linkage survives: the vault keeps, encrypted, the canonical identity bytes that made each
pseudonym (`VaultRecord.canonical`). Rotation recomputes HMAC(new key, canonical) for every
vault row, giving an old → new mapping that holds pseudonyms only (not nominative); each lake
table with a pseudonym column is re-mapped in one atomic MERGE, then the vault rows are
renamed in one transaction, then the old key version is retired.

The purge: after the re-keying MERGEs, the files of earlier versions and the change-data files
still hold the old pseudonyms, which the old key reverses. Rotation therefore ends with the
opposition's purge (:func:`pdp.lake.erase_pseudonyms` over every old pseudonym): those files
are removed, so an old key no longer reverses anything in the lake (the price is time travel
to versions before the rotation, as for an erasure).

Crash safety: the steps are ordered so that a re-run finishes the job. While the old version
is not retired, the mapping can be recomputed from the vault; a table already re-mapped has
no old pseudonym left (its MERGE matches nothing); the vault is renamed last, and the key
retired after it. `rotate_pseudonym_key` first resumes any unfinished rotation (an active
previous version still present in the vault) before it starts a new one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.pseudonymise import Pseudonymiser
from pdp.pseudonym.vault import IdentityVault

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from pdp.lake import Catalog

__all__ = ["RotationError", "RotationReport", "remap_lake", "rotate_pseudonym_key"]


class RotationError(RuntimeError):
    """Rotation cannot proceed safely (one line, no identity value)."""


@dataclass
class RotationReport:
    old_version: int
    new_version: int
    vault_rows: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # table → rows re-mapped
    purged: list[dict[str, object]] = field(default_factory=list)  # per table: files holding old pseudonyms removed
    mapping: dict[str, str] = field(default_factory=dict, repr=False)  # old → new (pseudonyms only)
    resumed: bool = False


def _old_versions(store: KeyStore, vault: IdentityVault) -> list[int]:
    current = store.current("pseudonym").version
    active = [i.version for i in store.status() if i.purpose == "pseudonym" and i.status != "retired"]
    return [v for v in active if v != current and vault.pseudonyms(prefix=f"v{v}:")] or [
        v for v in active if v != current
    ]


def _mapping(vault: IdentityVault, store: KeyStore, old: int) -> dict[str, str]:
    """old pseudonym → new pseudonym for every vault row of version `old`."""
    pseudonymiser = Pseudonymiser(store)
    olds = vault.pseudonyms(prefix=f"v{old}:")
    records = vault.linkage_view(olds)  # the linkage view holds the canonical bytes: no sealed record is opened
    missing = [p for p in olds if p not in records or records[p].canonical is None]
    if missing:
        raise RotationError(
            f"{len(missing)} vault record(s) lack their canonical identity: they cannot be re-keyed "
            "(re-ingest their sources first); nothing was changed"
        )
    return {p: pseudonymiser.pseudonym_of_bytes(base64.b64decode(records[p].canonical or "")) for p in olds}


def remap_lake(
    spark: SparkSession, catalog: Catalog, mapping: dict[str, str], run_id: str, lake_root: str | Path | None
) -> dict[str, int]:
    """Re-key every lake column flagged `pseudonym: true` with `mapping` (old → new), one MERGE per table.

    Used by key rotation and by linkage when known persons turn out to be one person.
    """
    from pdp.lake import LakeTable, RunInfo

    run = RunInfo(run_id=run_id, job="keys.rotate", definitions_version="pseudonym-rotation/1")
    frame = spark.createDataFrame(sorted(mapping.items()), "old string, new string")
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


def rotate_pseudonym_key(
    *,
    store: KeyStore,
    vault: IdentityVault,
    spark: SparkSession | None = None,
    catalog: Catalog | None = None,
    lake_root: str | Path | None = None,
    run_id: str = "keys-rotate",
) -> RotationReport:
    """Resume any unfinished rotation, else rotate; re-key the lake and the vault; retire the old key.

    `spark` and `catalog` may be None only when no lake table exists yet (nothing to re-map).
    """
    pending = _old_versions(store, vault)
    resumed = bool(pending)
    if resumed:
        old = min(pending)
    else:
        old = store.current("pseudonym").version
        _mapping(vault, store, old)  # fail closed before the key changes if a record can't be re-keyed
        store.rotate("pseudonym")
    new = store.current("pseudonym").version
    report = RotationReport(old_version=old, new_version=new, resumed=resumed)
    mapping = _mapping(vault, store, old)
    if mapping and spark is not None and catalog is not None:
        from pdp.lake import RunInfo, erase_pseudonyms

        report.tables = remap_lake(spark, catalog, mapping, run_id, lake_root)
        run = RunInfo(run_id=f"{run_id}-purge", job="keys.rotate", definitions_version="pseudonym-rotation/1")
        report.purged = [r.as_dict() for r in erase_pseudonyms(
            spark, mapping, run=run, lake_root=lake_root, catalog=catalog,
            reason=f"key rotation v{old} -> v{new}: files holding old pseudonyms removed")]
    elif mapping and catalog is not None and _has_pseudonym_columns(catalog):
        raise RotationError("the lake has pseudonym columns: rotation needs a Spark session to re-map them")
    report.vault_rows = vault.repseudonymise(mapping) if mapping else 0
    report.mapping = mapping
    store.retire("pseudonym", old)
    return report
