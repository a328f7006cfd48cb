"""``/admin``: the data engineers' view — sources, ingestion logs, quarantine counts by reason.

Never patient-level data: the ingestion log names files and counts; quarantine statistics are
counts per source and reason code, never the records (read from ``ops.*`` with delta-rs).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from pdp.api.deps import Access, Permission
from pdp.api.schemas import IngestionLogRow, QuarantineCount, SourceOut
from pdp.governance.authz import Action, Resource, Role

router = APIRouter(prefix="/admin", tags=["admin"])

_ENGINEER = {Role.DATA_ENGINEER}
SourceAccess = Annotated[Access, Depends(Permission(Resource.SOURCE, Action.READ, roles=_ENGINEER, territorial=False))]
LogAccess = Annotated[Access, Depends(Permission(Resource.INGESTION_LOG, Action.READ, roles=_ENGINEER,
                                                 territorial=False))]
QuarantineAccess = Annotated[Access, Depends(Permission(Resource.QUARANTINE_STATS, Action.READ, roles=_ENGINEER,
                                                        territorial=False))]


def _ops(access: Access, name: str, columns: list[str]) -> list[dict]:
    from deltalake import DeltaTable

    from pdp.lake import table

    path = table(f"ops.{name}").path(access.ctx.settings.lake_uri)
    if not DeltaTable.is_deltatable(path):
        return []
    return DeltaTable(path).to_pyarrow_table(columns=columns).to_pylist()


@router.get("/sources", response_model=list[SourceOut])
def sources(access: SourceAccess) -> list[SourceOut]:
    """The source registry: every declared source, its format, files and what it produces."""
    from pdp.ingest.registry import SpecError, sources_list

    try:
        rows = sources_list()
    except SpecError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return [SourceOut(**{**r, "produces": [str(p) for p in r["produces"]]}) for r in rows]


@router.get("/ingestion-log", response_model=list[IngestionLogRow])
def ingestion_log(access: LogAccess, limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[IngestionLogRow]:
    """The latest file ingestions (newest first): counts in, landed, quarantined, status."""
    cols = ["batch_id", "source", "file", "started_at", "finished_at", "records_in", "records_landed",
            "records_quarantined", "status"]
    rows = sorted(_ops(access, "ingestion_log", cols), key=lambda r: str(r["started_at"]), reverse=True)[:limit]
    return [IngestionLogRow(**{**r, "started_at": r["started_at"] and r["started_at"].isoformat(),
                               "finished_at": r["finished_at"] and r["finished_at"].isoformat()}) for r in rows]


@router.get("/quarantine-stats", response_model=list[QuarantineCount])
def quarantine_stats(access: QuarantineAccess) -> list[QuarantineCount]:
    """Quarantined records counted by source and reason code (never the records)."""
    counts = Counter((r["source"], r["reason_code"]) for r in _ops(access, "quarantine", ["source", "reason_code"]))
    return [QuarantineCount(source=s, reason_code=c, records=n) for (s, c), n in sorted(counts.items())]
