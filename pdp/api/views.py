"""Gold rows and vault records turned into the API's output shapes (one place, so every route agrees).

Why here and not in routes: the reason of a due action ("HbA1c every 6 months: no or oral
treatment, on target") comes from the pathway definition the row's ``rule_id`` names; the
explanation comes from gold.evidence; the identity from the vault record. Routes compose these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pdp.api.schemas import (
    DueAction,
    Fact,
    Logigramme,
    PathwayStep,
    PatientIdentity,
    StratumOut,
    WorklistPage,
    WorklistPatient,
)

__all__ = [
    "PersonPart",
    "due_action",
    "facts",
    "identity",
    "logigramme",
    "person_parts",
    "stratum",
    "worklist_json",
    "worklist_patient",
]

#: Persons whose rendered parts a snapshot keeps (:func:`person_parts`); past it the memo starts over.
#: ~1.5 KB of models and JSON a person: 200 000 persons ~ 300 MB at most per worker.
MEMO_PERSONS = 200_000


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


@dataclass(frozen=True, slots=True)
class PersonPart:
    """What a worklist says of one person apart from their identity, rendered once per snapshot.

    ``actions`` are aligned with ``snapshot.actions[p]`` (same order), so a request's filters pick
    indexes; ``*_json`` are the exact bytes pydantic gives for the same models.
    """

    strata: list[StratumOut]
    actions: list[DueAction]
    strata_json: bytes
    actions_json: list[bytes]


def person_parts(defs: Any, snapshot: Any, pseudonyms: Sequence[str], *, explain: bool) -> dict[str, PersonPart]:
    """Each person's :class:`PersonPart` (with or without explanations), from the snapshot's memo.

    Why a memo: gold does not change under a snapshot, and building the pydantic views of a
    1 500-patient worklist (labels, reasons, facts) was ~40 % of the request (py-spy); now the first
    request of a snapshot pays it once per person. The facts of the missing persons are read in one
    vectorised filter. Never holds an identity.
    """
    memo = snapshot.memo
    missing = [p for p in pseudonyms if (p, explain) not in memo]
    if missing:
        if len(memo) + len(missing) > MEMO_PERSONS:
            memo.clear()
        evidence = snapshot.facts(missing) if explain else {}
        for p in missing:
            strata = [stratum(defs, s) for s in snapshot.strata.get(p, [])]
            actions = [due_action(defs, r, evidence.get(p, {})) for r in snapshot.actions.get(p, [])]
            memo[(p, explain)] = PersonPart(
                strata=strata, actions=actions,
                strata_json=b"[" + b",".join(s.__pydantic_serializer__.to_json(s) for s in strata) + b"]",
                actions_json=[a.__pydantic_serializer__.to_json(a) for a in actions])
    return {p: memo[(p, explain)] for p in pseudonyms}


def worklist_patient(record: Any, gp: str | None, part: PersonPart, chosen: Sequence[int]) -> WorklistPatient:
    """The model of one released person (routes that answer with models: FHIR, changes)."""
    return WorklistPatient(patient=identity(record), gp_rpps=gp, strata=part.strata,
                           actions=[part.actions[i] for i in chosen])


def worklist_json(envelope: WorklistPage, items: Sequence[tuple[Any, str | None, PersonPart, Sequence[int]]]) -> bytes:
    """``envelope`` with ``items`` (record, GP, part, chosen action indexes) as the JSON pydantic would give.

    Why by hand: serialising a 1 500-patient page through the models cost a quarter of the request;
    here only each identity is serialised per request (through :class:`PatientIdentity`, so its shape
    is the declared one), the rest are the memo's bytes. ``envelope`` has no items; a test checks the
    bytes equal ``WorklistPage(...).model_dump_json()`` of the same page.
    """
    import json

    head, marker, tail = envelope.model_dump_json().encode().partition(b'"items":[]')
    if not marker:
        raise ValueError("worklist envelope must have no items")
    body = b",".join(
        b'{"patient":' + identity(record).model_dump_json().encode() + b',"gp_rpps":' + json.dumps(gp).encode()
        + b',"strata":' + part.strata_json + b',"actions":[' + b",".join(part.actions_json[i] for i in chosen) + b"]}"
        for record, gp, part, chosen in items
    )
    return head + b'"items":[' + body + b"]" + tail
