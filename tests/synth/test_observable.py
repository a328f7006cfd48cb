"""The coded-observable ground truth: what the emitted sources support, by the rules document.

Golden cases are rows of a table: a person's records (written as they reach the sources,
dated in days before the reference date D = 2025-06-30) and the T2D / HF strata the coded
sources alone, and the coded sources plus the reports, must give. Each row reads as a rule
of docs/clinical-rules.md; the territory test checks the columns on a generated territory
and prints how often the coded stratum equals the true one.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from builders import (
    GP_A,
    HOSPITAL,
    PHARMACY,
    REFERENCE_DATE,
    SPECIALIST,
    UTF8_LAB,
    EventFactory,
    make_person,
    make_world,
)

from pdp.synth.ground_truth import actions_due
from pdp.synth.model import ClinicalEvent, Person, Report, ReportFact, Sex, Stay
from pdp.synth.observable import coded_facts, observable_truth, rules_age

D = REFERENCE_DATE
_factory = EventFactory("obs")


def ago(days: int) -> date:
    return D - timedelta(days=days)


# --- record builders: one call = one record as a source writes it ------------------------


def gp_dx(code: str, days: int) -> ClinicalEvent:
    """A CIM-10 problem in the GP's software (raw code, so E10/E13 can be written too)."""
    return ClinicalEvent(_factory._id(), "diagnosis", ago(days), "CIM-10", code, code, "gp", GP_A.rpps)


def lab(concept: str, days: int, value: float) -> ClinicalEvent:
    return _factory.measurement(concept, ago(days), value, "lab", UTF8_LAB.finess)


def gp_measure(concept: str, days: int, value: float) -> ClinicalEvent:
    return _factory.measurement(concept, ago(days), value, "gp", GP_A.rpps)


def delivered(drug: str, *days: int) -> list[ClinicalEvent]:
    """Pharmacy deliveries of a catalog drug on the given days."""
    return [_factory.drug(drug, ago(d), PHARMACY.finess, channel="pharmacy") for d in days]


def prescribed(drug: str, *days: int) -> list[ClinicalEvent]:
    """GP prescriptions (FHIR MedicationRequest): not deliveries."""
    return [_factory.drug(drug, ago(d), GP_A.rpps, channel="gp") for d in days]


def stay(days: int, dp: str, das: tuple[str, ...] = (), acts: tuple[str, ...] = (), length: int = 3) -> Stay:
    admission = ago(days)
    return Stay(_factory._id(), HOSPITAL.finess, admission, admission + timedelta(days=length), dp, das, acts, False)


def report(days: int, *facts: tuple[str, str] | tuple[str, str, float]) -> Report:
    """A consultation note stating (concept, assertion[, value]) facts."""
    return Report(
        _factory._id(),
        "consultation_note",
        ago(days),
        SPECIALIST,
        HOSPITAL.finess,
        tuple(ReportFact(f[0], f[1], f[2] if len(f) > 2 else None) for f in facts),  # type: ignore[misc]
    )


@dataclass
class Case:
    name: str
    events: list[ClinicalEvent] = field(default_factory=list)
    stays: list[Stay] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    t2d: tuple[str, str] = ("", "")  # (coded, all sources) T2D stratum: "", "at_risk", "1".."4"
    hf: tuple[str, str] = ("", "")  # (coded, all sources) HF stratum: "", "1".."4"
    sex: Sex = "F"
    birth: date = date(1985, 3, 1)  # a 40-year-old woman: at risk of nothing by age and sex alone
    death: date | None = None


T2D = [gp_dx("E11.9", 100)]  # a coded T2D diagnosis, for cases about something else
PARACETAMOL = delivered("paracetamol", 20)  # a record that says nothing clinical: the person is known

CASES = [
    Case("nothing recorded"),
    Case("a GP diagnosis of T2D: stratum 1, and HF at risk", T2D, t2d=("1", "1"), hf=("1", "1")),
    Case(
        "a SNOMED T2D diagnosis counts",
        [replace(T2D[0], code_system="SNOMED", code="44054006")],
        t2d=("1", "1"),
        hf=("1", "1"),
    ),
    Case(
        "E11.2 in a hospital DAS is a T2D diagnosis",
        stays=[stay(200, "J18.9", ("E11.2",))],
        t2d=("1", "1"),
        hf=("1", "1"),
    ),
    # reports: only affirmed facts count, and only in the all-sources view
    Case(
        "an affirmed complication in a report: stratum 3 for all sources only",
        [*T2D, gp_dx("E11.2", 50)],
        reports=[report(20, ("retinopathy", "affirmed"))],
        t2d=("1", "3"),
        hf=("1", "1"),
    ),
    Case(
        "a negated complication in a report does not count",
        [*T2D, gp_dx("E11.2", 50)],
        reports=[report(20, ("retinopathy", "negated"), ("neuropathy", "hypothesis"))],
        t2d=("1", "1"),
        hf=("1", "1"),
    ),
    Case(
        "a report's T2D alone: T2D for all sources only",
        reports=[report(20, ("t2d", "affirmed"))],
        t2d=("", "1"),
        hf=("", "1"),
    ),
    Case(
        "a report's family history of diabetes makes an overweight hypertensive-free woman at risk",
        [gp_measure("bmi", 30, 27.0)],
        reports=[report(20, ("t2d", "family"), ("t2d", "negated"))],
        t2d=("", "at_risk"),
    ),
    Case("a report's LVEF of 35 %: HF for all sources", reports=[report(20, ("lvef", "affirmed", 35.0))], hf=("", "3")),
    Case("a report's LVEF of 45 % is not reduced", reports=[report(20, ("lvef", "affirmed", 45.0))]),
    # drugs: deliveries only, SGLT2 inhibitors excluded, 3 distinct dates in 365 days
    Case("3 metformin deliveries: T2D", delivered("metformin", 10, 40, 70), t2d=("1", "1"), hf=("1", "1")),
    Case("SGLT2-only deliveries are not T2D drugs", delivered("empagliflozin", 10, 40, 70, 100)),
    Case("GP prescriptions are not deliveries", prescribed("metformin", 10, 40, 70, 100)),
    Case("2 delivery dates are not enough", delivered("metformin", 10, 10, 40)),
    Case("a delivery 365 days ago is out of the look-back", delivered("metformin", 10, 40, 365)),
    Case(
        "a prescribed insulin is not the insulin criterion",
        [*T2D, *prescribed("insulin_glargine", 30)],
        t2d=("1", "1"),
        hf=("1", "1"),
    ),
    Case("a delivered insulin: stratum 2", [*T2D, *delivered("insulin_glargine", 30)], t2d=("2", "2"), hf=("1", "1")),
    Case("Z79.4 in a hospital DAS: stratum 2", T2D, [stay(400, "J18.9", ("Z79.4",))], t2d=("2", "2"), hf=("1", "1")),
    Case("one severe hypoglycaemia is not enough", T2D, [stay(400, "E16.0")], t2d=("1", "1"), hf=("1", "1")),
    Case(
        "two severe hypoglycaemias: stratum 2",
        T2D,
        [stay(400, "E16.0"), stay(90, "E16.0")],
        t2d=("2", "2"),
        hf=("1", "1"),
    ),
    # HbA1c: >= 6.5 on 2 distinct dates in 730 days, any source
    Case("HbA1c 6.5 twice: T2D", [lab("hba1c", 300, 6.5), lab("hba1c", 100, 6.8)], t2d=("1", "1"), hf=("1", "1")),
    Case("HbA1c twice the same day (lab and GP) is one date", [lab("hba1c", 100, 7.1), gp_measure("hba1c", 100, 7.1)]),
    Case("HbA1c 6.4 does not count", [lab("hba1c", 300, 6.4), lab("hba1c", 100, 6.8)]),
    Case(
        "report HbA1c values add dates for all sources",
        [lab("hba1c", 100, 6.8)],
        reports=[report(20, ("hba1c", "affirmed", 7.0))],
        t2d=("", "1"),
        hf=("", "1"),
    ),
    # stratum 4 needs amputation with angiopathy or foot ulcer, or dialysis with nephropathy
    Case(
        "an amputation without angiopathy or foot ulcer is not stratum 4",
        T2D,
        [stay(300, "S72.0", (), ("NZFA004",))],
        t2d=("1", "1"),
        hf=("1", "1"),
    ),
    Case(
        "an amputation with angiopathy: stratum 4",
        T2D,
        [stay(300, "E11.5", (), ("NZFA004",))],
        t2d=("4", "4"),
        hf=("1", "1"),
    ),
    Case(
        "a Z89.4 status with a foot ulcer: stratum 4",
        [*T2D, gp_dx("Z89.4", 80), gp_dx("L97", 80)],
        t2d=("4", "4"),
        hf=("1", "1"),
    ),
    Case(
        "dialysis sessions with nephropathy: stratum 4",
        [*T2D, gp_dx("N08.3", 80)],
        [stay(60, "Z49.1", length=0)],
        t2d=("4", "4"),
        hf=("1", "1"),
    ),
    Case(
        "dialysis without nephropathy, one complication: stratum 1",
        [*T2D, gp_dx("E11.3", 80)],
        [stay(60, "Z49.1", (), ("JVJF004",), length=0)],
        t2d=("1", "1"),
        hf=("1", "1"),
    ),
    Case(
        "a report's amputation and foot ulcer: stratum 4 for all sources",
        T2D,
        reports=[report(20, ("amputation", "affirmed"), ("foot_ulcer", "affirmed"))],
        t2d=("1", "4"),
        hf=("1", "1"),
    ),
    Case(
        "an old MI: stratum 3, and structural heart disease", [*T2D, gp_dx("I25.2", 80)], t2d=("3", "3"), hf=("2", "2")
    ),
    # type 1 diabetes
    Case(
        "type 1 only is excluded, even with high HbA1c",
        [gp_dx("E10.9", 80), lab("hba1c", 300, 8.0), lab("hba1c", 100, 8.1)],
    ),
    Case("type 1 and type 2 diagnoses: T2D", [gp_dx("E10.9", 80), *T2D], t2d=("1", "1"), hf=("1", "1")),
    Case("unspecified diabetes: T2D", [gp_dx("E14.9", 80)], t2d=("1", "1"), hf=("1", "1")),
    Case("unspecified diabetes with type 1: excluded", [gp_dx("E14.9", 80), gp_dx("E10.9", 80)]),
    # alive, dates, look-back
    Case("deceased before D: in no population", [*T2D, gp_dx("I50.9", 80)], death=ago(10)),
    Case("a death after D does not count", T2D, death=D + timedelta(days=1), t2d=("1", "1"), hf=("1", "1")),
    Case("a fact after D is ignored", [gp_dx("E11.9", -1)]),
    Case("a fact 1826 days old is out of the look-back", [gp_dx("E11.9", 1826)]),
    Case("a fact 1825 days old is in", [gp_dx("E11.9", 1825)], t2d=("1", "1"), hf=("1", "1")),
    # at-risk rules
    Case("a man aged 46: T2D at risk", PARACETAMOL, sex="M", birth=date(1979, 3, 1), t2d=("at_risk", "at_risk")),
    Case("a man aged 45 is not", PARACETAMOL, sex="M", birth=date(1980, 3, 1)),
    Case("a man aged 46 no source records is in no population", sex="M", birth=date(1979, 3, 1)),
    Case(
        "a minor with T2D risk factors is not at risk",
        [gp_measure("bmi", 30, 33.0), gp_dx("I10", 80)],
        birth=date(2010, 1, 1),
    ),
    Case(
        "overweight with hypertension: T2D at risk, HF at risk",
        [gp_measure("bmi", 30, 26.0), gp_dx("I10", 80)],
        t2d=("at_risk", "at_risk"),
        hf=("1", "1"),
    ),
    Case("the latest BMI decides", [gp_measure("bmi", 300, 31.0), gp_measure("bmi", 30, 24.0), gp_dx("E78.5", 80)]),
    Case(
        "a BMI of 30: HF at risk (obese) and overweight with dyslipidaemia",
        [gp_measure("bmi", 30, 30.0), gp_dx("E78.5", 80)],
        t2d=("at_risk", "at_risk"),
        hf=("1", "1"),
    ),
    Case("a valve disease: HF stratum 2", [gp_dx("I35.0", 80)], hf=("2", "2")),
    # HF
    Case("a GP HF diagnosis: stratum 3", [gp_dx("I50.9", 80)], hf=("3", "3")),
    Case("two HF stays (DP) within 365 days: stratum 4", stays=[stay(300, "I50.0"), stay(30, "I50.9")], hf=("4", "4")),
    Case(
        "HF as DAS is not an HF hospitalisation",
        stays=[stay(300, "I50.0"), stay(30, "J18.9", ("I50.9",))],
        hf=("3", "3"),
    ),
    Case("two HF stays more than 365 days apart from D", stays=[stay(365, "I50.0"), stay(30, "I50.9")], hf=("3", "3")),
    Case("NT-proBNP >= 450 twice: HF", [lab("ntprobnp", 300, 450), lab("ntprobnp", 30, 900)], hf=("3", "3")),
    Case("NT-proBNP high once is not HF", [lab("ntprobnp", 30, 900)]),
    Case("a GP LVEF of 40 %: HF", [gp_measure("lvef", 30, 40.0)], hf=("3", "3")),
]


def _person(case: Case) -> Person:
    person = make_person(1, sex=case.sex, birth_date=case.birth, events=case.events)
    person.stays = list(case.stays)
    person.reports = list(case.reports)
    person.truth.death_date = case.death
    return person


def _stratum(value: object) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_coded_and_all_sources_strata_follow_the_rules(case: Case) -> None:
    seen = observable_truth(_person(case), make_world())
    got_t2d = (_stratum(seen.coded.t2d_stratum), _stratum(seen.all_sources.t2d_stratum))
    got_hf = (_stratum(seen.coded.hf_stratum), _stratum(seen.all_sources.hf_stratum))
    assert (got_t2d, got_hf) == (case.t2d, case.hf)
    assert seen.coded.t2d == (case.t2d[0] not in ("", "at_risk"))
    assert seen.coded.hf == (case.hf[0] in ("3", "4"))


@pytest.mark.parametrize(
    ("birth", "years"),
    [(date(1979, 6, 20), 46), (date(1979, 7, 1), 45), (date(1979, 5, 31), 46), (date(2007, 6, 30), 18)],
)
def test_age_counts_the_birthday_as_passed_in_the_birth_month(birth: date, years: int) -> None:
    """At D = 2025-06-15: a man born 20 June 1979 is 45 by the calendar but 46 by the rule."""
    assert rules_age(birth, date(2025, 6, 15)) == years


def test_the_age_rule_puts_a_man_born_later_in_the_month_at_risk() -> None:
    world = replace(make_world(), reference_date=date(2025, 6, 15))
    person = make_person(1, sex="M", birth_date=date(1979, 6, 20), events=PARACETAMOL)
    assert observable_truth(person, world).coded.t2d_stratum == "at_risk"


def test_observed_means_a_coded_record_reaches_a_source_file() -> None:
    world = make_world()
    nobody = make_person(1)
    assert not observable_truth(nobody, world).observed
    only_a_report = _person(Case("r", reports=[report(20, ("t2d", "affirmed"))]))
    assert not observable_truth(only_a_report, world).observed
    no_software = make_person(2, events=[replace(gp_dx("E11.9", 20), facility="")])
    assert not observable_truth(no_software, world).observed, "a GP event without RPPS is never exported"
    referred = make_person(3)
    referred.social_referral = "Association Diabète Douaisis"
    dead = make_person(4)
    dead.truth.death_date = ago(100)
    for person in (
        referred,
        dead,
        make_person(5, events=delivered("paracetamol", 3)),
        _person(Case("s", stays=[stay(9, "J18.9")])),
    ):
        assert observable_truth(person, world).observed, person.person_id


def test_pmsi_diagnoses_and_acts_are_dated_at_admission() -> None:
    person = make_person(1)
    person.stays = [stay(100, "I50.0", ("E11.9",), ("DZQM006",), length=10)]
    facts = coded_facts(person)
    assert {f.day for f in facts} == {ago(100)}
    assert [(f.code, f.status) for f in facts if f.kind == "diagnosis"] == [("I50.0", "DP"), ("E11.9", "DAS")]


def _actions(seen) -> dict[str, tuple[int, date | None, date, str]]:
    return {f"{p}:{a.action}": (a.interval_days, a.last_done, a.due_date, a.status) for p, a in seen.coded_actions}


def test_coded_actions_take_intervals_from_the_coded_state() -> None:
    person = make_person(
        1,
        events=[
            *T2D,
            *delivered("insulin_glargine", 30),
            lab("hba1c", 60, 6.6),
            _factory.procedure("fundus", ago(800), GP_A.rpps),
            gp_dx("I50.9", 80),
        ],
    )
    person.stays = [stay(300, "I50.0", (), ("DEQP003",)), stay(30, "I50.9")]
    actions = _actions(observable_truth(person, make_world()))
    assert actions["t2d:hba1c"] == (91, ago(60), ago(60) + timedelta(days=91), "up_to_date"), "insulin: every 91 days"
    assert actions["t2d:ecg"] == (365, ago(300), ago(300) + timedelta(days=365), "up_to_date"), "a PMSI act"
    assert actions["t2d:fundus"] == (730, ago(800), ago(70), "overdue")
    assert actions["t2d:monofilament"] == (365, None, D, "overdue"), "never done: overdue, next due D"
    assert actions["hf:weight"] == (30, None, D, "overdue"), "coded HF stratum 4: weight every 30 days"
    assert set(actions) == {
        "t2d:hba1c", "t2d:blood_panel", "t2d:ecg", "t2d:monofilament", "t2d:fundus",
        "t2d:influenza_vaccine", "t2d:pneumococcal_vaccine",
        "hf:ntprobnp", "hf:echo", "hf:blood_panel", "hf:weight",
    }  # fmt: skip


def test_vaccines_count_when_the_pharmacy_delivered_them_not_when_prescribed() -> None:
    person = make_person(
        1,
        events=[
            *T2D,
            *delivered("influenza_vaccine", 400, 250),
            *prescribed("influenza_vaccine", 20),  # a prescription alone is no vaccination
            *prescribed("pneumococcal_vaccine", 100),
        ],
    )
    actions = _actions(observable_truth(person, make_world()))
    assert actions["t2d:influenza_vaccine"] == (365, ago(250), ago(250) + timedelta(days=365), "up_to_date")
    assert actions["t2d:pneumococcal_vaccine"] == (1826, None, D, "overdue")
    person.truth.t2d, person.truth.t2d_stratum = True, 1
    true = {a.action: a for _, a in actions_due(person, make_world())}
    assert (true["influenza_vaccine"].last_done, true["influenza_vaccine"].status) == (ago(250), "up_to_date")
    assert true["pneumococcal_vaccine"].last_done is None, "the true history's GP prescription is no vaccination either"


def test_no_coded_actions_off_the_coded_pathways() -> None:
    at_risk = make_person(1, sex="M", events=[lab("hba1c", 60, 6.6)])
    assert observable_truth(at_risk, make_world()).coded_actions == ()


def test_the_true_hf_pathway_has_the_weight_action() -> None:
    person = make_person(1, events=[gp_measure("weight", 10, 80.0)])
    person.truth.hf, person.truth.hf_stage = True, 4
    weight = {a.action: a for _, a in actions_due(person, make_world())}["weight"]
    assert (weight.interval_days, weight.last_done, weight.status) == (30, ago(10), "due")


# --- on a generated territory ----------------------------------------------------------------


def _rows(territory_dir: Path, name: str) -> list[dict[str, str]]:
    with open(territory_dir / "ground_truth" / name, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_the_generated_coded_columns_are_consistent(territory_dir: Path, summary: dict) -> None:
    rows = _rows(territory_dir, "persons.csv")
    coded_flags = ("t2d_coded", "t2d_at_risk_coded", "hf_coded", "hf_at_risk_coded")
    for r in rows:
        if any(r[f] == "1" for f in coded_flags):
            assert r["observed"] == "1", r["person_id"]
        if r["alive"] == "0":
            assert all(r[c] in ("0", "") for c in (*coded_flags, "t2d_stratum_coded", "hf_stratum_all", "t2d_all"))
        t2d = r["t2d_stratum_coded"]
        assert (t2d in ("1", "2", "3", "4")) == (r["t2d_coded"] == "1")
        assert (t2d == "at_risk") == (r["t2d_at_risk_coded"] == "1")
        assert (r["hf_stratum_coded"] in ("3", "4")) == (r["hf_coded"] == "1")
        assert (r["hf_stratum_coded"] in ("1", "2")) == (r["hf_at_risk_coded"] == "1")
        # reports only add facts: what the codes support, all sources support
        assert r["t2d_all"] >= r["t2d_coded"] and r["hf_all"] >= r["hf_coded"]
        assert r["hf_stratum"] == (r["hf_stage"] if "1" in (r["hf"], r["hf_at_risk"]) else "")
    coded = summary["coded"]
    assert coded["populations"]["t2d"] == sum(r["t2d_coded"] == "1" for r in rows) > 0
    assert sum(coded["hf_strata"].values()) == sum(r["hf_stratum_coded"] != "" for r in rows)
    on_pathway = {(r["person_id"], "t2d") for r in rows if r["t2d_coded"] == "1"}
    on_pathway |= {(r["person_id"], "hf") for r in rows if r["hf_coded"] == "1"}
    actions = _rows(territory_dir, "actions_due_coded.csv")
    assert {(a["person_id"], a["pathway"]) for a in actions} == on_pathway
    assert {a["action"] for a in actions if a["pathway"] == "hf"} == {"ntprobnp", "echo", "blood_panel", "weight"}
    assert {a["status"] for a in actions} == {"overdue", "due", "up_to_date"}
    assert any(a["action"] == "weight" for a in _rows(territory_dir, "actions_due.csv"))
    flu = Counter(a["status"] for a in actions if a["action"] == "influenza_vaccine")
    assert flu["up_to_date"] > 0 and flu["overdue"] > 0, f"vaccinated and unvaccinated diabetics: {flu}"
    _print_agreement(rows)


def _print_agreement(rows: list[dict[str, str]]) -> None:
    """How often the coded stratum equals the true one, per true stratum (run with -s to read)."""
    alive = [r for r in rows if r["alive"] == "1"]

    def true_t2d(r: dict[str, str]) -> str:
        return r["t2d_stratum"] if r["t2d"] == "1" else "at_risk" if r["t2d_at_risk"] == "1" else ""

    for pyramid, truth, coded in (
        ("T2D", true_t2d, "t2d_stratum_coded"),
        ("HF", lambda r: r["hf_stratum"], "hf_stratum_coded"),
    ):
        for stratum in sorted({truth(r) for r in alive} - {""}):
            group = [r for r in alive if truth(r) == stratum]
            spread = Counter(r[coded] or "-" for r in group)
            print(
                f"{pyramid} true {stratum}: n={len(group)} coded same {spread[stratum] / len(group):.1%} {dict(spread)}"
            )
