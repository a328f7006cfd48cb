"""The definitions load, cross-check, fail closed with one line naming file and field, and compile
to SQL that DuckDB accepts as it is (the same SQL Spark runs, dates aside)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pdp.algorithms import DefinitionError, DuckDBDialect, compile_pipeline, load_definitions
from pdp.algorithms.expr import ExprError, citations, parse_expr

_DEFS = Path(__file__).resolve().parents[2] / "pdp" / "algorithms" / "definitions"
_REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def defs_copy(tmp_path: Path) -> Path:
    target = tmp_path / "definitions"
    shutil.copytree(_DEFS, target)
    return target


def test_the_shipped_definitions_load_with_versions_and_look_backs() -> None:
    defs = load_definitions()
    assert set(defs.populations) == {"t2d", "t2d_at_risk", "hf", "hf_at_risk"}
    assert [s.stratum for s in defs.pyramids["t2d"].strata] == ["4", "3", "2", "1", "at_risk"]
    assert [s.stratum for s in defs.pyramids["hf"].strata] == ["4", "3", "2", "1"]
    assert all(p.look_back_days > 0 and p.version >= 1 for p in defs.populations.values())
    assert defs.population_order() == [["hf", "t2d"], ["hf_at_risk", "t2d_at_risk"]]
    assert defs.version.startswith("defs-") and defs.versions()["pyramid.t2d"] == "1"


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("populations/t2d.yml", ("evidence_hierarchy:", "evidence_hierarchie:"), "populations/t2d.yml: evidence_hierarchie: Extra inputs"),
        ("populations/t2d.yml", ("- t2d_hba1c\nexclude", "- t2d_hba1cc\nexclude"), "populations/t2d.yml: include: unknown criterion 't2d_hba1cc'"),
        ("pyramids/t2d.yml", ("population: t2d_at_risk", "population: t2d_at_rsk"), "pyramids/t2d.yml: strata[at_risk].population: unknown population"),
        ("pyramids/hf.yml", ("when: hf_hospitalisations", "when: {any: []}"), "pyramids/hf.yml: strata[4].when.any: expected a non-empty list"),
        ("pathways/t2d.yml", ("days: 91", "days: 0"), "pathways/t2d.yml: actions.0.intervals.0.days"),
        ("pathways/hf.yml", ("done_by: echo_done", "done_by: adult"), "pathways/hf.yml: actions.echo.done_by: 'adult' is not an event criterion"),
        ("criteria.yml", ("concepts: [hba1c]\n    value", "concepts: [hba1k]\n    value"), "criteria.yml: criteria.t2d_hba1c.concepts: unknown concept set 'hba1k'"),
        ("criteria.yml", ("    min_dates: 3\n", "    min_dates: 3\n    min_date: 3\n"), "criteria.yml: criteria.t2d_drugs.min_date: Extra inputs"),
        ("alerts/hba1c_high.yml", ("severity: high", "severity: urgent"), "alerts/hba1c_high.yml: severity"),
    ],
    ids=["unknown-key", "unknown-criterion", "unknown-population", "empty-any", "bad-interval", "person-as-action",
         "unknown-concept", "criterion-typo", "bad-enum"],
)
def test_a_bad_definition_stops_with_one_line_naming_file_and_field(
    defs_copy: Path, file: str, edit: tuple[str, str], message: str
) -> None:
    path = defs_copy / file
    text = path.read_text(encoding="utf-8")
    assert edit[0] in text, "the test edits a line that exists"
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definitions(defs_copy)
    line = str(caught.value)
    assert "\n" not in line
    assert message.split(": ", 1)[1] in line and file in line, line


def test_population_cycles_are_refused(defs_copy: Path) -> None:
    path = defs_copy / "populations" / "hf.yml"
    path.write_text(path.read_text().replace("include: {any: [hf_dx,", "include: {any: [{population: hf_at_risk}, hf_dx,"))
    with pytest.raises(DefinitionError, match="cycle"):
        load_definitions(defs_copy)


def test_pdp_run_with_a_bad_definitions_dir_prints_one_line_and_exits_2(defs_copy: Path, tmp_path: Path) -> None:
    path = defs_copy / "populations" / "hf.yml"
    path.write_text(path.read_text().replace("version: 1", "version: one"))
    env = {"PATH": "/usr/bin:/bin", "PDP_DEFINITIONS_DIR": str(defs_copy), "PDP_VAR_DIR": str(tmp_path)}
    done = subprocess.run([str(Path(sys.executable).with_name("pdp")), "run"], capture_output=True, text=True, env=env,
                          cwd=_REPO, check=False, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "populations/hf.yml: version:" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("raw", "error"),
    [({"any": "a"}, "expected a non-empty list"), ({"at_least": 3, "of": ["a", "b"]}, "at least 3"),
     ({"anyy": ["a"]}, "unknown rule form"), ("A-b", "lower-case name"), ({"stratum": 4}, "in quotes")],
)
def test_rule_language_errors(raw: object, error: str) -> None:
    with pytest.raises(ExprError, match=error):
        parse_expr(raw, "when")


def test_citations_skip_negated_branches_and_guard_conjunctions() -> None:
    rule = parse_expr({"any": ["a", {"all": ["b", {"not": "c"}]}, {"at_least": 2, "of": ["d", "e", "f"]}]}, "w")
    assert [(name, [g.op for g in guards]) for name, guards in citations(rule)] == [
        ("a", []), ("b", ["all"]), ("d", ["at_least"]), ("e", ["at_least"]), ("f", ["at_least"]),
    ]


def test_the_compiled_sql_runs_in_duckdb_on_empty_inputs() -> None:
    import duckdb

    from pdp.lake import load_catalog

    catalog = load_catalog()
    con = duckdb.connect()
    from pdp.algorithms.gold import SILVER_INPUTS

    for relation, name in SILVER_INPUTS.items():
        cols = ", ".join(f"{c.name} {_duck_type(c.type)}" for c in catalog.table(name).columns)
        con.execute(f"CREATE TABLE {relation} ({cols})")
    for step in compile_pipeline(load_definitions(), as_of=date(2026, 6, 30), dialect=DuckDBDialect()):
        con.execute(f"CREATE TABLE {step.name} AS {step.sql}")
    for out in ("out_population", "out_stratum", "out_care_action", "out_alert", "out_evidence"):
        assert con.execute(f"SELECT count(*) FROM {out}").fetchone() == (0,)


def _duck_type(spark_type: str) -> str:
    return {"STRING": "VARCHAR", "ARRAY<STRING>": "VARCHAR[]"}.get(spark_type, spark_type)
