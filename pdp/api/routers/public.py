"""``/healthz``: public liveness, with the gold run served (no data)."""

from __future__ import annotations

from fastapi import APIRouter

from pdp.api.deps import ContextDep
from pdp.api.schemas import Health

router = APIRouter(tags=["public"])


@router.get("/healthz", response_model=Health)
def healthz(ctx: ContextDep) -> Health:
    snapshot = ctx.snapshots.current()
    return Health(status="ok", gold_as_of=snapshot.as_of, gold_version=snapshot.version_tag)
