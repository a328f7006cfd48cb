"""The care history each resident leaves in the sources over the history window.

Why cadences with adherence: the platform's job is to find who is overdue, so follow-up
events come at the protocol's rhythm for adherent people and with long gaps for others.
Which channel records an event follows French practice: lab results from the lab, drugs
from the pharmacy, diagnoses in hospital abstracts and in the GP's software (only when the
GP's software exports to the platform), exams reported in letters.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from pdp.synth.model import (
    ClinicalEvent,
    Facility,
    Person,
    Professional,
    Report,
    ReportFact,
    Stay,
)
from pdp.synth.territory import load_calibration
from pdp.synth.world import World

_COMPLICATION_DX = {
    "nephropathy": "t2d_nephropathy",
    "retinopathy": "t2d_retinopathy",
    "neuropathy": "t2d_neuropathy",
    "angiopathy": "t2d_angiopathy",
    "foot_ulcer": "foot_ulcer",
}
_CHRONIC_DRUG_CADENCE = (30, 90)  # monthly packs or 3-month packs


def cip13(drug_key: str, pack: int) -> str:
    """A synthetic but valid EAN-13 CIP code (prefix 34009) for a drug and a pack size."""
    digits = hashlib.blake2b(f"{drug_key}:{pack}".encode(), digest_size=8).hexdigest()
    body = "34009" + "".join(str(int(c, 16) % 10) for c in digits[:7])
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


@dataclass(slots=True)
class _Ctx:
    person: Person
    world: World
    rng: random.Random
    start: date
    end: date
    lab: Facility
    pharmacy: Facility
    hospital: Facility
    gp_software: bool
    counter: int = 0
    stays_by_day: dict[date, Stay] = field(default_factory=dict)

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.world.seed:x}-{self.person.person_id}-{self.counter}"

    def day_in(self, lo: date | None = None, hi: date | None = None) -> date:
        lo, hi = lo or self.start, hi or self.end
        return lo + timedelta(days=self.rng.randrange(max(1, (hi - lo).days + 1)))


def _cadence(ctx: _Ctx, interval: int, adherence: float, first: date | None = None) -> list[date]:
    """Dates of a recurring action: on rhythm when adherent, with long gaps otherwise."""
    rng = ctx.rng
    day = first or ctx.start + timedelta(days=rng.randrange(interval))
    out = []
    while day <= ctx.end:
        out.append(day)
        late = rng.random() > adherence
        factor = rng.uniform(1.4, 3.2) if late else rng.uniform(0.8, 1.08)
        day = day + timedelta(days=max(7, round(interval * factor)))
    return out


def _event(
    ctx: _Ctx,
    kind: str,
    day: date,
    section: str,
    key: str,
    channel: str,
    facility: str,
    value: float | None = None,
    stay_id: str | None = None,
    pack: int | None = None,
) -> ClinicalEvent:
    entry = ctx.world.catalog[section][key]
    system = {"diagnoses": "CIM-10", "measurements": "LOINC", "drugs": "ATC"}.get(section) or entry["system"]
    return ClinicalEvent(
        event_id=ctx.next_id("E"),
        kind=kind,
        day=day,
        code_system=system,
        code=str(entry["code"]),
        label=entry["label"],
        channel=channel,
        facility=facility,
        value=value,
        unit=entry.get("unit"),
        cip13=cip13(key, pack) if pack else None,
        stay_id=stay_id,
    )


def _gp_facility(ctx: _Ctx) -> str:
    gp = ctx.person.gp
    return gp.rpps if gp else ""


def _lab_order(ctx: _Ctx, day: date, values: dict[str, float]) -> None:
    for key, value in values.items():
        ctx.person.events.append(_event(ctx, "measurement", day, "measurements", key, "lab", ctx.lab.finess, value))


def _gp_visit(ctx: _Ctx, day: date, measures: dict[str, float]) -> None:
    if not ctx.gp_software:
        return
    p = ctx.person
    p.events.append(
        ClinicalEvent(
            ctx.next_id("V"),
            "encounter",
            day,
            "SNOMED",
            "185349003",
            "Consultation de médecine générale",
            "gp",
            _gp_facility(ctx),
        )
    )
    for key, value in measures.items():
        p.events.append(_event(ctx, "measurement", day, "measurements", key, "gp", _gp_facility(ctx), value))


def _gp_condition(ctx: _Ctx, key: str, onset: date) -> None:
    if ctx.gp_software:
        ctx.person.events.append(
            _event(ctx, "diagnosis", max(onset, ctx.start), "diagnoses", key, "gp", _gp_facility(ctx))
        )


def _stay(
    ctx: _Ctx,
    day: date,
    days: int,
    dp: str,
    das: list[str],
    acts: list[str],
    emergency: bool,
    unit: str = "MCO",
    hospital: Facility | None = None,
) -> Stay:
    cat = ctx.world.catalog
    das_codes = tuple(dict.fromkeys(str(cat["diagnoses"][k]["code"]) for k in das if k != dp))
    stay = Stay(
        stay_id=ctx.next_id("S"),
        hospital=(hospital or ctx.hospital).finess,
        admission=day,
        discharge=min(day + timedelta(days=days), ctx.end) if days else day,
        principal_dx=str(cat["diagnoses"][dp]["code"]),
        associated_dx=das_codes,
        acts=tuple(str(cat["procedures"][a]["code"]) for a in acts),
        emergency=emergency,
        unit=unit,
    )
    ctx.person.stays.append(stay)
    return stay


def _chronic_das(person: Person) -> list[str]:
    t = person.truth
    das: list[str] = []
    if t.t2d:
        das.append("t2d")
        das += [_COMPLICATION_DX[c] for c in t.complications]
        if t.insulin:
            das.append("insulin_long_term")
        if t.amputation:
            das.append("amputation_status")
        if t.dialysis:
            das += ["dialysis_status", "ckd_5"]
    if t.hf:
        das.append("hf")
    if t.hypertension:
        das.append("hypertension")
    if t.obesity:
        das.append("obesity")
    if t.stroke_or_mi:
        das.append("old_mi")
    return das


def _exam(ctx: _Ctx, day: date, proc: str, gp_share: float, hospital_share: float) -> None:
    """An exam recorded by the GP software, or as a hospital outpatient act, or nowhere."""
    u = ctx.rng.random()
    if ctx.gp_software and u < gp_share:
        ctx.person.events.append(_event(ctx, "procedure", day, "procedures", proc, "gp", _gp_facility(ctx)))
    elif ctx.rng.random() < hospital_share:
        dp = "exam_eyes" if proc == "fundus" else "exam_other"
        _stay(ctx, day, 0, dp, _chronic_das(ctx.person), [proc], emergency=False)


def _deliveries(ctx: _Ctx, drug: str, adherence: float, since: date | None = None) -> None:
    pack = ctx.rng.choice(_CHRONIC_DRUG_CADENCE)
    first = max(since or ctx.start, ctx.start) + timedelta(days=ctx.rng.randrange(pack))
    days = _cadence(ctx, pack, adherence, first=first)
    for day in days:
        ctx.person.events.append(_event(ctx, "drug", day, "drugs", drug, "pharmacy", ctx.pharmacy.finess, pack=pack))
    if ctx.gp_software and days:  # the GP's prescription, renewed yearly, precedes the deliveries
        for day in days[:: max(1, 365 // pack)]:
            ctx.person.events.append(_event(ctx, "drug", day, "drugs", drug, "gp", _gp_facility(ctx)))


def _hba1c_base(person: Person, rng: random.Random) -> float:
    stratum = person.truth.t2d_stratum or 1
    return max(5.6, rng.gauss({1: 6.8, 2: 7.8, 3: 7.9, 4: 8.3}[stratum], 0.7))


def _t2d_history(ctx: _Ctx, adherence: float) -> None:
    p, t, rng = ctx.person, ctx.person.truth, ctx.rng
    base = _hba1c_base(p, rng)
    fast = t.insulin or t.t2d_stratum == 4 or base > 7.0
    for day in _cadence(ctx, 91 if fast else 182, adherence):
        value = round(max(5.0, rng.gauss(base, 0.35)), 1)
        _lab_order(
            ctx, day, {"hba1c": value, **({"glucose": round(rng.uniform(1.1, 2.4), 2)} if rng.random() < 0.5 else {})}
        )
        if ctx.gp_software and rng.random() < 0.4:  # the GP keys the result in too: a duplicate to reconcile
            p.events.append(_event(ctx, "measurement", day, "measurements", "hba1c", "gp", _gp_facility(ctx), value))
    nephro = "nephropathy" in t.complications
    for day in _cadence(ctx, 365, adherence):
        creat = rng.uniform(65, 95) if t.dialysis else rng.uniform(14, 30) if nephro else rng.uniform(7, 12)
        _lab_order(
            ctx,
            day,
            {
                "creatinine": round(creat, 1),
                "egfr": round(max(5.0, 1200 / creat), 0),
                "uacr": round(rng.uniform(40, 600) if nephro else rng.uniform(3, 25), 0),
                "ldl": round(rng.uniform(0.6, 1.9), 2),
                "potassium": round(rng.uniform(3.6, 5.4), 1),
            },
        )
    for day in _cadence(ctx, 365, adherence):
        _exam(ctx, day, "ecg", gp_share=0.7, hospital_share=0.5)
    for day in _cadence(ctx, 365, adherence * 0.9):
        if ctx.gp_software:
            p.events.append(_event(ctx, "procedure", day, "procedures", "monofilament", "gp", _gp_facility(ctx)))
    fundus_every = 365 if ("retinopathy" in t.complications or t.t2d_stratum == 4) else 730
    for day in _cadence(ctx, fundus_every, adherence * 0.85):
        _exam(ctx, day, "fundus", gp_share=0.6, hospital_share=0.5)
    # treatment
    drugs = ["metformin"] if rng.random() < 0.9 and not t.dialysis else []
    if t.t2d_stratum == 1 and rng.random() < 0.4:
        drugs.append(rng.choice(("gliclazide", "sitagliptin")))
    elif (t.t2d_stratum or 1) >= 2:
        drugs += rng.sample(["sitagliptin", "empagliflozin", "dulaglutide"], rng.choice((1, 2)))
    if t.insulin:
        drugs.append("insulin_glargine")
        if rng.random() < 0.5:
            drugs.append("insulin_aspart")
    if t.complications or t.stroke_or_mi or rng.random() < 0.5:
        drugs.append("atorvastatin")
    if t.stroke_or_mi or "angiopathy" in t.complications:
        drugs.append("aspirin")
    for drug in drugs:
        _deliveries(ctx, drug, min(1.0, adherence + 0.15))
    # conditions known to the GP
    onset = t.diagnosis_date or ctx.start
    _gp_condition(ctx, "t2d", onset)
    for comp in t.complications:
        _gp_condition(ctx, _COMPLICATION_DX[comp], ctx.day_in())
    if t.insulin:
        _gp_condition(ctx, "insulin_long_term", onset)
    # hospital
    if t.dialysis:
        day = ctx.start + timedelta(days=rng.randrange(28))
        while day <= ctx.end:
            _stay(ctx, day, 0, "dialysis_session", _chronic_das(p), ["dialysis"], emergency=False)
            day += timedelta(days=rng.randrange(28, 33))
    if t.amputation and rng.random() < 0.5:
        _stay(
            ctx,
            ctx.day_in(),
            rng.randrange(6, 25),
            "t2d_angiopathy",
            ["foot_ulcer", *_chronic_das(p)],
            ["amputation"],
            emergency=rng.random() < 0.3,
        )
    for _ in range(t.severe_hypoglycaemia_episodes if t.t2d_stratum == 2 else 0):
        _stay(ctx, ctx.day_in(), rng.randrange(1, 4), "severe_hypo", _chronic_das(p), [], emergency=True)
    if t.stroke_or_mi and rng.random() < 0.3:
        dp = rng.choice(("stroke", "mi"))
        _stay(
            ctx,
            ctx.day_in(),
            rng.randrange(4, 15),
            dp,
            _chronic_das(p),
            ["angioplasty"] if dp == "mi" else [],
            emergency=True,
        )
    years = (ctx.end - ctx.start).days / 365
    for _ in range(_poisson(rng, {1: 0.05, 2: 0.12, 3: 0.3, 4: 0.6}[t.t2d_stratum or 1] * years)):
        dp = rng.choice(("t2d_angiopathy", "t2d_nephropathy", "pneumonia", "t2d")) if t.complications else "t2d"
        _stay(ctx, ctx.day_in(), rng.randrange(2, 12), dp, _chronic_das(p), [], emergency=rng.random() < 0.288)


def _hf_history(ctx: _Ctx, adherence: float) -> None:
    p, t, rng = ctx.person, ctx.person.truth, ctx.rng
    for day in _cadence(ctx, 182, adherence):
        lo, hi = (400, 2500) if t.hf_stage == 3 else (2000, 9000)
        _lab_order(
            ctx,
            day,
            {
                "ntprobnp": round(rng.uniform(lo, hi)),
                "creatinine": round(rng.uniform(8, 20), 1),
                "potassium": round(rng.uniform(3.5, 5.6), 1),
            },
        )
    lvef = round(rng.uniform(20, 38) if t.hf_stage == 4 else rng.uniform(28, 55))
    for day in _cadence(ctx, 365, adherence):
        stay = _stay(ctx, day, 0, "hf", _chronic_das(p), ["echo"], emergency=False)
        if ctx.gp_software:
            p.events.append(
                _event(
                    ctx, "measurement", day, "measurements", "lvef", "gp", _gp_facility(ctx), lvef, stay_id=stay.stay_id
                )
            )
    for drug in ("bisoprolol", "furosemide", "sacubitril_valsartan" if rng.random() < 0.6 else "ramipril"):
        _deliveries(ctx, drug, min(1.0, adherence + 0.15))
    if rng.random() < 0.4:
        _deliveries(ctx, "spironolactone", adherence)
    _gp_condition(ctx, "hf", t.hf_diagnosis_date or ctx.start)
    years = (ctx.end - ctx.start).days / 365
    for _ in range(_poisson(rng, (0.5 if t.hf_stage == 3 else 1.6) * years)):
        _stay(
            ctx,
            ctx.day_in(),
            rng.randrange(3, 16),
            rng.choice(("hf_congestive", "hf_left", "hf")),
            _chronic_das(p),
            [],
            emergency=rng.random() < 0.5,
        )
    weight = (t.bmi or 26) * 1.7**2
    for day in _cadence(ctx, 30 if t.hf_stage == 4 else 91, adherence):
        _gp_visit(
            ctx,
            day,
            {"weight": round(rng.gauss(weight, 2.0), 1), "sbp": rng.randrange(95, 150), "dbp": rng.randrange(55, 90)},
        )


def _risk_history(ctx: _Ctx, adherence: float) -> None:
    """Hypertension, obesity, structural heart disease, T2D risk: milder follow-up."""
    p, t, rng = ctx.person, ctx.person.truth, ctx.rng
    if t.hypertension:
        _gp_condition(ctx, "hypertension", ctx.start)
        for drug in rng.sample(["ramipril", "amlodipine"], rng.choice((1, 2))):
            _deliveries(ctx, drug, adherence)
    if t.obesity:
        _gp_condition(ctx, "obesity", ctx.start)
    if "dyslipidaemia" in t.risk_factors:
        _gp_condition(ctx, "dyslipidaemia", ctx.start)
        _deliveries(ctx, "atorvastatin", adherence)
    if "family_diabetes" in t.risk_factors:
        _gp_condition(ctx, "family_diabetes", ctx.start)
    if t.hf_at_risk and t.hf_stage == 2 and not t.t2d:
        _gp_condition(ctx, "old_mi" if t.stroke_or_mi else "valve_disease", ctx.start)
        for day in _cadence(ctx, 730, adherence):
            _stay(ctx, day, 0, "old_mi" if t.stroke_or_mi else "valve_disease", _chronic_das(p), ["echo"], False)
    if t.t2d_at_risk and rng.random() < 0.4:
        for day in _cadence(ctx, 1095, adherence):
            _lab_order(ctx, day, {"glucose": round(rng.uniform(0.8, 1.25), 2)})


def _poisson(rng: random.Random, lam: float) -> int:
    count, acc = 0, rng.expovariate(1.0)
    while acc < lam:
        count += 1
        acc += rng.expovariate(1.0)
    return count


def _general_history(ctx: _Ctx, age: int) -> None:
    """Events anyone may have: GP visits, acute stays, occasional drugs."""
    p, t, rng = ctx.person, ctx.person.truth, ctx.rng
    years = (ctx.end - ctx.start).days / 365
    chronic = t.t2d or t.hf or t.hf_at_risk
    visits = 91 if t.t2d else 182 if chronic else 365
    height = rng.uniform(1.55, 1.75) if p.identity.sex == "F" else rng.uniform(1.65, 1.88)
    for day in _cadence(ctx, visits, 0.85):
        if not chronic and rng.random() < 0.35:
            continue  # healthy people skip years
        measures: dict[str, float] = {}
        recorded = chronic or rng.random() < 0.35  # GPs key in measures for a minority of routine visits
        if recorded and t.bmi is not None and (chronic or age >= 40 or rng.random() < 0.3):
            bmi = round(rng.gauss(t.bmi, 0.5), 1)
            measures = {"weight": round(bmi * height**2, 1), "bmi": bmi}
        if recorded and age >= 18 and rng.random() < 0.8:
            high = t.hypertension
            measures |= {
                "sbp": rng.randrange(135, 170) if high else rng.randrange(105, 138),
                "dbp": rng.randrange(80, 100) if high else rng.randrange(60, 85),
            }
        _gp_visit(ctx, day, measures)
    for _ in range(_poisson(rng, min(0.25, 0.02 + 0.0025 * age) * years)):
        choices = ["pneumonia", "gastroenteritis", "chest_pain"] + (["hip_fracture", "cataract"] if age > 65 else [])
        dp = rng.choice(choices)
        _stay(
            ctx,
            ctx.day_in(),
            0 if dp == "cataract" else rng.randrange(1, 10),
            dp,
            _chronic_das(p),
            [],
            emergency=dp != "cataract" and rng.random() < 0.5,
        )
    for _ in range(_poisson(rng, 0.3 * years)):
        ctx.person.events.append(
            _event(
                ctx,
                "drug",
                ctx.day_in(),
                "drugs",
                rng.choice(("amoxicillin", "paracetamol")),
                "pharmacy",
                ctx.pharmacy.finess,
                pack=30,
            )
        )
    if p.identity.sex == "F" and age > 40 and rng.random() < 0.04:
        _deliveries(ctx, "levothyroxine", 0.9)


def _reports(ctx: _Ctx) -> None:
    """Letters after chronic patients' stays, specialist notes, and GP notes on family risk."""
    p, t, rng, world = ctx.person, ctx.person.truth, ctx.rng, ctx.world
    if not (t.t2d or t.hf or t.hf_at_risk or t.t2d_at_risk):
        return
    last_hba1c = next((e.value for e in reversed(sorted(p.events, key=lambda e: e.day)) if e.code == "4548-4"), None)

    def facts() -> tuple[ReportFact, ...]:
        out: list[ReportFact] = []
        if t.t2d:
            out.append(ReportFact("t2d", "affirmed"))
            out += [ReportFact(c, "affirmed") for c in t.complications]
            absent = [c for c in ("retinopathy", "nephropathy", "neuropathy", "foot_ulcer") if c not in t.complications]
            out += [ReportFact(c, "negated") for c in rng.sample(absent, min(len(absent), rng.choice((1, 2))))]
            if t.insulin:
                out.append(ReportFact("insulin", "affirmed"))
            if t.amputation:
                out.append(ReportFact("amputation", "affirmed"))
            if t.dialysis:
                out.append(ReportFact("dialysis", "affirmed"))
            if last_hba1c is not None:
                out.append(ReportFact("hba1c", "affirmed", value=last_hba1c))
        if t.hf:
            out.append(ReportFact("heart_failure", "affirmed"))
            out.append(ReportFact("lvef", "affirmed", value=float(rng.randrange(20, 55))))
        elif t.hf_at_risk and t.hf_stage == 2 and rng.random() < 0.4:
            out.append(ReportFact("heart_failure", "hypothesis"))
        elif rng.random() < 0.3:
            out.append(ReportFact("heart_failure", "negated"))
        if t.stroke_or_mi:
            out.append(ReportFact(rng.choice(("mi", "stroke")), "affirmed"))
        if t.hypertension:
            out.append(ReportFact("hypertension", "affirmed"))
        if t.obesity:
            out.append(ReportFact("obesity", "affirmed"))
        if "family_diabetes" in t.risk_factors:
            out.append(ReportFact("t2d", "family", relative=rng.choice(("mère", "père", "frère", "sœur"))))
        return tuple(out)

    for stay in p.stays:
        if stay.discharge > stay.admission and (t.t2d or t.hf) and rng.random() < 0.5:
            author = rng.choice(world.specialists)
            p.reports.append(
                Report(
                    ctx.next_id("D"),
                    "discharge_letter",
                    stay.discharge,
                    author,
                    stay.hospital,
                    facts(),
                    stay_id=stay.stay_id,
                )
            )
    if (t.t2d and (t.t2d_stratum or 1) >= 2) or t.hf:
        for day in _cadence(ctx, 365, 0.5):
            if rng.random() < 0.35:
                author = rng.choice(world.specialists)
                p.reports.append(
                    Report(ctx.next_id("D"), "consultation_note", day, author, ctx.hospital.finess, facts())
                )
    elif not t.t2d and p.gp and "family_diabetes" in t.risk_factors and rng.random() < 0.3:
        note = (
            ReportFact("t2d", "negated"),
            ReportFact("t2d", "family", relative=rng.choice(("mère", "père"))),
            *((ReportFact("obesity", "affirmed"),) if t.obesity else ()),
        )
        p.reports.append(Report(ctx.next_id("D"), "consultation_note", ctx.day_in(), p.gp, p.gp.rpps, note))


def _vaccinations(ctx: _Ctx, age: int) -> None:
    """Flu shots per autumn campaign and a pneumococcal dose, delivered by the pharmacy.

    Who: people with diabetes or heart failure, and everyone aged 65 or more for the flu
    (calibration.yml `vaccination`). Drawn from a random generator of their own (seeded by the
    world seed and the person), after every other event: adding vaccinations leaves a seed's
    other events, their ids and every earlier draw unchanged.
    """
    p, t = ctx.person, ctx.person.truth
    cal = load_calibration()["vaccination"]
    chronic = t.t2d or t.hf
    if not chronic and age < cal["influenza_from_age"]:
        return
    digest = hashlib.blake2b(f"{ctx.world.seed}\x1f{p.person_id}\x1fvaccines".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    propensity = rng.betavariate(*cal["influenza_propensity_beta"])
    month, day_of_month = cal["influenza_campaign"]["start"]
    for year in range(ctx.start.year - 1, ctx.end.year + 1):
        opens = date(year, month, day_of_month)
        span = cal["influenza_campaign"]["days"]
        day = opens + timedelta(days=min(rng.randrange(span), rng.randrange(span)))  # most shots early
        if rng.random() < propensity and ctx.start <= day <= ctx.end:
            shot = _event(ctx, "drug", day, "drugs", "influenza_vaccine", "pharmacy", ctx.pharmacy.finess, pack=1)
            p.events.append(shot)
    if chronic and rng.random() < cal["pneumococcal_share"]:
        day = ctx.start + timedelta(days=rng.randrange(max(1, (ctx.end - ctx.start).days + 1)))
        dose = _event(ctx, "drug", day, "drugs", "pneumococcal_vaccine", "pharmacy", ctx.pharmacy.finess, pack=1)
        p.events.append(dose)


def _nearest(facilities: tuple[Facility, ...], commune: str, rng: random.Random, local_share: float) -> Facility:
    local = [f for f in facilities if f.commune_code == commune]
    return rng.choice(local) if local and rng.random() < local_share else rng.choice(facilities)


def build_history(person: Person, age: int, world: World, deceased: bool, rng: random.Random) -> None:
    """Fill `person.events`, `stays`, `reports`, dates and death, from the drawn truth."""
    t = person.truth
    end = world.reference_date
    if deceased:
        t.death_date = world.history_start + timedelta(days=rng.randrange((end - world.history_start).days))
        end = t.death_date
    if t.t2d:
        t.diagnosis_date = world.reference_date - timedelta(days=rng.randrange(180, 365 * 20))
    if t.hf:
        t.hf_diagnosis_date = world.reference_date - timedelta(days=rng.randrange(60, 365 * 8))
    gp: Professional | None = person.gp
    ctx = _Ctx(
        person=person,
        world=world,
        rng=rng,
        start=max(world.history_start, person.identity.birth_date),  # infants: nothing before birth
        end=end,
        lab=_nearest(world.labs, person.address.commune_code, rng, 0.6),
        pharmacy=_nearest(world.pharmacies, person.address.commune_code, rng, 0.8),
        hospital=_nearest(world.hospitals, person.address.commune_code, rng, 0.7),
        gp_software=gp is not None and gp.rpps in world.gp_software,
    )
    adherence = min(1.0, max(0.2, rng.betavariate(4, 1.6)))
    _general_history(ctx, age)
    if t.t2d:
        _t2d_history(ctx, adherence)
    if t.hf:
        _hf_history(ctx, adherence)
    if t.hypertension or t.obesity or t.risk_factors or t.hf_at_risk or t.t2d_at_risk:
        _risk_history(ctx, adherence)
    _reports(ctx)
    _vaccinations(ctx, age)
    person.events.sort(key=lambda e: (e.day, e.event_id))
    person.stays.sort(key=lambda s: (s.admission, s.stay_id))
