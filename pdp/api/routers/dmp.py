"""``/dmp``: the citizen's side, through the national health record (DMP, "Mon espace santé").

Opposition in and out as a FHIR ``Consent`` (deny) through the governance service — registered
at once, so the person leaves every result from the next request; the lake is erased by the
propagation job (``pdp oppose apply`` / ``pdp run``), never by a request (no Spark here). The
citizen's transparency record (uses of their data: when, which kind of actor, why) and their
own pathway in plain words. The identity is always in the body (POST), never in a URL.

Patient feedback (PREM / PROM) as a FHIR ``QuestionnaireResponse``: checked by the edge's own
parser and handed to the edge through its inbox (``pdp.ingest.inbox``), answered 202 with a
receipt; it lands, pseudonymised, with the next ``pdp ingest`` and is only ever published as
aggregates per stratum. A response the edge would quarantine is a 422 with the reason code.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from pdp.api.deps import Access, Permission
from pdp.api.identity import pseudonyms_of
from pdp.api.schemas import (
    CitizenIdentity,
    CitizenPathway,
    CitizenStep,
    FhirResourceIn,
    OppositionOut,
    QuestionnaireReceipt,
    QuestionnaireResponseIn,
    TransparencyEntry,
    TransparencyRecord,
)
from pdp.governance.authz import Action, Resource, Role

router = APIRouter(prefix="/dmp", tags=["dmp"])

_DMP = {Role.DMP}
Submit = Annotated[Access, Depends(Permission(Resource.OPPOSITION, Action.SUBMIT, roles=_DMP, territorial=False))]
Withdraw = Annotated[Access, Depends(Permission(Resource.OPPOSITION, Action.WITHDRAW, roles=_DMP, territorial=False))]
Status = Annotated[Access, Depends(Permission(Resource.OPPOSITION, Action.READ, roles=_DMP, territorial=False))]
Transparency = Annotated[Access, Depends(Permission(Resource.TRANSPARENCY, Action.READ, roles=_DMP,
                                                    territorial=False))]
Pathway = Annotated[Access, Depends(Permission(Resource.CITIZEN_PATHWAY, Action.READ, roles=_DMP,
                                               territorial=False))]
Feedback = Annotated[Access, Depends(Permission(Resource.PATIENT_FEEDBACK, Action.SUBMIT, roles=_DMP,
                                                territorial=False))]

_WORDS = {"up_to_date": "done on time", "due": "due soon", "overdue": "late"}


def _consent(access: Access, consent: FhirResourceIn, *, withdrawal: bool) -> OppositionOut:
    from pdp.governance.opposition import ConsentError, submit

    ctx = access.ctx
    raw = json.dumps(consent.model_dump(mode="json")).encode()
    try:
        outcome = submit(raw, engine=ctx.engine, store=ctx.key_store, spark=None, withdrawal=withdrawal,
                         audit=ctx.audit, actor=access.principal.sub, actor_role=str(access.principal.role))
    except ConsentError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    opposed = bool(ctx.registry.opposed(list(outcome.pseudonyms)))
    return OppositionOut(status="active" if opposed else "withdrawn", changed=len(outcome.changed))


@router.post("/oppositions", response_model=OppositionOut, status_code=status.HTTP_201_CREATED)
def submit_opposition(access: Submit, consent: FhirResourceIn) -> OppositionOut:
    """Register a citizen's opposition (FHIR R4 Consent, provision deny): out of every result from now on."""
    return _consent(access, consent, withdrawal=False)


@router.post("/oppositions/withdraw", response_model=OppositionOut)
def withdraw_opposition(access: Withdraw, consent: FhirResourceIn) -> OppositionOut:
    """Withdraw an opposition: data arriving from now on are used again (what was erased stays erased)."""
    return _consent(access, consent, withdrawal=True)


@router.post("/oppositions/status", response_model=OppositionOut)
def opposition_status(access: Status, citizen: CitizenIdentity) -> OppositionOut:
    """Whether the citizen's opposition is active."""
    from pdp.governance.opposition.registry import opposition_registry

    pseudonyms = pseudonyms_of(access.ctx, citizen)
    if access.ctx.registry.opposed(list(pseudonyms)):
        return OppositionOut(status="active", changed=0)
    r = opposition_registry.c
    with access.ctx.engine.connect() as conn:
        known = conn.execute(opposition_registry.select().with_only_columns(r.pseudonym)
                             .where(r.pseudonym.in_(list(pseudonyms)))).first()
    return OppositionOut(status="withdrawn" if known else "none", changed=0)


@router.post("/transparency", response_model=TransparencyRecord)
def transparency(access: Transparency, citizen: CitizenIdentity) -> TransparencyRecord:
    """The uses made of the citizen's data: when, which kind of actor, for which purpose (no actor id)."""
    seen: dict[int, TransparencyEntry] = {}
    for p in pseudonyms_of(access.ctx, citizen):
        for item in access.ctx.audit.transparency(p):
            seen.setdefault(item.index, TransparencyEntry(**{k: v for k, v in item.to_json().items()
                                                             if k != "index"}))
    return TransparencyRecord(uses=[seen[i] for i in sorted(seen)])


@router.post("/pathway", response_model=CitizenPathway)
def pathway(access: Pathway, citizen: CitizenIdentity) -> CitizenPathway:
    """The citizen's own follow-up actions, in plain words, for the DMP to show them."""
    ctx = access.ctx
    snapshot = ctx.snapshots.current()
    pseudonyms = pseudonyms_of(ctx, citizen)
    if ctx.registry.opposed(list(pseudonyms)):
        access.record([], decision="done", rule="citizen pathway: opposed, nothing processed",
                      details={"opposed": True})
        return CitizenPathway(known=False, opposed=True, as_of=snapshot.as_of, steps=[])
    person = next((p for p in pseudonyms if p in snapshot.gp_of), None)
    if person is None:
        access.record([], decision="done", rule="citizen pathway: not known to gold", details={"found": False})
        return CitizenPathway(known=False, opposed=False, as_of=snapshot.as_of, steps=[])
    access.record([person], rule="citizen pathway")
    from pdp.api.views import due_action

    steps = []
    for row in snapshot.actions.get(person, []):
        action = due_action(ctx.definitions, row, {})
        done = f"last done on {action.last_done.isoformat()}" if action.last_done else "never recorded as done"
        steps.append(CitizenStep(
            what=action.label, status=row["status"], next_due=action.next_due,
            in_plain_words=f"{action.label}: {_WORDS.get(row['status'], row['status'])}, {done}; next by "
                           f"{action.next_due.isoformat()} ({action.reason}).",
        ))
    return CitizenPathway(known=True, opposed=False, as_of=snapshot.as_of, steps=steps)


@router.post("/questionnaire-responses", response_model=QuestionnaireReceipt, status_code=status.HTTP_202_ACCEPTED,
             responses={422: {"description": "the edge would quarantine it: reason code and a value-free message"}})
def submit_questionnaire_response(access: Feedback, response: QuestionnaireResponseIn) -> QuestionnaireReceipt:
    """Hand a citizen's PREM / PROM answers (FHIR R4 QuestionnaireResponse) to the edge; 202 with a receipt."""
    from pdp.ingest.inbox import Refused, accept

    raw = json.dumps(response.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode()
    outcome = accept(raw, source="questionnaires", settings=access.ctx.settings)
    if isinstance(outcome, Refused):
        access.record([], decision="done", rule="questionnaire response refused: the edge would quarantine it",
                      details={"accepted": False, "reason": str(outcome.reason)})
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            {"reason": str(outcome.reason), "message": outcome.message})
    access.record([], rule="questionnaire response handed to the edge",
                  details={"accepted": True, "receipt": outcome.receipt, "questionnaires": list(outcome.codes)})
    return QuestionnaireReceipt(receipt=outcome.receipt, status="accepted", questionnaires=list(outcome.codes),
                                answers=outcome.events)
