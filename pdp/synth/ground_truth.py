"""Ground truth written beside the raw sources (never ingested).

Per person: true populations, strata, complications; per person and pathway: the actions
due at the reference date, computed from the care protocol file and the events the person
really has in the sources; plus identity truth for linkage evaluation.

Beside the truth, what the sources support (pdp/synth/observable.py): whether the person
is observed at all, populations and strata from the coded sources and from all sources, and
the actions due on the coded pathways (actions_due_coded.csv). Persons.csv's coded columns
come after the true ones, so readers of the older columns are unaffected.
"""

from __future__ import annotations

import csv
import io
from datetime import date

from pdp.synth.model import ActionDue, Person, PopulationView, age
from pdp.synth.observable import observable_truth
from pdp.synth.output import FileSpec, Rendered
from pdp.synth.protocol import care_protocol, done_codes, done_sources, schedule, when
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
    # what the emitted sources support (pdp/synth/observable.py, docs/clinical-rules.md)
    "observed",
    "t2d_coded",
    "t2d_at_risk_coded",
    "t2d_stratum_coded",
    "hf_coded",
    "hf_at_risk_coded",
    "hf_stratum_coded",
    "t2d_all",
    "t2d_stratum_all",
    "hf_all",
    "hf_stratum_all",
    "hf_stratum",
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
CODED_ACTIONS = FileSpec("ground_truth/actions_due_coded.csv", header=",".join(ACTION_COLUMNS) + "\n")


_when = when  # the protocol's condition language (kept under its historical name)


def _done_days(person: Person, done_by: list[dict[str, str]]) -> list[date]:
    wanted, sources = done_codes(done_by), done_sources(done_by)
    days = [e.day for e in person.events
            if (e.code_system, e.code) in wanted and (sources is None or e.channel in sources)]
    for stay in person.stays:
        days += [stay.admission for act in stay.acts if ("CCAM", act) in wanted]
    return days


def actions_due(person: Person, world: World) -> list[tuple[str, ActionDue]]:
    """The actions of each pathway the person is on, with their status at the reference date.

    From the true state and every event the person has; an action never done is counted
    due since the start of the history (overdue), the clinical reading of "never done".
    """
    protocol = care_protocol()
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
    return schedule(
        pathways,
        variables,
        lambda done_by: _done_days(person, done_by),
        world.reference_date,
        world.history_start,
        protocol,
    )


def _csv_row(values: list[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return buffer.getvalue()


def _flag(value: bool) -> int:
    return int(bool(value))


def _action_row(person_id: int, pathway: str, a: ActionDue) -> str:
    return _csv_row(
        [
            person_id,
            pathway,
            a.action,
            a.interval_days,
            a.last_done.isoformat() if a.last_done else None,
            a.due_date.isoformat(),
            a.status,
        ]
    )


def _view_columns(coded: PopulationView, everything: PopulationView) -> list[object]:
    return [
        _flag(coded.t2d),
        _flag(coded.t2d_at_risk),
        coded.t2d_stratum,
        _flag(coded.hf),
        _flag(coded.hf_at_risk),
        coded.hf_stratum,
        _flag(everything.t2d),
        everything.t2d_stratum,
        _flag(everything.hf),
        everything.hf_stratum,
    ]


def render_ground_truth(persons: list[Person], world: World) -> list[Rendered]:
    """persons.csv, identities.csv, actions_due.csv and actions_due_coded.csv rows for a chunk.

    Also fills `person.truth.actions_due` and `person.observable` for the run's summary.
    """
    protocol = care_protocol()
    people, identities, actions, coded_actions = [], [], [], []
    for p in persons:
        t, ident = p.truth, p.identity
        alive = t.death_date is None
        seen = p.observable = observable_truth(p, world, protocol)
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
                    _flag(seen.observed),
                    *_view_columns(seen.coded, seen.all_sources),
                    t.hf_stage if (t.hf or t.hf_at_risk) else None,
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
            actions.append(_action_row(p.person_id, pathway, a))
        coded_actions += [_action_row(p.person_id, pathway, a) for pathway, a in seen.coded_actions]
    return [
        Rendered(PERSONS, "".join(people), len(people)),
        Rendered(IDENTITIES, "".join(identities), len(identities)),
        Rendered(ACTIONS, "".join(actions), len(actions)),
        Rendered(CODED_ACTIONS, "".join(coded_actions), len(coded_actions)),
    ]
