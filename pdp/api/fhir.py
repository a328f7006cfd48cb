"""The worklist as a FHIR R4 ``Bundle``: a ``List`` per GP, a ``Task`` per due action, the ``Patient``s.

Why these resources: a SIOP (or the GP software behind it) files a due action as a ``Task``
(owner, due date, reason, for whom) and a GP's panel as a ``List``; the ``Patient`` carries the
INS (NIR under its OID) so the receiver files it against its own record. Resource ids are
random per response: no pseudonym of the lake ever appears in a FHIR output.
"""

from __future__ import annotations

import uuid
from typing import Any

from pdp.api.schemas import WorklistPage

__all__ = ["worklist_bundle"]

INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
_GENDER = {"M": "male", "F": "female", "U": "unknown"}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _patient(item: Any) -> dict[str, Any]:
    p = item.patient
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if p.ins_nir:
        resource["identifier"] = [{"system": INS_NIR_SYSTEM, "value": p.ins_nir}]
    names = []
    if p.birth_name or p.first_names:
        names.append({"use": "official", **({"family": p.birth_name} if p.birth_name else {}),
                      **({"given": list(p.first_names)} if p.first_names else {})})
    if p.used_name:
        names.append({"use": "usual", "family": p.used_name})
    if names:
        resource["name"] = names
    if p.sex:
        resource["gender"] = _GENDER.get(p.sex, "unknown")
    if p.birth_date:
        resource["birthDate"] = p.birth_date.isoformat()
    if p.phone:
        resource["telecom"] = [{"system": "phone", "value": p.phone}]
    if p.commune_code:
        resource["address"] = [{"district": p.commune_code}]
    return resource


def _task(action: Any, patient_ref: str, gp_rpps: str | None, as_of: str) -> dict[str, Any]:
    owner: dict[str, Any]
    if action.professional == "gp" and gp_rpps:
        owner = {"type": "Practitioner", "identifier": {"system": RPPS_SYSTEM, "value": gp_rpps}}
    else:
        owner = {"display": action.professional}
    notes = [{"text": f"{f.criterion}: {f.criterion_text} ({f.source or '-'} {f.vocabulary or ''} "
                      f"{f.source_code or ''} on {f.fact_date or '-'})".replace("  ", " ")}
             for f in action.explanation]
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "plan",
        "priority": "urgent" if action.status == "overdue" else "routine",
        "code": {"text": action.label, "coding": [{"system": "https://pdp.example/pathway-action",
                                                    "code": f"{action.pathway}.{action.action}"}]},
        "for": {"reference": patient_ref},
        "authoredOn": as_of,
        "owner": owner,
        "restriction": {"period": {"end": action.next_due.isoformat()}},
        "reasonCode": {"text": f"{action.status}: {action.reason} ({action.rule_id})"},
        "businessStatus": {"text": action.status},
        **({"note": notes} if notes else {}),
    }


def worklist_bundle(page: WorklistPage, *, next_url: str | None) -> dict[str, Any]:
    """A ``searchset`` Bundle of the page; ``link`` next when there is a next page."""
    entries: list[dict[str, Any]] = []
    by_gp: dict[str | None, list[str]] = {}
    as_of = page.as_of.isoformat()
    for item in page.items:
        patient_ref = _urn()
        entries.append({"fullUrl": patient_ref, "resource": _patient(item), "search": {"mode": "include"}})
        for action in item.actions:
            task_ref = _urn()
            entries.append({"fullUrl": task_ref, "resource": _task(action, patient_ref, item.gp_rpps, as_of),
                            "search": {"mode": "match"}})
            by_gp.setdefault(item.gp_rpps, []).append(task_ref)
    for gp, tasks in by_gp.items():
        resource: dict[str, Any] = {
            "resourceType": "List", "status": "current", "mode": "working",
            "title": f"Due actions of the GP's patients at {as_of} ({page.territory})" if gp
            else f"Due actions of patients without a declared GP at {as_of} ({page.territory})",
            "date": as_of, "entry": [{"item": {"reference": ref}} for ref in tasks],
        }
        if gp:
            resource["source"] = {"type": "Practitioner", "identifier": {"system": RPPS_SYSTEM, "value": gp}}
        entries.append({"fullUrl": _urn(), "resource": resource, "search": {"mode": "include"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": page.total,
                              "entry": entries}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle
