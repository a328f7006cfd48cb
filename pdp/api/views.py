"""Gold rows and vault records turned into the API's output shapes (one place, so every route agrees).

Why here and not in routes: the reason of a due action ("HbA1c every 6 months: no or oral
treatment, on target") comes from the pathway definition the row's ``rule_id`` names; the
explanation comes from gold.evidence; the identity from the vault record. Routes compose these.
"""

from __future__ import annotations

from typing import Any

from pdp.api.schemas import DueAction, Fact, Logigramme, PathwayStep, PatientIdentity, StratumOut

__all__ = ["due_action", "facts", "identity", "logigramme", "stratum"]


def identity(record: Any) -> PatientIdentity:
    """The released identity fields (data minimisation: no address, no email)."""
    return PatientIdentity(
        ins_nir=record.nir, birth_name=record.birth_name, used_name=record.used_name,
        first_names=list(record.first_names) if record.first_names else None, sex=record.sex,
        birth_date=record.birth_date, phone=record.phone, commune_code=record.commune_code,
    )


def facts(defs: Any, rows: list[dict[str, Any]]) -> list[Fact]:
    out = []
    for r in rows:
        criterion = defs.criteria.get(r["criterion"])
        out.append(Fact(**r, criterion_text=" ".join(criterion.description.split()) if criterion else ""))
    return out


def _interval_reason(defs: Any, pathway: str, action: str, rule_id: str) -> str:
    """The ``because`` of the interval rule ``pathway.<p>.<action>.<n>@<v>`` names."""
    path = defs.pathways.get(pathway)
    if path is None:
        return rule_id
    try:
        index = int(rule_id.split("@")[0].rsplit(".", 1)[1]) - 1
    except (IndexError, ValueError):
        return rule_id
    for a in path.actions:
        if a.action == action and 0 <= index < len(a.intervals):
            return a.intervals[index].because
    return rule_id


def _label(defs: Any, pathway: str, action: str) -> str:
    path = defs.pathways.get(pathway)
    for a in path.actions if path else ():
        if a.action == action:
            return a.label
    return action


def due_action(defs: Any, row: dict[str, Any], evidence: dict[tuple[str, str], list[dict[str, Any]]]) -> DueAction:
    subject = f"{row['pathway']}.{row['action']}"
    return DueAction(
        pathway=row["pathway"], action=row["action"], label=_label(defs, row["pathway"], row["action"]),
        professional=row["professional"], status=row["status"], last_done=row["last_done"],
        next_due=row["next_due"], interval_days=row["interval_days"], rule_id=row["rule_id"],
        reason=_interval_reason(defs, row["pathway"], row["action"], row["rule_id"]),
        explanation=facts(defs, evidence.get(("action", subject), [])),
    )


def stratum(defs: Any, row: dict[str, Any]) -> StratumOut:
    pyramid = defs.pyramids.get(row["pyramid"])
    label = next((s.label for s in pyramid.strata if s.stratum == row["stratum"]), "") if pyramid else ""
    return StratumOut(pyramid=row["pyramid"], stratum=row["stratum"], label=label, rule_id=row["rule_id"])


def logigramme(defs: Any, pathway: str, stratum_label: str) -> Logigramme | None:
    path = defs.pathways.get(pathway)
    if path is None:
        return None
    steps = [PathwayStep(action=a.action, label=a.label, professional=a.professional,
                         interval_days=a.intervals[-1].days if a.intervals else 0,
                         because="; ".join(i.because for i in a.intervals))
             for a in path.actions]
    return Logigramme(pathway=path.name, version=path.version, label=path.label, stratum=stratum_label, steps=steps)
