"""``/ethics``: the committee's review — query and verify the audit log, draw a seeded sample.

The sample is the same draw as ``pdp ethics sample`` (:mod:`pdp.governance.ethics`: candidates
ranked by SHA-256(seed, pseudonym), opposed persons removed at draw time), made on the serving
snapshot instead of a Spark job: same seed and parameters, same persons. Records are the gold
explanations — pseudonymised, never a re-identified field. Every draw is audited.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status

from pdp.api.deps import Access, Permission
from pdp.api.schemas import (
    AuditEntryOut,
    AuditPage,
    AuditVerification,
    EthicsSampleOut,
    PersonRecord,
    SampleRequest,
)
from pdp.api.snapshot import GoldSnapshot
from pdp.governance.authz import Action, Resource, Role

router = APIRouter(prefix="/ethics", tags=["ethics"])

_ETHICS = {Role.ETHICS}
AuditRead = Annotated[Access, Depends(Permission(Resource.AUDIT_LOG, Action.READ, roles=_ETHICS, territorial=False))]
AuditVerify = Annotated[Access, Depends(Permission(Resource.AUDIT_LOG, Action.VERIFY, roles=_ETHICS,
                                                   territorial=False))]
SampleDraw = Annotated[Access, Depends(Permission(Resource.ETHICS_SAMPLE, Action.DRAW, roles=_ETHICS))]

_STRIP = ("person_id", "person_pseudonym", "definitions", "as_of")


@router.get("/audit", response_model=AuditPage)
def audit_query(
    access: AuditRead,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    purpose: Annotated[str | None, Query(max_length=64)] = None,
    decision: Annotated[str | None, Query(max_length=16)] = None,
    action: Annotated[str | None, Query(max_length=40)] = None,
    since: date | None = None,
    until: date | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> AuditPage:
    """Filtered review of the audit log (pseudonyms and counts, never identities), in index order."""
    from pdp.governance.audit import AuditEntryError

    try:
        entries = access.ctx.audit.query(actor=actor, purpose=purpose, decision=decision, action=action,
                                         since=since, until=until, limit=limit)
    except AuditEntryError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return AuditPage(entries=[AuditEntryOut(**e.as_dict(), entry_hash=e.entry_hash) for e in entries])


@router.get("/audit/verify", response_model=AuditVerification)
def audit_verify(access: AuditVerify) -> AuditVerification:
    """Recompute the hash chain and the Merkle tree; check the stored signed heads."""
    from pdp.governance.audit import AuditLog, AuditSigningKeys
    from pdp.pseudonym.kms import KeyStoreError

    ctx = access.ctx
    try:
        log = AuditLog(ctx.audit.engine, signing_keys=AuditSigningKeys.from_settings(ctx.settings))
        report = log.verify()
    except KeyStoreError:
        report = ctx.audit.verify()
    return AuditVerification(ok=report.ok, size=report.size, root_hash=report.root_hash,
                             checkpoints_checked=report.checkpoints_checked, first_bad_index=report.first_bad_index,
                             line=report.line())


def _record(snapshot: GoldSnapshot, p: str, evidence: dict[tuple[str, str], list[dict[str, Any]]]) -> PersonRecord:
    def rows(items: list[dict[str, Any]], kind: str, key: str) -> list[dict[str, Any]]:
        out = []
        for r in items:
            row = {k: v for k, v in r.items() if k not in _STRIP}
            row["facts"] = evidence.get((kind, key.format(**r)), [])
            out.append(row)
        return out

    return PersonRecord(
        person_pseudonym=p,
        populations=rows(snapshot.populations.get(p, []), "population", "{population}"),
        strata=rows(snapshot.strata.get(p, []), "stratum", "{pyramid}:{stratum}"),
        actions=rows(snapshot.actions.get(p, []), "action", "{pathway}.{action}"),
        alerts=rows([a for a in snapshot.alerts if a["person_pseudonym"] == p], "alert", "{alert}"),
    )


@router.post("/samples", response_model=EthicsSampleOut)
def draw(
    access: SampleDraw, request: SampleRequest,
    territory: Annotated[str, Query(pattern=r"^[a-z][a-z0-9-]{0,63}$")],
) -> EthicsSampleOut:
    """A reproducible draw of ``n`` pseudonymised records of a stratum, with their explanations."""
    from pdp.governance.ethics import rank

    snapshot = access.ctx.snapshots.current()
    if snapshot.as_of is None or snapshot.territory != territory:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no gold run served for this territory")
    candidates = sorted(p for p, rows in snapshot.strata.items()
                        if any(r["pyramid"] == request.pyramid and r["stratum"] == request.stratum for r in rows))
    eligible = access.ctx.not_opposed(candidates)
    drawn = sorted(eligible, key=lambda p: rank(request.seed, p))[:request.n]
    evidence = snapshot.facts(drawn)
    sample = EthicsSampleOut(territory=territory, pyramid=request.pyramid, stratum=request.stratum,
                             as_of=snapshot.as_of, n=request.n, seed=request.seed, eligible=len(eligible),
                             records=[_record(snapshot, p, evidence[p]) for p in drawn])
    access.ctx.audit.append(
        actor=access.principal.sub, actor_role=str(access.principal.role), action="ethics_sampling",
        decision="done", data_ref=drawn, purpose=access.purpose, rule="ethics sample (API)",
        details={"territory": territory, "pyramid": request.pyramid, "stratum": request.stratum,
                 "as_of": snapshot.as_of.isoformat(), "n": request.n, "seed": request.seed,
                 "eligible": len(eligible)},
    )
    return sample
