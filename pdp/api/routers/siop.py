"""``/siop``: worklists and alerts of a territory, re-identified for the SIOP; the contextual call.

The worklist of a territory is its persons with the due actions of their pathways, ordered by
declared GP; filters narrow it (GP, pathway, stratum, status, action, professional type). Each
page is re-identified through ``reidentify`` only (policy, patient scope, opposition, audit);
the cursor is signed and bound to the territory and the filters (:mod:`pdp.api.cursor`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from pdp.api import views
from pdp.api.cursor import CursorError, filters_digest
from pdp.api.deps import Access, Permission
from pdp.api.fhir import worklist_bundle
from pdp.api.reid import release
from pdp.api.schemas import (
    AlertOut,
    AlertPage,
    CareTeamMember,
    CareTeamReceipt,
    CitizenIdentity,
    ContextualAnswer,
    FhirBundle,
    WorklistChanges,
    WorklistPage,
)
from pdp.api.snapshot import GoldSnapshot
from pdp.governance.authz import (
    Action,
    CareRelationship,
    Resource,
    Role,
    SqlCareRelationships,
    patients_in_scope,
)

router = APIRouter(prefix="/siop", tags=["siop"])

TerritoryPath = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,63}$", description="Territory (policy domain).")]
_RPPS = r"^[0-9]{11}$"
_STATUSES = ("due", "overdue", "up_to_date")

WorklistAccess = Annotated[Access, Depends(Permission(Resource.WORKLIST, Action.READ, roles={Role.SIOP_PLATFORM}))]
AlertAccess = Annotated[Access, Depends(Permission(Resource.ALERT, Action.READ, roles={Role.SIOP_PLATFORM}))]
ReportAccess = Annotated[Access, Depends(Permission(Resource.INDICATOR, Action.READ, roles={Role.SIOP_PLATFORM}))]
LookupAccess = Annotated[Access, Depends(Permission(Resource.LOOKUP, Action.QUERY,
                                                    roles={Role.SIOP_PLATFORM, Role.PROFESSIONAL}))]
CareTeamAccess = Annotated[Access, Depends(Permission(Resource.CARE_TEAM, Action.WRITE,
                                                      roles={Role.SIOP_PLATFORM}))]
RppsPath = Annotated[str, Path(pattern=_RPPS, description="RPPS of the professional (11 digits).")]


@dataclass(frozen=True)
class WorklistFilters:
    gp: str | None
    pathway: str | None
    stratum: str | None
    status: tuple[str, ...]
    action: str | None
    professional: str | None

    def digest(self) -> str:
        return filters_digest(**self.__dict__)

    def keeps(self, row: dict[str, Any]) -> bool:
        return (row["status"] in self.status
                and (self.pathway is None or row["pathway"] == self.pathway)
                and (self.stratum is None or row["stratum"] == self.stratum)
                and (self.action is None or row["action"] == self.action)
                and (self.professional is None or row["professional"] == self.professional))


def worklist_filters(
    gp: Annotated[str | None, Query(pattern=_RPPS, description="RPPS of the declared GP.")] = None,
    pathway: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,32}$")] = None,
    stratum: Annotated[str | None, Query(pattern=r"^(at_risk|[1-4])$")] = None,
    status_: Annotated[list[str] | None, Query(alias="status", description="due, overdue, up_to_date "
                                                "(repeatable; default due and overdue).")] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,32}$")] = None,
    professional: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
) -> WorklistFilters:
    statuses = tuple(sorted(set(status_ or ("due", "overdue"))))
    if any(s not in _STATUSES for s in statuses):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"status must be among {', '.join(_STATUSES)}")
    return WorklistFilters(gp, pathway, stratum, statuses, action, professional)


Filters = Annotated[WorklistFilters, Depends(worklist_filters)]
Cursor = Annotated[str | None, Query(max_length=512, description="The next_cursor of the previous page.")]
Limit = Annotated[int, Query(ge=1, le=2000)]
Explain = Annotated[bool, Query(description="Include the facts behind each due action (false: lighter pages).")]


def _snapshot(access: Access) -> GoldSnapshot:
    snapshot = access.ctx.snapshots.current()
    if snapshot.as_of is None or snapshot.territory != access.territory:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no gold run served for this territory")
    return snapshot


def _offset(access: Access, resource: str, digest: str, cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        return access.ctx.cursors.read(cursor, territory=access.territory, resource=resource, filters=digest)
    except CursorError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


PageItem = tuple[Any, str | None, views.PersonPart, list[int]]


def _matching(snapshot: GoldSnapshot, filters: WorklistFilters, digest: str) -> list[tuple[str, list[int]]]:
    """Persons matching ``filters`` with the indexes of their matching actions, once per snapshot and filters.

    Why memoised: every page of a cursor walk needs the whole match (its total, its offset); gold does
    not change under a snapshot, opposition does, so it is applied after, per request.
    """
    key = ("match", digest)
    found = snapshot.memo.get(key)
    if found is None:
        found = []
        for p in snapshot.worklist_persons(filters.gp):
            chosen = [i for i, r in enumerate(snapshot.actions[p]) if filters.keeps(r)]
            if chosen:
                found.append((p, chosen))
        snapshot.memo[key] = found
    return found


def _worklist(access: Access, filters: WorklistFilters, cursor: str | None, limit: int,
              explain: bool = True) -> tuple[WorklistPage, list[PageItem]]:
    """One page: its envelope (no items) and its released persons (record, GP, rendered part, actions chosen)."""
    digest = filters.digest()
    offset = _offset(access, "worklist", digest, cursor)  # a forged or foreign cursor fails before any read
    snapshot = _snapshot(access)
    ctx = access.ctx
    opposed = set(ctx.registry.active())
    matching = [m for m in _matching(snapshot, filters, digest) if m[0] not in opposed]
    page = matching[offset:offset + limit]
    records = release(access, snapshot, [p for p, _ in page])
    parts = views.person_parts(ctx.definitions, snapshot, [p for p, _ in page if p in records], explain=explain)
    items = [(records[p], snapshot.gp_of.get(p), parts[p], chosen) for p, chosen in page if p in records]
    more = offset + limit < len(matching)
    next_cursor = (ctx.cursors.issue(territory=access.territory, resource="worklist", filters=digest,
                                     offset=offset + limit) if more else None)
    envelope = WorklistPage(territory=access.territory, as_of=snapshot.as_of, definitions=snapshot.definitions,
                            items=[], total=len(matching), withheld=len(page) - len(items), next_cursor=next_cursor)
    return envelope, items


@router.get("/{territory}/worklist", response_model=WorklistPage)
def worklist(
    territory: TerritoryPath, access: WorklistAccess, filters: Filters, cursor: Cursor = None, limit: Limit = 100,
    explain: Explain = True,
) -> Response:
    """The territory's worklist (plain JSON): persons with their due actions, re-identified, one page."""
    envelope, items = _worklist(access, filters, cursor, limit, explain)
    return Response(views.worklist_json(envelope, items), media_type="application/json")


@router.get("/{territory}/worklist/fhir", response_model=FhirBundle)
def worklist_fhir(
    territory: TerritoryPath, request: Request, access: WorklistAccess, filters: Filters,
    cursor: Cursor = None, limit: Limit = 100,
) -> dict[str, Any]:
    """The same page as a FHIR R4 Bundle: a List per GP, a Task per due action, the Patients."""
    envelope, items = _worklist(access, filters, cursor, limit)
    page = envelope.model_copy(update={"items": [views.worklist_patient(*item) for item in items]})
    next_url = str(request.url.include_query_params(cursor=page.next_cursor)) if page.next_cursor else None
    return worklist_bundle(page, next_url=next_url)


_MAX_CHANGED = 5000


#: The gold tables a worklist item is made of (its actions, its strata, the facts of its explanations),
#: all with change data feed: a change in any of them is a change of the item.
_WORKLIST_TABLES = ("care_action", "stratum", "evidence")


def _changed_persons(access: Access, name: str, since: int, until: int) -> set[str]:
    """Pseudonyms with a change in gold.``name``'s change data after version ``since`` (delta-rs, no JVM)."""
    import pyarrow as pa
    from deltalake import DeltaTable

    from pdp.lake import table

    if until <= since:
        return set()
    handle = DeltaTable(table(f"gold.{name}").path(access.ctx.settings.lake_uri))
    try:
        changes = pa.table(handle.load_cdf(starting_version=since + 1, ending_version=until,
                                           columns=["person_pseudonym"]))
    except Exception:  # versions vacuumed, or change data not kept that far back
        raise HTTPException(status.HTTP_410_GONE, "changes since that cursor are no longer kept: read the "
                                                  "whole worklist again") from None
    return set(changes.column("person_pseudonym").to_pylist())


@router.get("/{territory}/worklist/changes", response_model=WorklistChanges)
def worklist_changes(
    territory: TerritoryPath, access: WorklistAccess,
    since: Annotated[str | None, Query(max_length=512, description="The next_since of the previous pull; "
                                       "omitted: no changes, and the cursor of now.")] = None,
) -> WorklistChanges:
    """What changed in the worklist since the SIOP's last pull, from gold's change data feed (due actions,
    strata and the facts behind them), so that a SIOP stays in step without re-reading everything.
    Changed persons are re-identified like the worklist."""
    read: tuple[int, dict[str, int]] | None = None
    if since is not None:  # a bad cursor is the client's error, whatever the state of gold
        try:
            read = access.ctx.cursors.read_marks(since, territory=access.territory,
                                                 resource="worklist-changes", filters="")
        except CursorError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    snapshot = _snapshot(access)
    current = {name: snapshot.versions.get(name, -1) for name in _WORKLIST_TABLES}
    changed: set[str] = set()
    if read is not None:
        first, marks = read
        seen = {name: marks.get(name, current[name]) for name in _WORKLIST_TABLES} | {"care_action": first}
        if any(seen[name] > current[name] for name in _WORKLIST_TABLES):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "cursor is ahead of the gold served")
        for name in _WORKLIST_TABLES:
            changed |= _changed_persons(access, name, seen[name], current[name])
            if len(changed) > _MAX_CHANGED:
                raise HTTPException(status.HTTP_409_CONFLICT, "too many changes: read the whole worklist again")
    opposed = set(access.ctx.registry.active())
    still = sorted(p for p in changed if p in snapshot.actions and p not in opposed)
    records = release(access, snapshot, still)
    parts = views.person_parts(access.ctx.definitions, snapshot, [p for p in still if p in records], explain=True)
    items = [views.worklist_patient(records[p], snapshot.gp_of.get(p), parts[p], list(range(len(parts[p].actions))))
             for p in still if p in records]
    return WorklistChanges(
        territory=access.territory, as_of=snapshot.as_of, changed=items,
        gone=len([p for p in changed if p not in snapshot.actions and p not in opposed]),
        withheld=len(still) - len(items),
        next_since=access.ctx.cursors.issue(territory=access.territory, resource="worklist-changes", filters="",
                                            offset=current["care_action"],
                                            marks={n: current[n] for n in _WORKLIST_TABLES[1:]}),
    )


def _alert_items(access: Access, snapshot: GoldSnapshot, rows: list[dict[str, Any]]) -> list[AlertOut]:
    """The alerts of ``rows`` whose persons ``reidentify`` releases, with their explanations."""
    defs = access.ctx.definitions
    records = release(access, snapshot, sorted({a["person_pseudonym"] for a in rows}))
    evidence = snapshot.facts(sorted(records))
    items = []
    for a in rows:
        p = a["person_pseudonym"]
        if p not in records:
            continue
        definition = defs.alerts.get(a["alert"])
        items.append(AlertOut(
            patient=views.identity(records[p]), gp_rpps=a.get("gp_rpps"), alert=a["alert"],
            label=definition.label if definition else a["alert"], severity=a["severity"],
            professional=a["professional"], rule_id=a["rule_id"],
            explanation=views.facts(defs, evidence[p].get(("alert", a["alert"]), [])),
        ))
    return items


def _alert_rows(access: Access, snapshot: GoldSnapshot, severity: str | None) -> list[dict[str, Any]]:
    opposed = set(access.ctx.registry.active())
    return [a for a in snapshot.alerts
            if a["person_pseudonym"] not in opposed and (severity is None or a["severity"] == severity)]


Severity = Annotated[str | None, Query(pattern=r"^(low|medium|high)$")]


@router.get("/{territory}/alerts", response_model=AlertPage)
def alerts(
    territory: TerritoryPath, access: AlertAccess, severity: Severity = None, cursor: Cursor = None,
    limit: Limit = 100,
) -> AlertPage:
    """The territory's clinical alerts (polling with a cursor), re-identified for care coordination."""
    digest = filters_digest(severity=severity)
    offset = _offset(access, "alerts", digest, cursor)
    snapshot = _snapshot(access)
    matching = _alert_rows(access, snapshot, severity)
    page = matching[offset:offset + limit]
    items = _alert_items(access, snapshot, page)
    more = offset + limit < len(matching)
    return AlertPage(
        territory=access.territory, as_of=snapshot.as_of, items=items, withheld=len(page) - len(items),
        next_cursor=access.ctx.cursors.issue(territory=access.territory, resource="alerts", filters=digest,
                                             offset=offset + limit) if more else None,
    )


_KEEPALIVE_SECONDS = 15.0  # an SSE comment this often when idle: proxies close silent streams


def _alert_key(a: dict[str, Any]) -> tuple[str, str, str]:
    return a["person_pseudonym"], a["alert"], str(a["as_of"])


def _alerts_at(access: Access, version: int) -> set[tuple[str, str, str]]:
    """The alerts gold.alert held at ``version`` (time travel, delta-rs): what a resuming client has seen."""
    from deltalake import DeltaTable

    from pdp.lake import table

    try:
        old = DeltaTable(table("gold.alert").path(access.ctx.settings.lake_uri), version=version)
        rows = old.to_pyarrow_table(columns=["person_pseudonym", "alert", "as_of"]).to_pylist()
    except Exception:  # vacuumed or never existed: the client gets the current alerts again
        return set()
    return {_alert_key(r) for r in rows}


@router.get(
    "/{territory}/alerts/stream", response_class=StreamingResponse,
    responses={200: {"description": "Server-sent events: one `alerts` event (an AlertPage) per batch of new "
                                    "alerts, its `id` the gold.alert version; `: keep-alive` comments when idle.",
                     "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/AlertPage"}}}}},
)
async def alerts_stream(
    territory: TerritoryPath, request: Request, access: AlertAccess, severity: Severity = None,
    max_seconds: Annotated[float, Query(ge=0, le=3600, description="Close the stream after this long "
                                        "(clients reconnect); 0: the current alerts, then close.")] = 300,
    poll_seconds: Annotated[float, Query(ge=0.5, le=60)] = 2.0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{1,12}$",
                                                description="The id of the last event received (a "
                                                "gold.alert version): resume after it.")] = None,
) -> StreamingResponse:
    """The alerts feed as server-sent events: the current alerts, then each new one as gold changes.

    Every batch is re-identified (and audited) when it is sent; an alert already sent on this
    stream is not sent again; opposed persons are left out at each batch. A client that
    reconnects with ``Last-Event-ID`` (browsers' EventSource do) gets only the alerts that were
    not in gold at that version; an idle stream carries a keep-alive comment every 15 s.
    """
    from starlette.concurrency import run_in_threadpool

    _snapshot(access)  # 404 before the stream opens if the territory is not served
    seen = await run_in_threadpool(_alerts_at, access, int(last_event_id)) if last_event_id is not None else set()

    async def events():
        sent: set[tuple[str, str, str]] = set(seen)
        deadline = time.monotonic() + max_seconds
        quiet_since = time.monotonic()
        yield f"retry: {int(poll_seconds * 1000)}\n\n"
        while True:
            snapshot = await run_in_threadpool(access.ctx.snapshots.current)
            fresh = [a for a in await run_in_threadpool(_alert_rows, access, snapshot, severity)
                     if _alert_key(a) not in sent]
            if fresh:
                items = await run_in_threadpool(_alert_items, access, snapshot, fresh)
                sent.update(_alert_key(a) for a in fresh)
                page = AlertPage(territory=access.territory, as_of=snapshot.as_of, items=items,
                                 withheld=len(fresh) - len(items), next_cursor=None)
                yield f"event: alerts\nid: {snapshot.versions.get('alert', 0)}\ndata: {page.model_dump_json()}\n\n"
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            if time.monotonic() >= deadline or await request.is_disconnected():
                return
            await asyncio.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/{territory}/report", response_class=HTMLResponse,
            responses={200: {"description": "The territory report (self-contained HTML).",
                             "content": {"text/html": {"schema": {"type": "string"}}}}})
def report(territory: TerritoryPath, access: ReportAccess) -> HTMLResponse:
    """The territory's report of the gold run served (pyramids, indicators under disclosure control, trend),
    as `pdp run` wrote it under var/reports/: aggregates only."""
    snapshot = _snapshot(access)
    label = snapshot.territory_label or ""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)
    path = FilePath(access.ctx.settings.var_dir) / "reports" / f"{safe}-{snapshot.as_of.isoformat()}.html"
    if not label or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no report for the gold run served (see `pdp run`)")
    return HTMLResponse(path.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})


@router.post("/contextual", response_model=ContextualAnswer)
def contextual(
    access: LookupAccess,
    patient: CitizenIdentity,
    territory: Annotated[str, Query(pattern=r"^[a-z][a-z0-9-]{0,63}$", description="Territory of the request.")],
) -> ContextualAnswer:
    """The contextual call from GP software: one patient (identity in the body), their stratum, due
    actions, logigramme and explanation. A professional gets only their own patients (else 403, audited)."""
    from pdp.api.identity import person_of

    snapshot = _snapshot(access)
    ctx, defs = access.ctx, access.ctx.definitions
    person = person_of(ctx, snapshot, patient)
    if person is None or not ctx.not_opposed([person]):
        access.record([], decision="done", rule="contextual call: no result for this patient",
                      details={"found": False})
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no result for this patient")
    if not patients_in_scope(access.principal, [person], ctx.relationships(snapshot)):
        access.record([person], decision="denied",
                      rule="contextual call: not the professional's patient (declared GP or care relationship)")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden: not a patient of the requesting professional")
    access.record([person], rule="contextual call")
    evidence = snapshot.facts([person])[person]
    strata = snapshot.strata.get(person, [])
    actions = [r for r in snapshot.actions.get(person, []) if r["status"] in ("due", "overdue")]
    logigrammes = []
    for s in strata:
        for path in defs.pathways.values():
            if path.pyramid == s["pyramid"] and s["stratum"] in path.strata:
                chart = views.logigramme(defs, path.name, s["stratum"])
                if chart is not None:
                    logigrammes.append(chart)
    return ContextualAnswer(
        territory=access.territory, as_of=snapshot.as_of, definitions=snapshot.definitions,
        strata=[views.stratum(defs, s) for s in strata],
        populations=sorted(r["population"] for r in snapshot.populations.get(person, [])),
        actions=[views.due_action(defs, r, evidence) for r in actions], logigrammes=logigrammes,
    )


def _care_team_person(access: Access, identity: CitizenIdentity) -> str:
    """The pseudonym of a patient of the territory served, not opposed (else 404, audited)."""
    from pdp.api.identity import person_of

    snapshot = _snapshot(access)
    person = person_of(access.ctx, snapshot, identity)
    if person is None or not access.ctx.not_opposed([person]):
        access.record([], decision="done", rule="care team: no such patient in the territory",
                      details={"found": False})
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such patient in the territory")
    return person


@router.put("/{territory}/care-team/{rpps}", response_model=CareTeamReceipt)
def care_team_record(territory: TerritoryPath, rpps: RppsPath, body: CareTeamMember,
                     access: CareTeamAccess) -> CareTeamReceipt:
    """Record that the professional ``rpps`` is in the patient's care team: from the next request they
    see the patient in their worklist and contextual calls, as the declared GP does. Idempotent; erased
    with everything else when the patient objects."""
    person = _care_team_person(access, body.patient)
    SqlCareRelationships(access.ctx.engine).record(CareRelationship(rpps, person, "care"))
    access.record([person], rule="care team: membership recorded, the patient's consent attested by the SIOP",
                  details={"rpps": rpps, "kind": "care"})
    return CareTeamReceipt(territory=access.territory, rpps=rpps, kind="care", member=True)


@router.delete("/{territory}/care-team/{rpps}", response_model=CareTeamReceipt)
def care_team_end(territory: TerritoryPath, rpps: RppsPath, patient: CitizenIdentity,
                  access: CareTeamAccess) -> CareTeamReceipt:
    """End the professional's membership of the patient's care team (effective on the next request).
    Ending one that was not recorded is not an error; the declared GP is gold's, not ended here."""
    person = _care_team_person(access, patient)
    SqlCareRelationships(access.ctx.engine).end(CareRelationship(rpps, person, "care"))
    access.record([person], rule="care team: membership ended", details={"rpps": rpps, "kind": "care"})
    return CareTeamReceipt(territory=access.territory, rpps=rpps, kind="care", member=False)
