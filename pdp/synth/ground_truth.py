"""Ground truth written beside the raw sources (never ingested).

Per person: true populations, strata, complications; per person and pathway: the actions
due at the reference date, computed from the care protocol file and the events the person
really has in the sources; plus identity truth for linkage evaluation.
"""

from __future__ import annotations

import ast
import csv
import io
from datetime import date, timedelta
from typing import Any

from pdp.synth.model import ActionDue, Person, age
from pdp.synth.output import FileSpec, Rendered
from pdp.synth.territory import load_care_protocol
from pdp.synth.world import World

PERSON_COLUMNS = (
    "person_id",
    "territory",
    "sex",
    "birth_date",
    "age",
    "commune_code",
    "alive",
    "death_date",
    "gp_rpps",
    "t2d",
    "t2d_at_risk",
    "t2d_stratum",
    "hf",
    "hf_at_risk",
    "hf_stage",
    "insulin",
    "severe_hypoglycaemia_episodes",
    "complications",
    "stroke_or_mi",
    "amputation",
    "dialysis",
    "hypertension",
    "obesity",
    "bmi",
    "risk_factors",
    "social_referral",
)
IDENTITY_COLUMNS = (
    "person_id",
    "nir",
    "insured_nir",
    "birth_name",
    "used_name",
    "first_names",
    "sex",
    "birth_date",
    "birth_place",
    "address",
    "postcode",
    "commune_code",
    "phone",
    "email",
)
ACTION_COLUMNS = ("person_id", "pathway", "action", "interval_days", "last_done", "due_date", "status")

PERSONS = FileSpec("ground_truth/persons.csv", header=",".join(PERSON_COLUMNS) + "\n")
IDENTITIES = FileSpec("ground_truth/identities.csv", header=",".join(IDENTITY_COLUMNS) + "\n")
ACTIONS = FileSpec("ground_truth/actions_due.csv", header=",".join(ACTION_COLUMNS) + "\n")


def _when(expression: str, variables: dict[str, Any]) -> bool:
    """Evaluate a protocol condition: `true`, names, `==`/`<`/`>` with numbers, `and`/`or`/`not`."""
    tree = ast.parse(expression.replace("true", "True").replace("false", "False"), mode="eval")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = ev(node.left), ev(node.comparators[0])
            op = node.ops[0]
            if isinstance(op, ast.Eq):
                return left == right
            if isinstance(op, ast.Lt):
                return left is not None and left < right
            if isinstance(op, ast.Gt):
                return left is not None and left > right
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in variables:
                raise ValueError(f"unknown variable {node.id!r} in protocol condition {expression!r}")
            return variables[node.id]
        raise ValueError(f"unsupported protocol condition {expression!r}")

    return bool(ev(tree))


def _done_days(person: Person, done_by: list[dict[str, str]]) -> list[date]:
    wanted = {(d["system"], str(d["code"])) for d in done_by}
    days = [e.day for e in person.events if (e.code_system, e.code) in wanted]
    for stay in person.stays:
        days += [stay.admission for act in stay.acts if ("CCAM", act) in wanted]
    return days


def actions_due(person: Person, world: World) -> list[tuple[str, ActionDue]]:
    """The actions of each pathway the person is on, with their status at the reference date."""
    protocol = load_care_protocol()
    t = person.truth
    if t.death_date is not None:
        return []
    pathways = [p for p, on in (("t2d", t.t2d), ("hf", t.hf)) if on]
    hba1c = [e for e in person.events if e.code == "4548-4" and e.value is not None]
    last_hba1c = max(hba1c, key=lambda e: e.day).value if hba1c else None
    variables = {
        "stratum": t.t2d_stratum,
        "insulin": t.insulin,
        "retinopathy": "retinopathy" in t.complications,
        "last_hba1c_above_target": last_hba1c is not None and last_hba1c > protocol["hba1c_target"],
        "hf_stage": t.hf_stage,
    }
    ref = world.reference_date
    soon = timedelta(days=protocol["due_soon_days"])
    out: list[tuple[str, ActionDue]] = []
    for pathway in pathways:
        for action, variants in protocol["pathways"][pathway].items():
            interval = next(v["days"] for v in variants if _when(v["when"], variables))
            days = _done_days(person, protocol["actions"][action]["done_by"])
            last = max(days) if days else None
            due = last + timedelta(days=interval) if last else world.history_start
            status = "overdue" if due < ref else "due" if due <= ref + soon else "up_to_date"
            out.append((pathway, ActionDue(action, interval, last, due, status)))
    return out


def _csv_row(values: list[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def _flag(value: bool) -> int:
    return int(bool(value))


def render_ground_truth(persons: list[Person], world: World) -> list[Rendered]:
    """persons.csv, identities.csv and actions_due.csv rows for a chunk."""
    people, identities, actions = [], [], []
    for p in persons:
        t, ident = p.truth, p.identity
        alive = t.death_date is None
        people.append(
            _csv_row(
                [
                    p.person_id,
                    p.territory,
                    ident.sex,
                    ident.birth_date.isoformat(),
                    age(ident.birth_date, world.reference_date),
                    p.address.commune_code,
                    _flag(alive),
                    t.death_date.isoformat() if t.death_date else None,
                    p.gp.rpps if p.gp else None,
                    _flag(t.t2d),
                    _flag(t.t2d_at_risk),
                    t.t2d_stratum,
                    _flag(t.hf),
                    _flag(t.hf_at_risk),
                    t.hf_stage,
                    _flag(t.insulin),
                    t.severe_hypoglycaemia_episodes,
                    "|".join(t.complications),
                    _flag(t.stroke_or_mi),
                    _flag(t.amputation),
                    _flag(t.dialysis),
                    _flag(t.hypertension),
                    _flag(t.obesity),
                    t.bmi,
                    "|".join(t.risk_factors),
                    p.social_referral,
                ]
            )
        )
        identities.append(
            _csv_row(
                [
                    p.person_id,
                    ident.nir,
                    p.insured_nir,
                    ident.birth_name,
                    ident.used_name,
                    " ".join(ident.first_names),
                    ident.sex,
                    ident.birth_date.isoformat(),
                    ident.birth_place,
                    p.address.line,
                    p.address.postcode,
                    p.address.commune_code,
                    p.phone,
                    p.email,
                ]
            )
        )
        for pathway, a in actions_due(p, world):
            p.truth.actions_due.append(a)
            actions.append(
                _csv_row(
                    [
                        p.person_id,
                        pathway,
                        a.action,
                        a.interval_days,
                        a.last_done.isoformat() if a.last_done else None,
                        a.due_date.isoformat(),
                        a.status,
                    ]
                )
            )
    return [
        Rendered(PERSONS, "".join(people), len(people)),
        Rendered(IDENTITIES, "".join(identities), len(identities)),
        Rendered(ACTIONS, "".join(actions), len(actions)),
    ]
