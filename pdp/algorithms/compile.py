"""Compile the definitions into one pipeline of named SQL steps, for any engine.

Why SQL steps built once and run by an engine: the same definitions drive the Spark gold build,
the DuckDB reference of `pdp bench gold` and the incremental rebuild; building the SQL apart
from running it keeps them one logic (Splink's way). No Python loop over persons: every step
is a set operation, and the engine plans it.

The pipeline reads nine input relations (silver tables, registered by the runner):
``in_person, in_death, in_location, in_condition, in_procedure, in_drug, in_measurement,
in_observation, in_note_fact`` and, when `scoped`, ``in_scope(person_id)`` restricting the
persons recomputed. Its outputs are the relations named in `OUTPUTS`:

- ``out_population``: one row per person and population they belong to
- ``out_stratum``: one row per person and pyramid (their one stratum, the rule that fired)
- ``out_care_action``: one row per person on a pathway and action (last done, next due, status)
- ``out_alert``: one row per person and alert
- ``out_evidence``: the facts behind every row above (table, event id, date, source, code, value)

>>> from datetime import date
>>> from pdp.algorithms.model import load_definitions
>>> steps = compile_pipeline(load_definitions(), as_of=date(2026, 6, 30), dialect=SparkDialect())
>>> [s.name for s in steps][:3]
['facts', 'codes', 'code_criteria']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pdp.algorithms.dialect import Dialect, DuckDBDialect, SparkDialect
from pdp.algorithms.expr import Expr, citations, parse_expr, to_sql
from pdp.algorithms.model import Criterion, Definitions
from pdp.semantic import concept_members_sql

__all__ = ["INPUTS", "OUTPUTS", "DuckDBDialect", "SparkDialect", "Step", "compile_pipeline"]

INPUTS = (
    "in_person", "in_death", "in_location", "in_condition", "in_procedure", "in_drug",
    "in_measurement", "in_observation", "in_note_fact",
)
OUTPUTS = ("out_population", "out_stratum", "out_care_action", "out_alert", "out_registry", "out_evidence")

# silver table per domain: (input relation, silver table name, id column, value column or None)
_DOMAINS: dict[str, tuple[str, str, str, str | None]] = {
    "condition": ("in_condition", "condition_occurrence", "condition_occurrence_id", None),
    "procedure": ("in_procedure", "procedure_occurrence", "procedure_occurrence_id", None),
    "drug": ("in_drug", "drug_exposure", "drug_exposure_id", None),
    "measurement": ("in_measurement", "measurement", "measurement_id", "value"),
    "observation": ("in_observation", "observation", "observation_id", "value"),
    "text": ("in_note_fact", "note_fact", "note_fact_id", "value"),
}


@dataclass(frozen=True)
class Step:
    """One named relation of the pipeline: `CREATE VIEW name AS sql` in any engine."""

    name: str
    sql: str
    materialise: bool = False  # worth caching: read by several later steps


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(_q(v) for v in values)})"


# the columns of a cited fact
_CITED = ("r.person_id, r.criterion, r.fact_table, r.event_id, r.start_date, r.source, r.vocabulary, "
          "r.source_code, r.value")


def _cmp(left: str, test_op: str, threshold: float) -> str:
    return f"{left} {test_op} {threshold!r}"


class _Compiler:
    def __init__(self, defs: Definitions, as_of: date, dialect: Dialect, scoped: bool) -> None:
        self.defs = defs
        self.d = dialect
        self.as_of = dialect.date(as_of)
        self.scoped = scoped
        self.events = {n: c for n, c in defs.criteria.items() if c.kind != "person"}
        self.persons = {n: c for n, c in defs.criteria.items() if c.kind == "person"}

    # -- facts ------------------------------------------------------------------------------

    def facts(self) -> Step:
        scope = " AND person_id IN (SELECT person_id FROM in_scope)" if self.scoped else ""
        parts = []
        for domain, (relation, table, id_col, value_col) in _DOMAINS.items():
            value = f"CAST({value_col} AS DOUBLE)" if value_col else "CAST(NULL AS DOUBLE)"
            extra = " AND assertion = 'affirmed'" if domain == "text" else ""
            end = "CAST(NULL AS DATE)" if domain == "text" else "end_date"
            parts.append(
                f"SELECT person_id, '{domain}' AS domain, '{table}' AS fact_table, {id_col} AS event_id, "
                f"vocabulary, source_code, start_date, {end} AS end_date, {value} AS value, status, source "
                f"FROM {relation} WHERE start_date <= {self.as_of}{extra}{scope}"
            )
        return Step("facts", "\nUNION ALL\n".join(parts))

    def codes(self) -> Step:
        # materialised: each of the ~50 criteria reads it, and a view would re-scan silver for each
        return Step("codes", "SELECT DISTINCT domain, vocabulary, source_code FROM facts", materialise=True)

    def code_criteria(self) -> Step:
        """A row per distinct code and criterion it is a member of (a code may serve several)."""
        rows = []
        for name, c in self.events.items():
            members = concept_members_sql(c.concepts, "vocabulary", "source_code")
            excluded = (
                f" AND NOT {concept_members_sql(c.exclude_concepts, 'vocabulary', 'source_code')}"
                if c.exclude_concepts else ""
            )
            rows.append((f"{_in('domain', list(c.domains))} AND {members}{excluded}", {"criterion": _q(name)}))
        return Step("code_criteria", self.d.rows_where("codes", ["domain", "vocabulary", "source_code"], rows),
                    materialise=True)

    def _fact_test(self, c: Criterion) -> str:
        tests = []
        if c.look_back_days is not None:
            tests.append(f"f.start_date > {self.d.minus_days(self.as_of, c.look_back_days)}")
        if c.sources:
            tests.append(_in("f.source", c.sources))
        if c.statuses:
            tests.append(_in("f.status", c.statuses))
        if c.min_nights:
            tests.append(f"{self.d.days_between('f.end_date', 'f.start_date')} >= {c.min_nights}")
        if c.value:
            tests.append(_cmp("f.value", c.value.op, c.value.threshold))
        if c.latest or c.change:
            tests.append("f.value IS NOT NULL")
        return " AND ".join(tests) or "TRUE"

    def matched(self) -> Step:
        cases = " ".join(f"WHEN '{n}' THEN ({self._fact_test(c)})" for n, c in self.events.items())
        # Not materialised: the ranking reads it once, straight from the shuffle that distributes
        # it by person (keeping every matched fact, then reading it again, cost 4-7 s at 1 M persons).
        # Only the columns later steps read: every matched fact crosses that shuffle.
        return Step(
            "matched",
            f"SELECT {self.d.broadcast('m')}f.person_id, f.fact_table, f.event_id, f.vocabulary, "
            "f.source_code, f.start_date, f.value, f.source, m.criterion FROM facts f JOIN code_criteria m "
            "ON f.domain = m.domain AND f.vocabulary = m.vocabulary AND f.source_code = m.source_code "
            f"WHERE CASE m.criterion {cases} ELSE FALSE END{self.d.distribute_by('person_id')}",
        )

    # -- criteria per person ----------------------------------------------------------------

    def _names(self, kind: str) -> list[str]:
        return [n for n, c in self.events.items() if c.kind == kind]

    def ranked(self) -> Step:
        """Matched facts numbered per person and criterion, in one sort.

        ``date_rank``: the fact's date among the criterion's distinct dates, newest first;
        ``same_day``: 1 for the fact that speaks for its date (the last recorded one: highest
        event id); ``n_dates``: how many distinct dates the criterion has. From these alone a
        criterion holds or not and its cited facts are chosen, without grouping the facts
        (a distinct count) and joining the groups back to them.
        """
        # One sort serves every window: the innermost orders by (date, event id), and the windows
        # above it order by a prefix of that, which an engine recognises (Spark sorted twice when
        # `same_day` was a row number partitioned by date). A fact is first of its date when its
        # row number equals its date's rank.
        by = "PARTITION BY person_id, criterion"
        return Step(
            "ranked",
            f"SELECT *, max(date_rank) OVER ({by}) AS n_dates FROM ("
            f"SELECT *, dense_rank() OVER ({by} ORDER BY start_date DESC) AS date_rank, "
            f"CASE WHEN row_order = rank() OVER ({by} ORDER BY start_date DESC) THEN 1 ELSE 0 END AS same_day FROM ("
            f"SELECT *, row_number() OVER ({by} ORDER BY start_date DESC, event_id DESC) AS row_order "
            "FROM matched) o) t",
        )

    def citable(self) -> Step:
        """The facts a criterion may cite, the first relation kept after the matching: the cited facts
        of the dated and latest-value criteria, and every fact of the change criteria (their pairs
        are chosen next, from these alone).

        - ``events``: the facts of the `cite` most recent distinct dates, when there are at least
          `min_dates` of them;
        - ``latest``: the most recent fact, when its value passes the test.
        """
        tests = [
            f"WHEN '{n}' THEN (r.n_dates >= {self.events[n].min_dates} AND r.date_rank <= {self.events[n].cite})"
            for n in self._names("events")
        ]
        for n in self._names("latest"):
            latest = self.events[n].latest
            assert latest is not None
            tests.append(f"WHEN '{n}' THEN (r.date_rank = 1 AND {_cmp('r.value', latest.op, latest.threshold)})")
        tests += [f"WHEN '{n}' THEN TRUE" for n in self._names("change")]
        keep = f"CASE r.criterion {' '.join(tests)} ELSE FALSE END" if tests else "FALSE"
        return Step("citable", f"SELECT {_CITED} FROM ranked r WHERE (r.same_day = 1 OR {self._is_change('r')}) "
                    f"AND {keep}", materialise=True)

    def _is_change(self, alias: str) -> str:
        change = self._names("change")
        return _in(f"{alias}.criterion", change) if change else "FALSE"

    def change_facts(self) -> Step | None:
        """The facts of the change criteria: the pairs join them to themselves, the citations read them again."""
        if not self._names("change"):
            return None
        return Step("change_facts", f"SELECT * FROM citable r WHERE {self._is_change('r')}")

    def change_pairs(self) -> Step | None:
        change = self._names("change")
        if not change:
            return None
        cases = []
        for n in change:
            ch = self.events[n].change
            assert ch is not None
            gap = self.d.days_between("b.start_date", "a.start_date")
            recent = f"b.start_date > {self.d.minus_days(self.as_of, ch.recent_days)}"
            if ch.absolute is not None:
                amount = (f"b.value - a.value > {ch.absolute!r}" if ch.direction == "rise"
                          else f"a.value - b.value > {ch.absolute!r}")
            else:
                rel = ch.relative or 0.0
                amount = (f"b.value > a.value * {1 + rel!r}" if ch.direction == "rise"
                          else f"b.value < a.value * {1 - rel!r}")
            cases.append(f"WHEN '{n}' THEN ({gap} >= 1 AND {gap} <= {ch.within_days} AND {recent} AND {amount})")
        return Step(
            "change_pairs",
            "SELECT a.person_id, a.criterion, a.event_id AS earlier_id, b.event_id AS later_id, "
            "a.start_date AS earlier_date, b.start_date AS later_date, "
            "row_number() OVER (PARTITION BY a.person_id, a.criterion ORDER BY b.start_date DESC, "
            "a.start_date DESC, b.event_id, a.event_id) AS pair_rank "
            "FROM change_facts a JOIN change_facts b ON a.person_id = b.person_id AND a.criterion = b.criterion "
            f"WHERE {_in('a.criterion', change)} AND CASE a.criterion {' '.join(cases)} ELSE FALSE END",
        )

    def cited(self) -> Step:
        """The facts an explanation cites for each criterion that holds (and only those: a criterion
        holds exactly when it has a cited fact, see `flags`): the citable facts of the dated and
        latest-value criteria (see `citable`), and the two facts of each change criterion's most
        recent qualifying pair.
        """
        parts = [f"SELECT {_CITED} FROM citable r WHERE NOT {self._is_change('r')}"]
        if self._names("change"):
            parts.append(
                f"SELECT {_CITED} FROM change_facts r JOIN change_pairs p ON r.person_id = p.person_id "
                "AND r.criterion = p.criterion AND (r.event_id = p.earlier_id OR r.event_id = p.later_id) "
                "WHERE p.pair_rank = 1"
            )
        return Step("cited", "\nUNION ALL\n".join(parts) + self.d.distribute_by("person_id"), materialise=True)

    # -- persons, populations, strata ---------------------------------------------------------

    def people(self) -> Step:
        scope = " WHERE p.person_id IN (SELECT person_id FROM in_scope)" if self.scoped else ""
        age = (f"CAST(floor(((year({self.as_of}) - p.year_of_birth) * 12 + month({self.as_of}) "
               "- p.month_of_birth) / 12.0) AS INTEGER)")
        return Step(
            "people",
            "SELECT p.person_id, p.person_pseudonym, p.gender, p.location_id, p.gp_rpps, "
            f"{age} AS age, d.person_id IS NULL AS alive, "
            "(p.location_id IS NULL OR l.location_id IS NOT NULL) AS resident "
            "FROM in_person p "
            f"LEFT JOIN (SELECT DISTINCT person_id FROM in_death WHERE death_date <= {self.as_of}) d "
            "ON p.person_id = d.person_id "
            "LEFT JOIN (SELECT DISTINCT location_id FROM in_location) l ON p.location_id = l.location_id"
            f"{scope}",
        )

    def _person_test(self, c: Criterion) -> str:
        assert c.person is not None
        tests = []
        if c.person.sex:
            tests.append(f"p.gender = {_q(c.person.sex)}")
        if c.person.min_age is not None:
            tests.append(f"p.age >= {c.person.min_age}")
        if c.person.max_age is not None:
            tests.append(f"p.age <= {c.person.max_age}")
        return "(" + " AND ".join(tests or ["TRUE"]) + ")"

    def flags(self) -> Step:
        # A criterion holds exactly when it has a cited fact, and each holding criterion cites its
        # most recent date (`cite` >= 1; a change pair's later fact is the most recent of the
        # qualifying pairs): the latest cited date per person and criterion, pivoted, gives every
        # flag (a date or none) and every date an action needs.
        cols = [f"h.d_{n} IS NOT NULL AS c_{n}" for n in self.events]
        cols += [f"COALESCE({self._person_test(c)}, FALSE) AS c_{n}" for n, c in self.persons.items()]
        dates = [f"h.d_{n}" for n in self._done_by()]
        latest = self.d.pivot_max("cited", "person_id", "criterion", "start_date", list(self.events), "d_")
        return Step(
            "flags",
            f"SELECT p.*, {', '.join(cols + dates)} FROM people p LEFT JOIN ({latest}) h ON p.person_id = h.person_id",
        )

    def _done_by(self) -> list[str]:
        return sorted({a.done_by for pw in self.defs.pathways.values() for a in pw.actions})

    @staticmethod
    def _crit(name: str) -> str:
        return f"c_{name}"

    @staticmethod
    def _pop(name: str) -> str:
        return f"p_{name}"

    def populations(self) -> list[Step]:
        steps = []
        source = "flags"
        for i, level in enumerate(self.defs.population_order()):
            cols = []
            for name in level:
                pop = self.defs.populations[name]
                rule = f"(alive AND resident AND {to_sql(pop.include_rule, self._crit, self._pop)}"
                if pop.exclude_rule is not None:
                    rule += f" AND NOT {to_sql(pop.exclude_rule, self._crit, self._pop)}"
                cols.append(f"COALESCE({rule}), FALSE) AS p_{name}")
            name = f"populations_{i}"
            steps.append(Step(name, f"SELECT *, {', '.join(cols)} FROM {source}"))
            source = name
        strata = []
        for pyr in self.defs.pyramids.values():
            whens = " ".join(
                f"WHEN p_{s.population} AND {to_sql(s.rule, self._crit, self._pop)} THEN {_q(s.stratum)}"
                for s in pyr.strata
            )
            strata.append(f"CASE {whens} END AS s_{pyr.name}")
        steps.append(Step("persons", f"SELECT *, {', '.join(strata)} FROM {source}{self.d.distribute_by('person_id')}",
                          materialise=True))
        return steps

    # -- outputs ----------------------------------------------------------------------------

    def out_population(self) -> Step:
        parts = []
        for name, pop in self.defs.populations.items():
            first = " ".join(f"WHEN c_{c} THEN {_q(c)}" for c in pop.evidence_hierarchy)
            parts.append(
                f"SELECT person_id, person_pseudonym, {_q(name)} AS population, {_q(pop.rule_id)} AS rule_id, "
                f"CASE {first} END AS primary_evidence, {pop.version} AS definition_version, location_id, gp_rpps "
                f"FROM persons WHERE p_{name}"
            )
        return Step("out_population", "\nUNION ALL\n".join(parts))

    def out_stratum(self) -> Step:
        parts = []
        for pyr in self.defs.pyramids.values():
            rule = " ".join(f"WHEN {_q(s.stratum)} THEN {_q(pyr.rule_id(s.stratum))}" for s in pyr.strata)
            parts.append(
                f"SELECT person_id, person_pseudonym, {_q(pyr.name)} AS pyramid, s_{pyr.name} AS stratum, "
                f"CASE s_{pyr.name} {rule} END AS rule_id, {pyr.version} AS definition_version, location_id, gp_rpps "
                f"FROM persons WHERE s_{pyr.name} IS NOT NULL"
            )
        return Step("out_stratum", "\nUNION ALL\n".join(parts))

    def out_care_action(self) -> Step:
        # a row per action of the person's pathway (`Dialect.rows_where`: one pass over `persons` on Spark)
        rows: list[tuple[str, dict[str, str]]] = []
        for pw in self.defs.pathways.values():
            stratum = f"s_{pw.pyramid}"

            def in_stratum(s: str, col: str = stratum) -> str:
                return f"{col} = {_q(s)}"

            for a in pw.actions:
                days = " ".join(
                    f"WHEN {to_sql(i.rule, self._crit, self._pop, in_stratum)} THEN {i.days}" for i in a.intervals
                )
                rule = " ".join(
                    f"WHEN {to_sql(i.rule, self._crit, self._pop, in_stratum)} "
                    f"THEN {_q(pw.interval_rule_id(a.action, k))}"
                    for k, i in enumerate(a.intervals)
                )
                rows.append((_in(stratum, pw.strata), {
                    "pathway": _q(pw.name), "stratum": stratum, "action": _q(a.action),
                    "professional": _q(a.professional), "interval_days": f"CASE {days} END",
                    "rule_id": f"CASE {rule} END", "last_done": f"d_{a.done_by}",
                    "definition_version": str(pw.version), "due_soon_days": str(pw.due_soon_days),
                }))
        keep = ["person_id", "person_pseudonym", "location_id", "gp_rpps"]
        none = ("SELECT person_id, person_pseudonym, location_id, gp_rpps, '' AS pathway, '' AS stratum, "
                "'' AS action, '' AS professional, 0 AS interval_days, '' AS rule_id, CAST(NULL AS DATE) AS last_done, "
                "0 AS definition_version, 0 AS due_soon_days FROM persons WHERE FALSE")
        actions = self.d.rows_where("persons", keep, rows) if rows else none
        due = f"COALESCE({self.d.plus_days('last_done', 'interval_days')}, {self.as_of})"
        return Step(
            "out_care_action",
            f"SELECT person_id, person_pseudonym, pathway, stratum, action, professional, interval_days, rule_id, "
            f"last_done, {due} AS next_due, CASE WHEN last_done IS NULL OR {due} < {self.as_of} THEN 'overdue' "
            f"WHEN {due} <= {self.d.plus_days(self.as_of, 'due_soon_days')} THEN 'due' ELSE 'up_to_date' END "
            f"AS status, definition_version, location_id, gp_rpps FROM ({actions}) a"
            f"{self.d.distribute_by('person_id')}",
            materialise=True,
        )

    def out_alert(self) -> Step:
        parts = []
        for name, alert in self.defs.alerts.items():
            head = (f"{_q(name)} AS alert, {_q(alert.severity)} AS severity, {_q(alert.professional)} AS professional, "
                    f"{_q(alert.rule_id)} AS rule_id, {alert.version} AS definition_version")
            if alert.rule is not None:
                parts.append(
                    f"SELECT person_id, person_pseudonym, {head}, location_id, gp_rpps FROM persons "
                    f"WHERE {to_sql(alert.rule, self._crit, self._pop)}"
                )
            else:
                assert alert.overdue is not None
                parts.append(
                    f"SELECT DISTINCT person_id, person_pseudonym, {head}, location_id, gp_rpps FROM out_care_action "
                    f"WHERE status = 'overdue' AND {_in('stratum', alert.overdue.strata)}"
                )
        return Step("out_alert", "\nUNION ALL\n".join(parts))

    def out_registry(self) -> Step:
        """Members of each PSI registry: stratum, rule and overdue actions (see `Registry`)."""
        parts = []
        for name, reg in self.defs.registries.items():
            tests = [_in(f"s_{reg.pyramid}", reg.strata)]
            if reg.rule is not None:
                tests.append(to_sql(reg.rule, self._crit, self._pop))
            if reg.overdue is not None:
                tests.append(
                    f"person_id IN (SELECT person_id FROM out_care_action WHERE status = 'overdue' AND pathway = "
                    f"{_q(reg.overdue.pathway)} AND {_in('action', reg.overdue.actions)})"
                )
            parts.append(
                f"SELECT person_id, person_pseudonym, {_q(name)} AS registry, {_q(reg.rule_id)} AS rule_id, "
                f"{reg.version} AS definition_version, location_id, gp_rpps FROM persons WHERE {' AND '.join(tests)}"
            )
        if not parts:  # no registry declared: an empty relation of the same shape
            parts.append("SELECT person_id, person_pseudonym, '' AS registry, '' AS rule_id, 0 AS definition_version, "
                         "location_id, gp_rpps FROM persons WHERE FALSE")
        return Step("out_registry", "\nUNION ALL\n".join(parts))

    def citations(self) -> Step:
        """(person, kind, subject, rule, criterion) for every criterion a published decision cites.

        A row per citation that holds (`Dialect.rows_where`: one pass over `persons` on Spark),
        joined to the facts once afterwards: a join per citation made a plan of ~70 joins that took
        Spark longer to analyse than to run.
        """
        rows: list[tuple[str, dict[str, str]]] = []

        def cite(kind: str, subject: str, rule_id: str, where: str, rule: Expr) -> None:
            for crit, guards in citations(rule):
                guard = " AND ".join(to_sql(g, self._crit, self._pop) for g in guards) or "TRUE"
                rows.append((f"({where}) AND c_{crit} AND {guard}",
                             {"kind": _q(kind), "subject": subject, "rule_id": rule_id, "criterion": _q(crit)}))

        for name, pop in self.defs.populations.items():
            cite("population", _q(name), _q(pop.rule_id), f"p_{name}",
                 parse_expr({"any": list(pop.evidence_hierarchy)}, "evidence"))
        for pyr in self.defs.pyramids.values():
            for s in pyr.strata:
                if s.rule.op != "true":
                    cite("stratum", _q(f"{pyr.name}:{s.stratum}"), _q(pyr.rule_id(s.stratum)),
                         f"s_{pyr.name} = {_q(s.stratum)}", s.rule)
        for name, alert in self.defs.alerts.items():
            if alert.rule is not None:
                cite("alert", _q(name), _q(alert.rule_id), to_sql(alert.rule, self._crit, self._pop), alert.rule)
        for name, reg in self.defs.registries.items():
            if reg.rule is not None:
                cite("registry", _q(name), _q(reg.rule_id),
                     f"{_in(f's_{reg.pyramid}', reg.strata)} AND {to_sql(reg.rule, self._crit, self._pop)}", reg.rule)
        if not rows:
            return Step("citations", "SELECT person_id, person_pseudonym, '' AS kind, '' AS subject, '' AS rule_id, "
                                     "'' AS criterion FROM persons WHERE FALSE")
        return Step(
            "citations",
            "SELECT * FROM (" + self.d.rows_where("persons", ["person_id", "person_pseudonym"], rows) + ") c"
            + self.d.distribute_by("person_id"),
            materialise=True,
        )

    def out_evidence(self) -> Step:
        """Facts behind every population, stratum, action and alert (long form, engine-neutral)."""
        fact_cols = ("c.criterion, c.fact_table, c.event_id, c.start_date AS fact_date, c.source, c.vocabulary, "
                     "c.source_code, c.value")
        head = "x.person_id, x.person_pseudonym, x.kind, x.subject, x.rule_id"
        persons = ", ".join(_q(n) for n in self.persons) or "''"
        parts = [
            f"SELECT {head}, {fact_cols} FROM citations x JOIN cited c "
            "ON c.person_id = x.person_id AND c.criterion = x.criterion",
            f"SELECT {head}, x.criterion, 'person' AS fact_table, x.person_id AS event_id, "
            "CAST(NULL AS DATE) AS fact_date, CAST(NULL AS STRING) AS source, CAST(NULL AS STRING) AS vocabulary, "
            "CAST(NULL AS STRING) AS source_code, CAST(NULL AS DOUBLE) AS value "
            f"FROM citations x WHERE x.criterion IN ({persons})",
        ]
        done_by = " ".join(f"WHEN x.pathway = {_q(pw.name)} AND x.action = {_q(a.action)} THEN {_q(a.done_by)}"
                           for pw in self.defs.pathways.values() for a in pw.actions)
        parts.append(
            "SELECT x.person_id, x.person_pseudonym, 'action' AS kind, x.pathway || '.' || x.action AS subject, "
            f"x.rule_id, {fact_cols} FROM out_care_action x JOIN cited c ON c.person_id = x.person_id "
            f"AND c.criterion = CASE {done_by} END AND c.start_date = x.last_done"
        )
        return Step("out_evidence", "\nUNION ALL\n".join(parts))

    def steps(self) -> list[Step]:
        out = [self.facts(), self.codes(), self.code_criteria(), self.matched(), self.ranked(), self.citable()]
        out += [s for s in (self.change_facts(), self.change_pairs()) if s is not None]
        out += [self.cited(), self.people(), self.flags(), *self.populations()]
        out += [self.out_population(), self.out_stratum(), self.out_care_action(), self.out_alert(),
                self.out_registry(), self.citations(), self.out_evidence()]
        return out


def compile_pipeline(defs: Definitions, *, as_of: date, dialect: Dialect, scoped: bool = False) -> list[Step]:
    """The named SQL steps computing every gold relation at `as_of` (see the module docstring)."""
    return _Compiler(defs, as_of, dialect, scoped).steps()
