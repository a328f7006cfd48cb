"""Golden cases of the population algorithms, as tables a clinician can read: one person a line,
their facts (see silver_builder.py for the notation), and the stratum expected in each pyramid
(`-`: in no population of that pyramid). Every stratum boundary and every pathway interval has
a line, and so have the traps: type 1 diabetes, SGLT2 monotherapy, a negated complication in a
report, an amputation not due to diabetes, a dialysed patient, a deceased person, a person who
moved out of the territory, a fact after the as-of date and one older than the look-back.

One small lake and one gold build serve every test of the module (Spark work is shared).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from silver_builder import SilverBuilder, person_id, pseudonym

from pdp.algorithms import build_gold, load_definitions
from pdp.lake import LakeTable
from pdp.semantic import concept_sets

pytestmark = [pytest.mark.spark]

AS_OF = date(2026, 6, 30)

# name                     | sex | born    | commune | facts                                                         | t2d     | hf
STRATA = """
t2d_dx                     | F   | 1950-03 | 59178   | dx E11.9 -100                                                 | 1       | 1
t2d_gp_condition           | F   | 1950-03 | 59178   | dx E11.9 gp -100                                              | 1       | 1
t1d_only                   | F   | 1990-01 | 59178   | dx E10.9 -100                                                 | -       | -
t1d_and_t2d_coded          | F   | 1990-01 | 59178   | dx E10.9 -100; dx E11.9 -50                                   | 1       | 1
unspecified_type_e14       | F   | 1990-01 | 59178   | dx E14.9 -100                                                 | 1       | 1
e14_with_type_1            | F   | 1990-01 | 59178   | dx E14.9 -100; dx E10.9 -90                                   | -       | -
antidiabetics_3_dates      | F   | 1990-01 | 59178   | drug A10BA02 -30,-60,-90                                      | 1       | 1
antidiabetics_2_dates      | F   | 1990-01 | 59178   | drug A10BA02 -30,-60                                          | -       | -
sglt2_monotherapy          | F   | 1990-01 | 59178   | drug A10BK03 -30,-60,-90                                      | -       | -
sglt2_plus_metformin       | F   | 1990-01 | 59178   | drug A10BK03 -30,-60,-90; drug A10BA02 -30,-60,-90            | 1       | 1
gp_prescriptions_only      | F   | 1990-01 | 59178   | drug A10BA02 gp -30,-60,-90                                   | -       | -
deliveries_over_a_year     | F   | 1990-01 | 59178   | drug A10BA02 -30,-200,-400                                    | -       | -
hba1c_twice_6_5            | F   | 1990-01 | 59178   | lab 4548-4=6.5 -30,-200                                       | 1       | 1
hba1c_once                 | F   | 1990-01 | 59178   | lab 4548-4=8.0 -30                                            | -       | -
hba1c_twice_below          | F   | 1990-01 | 59178   | lab 4548-4=6.4 -30,-200                                       | -       | -
diagnosis_after_as_of      | F   | 1990-01 | 59178   | dx E11.9 +10                                                  | -       | -
diagnosis_too_old          | F   | 1990-01 | 59178   | dx E11.9 -1826                                                | -       | -
diagnosis_just_in_window   | F   | 1990-01 | 59178   | dx E11.9 -1825                                                | 1       | 1
one_complication           | F   | 1950-03 | 59178   | dx E11.3 -100                                                 | 1       | 1
two_complications          | F   | 1950-03 | 59178   | dx E11.3 -100; dx E11.4 -200                                  | 3       | 1
negated_complication_text  | F   | 1950-03 | 59178   | dx E11.3 -100; text E11.4 negated -40                         | 1       | 1
affirmed_complication_text | F   | 1950-03 | 59178   | dx E11.3 -100; text E11.4 affirmed -40                        | 3       | 1
family_history_in_text     | F   | 1950-03 | 59178   | dx E11.3 -100; text E11.4 family -40                          | 1       | 1
prior_mi                   | F   | 1950-03 | 59178   | dx E11.9 -100; dx I25.2 das -100                              | 3       | 2
stroke                     | F   | 1950-03 | 59178   | dx E11.9 -100; dx I63.9 -300+5n                               | 3       | 1
insulin_delivered          | F   | 1950-03 | 59178   | dx E11.9 -100; drug A10AE04 -20                               | 2       | 1
insulin_delivered_long_ago | F   | 1950-03 | 59178   | dx E11.9 -100; drug A10AE04 -400                              | 1       | 1
insulin_coded_z79          | F   | 1950-03 | 59178   | dx E11.9 -100; dx Z79.4 gp -100                               | 2       | 1
two_severe_hypos           | F   | 1950-03 | 59178   | dx E11.9 -100; dx E16.0 -100,-300                             | 2       | 1
one_severe_hypo            | F   | 1950-03 | 59178   | dx E11.9 -100; dx E16.0 -300                                  | 1       | 1
dialysed_nephropathy       | F   | 1950-03 | 59178   | dx E11.2 -100; dx Z99.2 das -100; proc JVJF004 -30            | 4       | 1
dialysis_no_nephropathy    | F   | 1950-03 | 59178   | dx E11.9 -100; proc JVJF004 -30                               | 1       | 1
amputation_diabetic        | M   | 1950-03 | 59178   | dx E11.9 -100; dx I70.2 das -100; proc NZFA004 -100           | 4       | 1
amputation_not_diabetic    | M   | 1950-03 | 59178   | dx E11.9 -100; proc NZFA004 -100                              | 1       | 1
amputation_4_beats_3       | M   | 1950-03 | 59178   | dx E11.5 -100; dx E11.3 -100; dx L97 -90; proc NZFA004 -90    | 4       | 1
deceased                   | F   | 1950-03 | 59178   | dx E11.9 -100; death -10                                      | -       | -
died_after_as_of           | F   | 1950-03 | 59178   | dx E11.9 -100; death +10                                      | 1       | 1
moved_out                  | F   | 1950-03 | 75056   | dx E11.9 -100                                                 | -       | -
commune_unknown            | F   | 1950-03 |         | dx E11.9 -100                                                 | 1       | 1
man_over_45                | M   | 1980-06 | 59178   |                                                               | at_risk | -
man_aged_45                | M   | 1981-06 | 59178   |                                                               | -       | -
woman_over_45              | F   | 1960-01 | 59178   |                                                               | -       | -
overweight_hypertensive    | F   | 1990-01 | 59178   | lab 39156-5=27.0 -50; dx I10 gp -100                          | at_risk | 1
overweight_no_risk_factor  | F   | 1990-01 | 59178   | lab 39156-5=27.0 -50                                          | -       | -
latest_bmi_normal          | F   | 1990-01 | 59178   | lab 39156-5=23.0 -50; lab 39156-5=28.0 -400; dx E78.5 gp -90 | -       | -
family_history_overweight  | F   | 1990-01 | 59178   | lab 39156-5=26.0 -50; dx Z83.3 gp -90                         | at_risk | -
minor_man                  | M   | 2010-01 | 59178   | lab 39156-5=31.0 -50; dx I10 gp -100                          | -       | -
hf_diagnosis               | F   | 1950-03 | 59178   | dx I50.9 -100+4n                                              | -       | 3
hf_two_stays               | F   | 1950-03 | 59178   | dx I50.9 -100+4n,-200+2n                                      | -       | 4
hf_two_day_cases           | F   | 1950-03 | 59178   | dx I50.9 -100,-200                                            | -       | 3
hf_stays_as_das            | F   | 1950-03 | 59178   | dx I50.9 das -100+4n,-200+2n                                  | -       | 3
hf_stays_over_a_year       | F   | 1950-03 | 59178   | dx I50.9 -100+4n,-500+2n                                      | -       | 3
lvef_40                    | F   | 1950-03 | 59178   | lab 10230-1=40 -100                                           | -       | 3
lvef_45                    | F   | 1950-03 | 59178   | lab 10230-1=45 -100                                           | -       | -
ntprobnp_twice             | F   | 1950-03 | 59178   | lab 33762-6=900 -100,-300                                     | -       | 3
valve_disease              | F   | 1950-03 | 59178   | dx I35.0 gp -100                                              | -       | 2
hypertension_only          | F   | 1950-03 | 59178   | dx I10 gp -100                                                | -       | 1
obese_bmi                  | F   | 1990-01 | 59178   | lab 39156-5=31.0 -50                                          | -       | 1
obesity_coded              | F   | 1990-01 | 59178   | dx E66.9 gp -50                                               | -       | 1
diabetic_with_hf           | F   | 1950-03 | 59178   | dx E11.9 -100; dx I50.9 gp -100                               | 1       | 3
"""

# Pathway intervals: a T2D (or HF) person per line, the facts that set the interval, and the
# expected `action=status/interval` for the actions named (as-of date 2026-06-30; due = within 30 days).
# name                      | facts                                                                  | expected
ACTIONS = """
hba1c_on_target_recent      | dx E11.9 -10; lab 4548-4=6.2 -100                                       | hba1c=up_to_date/182
hba1c_on_target_due_soon    | dx E11.9 -10; lab 4548-4=6.2 -170                                       | hba1c=due/182
hba1c_on_target_overdue     | dx E11.9 -10; lab 4548-4=6.2 -183                                       | hba1c=overdue/182
hba1c_on_target_due_today   | dx E11.9 -10; lab 4548-4=6.2 -182                                       | hba1c=due/182
hba1c_above_target          | dx E11.9 -10; lab 4548-4=7.4 -100                                       | hba1c=overdue/91
hba1c_latest_back_on_target | dx E11.9 -10; lab 4548-4=7.4 -200; lab 4548-4=6.8 -100                  | hba1c=up_to_date/182
hba1c_on_insulin            | dx E11.9 -10; drug A10AE04 -20; lab 4548-4=6.2 -61                      | hba1c=due/91
hba1c_stratum_4             | dx E11.2 -10; dx Z99.2 das -10; lab 4548-4=6.2 -70                      | hba1c=due/91
never_done                  | dx E11.9 -10                                                            | hba1c=overdue/182 ecg=overdue/365 monofilament=overdue/365 fundus=overdue/730 blood_panel=overdue/365 influenza_vaccine=overdue/365 pneumococcal_vaccine=overdue/1826
flu_vaccine_this_season     | dx E11.9 -10; drug J07BB02 -250                                         | influenza_vaccine=up_to_date/365
flu_vaccine_due_soon        | dx E11.9 -10; drug J07BB02 -340                                         | influenza_vaccine=due/365
flu_vaccine_due_today       | dx E11.9 -10; drug J07BB02 -365                                         | influenza_vaccine=due/365
flu_vaccine_a_year_ago      | dx E11.9 -10; drug J07BB02 -366                                         | influenza_vaccine=overdue/365
flu_vaccine_prescribed_only | dx E11.9 -10; drug J07BB02 gp -100                                      | influenza_vaccine=overdue/365
flu_vaccine_after_as_of     | dx E11.9 -10; drug J07BB02 +5                                           | influenza_vaccine=overdue/365
pneumococcal_within_5_years | dx E11.9 -10; drug J07AL02 -1700                                        | pneumococcal_vaccine=up_to_date/1826 influenza_vaccine=overdue/365
pneumococcal_due_soon       | dx E11.9 -10; drug J07AL01 -1800                                        | pneumococcal_vaccine=due/1826
pneumococcal_over_5_years   | dx E11.9 -10; drug J07AL02 -1827                                        | pneumococcal_vaccine=overdue/1826
yearly_exams                | dx E11.9 -10; proc DEQP003 -300; proc 401191002 gp -340; lab 2160-0=9 -400 | ecg=up_to_date/365 monofilament=due/365 blood_panel=overdue/365
fundus_every_2_years        | dx E11.9 -10; proc BGQP002 -700                                         | fundus=due/730
fundus_retinopathy_yearly   | dx E11.3 -10; proc BGQP002 -700                                         | fundus=overdue/365
hf_weight_quarterly         | dx I50.9 gp -10; lab 29463-7=80 -80; proc DZQM006 -100; lab 33762-6=600 -190 | weight=due/91 echo=up_to_date/365 ntprobnp=overdue/182
hf_weight_monthly_stratum_4 | dx I50.9 -10+3n,-40+3n; lab 29463-7=80 -20                             | weight=due/30 blood_panel=overdue/182
"""

# Alerts: facts, and the alerts expected (exactly).
ALERTS = """
hba1c_above_9_recent        | lab 4548-4=9.4 -20                                                      | hba1c_high
hba1c_above_9_old           | lab 4548-4=9.4 -120                                                     |
weight_gain_hf              | dx I50.9 gp -100; lab 29463-7=80.0 -10; lab 29463-7=82.5 -8             | hf_weight_gain
weight_gain_not_hf          | lab 29463-7=80.0 -10; lab 29463-7=82.5 -8                               |
weight_gain_slow_hf         | dx I50.9 gp -100; lab 29463-7=80.0 -10; lab 29463-7=82.5 -5             |
egfr_drop                   | lab 62238-1=60 -300; lab 62238-1=40 -20                                 | egfr_drop
egfr_small_drop             | lab 62238-1=60 -300; lab 62238-1=50 -20                                 |
overdue_stratum_4           | dx E11.2 -10; dx Z99.2 das -10                                          | overdue_top
"""

# PSI registries (pdp/algorithms/definitions/registries): facts, and the registries expected (exactly).
# name                      | sex | born    | facts                                                     | registries
REGISTRIES = """
at_risk_never_screened      | M   | 1970-01 |                                                           | t2d_at_risk_unscreened
at_risk_fasting_glucose     | M   | 1970-01 | lab 1558-6=5.2 -400                                       |
at_risk_screened_long_ago   | M   | 1970-01 | lab 4548-4=5.6 -1100                                      | t2d_at_risk_unscreened
stratum_1_hba1c_overdue     | F   | 1950-03 | dx E11.9 -10; lab 4548-4=6.2 -183                         | t2d_stratum1_hba1c_overdue
stratum_1_hba1c_recent      | F   | 1950-03 | dx E11.9 -10; lab 4548-4=6.2 -100                         |
stratum_2_hba1c_overdue     | F   | 1950-03 | dx E11.9 -10; drug A10AE04 -20                            |
hf_stratum_3_no_echo        | F   | 1950-03 | dx I50.9 -100+4n                                          | hf_severe_no_cardiology
hf_stratum_3_echo_this_year | F   | 1950-03 | dx I50.9 -100+4n; proc DZQM006 -100                       |
hf_stratum_3_echo_long_ago  | F   | 1950-03 | dx I50.9 -100+4n; proc DZQM006 -400                       | hf_severe_no_cardiology
hf_stratum_2_obese_hypert   | F   | 1950-03 | dx I11.9 gp -100; lab 39156-5=31.0 -50                    | t2d_at_risk_unscreened
"""


def _table(text: str) -> list[list[str]]:
    rows = []
    for line in text.strip().splitlines():
        if line.startswith("#"):
            continue
        rows.append([cell.strip() for cell in line.split("|")])
    return rows


@pytest.fixture(scope="module")
def gold(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict:
    lake = tmp_path_factory.mktemp("golden") / "lake"
    builder = SilverBuilder(AS_OF)
    for name, sex, born, commune, facts, _, _ in _table(STRATA):
        builder.person(name, sex, born, commune or None, facts)
    for name, facts, _ in _table(ACTIONS):
        builder.person(name, "F", "1950-03", "59178", facts)
    for name, facts, _ in _table(ALERTS):
        builder.person(name, "F", "1950-03", "59178", facts)
    for name, sex, born, facts, _ in _table(REGISTRIES):
        builder.person(name, sex, born, "59178", facts)
    builder.write(spark, lake)
    report = build_gold(spark, as_of=AS_OF, lake_root=str(lake))

    def read(name: str) -> list[dict]:
        return [r.asDict() for r in LakeTable(spark, name, lake_root=str(lake)).read().collect()]

    return {"lake": lake, "report": report, "builder": builder,
            **{name: read(f"gold.{name}") for name in ("population", "stratum", "care_action", "alert", "evidence",
                                                     "psi_registry")}}


@pytest.mark.parametrize("case", _table(STRATA), ids=lambda c: c[0])
def test_strata(gold: dict, case: list[str]) -> None:
    name, *_, t2d, hf = case
    got = {r["pyramid"]: r["stratum"] for r in gold["stratum"] if r["person_id"] == person_id(name)}
    assert (got.get("t2d", "-"), got.get("hf", "-")) == (t2d, hf)


@pytest.mark.parametrize("case", _table(ACTIONS), ids=lambda c: c[0])
def test_pathway_intervals(gold: dict, case: list[str]) -> None:
    name, _, expected = case
    got = {r["action"]: f"{r['status']}/{r['interval_days']}" for r in gold["care_action"]
           if r["person_id"] == person_id(name)}
    for item in expected.split():
        action, want = item.split("=")
        assert got.get(action) == want, f"{action}: {got.get(action)} != {want}"


@pytest.mark.parametrize("case", _table(ALERTS), ids=lambda c: c[0])
def test_alerts(gold: dict, case: list[str]) -> None:
    name, _, expected = case
    got = sorted(r["alert"] for r in gold["alert"] if r["person_id"] == person_id(name))
    assert got == sorted(expected.split())


@pytest.mark.parametrize("case", _table(REGISTRIES), ids=lambda c: c[0])
def test_registries(gold: dict, case: list[str]) -> None:
    name, *_, expected = case
    rows = [r for r in gold["psi_registry"] if r["person_id"] == person_id(name)]
    assert sorted(r["registry"] for r in rows) == sorted(expected.split())
    assert all(r["rule_id"] == f"registry.{r['registry']}@1" and r["as_of"] == AS_OF for r in rows)


def test_every_person_has_one_stratum_per_pyramid_and_every_row_its_versions(gold: dict) -> None:
    keys = [(r["person_id"], r["pyramid"]) for r in gold["stratum"]]
    assert len(keys) == len(set(keys))
    defs = load_definitions()
    assert {r["definitions"] for r in gold["stratum"]} == {defs.version}
    assert all(r["definition_version"] == 1 and r["as_of"] == AS_OF for r in gold["stratum"])
    assert all(r["person_pseudonym"] == pseudonym_of(r["person_id"], gold) for r in gold["stratum"])


def pseudonym_of(pid: int, gold: dict) -> str:
    return next(p["person_pseudonym"] for p in gold["builder"].rows["person"] if p["person_id"] == pid)


def test_commits_carry_the_run_the_definitions_and_the_silver_versions(spark: SparkSession, gold: dict) -> None:
    commit = LakeTable(spark, "gold.stratum", lake_root=str(gold["lake"])).history(limit=1)[0]
    assert commit.run is not None and commit.run.definitions_version == load_definitions().version
    lineage = commit.run.lineage or {}
    assert lineage["as_of"] == AS_OF.isoformat() and '"silver.measurement": 1' in lineage["silver_versions"]
    assert '"pyramid.t2d": "1"' in lineage["definitions"]


def test_a_rerun_on_unchanged_silver_writes_nothing(spark: SparkSession, gold: dict) -> None:
    table = LakeTable(spark, "gold.evidence", lake_root=str(gold["lake"]))
    before = table.version()
    again = build_gold(spark, as_of=AS_OF, lake_root=str(gold["lake"]))
    assert again.skipped and table.version() == before


def test_a_run_that_failed_part_way_is_redone(spark: SparkSession, gold: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables are written concurrently: one missing its commit means the run is not finished."""
    import pdp.algorithms.gold as gold_build

    lake, day = str(gold["lake"]), AS_OF + timedelta(days=1)  # a date of its own: the module's rows stay
    write_one = gold_build._write_one

    def failing(spark_: SparkSession, lake_root: str | None, relation: str, name: str, *args: Any) -> None:
        if name == "gold.alert":
            raise RuntimeError("disk full")
        write_one(spark_, lake_root, relation, name, *args)

    monkeypatch.setattr(gold_build, "_write_one", failing)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            build_gold(spark, as_of=day, lake_root=lake)
        monkeypatch.setattr(gold_build, "_write_one", write_one)
        assert LakeTable(spark, "gold.stratum", lake_root=lake).read().where(f"as_of = DATE '{day}'").count() > 0
        redone = build_gold(spark, as_of=day, lake_root=lake)
        assert not redone.skipped and redone.rows["gold.alert"] > 0
        assert build_gold(spark, as_of=day, lake_root=lake).skipped
    finally:  # the other tests read the module's date only
        from pdp.lake import RunInfo

        for name in gold_build.GOLD_OUTPUTS.values():
            LakeTable(spark, name, lake_root=lake).delete(f"as_of = DATE '{day}'", run=RunInfo.new("tests", definitions_version="x"))


# --- explanations: every cited fact exists in silver and satisfies the criterion it is cited for ----------


def _matches(concepts: list[str], vocabulary: str, code: str) -> bool:
    sets = concept_sets()
    for concept in concepts:
        for pattern in sets[concept].get(vocabulary, []):
            if (code.startswith(pattern[:-1]) if pattern.endswith("*") else code == pattern):
                return True
    return False


def _satisfies(criterion: str, fact: dict, as_of: date) -> bool:
    """An independent reading of one fact against one criterion of criteria.yml (not the compiled SQL)."""
    c = load_definitions().criteria[criterion]
    if c.person is not None:
        return fact["fact_table"] == "person"
    ok = _matches(c.concepts, fact["vocabulary"], fact["source_code"]) and not (
        c.exclude_concepts and _matches(c.exclude_concepts, fact["vocabulary"], fact["source_code"]))
    ok = ok and fact["start_date"] <= as_of
    if c.look_back_days is not None:
        ok = ok and fact["start_date"] > as_of - timedelta(days=c.look_back_days)
    if c.sources:
        ok = ok and fact["source"] in c.sources
    if c.statuses:
        ok = ok and fact.get("status") in c.statuses
    if c.value is not None:
        ops = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__, "=": float.__eq__}
        ok = ok and fact["value"] is not None and ops[c.value.op](float(fact["value"]), c.value.threshold)
    if c.min_nights:
        ok = ok and (fact["end_date"] - fact["start_date"]).days >= c.min_nights
    return ok


def test_explanations_cite_facts_that_exist_and_satisfy_their_rule(gold: dict) -> None:
    silver = {(t, r[f"{t}_id" if t != "note_fact" else "note_fact_id"]): r
              for t, rows in gold["builder"].rows.items() if t not in ("person", "death", "location") for r in rows}
    people = {r["person_id"] for r in gold["builder"].rows["person"]}
    rng = random.Random(8)
    drawn = set(rng.sample(sorted({r["person_id"] for r in gold["stratum"]}), 25))
    cited = [e for e in gold["evidence"] if e["person_id"] in drawn]
    assert cited, "the drawn persons have explanations"
    for e in cited:
        if e["fact_table"] == "person":
            assert e["event_id"] in people and _satisfies(e["criterion"], e, AS_OF)
            continue
        fact = silver.get((e["fact_table"], e["event_id"]))
        assert fact is not None, f"{e['criterion']}: cited fact {e['fact_table']}#{e['event_id']} is not in silver"
        assert fact["person_id"] == e["person_id"]
        assert (fact["start_date"], fact["source_code"]) == (e["fact_date"], e["source_code"])
        assert _satisfies(e["criterion"], fact, AS_OF), f"{e['criterion']} cited for {e['subject']}: {fact}"
    kinds = {(e["kind"]) for e in gold["evidence"]}
    assert kinds == {"population", "stratum", "action", "alert"}


def test_explanation_of_a_stratum_cites_what_made_it(gold: dict) -> None:
    rows = [e for e in gold["evidence"] if e["person_id"] == person_id("two_complications") and e["kind"] == "stratum"]
    assert {(e["subject"], e["criterion"], e["source_code"]) for e in rows} == {
        ("t2d:3", "t2d_retinopathy", "E11.3"), ("t2d:3", "t2d_neuropathy", "E11.4")}
    rows = [e for e in gold["evidence"] if e["person_id"] == person_id("amputation_not_diabetic")]
    assert not [e for e in rows if e["criterion"] == "amputation"], "an amputation that supports nothing is not cited"
    drugs = [e for e in gold["evidence"]
             if e["person_id"] == person_id("antidiabetics_3_dates") and e["criterion"] == "t2d_drugs"]
    assert len({e["fact_date"] for e in drugs}) == 3, "the three deliveries that make the rule are cited"


def test_incremental_rebuild_of_touched_persons_equals_a_full_run(spark: SparkSession, gold: dict,
                                                                   tmp_path: Path) -> None:
    lake = str(gold["lake"])
    touched = [person_id("hba1c_once"), person_id("man_over_45")]
    # a new result lands for one of them (as a lab-feed micro-batch would), then only they are recomputed
    extra = SilverBuilder(AS_OF)
    extra._n = 10_000
    extra.person("hba1c_once", "F", "1990-01", "59178", "lab 4548-4=7.5 -10")
    measurement = LakeTable(spark, "silver.measurement", lake_root=lake)
    schema = measurement.definition.spark_schema()
    rows = [{c: r.get(c) for c in schema.fieldNames()} for r in extra.rows["measurement"]]
    from pdp.lake import RunInfo

    measurement.append(spark.createDataFrame(rows, schema), run=RunInfo.new("tests", definitions_version="x"))
    build_gold(spark, as_of=AS_OF, lake_root=lake, persons=touched)
    incremental = {name: _rows(spark, lake, name) for name in ("stratum", "care_action", "evidence", "population")}
    build_gold(spark, as_of=AS_OF, lake_root=lake)
    full = {name: _rows(spark, lake, name) for name in ("stratum", "care_action", "evidence", "population")}
    assert incremental == full
    assert (str(person_id("hba1c_once")), "t2d", "1") in {(r[1], r[3], r[4]) for r in full["stratum"]}


def _rows(spark: SparkSession, lake: str, name: str) -> list[tuple]:
    frame = LakeTable(spark, f"gold.{name}", lake_root=lake).read().drop("definitions")
    return sorted(tuple(str(v) for v in r) for r in frame.collect())


def test_published_indicators_hide_small_counts_and_the_report_is_written(spark: SparkSession, gold: dict,
                                                                         tmp_path: Path) -> None:
    from pdp.algorithms.indicators import publish_indicators

    lake = str(gold["lake"])
    result = publish_indicators(spark, as_of=AS_OF, territory="Golden", lake_root=lake, report_dir=tmp_path)
    rows = [r.asDict() for r in LakeTable(spark, "gold.indicator", lake_root=lake).read().collect()]
    assert rows and result.rows == len(rows) and result.written
    assert not [r for r in rows if r["value"] is not None and 1 <= r["value"] <= 10], "a count of 1 to 10 is published"
    assert all((r["value"] is None) == r["suppressed"] for r in rows)
    pyramid = {r["category"]: r["value"] for r in rows
               if r["level"] == "territory" and r["topic"] == "t2d" and r["measure"] == "stratum_count"}
    strata = [r.asDict() for r in LakeTable(spark, "gold.stratum", lake_root=lake).read().collect()
              if r["pyramid"] == "t2d" and r["as_of"] == AS_OF]  # now: an earlier test may have added a person
    assert pyramid["Total"] == len(strata) and pyramid["1"] == sum(1 for r in strata if r["stratum"] == "1")
    per_gp = {(r["measure"], r["category"]): r["value"] for r in rows
              if r["level"] == "gp" and r["unit"] == "10000000001" and r["topic"] == "t2d"}
    assert per_gp[("stratum_count", "Total")] == len(strata), "every golden person has the same declared GP"
    ecg = sum(1 for r in LakeTable(spark, "gold.care_action", lake_root=lake).read().collect()
              if r["pathway"] == "t2d" and r["action"] == "ecg" and r["status"] != "overdue" and r["as_of"] == AS_OF)
    territory_ecg = next(r["value"] for r in rows if r["level"] == "territory" and r["measure"] == "action_status"
                         and r["category"] == "ecg" and r["status"] == "up_to_date")
    # one GP: its up-to-date count is the territory's, published (or hidden) in both tables alike
    assert per_gp[("action_up_to_date", "ecg")] == territory_ecg and territory_ecg in (ecg, None)
    assert result.report is not None and result.report.stat().st_size > 100_000
    html = result.report.read_text(encoding="utf-8")
    assert "Golden" in html and "chart-pyramid-t2d" in html
    again = publish_indicators(spark, as_of=AS_OF, territory="Golden", lake_root=lake)
    assert not again.written, "unchanged aggregates write no new version"


def test_patient_feedback_counts_each_respondent_once_in_their_stratum(spark: SparkSession, gold: dict) -> None:
    """silver.survey_answer x gold.stratum: the latest scale score in the window per person and questionnaire."""
    from pdp.algorithms.indicators import gold_counts
    from pdp.lake import RunInfo

    lake, defs = str(gold["lake"]), load_definitions()
    strata = {r["person_id"]: r["stratum"] for r in LakeTable(spark, "gold.stratum", lake_root=lake).read()
              .where(f"pyramid = 't2d' AND as_of = DATE '{AS_OF}'").collect()}
    table = LakeTable(spark, "silver.survey_answer", lake_root=lake).create()
    schema = table.definition.spark_schema()

    def answer(person: int, n: int, code: str, days_ago: int, value: float) -> dict:
        return {"survey_answer_id": 9_000_000 + n, "person_id": person, "person_pseudonym": f"v1:{person}",
                "vocabulary": "PDP-SURVEY", "source_code": code, "concept_id": 1,
                "start_date": AS_OF - timedelta(days=days_ago), "value": value, "status": "completed",
                "source": "questionnaires", "source_file": "questionnaires/dmp.ndjson", "record_hash": f"r1:{n}",
                "batch_id": "tests"}

    rows, expected = [], {}
    for n, (person, stratum) in enumerate(sorted(strata.items())):
        score = float(40 + n % 7 * 5)
        rows.append(answer(person, 4 * n, "prem_coordination@1/score", 30, score))  # the latest: counted
        rows.append(answer(person, 4 * n + 1, "prem_coordination@1/score", 200, 0.0))  # older, same year
        rows.append(answer(person, 4 * n + 2, "prem_coordination@1/score", 400, 100.0))  # out of the window
        rows.append(answer(person, 4 * n + 3, "prem_coordination@1/next_step", 30, 100.0))  # an item, not a scale
        count, total = expected.get(stratum, (0, 0.0))
        expected[stratum] = (count + 1, total + score)
    rows.append(answer(123456789, 10**6, "prem_coordination@1/score", 10, 90.0))  # nobody gold knows
    table.append(spark.createDataFrame(rows, schema), run=RunInfo.new("tests", definitions_version="x"))
    surveys = gold_counts(spark, as_of=AS_OF, lake_root=lake, defs=defs).surveys
    assert surveys is not None
    got = {r["stratum"]: (int(r["count"]), float(r["total"])) for r in surveys.to_dict("records")
           if r["pyramid"] == "t2d" and r["questionnaire"] == "prem_coordination@1"}
    assert got == expected and sum(c for c, _ in got.values()) == len(strata)


def test_realtime_alerts_follow_the_same_definitions_as_the_batch(spark: SparkSession, gold: dict) -> None:
    from pdp.algorithms.realtime import refresh_alerts
    from pdp.lake import RunInfo

    lake = str(gold["lake"])
    name = "hba1c_on_target_recent"
    extra = SilverBuilder(AS_OF)
    extra._n = 20_000
    extra.person(name, "F", "1950-03", "59178", "lab 4548-4=9.6 -1")
    measurement = LakeTable(spark, "silver.measurement", lake_root=lake)
    schema = measurement.definition.spark_schema()
    rows = [{c: r.get(c) for c in schema.fieldNames()} for r in extra.rows["measurement"]]
    measurement.append(spark.createDataFrame(rows, schema), run=RunInfo.new("tests", definitions_version="x"))
    done = refresh_alerts(spark, {pseudonym(name)}, as_of=AS_OF, lake_root=lake)
    assert (done.persons, done.alerts) == (1, 1)
    realtime = _rows(spark, lake, "alert")
    realtime_evidence = [r for r in _rows(spark, lake, "evidence") if r[3] == "alert"]
    build_gold(spark, as_of=AS_OF, lake_root=lake)
    assert realtime == _rows(spark, lake, "alert")
    assert realtime_evidence == [r for r in _rows(spark, lake, "evidence") if r[3] == "alert"]
    assert str(person_id(name)) in {r[1] for r in realtime}


def test_explain_a_person_by_pseudonym_or_id(spark: SparkSession, gold: dict) -> None:
    from pdp.algorithms.explain import PersonNotFound, explain_person

    lake = str(gold["lake"])
    by_id = explain_person(spark, str(person_id("two_complications")), lake_root=lake)
    found = explain_person(spark, pseudonym("two_complications"), lake_root=lake)
    assert found.as_json() == by_id.as_json()
    body = found.as_json()
    assert body["as_of"] == AS_OF.isoformat() and body["person_pseudonym"] == pseudonym("two_complications")
    strata = {s["pyramid"]: s for s in body["strata"]}
    assert strata["t2d"]["stratum"] == "3" and strata["t2d"]["rule_id"] == "pyramid.t2d.3@1"
    assert {f["criterion"] for f in strata["t2d"]["facts"]} == {"t2d_retinopathy", "t2d_neuropathy"}
    assert {a["action"] for a in body["actions"]} == {"hba1c", "blood_panel", "ecg", "monofilament", "fundus",
                                                      "influenza_vaccine", "pneumococcal_vaccine"}
    assert all(a["status"] == "overdue" and a["last_done"] is None for a in body["actions"])
    assert "name" not in str(body).lower() and "nir" not in body
    with pytest.raises(PersonNotFound):
        explain_person(spark, "123", lake_root=lake)


def _cells(frame: Any) -> list[tuple]:  # a pandas frame of counts
    return sorted(tuple(str(v) for v in r) for r in frame[sorted(frame.columns)].itertuples(index=False))


def test_the_trend_runs_the_same_sql_on_duckdb_at_each_month_end(spark: SparkSession, gold: dict) -> None:
    from pdp.algorithms.compile import DuckDBDialect, compile_pipeline
    from pdp.algorithms.indicators import gold_counts
    from pdp.algorithms.trend import compute_trend, duckdb_counts, load_silver, month_ends, needed_steps

    lake = str(gold["lake"])
    defs = load_definitions()
    build_gold(spark, as_of=AS_OF, lake_root=lake)  # gold up to date with silver (an earlier test adds a fact)
    kept = {s.name for s in needed_steps(compile_pipeline(defs, as_of=AS_OF, dialect=DuckDBDialect()))}
    assert {"out_stratum", "out_care_action", "persons"} <= kept
    # `cited` stays: the criteria that hold are those with a cited fact (`flags` reads it)
    assert not kept & {"out_evidence", "citations", "out_alert"}, "the aggregates need no explanation"
    con, _ = load_silver(spark, lake)
    try:
        now = duckdb_counts(con, defs, AS_OF)
        earlier = duckdb_counts(con, defs, date(2026, 5, 31))
    finally:
        con.close()
    spark_now = gold_counts(spark, as_of=AS_OF, lake_root=lake)
    assert _cells(now.strata) == _cells(spark_now.strata), "DuckDB and Spark disagree on the strata counts"
    assert _cells(now.actions) == _cells(spark_now.actions), "DuckDB and Spark disagree on the action counts"

    def diabetics(counts: Any) -> int:
        s = counts.strata
        return int(s[(s["pyramid"] == "t2d") & (s["stratum"] != "at_risk")]["count"].sum())

    # the pathway cases are diagnosed 10 days before the as-of date: not yet diabetic on 31 May
    assert diabetics(earlier) < diabetics(now)
    assert diabetics(now) - diabetics(earlier) >= len(_table(ACTIONS)) - 4

    result = compute_trend(spark, as_of=AS_OF, months=12, territory="Golden", lake_root=lake)
    assert result.dates == month_ends(AS_OF, 12) and len(result.dates) == 11 and result.dates[-1] == date(2026, 5, 31)
    assert result.written and result.rows > 0
    where = "as_of < DATE '2026-06-30'"
    stored = [r.asDict() for r in LakeTable(spark, "gold.indicator", lake_root=lake).read().where(where).collect()]
    assert {r["as_of"] for r in stored} == set(result.dates) and len(stored) == result.rows
    assert not [r for r in stored if r["value"] is not None and 1 <= r["value"] <= 10], "a count of 1 to 10 is published"
    assert not compute_trend(spark, as_of=AS_OF, months=12, territory="Golden", lake_root=lake).written, \
        "unchanged silver: the stored points are kept"
