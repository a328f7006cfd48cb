"""Disclosure control of published count tables: golden cases, and an attacker who solves linear programmes.

The attacker sees what is published (cells, row and column totals, grand total, with holes) and knows that
counts are non-negative. For each hole it computes the smallest and largest value consistent with all that
(scipy's HiGHS). A hole whose minimum equals its maximum is recomputed exactly: the test fails.
"""

from __future__ import annotations

import doctest
import json
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

from pdp.algorithms import disclosure
from pdp.algorithms.disclosure import ProtectedTable, protect, protect_long

NA = None  # how a hole reads in the golden tables below


# ----------------------------------------------------------------------------------------------------------
# The attacker


def feasible_intervals(full: np.ndarray, hidden: np.ndarray, *, one_dimensional: bool) -> dict[tuple, tuple]:
    """For each hidden cell of the grid with margins, (min, max) over all tables matching what is published.

    ``full`` is the true (R+1) × (C+1) grid (totals last), ``hidden`` its suppression mask. The equations are
    every line of the grid: cells of a row add up to its total (the total row too), same for columns. A
    one-dimensional table (a column vector and its total) has only its column equation.
    """
    cells = [tuple(int(k) for k in cell) for cell in np.argwhere(hidden)]
    position = {cell: k for k, cell in enumerate(cells)}
    n_rows, n_columns = full.shape
    lines = [[(i, j) for j in range(n_columns)] for i in range(n_rows)] if not one_dimensional else []
    lines += [[(i, j) for i in range(n_rows)] for j in range(n_columns)]
    a_eq, b_eq = [], []
    for line in lines:
        coefficients, constant = np.zeros(len(cells)), 0.0
        for k, cell in enumerate(line):
            sign = -1.0 if k == len(line) - 1 else 1.0  # sum of the cells - the line's total = 0
            if cell in position:
                coefficients[position[cell]] += sign
            else:
                constant -= sign * full[cell]
        if coefficients.any():
            a_eq.append(coefficients)
            b_eq.append(constant)
    intervals = {}
    for cell, k in position.items():
        objective = np.zeros(len(cells))
        objective[k] = 1.0
        bounds = []
        for direction in (1.0, -1.0):
            result = linprog(direction * objective, A_eq=np.array(a_eq), b_eq=b_eq, bounds=(0, None), method="highs")
            assert result.status in (0, 3), result.message  # 3: unbounded, as wide as it gets
            bounds.append(direction * result.fun if result.status == 0 else np.inf)  # only a max is unbounded
        intervals[cell] = (bounds[0], bounds[1])
    return intervals


def grid_and_mask(protected: ProtectedTable, original: pd.DataFrame | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The true grid (recomputed from the original, not from the protection) and the published holes."""
    values = original.to_numpy().astype(np.int64)
    if protected.one_dimensional:
        full = np.append(values, values.sum())[:, None]
    else:
        full = np.zeros((values.shape[0] + 1, values.shape[1] + 1), dtype=np.int64)
        full[:-1, :-1] = values
        full[:-1, -1] = values.sum(axis=1)
        full[-1, :-1] = values.sum(axis=0)
        full[-1, -1] = values.sum()
    published = protected.table.to_numpy()
    hidden = protected.table.isna().to_numpy()
    assert (published[~hidden] == full[~hidden]).all(), "a published figure differs from the truth"
    return full, hidden


def assert_not_recomputable(protected: ProtectedTable, original: pd.DataFrame | pd.Series) -> None:
    full, hidden = grid_and_mask(protected, original)
    intervals = feasible_intervals(full, hidden, one_dimensional=protected.one_dimensional)
    for cell, (low, high) in intervals.items():
        truth = full[cell]
        assert low - 1e-6 <= truth <= high + 1e-6, f"attacker's LP is wrong at {cell}"
        assert high - low >= 1 - 1e-6, f"cell {cell} = {truth} is recomputable: [{low}, {high}]"
        # the module's guarantee is stronger: every hole can move by one each way along a suppressed cycle
        assert low <= truth - 1 + 1e-6 and high >= truth + 1 - 1e-6, f"cell {cell} = {truth} in [{low}, {high}]"


def random_counts(rng: np.random.Generator, shape: tuple[int, int]) -> pd.DataFrame:
    """Many small counts, some zeros, a few large ones: the hard case for suppression."""
    kind = rng.choice(["small", "mixed", "sparse"], p=[0.3, 0.5, 0.2])
    if kind == "small":
        values = rng.integers(0, 16, size=shape)
    elif kind == "mixed":
        values = np.where(rng.random(shape) < 0.4, rng.integers(1, 11, size=shape), rng.integers(0, 300, size=shape))
    else:
        values = np.where(rng.random(shape) < 0.6, 0, rng.integers(1, 40, size=shape))
    rows = [f"r{i}" for i in range(shape[0])]
    columns = [f"c{j}" for j in range(shape[1])]
    return pd.DataFrame(values, index=rows, columns=columns)


# ----------------------------------------------------------------------------------------------------------
# The attacker can win: naive patterns are caught


def test_the_attacker_recomputes_a_lone_small_cell_when_only_primary_suppression_is_applied() -> None:
    counts = pd.DataFrame({"A": [3, 15], "B": [20, 25]}, index=["r0", "r1"])
    full = disclosure._with_margins(counts.to_numpy())
    naive = disclosure._primary(full, 10)  # only the 3 is hidden: 3 = 23 - 20
    intervals = feasible_intervals(full, naive, one_dimensional=False)
    assert intervals == {(0, 0): (3.0, 3.0)}


def test_the_attacker_recomputes_a_cell_hidden_with_its_row_total_only() -> None:
    counts = pd.DataFrame({"A": [3, 15], "B": [20, 25]}, index=["r0", "r1"])
    full = disclosure._with_margins(counts.to_numpy())
    hidden = np.zeros_like(full, dtype=bool)
    hidden[0, 0] = hidden[0, 2] = True  # row 0 has two holes, but column A gives 3 = 18 - 15
    intervals = feasible_intervals(full, hidden, one_dimensional=False)
    assert intervals[(0, 0)] == (3.0, 3.0)


def test_the_attacker_beats_the_two_holes_per_line_rule_of_thumb() -> None:
    """Two suppressed 2×2 blocks joined by one hidden cell: every line has ≥ 2 holes, the joint is a bridge."""
    counts = pd.DataFrame(np.full((4, 4), 50), index=list("abcd"), columns=list("ABCD"))
    full = disclosure._with_margins(counts.to_numpy())
    hidden = np.zeros_like(full, dtype=bool)
    hidden[np.ix_([0, 1], [0, 1])] = True
    hidden[np.ix_([2, 3], [2, 3])] = True
    hidden[1, 2] = True
    intervals = feasible_intervals(full, hidden, one_dimensional=False)
    assert intervals[(1, 2)] == (50.0, 50.0)
    assert intervals[(0, 0)][1] - intervals[(0, 0)][0] >= 1


def test_the_attacker_recomputes_a_lone_hole_in_a_pyramid() -> None:
    full = np.array([[1200], [300], [7], [45], [1552]])
    hidden = np.zeros_like(full, dtype=bool)
    hidden[2, 0] = True
    assert feasible_intervals(full, hidden, one_dimensional=True) == {(2, 0): (7.0, 7.0)}


# ----------------------------------------------------------------------------------------------------------
# The protection resists the attacker


@pytest.mark.parametrize(
    ("shape", "tables"),
    [((1, 6), 60), ((2, 2), 80), ((3, 5), 60), ((6, 1), 30), ((8, 12), 12), ((30, 10), 2)],
)
def test_no_suppressed_cell_of_random_tables_can_be_recomputed(shape: tuple[int, int], tables: int) -> None:
    rng = np.random.default_rng(20260509 + shape[0] * 100 + shape[1])
    for _ in range(tables):
        counts = random_counts(rng, shape)
        protected = protect(counts)
        assert_primary_rule(protected, counts)
        assert_not_recomputable(protected, counts)


@pytest.mark.parametrize("length", [1, 2, 4, 9])
def test_no_suppressed_value_of_random_pyramids_can_be_recomputed(length: int) -> None:
    rng = np.random.default_rng(31 + length)
    for _ in range(30):
        counts = pd.Series(rng.integers(0, 25, size=length), index=[f"s{k}" for k in range(length)], name="n")
        protected = protect(counts)
        assert_primary_rule(protected, counts)
        assert_not_recomputable(protected, counts)


def assert_primary_rule(protected: ProtectedTable, original: pd.DataFrame | pd.Series) -> None:
    """Every 1..10 hidden, every 0 published, primary mask = exactly the 1..10 figures."""
    full, hidden = grid_and_mask(protected, original)
    small = (full >= 1) & (full <= 10)
    assert (protected.primary.to_numpy() == small).all()
    assert not (hidden & (full == 0)).any(), "a zero was suppressed"
    assert (hidden == (protected.primary | protected.secondary).to_numpy()).all()
    assert not (protected.primary & protected.secondary).to_numpy().any()


# ----------------------------------------------------------------------------------------------------------
# Golden cases: what a reader of the report sees


def published(protected: ProtectedTable) -> list[list[int | None]]:
    return [[None if pd.isna(value) else int(value) for value in row] for row in protected.table.to_numpy()]


def test_a_table_without_small_counts_is_published_whole_with_its_margins() -> None:
    counts = pd.DataFrame({"T2D": [120, 0, 45], "HF": [30, 0, 12]}, index=["Aulnay", "Bondy", "Clichy"])
    protected = protect(counts)
    assert published(protected) == [
        [120, 30, 150],
        [0, 0, 0],  # zeros are published: they say nobody
        [45, 12, 57],
        [165, 42, 207],
    ]
    assert list(protected.table.index) == ["Aulnay", "Bondy", "Clichy", "Total"]
    assert list(protected.table.columns) == ["T2D", "HF", "Total"]
    assert not protected.suppressed.to_numpy().any()


def test_a_small_cell_is_hidden_with_the_smallest_cells_that_close_a_rectangle() -> None:
    counts = pd.DataFrame({"A": [12, 3, 40], "B": [25, 30, 18]}, index=["c1", "c2", "c3"])
    protected = protect(counts)
    assert published(protected) == [
        [NA, NA, 37],  # 12 and 25 (cheaper than 40 and 18) complete the rectangle
        [NA, NA, 33],  # the 3, primary, and 30 in its row
        [40, 18, 58],
        [55, 73, 128],
    ]
    assert protected.primary.loc["c2", "A"] and protected.primary.to_numpy().sum() == 1
    assert protected.secondary.to_numpy().sum() == 3


def test_the_threshold_is_inclusive_and_zero_is_published() -> None:
    counts = pd.DataFrame({"A": [10, 11, 0], "B": [100, 100, 100], "C": [100, 100, 100]}, index=["x", "y", "z"])
    protected = protect(counts)
    assert protected.primary.loc["x", "A"]
    assert not protected.primary.loc["y", "A"] and not protected.primary.loc["z", "A"]
    assert not protected.suppressed.loc["z", "A"]  # a 0 is never used as a complement
    assert protected.table.loc["z", "A"] == 0


def test_a_small_row_total_is_hidden_and_protected_by_another_small_row() -> None:
    counts = pd.DataFrame(
        {"s0": [4, 3, 200, 150], "s1": [0, 5, 180, 120], "s2": [2, 0, 90, 60]},
        index=["hamlet", "village", "town", "city"],
    )
    protected = protect(counts)
    assert published(protected) == [
        [NA, 0, NA, NA],  # hamlet: 6 persons, every figure small
        [NA, NA, 0, NA],  # village: 8 persons; the two row totals protect each other in the total column
        [200, 180, 90, 470],
        [150, NA, NA, 330],  # 120 and 60 close the cycle hamlet.s2 - city.s2 - city.s1 - village.s1
        [357, 305, 152, 814],  # no margin beyond the small ones had to go
    ]
    assert_not_recomputable(protected, counts)


def test_a_commune_with_one_small_cell_loses_its_total_protected_by_the_smallest_other_commune() -> None:
    counts = pd.DataFrame(
        {"s0": [3, 40, 25, 60], "s1": [0, 30, 20, 50], "s2": [0, 12, 15, 70]},
        index=["hamlet", "town", "village", "city"],
    )
    protected = protect(counts)
    assert published(protected) == [
        [NA, 0, 0, NA],  # 3 persons, all in s0: the row total is the same small count
        [40, 30, 12, 82],
        [NA, 20, 15, NA],  # the smallest other total (60 < 82 < 180) and its s0 close the cycle
        [60, 50, 70, 180],
        [128, 100, 97, 325],  # the column totals and the grand total stay published
    ]
    assert_not_recomputable(protected, counts)


def test_a_pyramid_hides_a_small_stratum_with_the_next_smallest() -> None:
    pyramid = pd.Series([1200, 300, 7, 45], index=pd.Index(["0", "1", "2", "3"], name="stratum"), name="persons")
    protected = protect(pyramid)
    assert protected.one_dimensional
    assert published(protected) == [[1200], [300], [NA], [NA], [1552]]
    assert list(protected.table.index) == ["0", "1", "2", "3", "Total"]


def test_a_pyramid_whose_only_population_is_small_hides_its_total() -> None:
    protected = protect(pd.Series([5, 0, 0], index=["a", "b", "c"]))
    assert published(protected) == [[NA], [0], [0], [NA]]


def test_a_pyramid_with_two_small_strata_needs_no_complement() -> None:
    protected = protect(pd.Series([500, 4, 9], index=["a", "b", "c"]))
    assert published(protected) == [[500], [NA], [NA], [513]]
    assert not protected.secondary.to_numpy().any()


def test_a_custom_threshold_and_total_label() -> None:
    counts = pd.DataFrame({"A": [4, 6], "B": [50, 60]}, index=["r0", "r1"])
    protected = protect(counts, threshold=4, total_label="Ensemble")
    assert published(protected) == [[NA, NA, 54], [NA, NA, 66], [10, 110, 120]]
    assert list(protected.table.columns) == ["A", "B", "Ensemble"]
    assert protect(counts, threshold=0).table.notna().all().all()


def test_the_result_is_deterministic() -> None:
    counts = random_counts(np.random.default_rng(7), (40, 10))
    first, second = protect(counts), protect(counts.copy())
    pd.testing.assert_frame_equal(first.table, second.table)
    pd.testing.assert_frame_equal(first.secondary, second.secondary)


def test_records_are_json_ready_with_none_for_holes() -> None:
    counts = pd.DataFrame({"A": [12, 3, 40], "B": [25, 30, 18]}, index=pd.Index(["c1", "c2", "c3"], name="commune"))
    records = protect(counts).to_records()
    assert records[0] == {"commune": "c1", "A": None, "B": None, "Total": 37}
    assert records[-1] == {"commune": "Total", "A": 55, "B": 73, "Total": 128}
    assert json.loads(json.dumps(records)) == records


def test_long_format_pivots_protects_and_flags() -> None:
    long = pd.DataFrame(
        {
            "gp": ["dr_a", "dr_a", "dr_b", "dr_b", "dr_c"],
            "status": ["due", "done", "due", "done", "due"],  # dr_c has no "done" line: a count of 0
            "persons": [12, 25, 3, 30, 40],
        }
    )
    result = protect_long(long.iloc[::-1], row="gp", column="status", value="persons")
    assert list(result.columns) == ["gp", "status", "persons", "suppressed"]
    assert str(result["persons"].dtype) == "Int64"
    cells = {(g, s): (None if pd.isna(v) else int(v), bool(f)) for g, s, v, f in result.itertuples(index=False)}
    assert cells[("dr_c", "done")] == (0, False)
    assert cells[("dr_b", "due")] == (None, True)
    assert cells[("Total", "Total")] == (110, False)
    assert len(result) == 4 * 3  # 3 GPs + total, 2 statuses + total
    assert result["persons"].isna().eq(result["suppressed"]).all()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pd.DataFrame({"A": [1, -2]}), "non-negative"),
        (pd.DataFrame({"A": [1.5, 2.0]}), "non-negative integers"),
        (pd.DataFrame({"A": [1.0, np.nan]}), "missing"),
        (pd.DataFrame({"A": ["x", "y"]}), "numbers"),
        (pd.DataFrame({"A": [1, 2]}, index=["a", "Total"]), "total label"),
        (pd.DataFrame({"A": [1, 2]}, index=["a", "a"]), "duplicate"),
        (pd.DataFrame(), "empty"),
    ],
)
def test_bad_tables_are_refused(table: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        protect(table)


def test_bad_thresholds_and_long_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        protect(pd.DataFrame({"A": [1]}), threshold=-1)
    long = pd.DataFrame({"gp": ["a", "a"], "status": ["due", "due"], "n": [1, 2]})
    with pytest.raises(ValueError, match="duplicate"):
        protect_long(long, row="gp", column="status", value="n")
    with pytest.raises(ValueError, match="not in the frame"):
        protect_long(long, row="gp", column="stratum", value="n")


def test_the_module_docstring_example_runs() -> None:
    failures, tried = doctest.testmod(disclosure, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


# ----------------------------------------------------------------------------------------------------------
# Performance


def test_three_hundred_communes_by_ten_strata_protect_well_under_a_second() -> None:
    rng = np.random.default_rng(300)
    values = np.where(rng.random((300, 10)) < 0.4, rng.integers(1, 11, size=(300, 10)), rng.integers(0, 400, (300, 10)))
    counts = pd.DataFrame(values, index=[f"commune_{k:03d}" for k in range(300)], columns=[f"s{k}" for k in range(10)])
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        protected = protect(counts)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 1.0, timings
    assert_primary_rule(protected, counts)


# ----------------------------------------------------------------------------------------------------------
# The whole published set: commune, GP and action tables attacked together


def _territory_counts(rng: np.random.Generator, persons: int, communes: int, gps: int) -> tuple[Any, Any]:
    """Person-level draws (commune, declared GP, strata, action statuses) aggregated as `indicators.Counts`.

    Communes and GP lists of very unequal sizes, so that many cells are small.
    """
    from pdp.algorithms.indicators import NO_GP, Counts
    from pdp.algorithms.model import load_definitions

    defs = load_definitions()
    commune_w = rng.pareto(1.2, communes) + 0.05
    gp_w = rng.pareto(1.0, gps) + 0.1
    commune = rng.choice([f"59{k:03d}" for k in range(communes)], size=persons, p=commune_w / commune_w.sum())
    gp = rng.choice([f"100{k:08d}" for k in range(gps)] + [NO_GP], size=persons,
                    p=np.append(gp_w / gp_w.sum() * 0.92, 0.08))
    strata_rows, action_rows = [], []
    for name, pyramid in defs.pyramids.items():
        labels = [s.stratum for s in pyramid.strata]
        shares = rng.dirichlet(np.full(len(labels), 2.0)) * rng.uniform(0.1, 0.4)
        drawn = rng.choice([*labels, None], size=persons, p=np.append(shares, 1 - shares.sum()))
        frame = pd.DataFrame({"unit": commune, "gp": gp, "stratum": drawn}).dropna()
        strata_rows.append(frame.assign(pyramid=name))
        for pw_name, pathway in defs.pathways.items():
            if pathway.pyramid != name:
                continue
            members = frame[frame["stratum"].isin(pathway.strata)]
            for action in pathway.actions:
                late = rng.random(len(members)) < rng.uniform(0.1, 0.7)
                action_rows.append(pd.DataFrame({"gp": members["gp"].to_numpy(), "pathway": pw_name,
                                                 "action": action.action,
                                                 "status": np.where(late, "overdue", "up_to_date")}))
    strata = pd.concat(strata_rows).groupby(["unit", "gp", "pyramid", "stratum"], as_index=False).size()
    actions = pd.concat(action_rows).groupby(["gp", "pathway", "action", "status"], as_index=False).size()
    counts = Counts(strata=strata.rename(columns={"size": "count"}), actions=actions.rename(columns={"size": "count"}))
    return counts, defs


def joint_intervals(tables: dict, protected: dict, defs: Any) -> dict[tuple, tuple[float, float, int]]:
    """For every hole of every published table, (min, max, truth) over all person-level tables matching
    everything published together, with what the attacker knows of the structure: the commune and GP
    tables count the same persons (a commune × GP × stratum table), every person of a pathway has every
    action of it with one status, and the action tables count those persons."""
    variables: dict[tuple, int] = {}

    def var(key: tuple) -> int:
        return variables.setdefault(key, len(variables))

    expressions: dict[tuple, dict[int, float]] = {}  # (table key, row, column) -> {variable: coefficient}
    truth: dict[tuple, int] = {}
    extra: list[dict[int, float]] = []  # structural equations (= 0)
    for (kind, name), table in tables.items():
        rows, cols = list(table.index), list(table.columns)
        if kind == "commune":
            gps = list(tables[("gp", name)].index)
            cell = {(r, c): {var((name, r, g, c)): 1.0 for g in gps} for r in rows for c in cols}
        elif kind == "gp":
            communes = list(tables[("commune", name)].index)
            cell = {(r, c): {var((name, u, r, c)): 1.0 for u in communes} for r in rows for c in cols}
        elif kind == "action":
            gps = list(tables[("gp_action", name)].index)
            cell = {(r, c): {var((name, g, r, c)): 1.0 for g in gps} for r in rows for c in cols}
        else:
            cell = {(r, c): {var((name, r, c, "up_to_date")): 1.0} for r in rows for c in cols}
        for (r, c), expr in cell.items():
            expressions[((kind, name), r, c)] = expr
            truth[((kind, name), r, c)] = int(table.loc[r, c])
        for r in rows:
            expressions[((kind, name), r, "Total")] = {k: v for c in cols for k, v in cell[(r, c)].items()}
            truth[((kind, name), r, "Total")] = int(table.loc[r].sum())
        for c in cols:
            expressions[((kind, name), "Total", c)] = {k: v for r in rows for k, v in cell[(r, c)].items()}
            truth[((kind, name), "Total", c)] = int(table[c].sum())
        expressions[((kind, name), "Total", "Total")] = {k: v for e in cell.values() for k, v in e.items()}
        truth[((kind, name), "Total", "Total")] = int(table.to_numpy().sum())
    for name, pathway in defs.pathways.items():  # up + overdue = the GP's patients in the pathway's strata
        communes = list(tables[("commune", pathway.pyramid)].index)
        for g in tables[("gp_action", name)].index:
            for a in tables[("gp_action", name)].columns:
                equation = {var((name, g, a, "up_to_date")): 1.0, var((name, g, a, "overdue")): 1.0}
                for u in communes:
                    for s in pathway.strata:
                        equation[var((pathway.pyramid, u, g, s))] = -1.0
                extra.append(equation)
    n = len(variables)

    def row(expr: dict[int, float]) -> np.ndarray:
        out = np.zeros(n)
        for k, v in expr.items():
            out[k] += v
        return out

    hidden = [key for key in expressions if bool(protected[key[0]].suppressed.loc[key[1], key[2]])]
    shown = [key for key in expressions if key not in set(hidden)]
    a_eq = np.array([row(expressions[k]) for k in shown] + [row(e) for e in extra])
    b_eq = np.array([float(truth[k]) for k in shown] + [0.0] * len(extra))
    out = {}
    for key in hidden:
        objective = row(expressions[key])
        bounds = []
        for direction in (1.0, -1.0):
            result = linprog(direction * objective, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
            assert result.status in (0, 3), result.message
            bounds.append(direction * result.fun if result.status == 0 else np.inf)
        out[key] = (bounds[0], bounds[1], truth[key])
    return out


def _recomputed(intervals: dict) -> list:
    return [(k, v) for k, v in intervals.items() if v[1] - v[0] < 1 - 1e-6]


def _published_set(seed: int) -> tuple[dict, list, Any]:
    from pdp.algorithms.indicators import published_tables

    rng = np.random.default_rng(4242 + seed)
    counts, defs = _territory_counts(rng, persons=int(rng.integers(600, 2500)), communes=int(rng.integers(3, 9)),
                                     gps=int(rng.integers(2, 7)))
    tables, links = published_tables(counts, defs)
    return tables, links, defs


def test_the_joint_attacker_beats_tables_protected_one_by_one() -> None:
    """Seed 4: each table is safe alone, but the GP × action table and the action × status table differ on a
    shared up-to-date total; with the structure (up + overdue = the GP's patients) the attacker pins cells."""
    tables, _, defs = _published_set(4)
    one_by_one = {key: protect(table) for key, table in tables.items()}
    beaten = _recomputed(joint_intervals(tables, one_by_one, defs))
    assert beaten, "the joint attack found nothing to recompute: it would not catch a linkage leak"
    assert {key[0][0] for key, _ in beaten} & {"action", "gp_action"}


def test_the_joint_attacker_uses_the_eligible_counts_against_a_pyramid_with_a_small_stratum() -> None:
    """Seed 12: the territory has 6 persons at risk of T2D, so the pyramid hides that stratum and stratum 2;
    each action's total (the pathway's eligible persons, strata 1 to 4) would give stratum 2 back."""
    from pdp.algorithms.disclosure import protect_linked

    tables, links, defs = _published_set(12)
    beaten = _recomputed(joint_intervals(tables, protect_linked(tables, links), defs))
    assert (("commune", "t2d"), "Total", "at_risk") in {key for key, _ in beaten}


@pytest.mark.parametrize("seed", [0, 4, 5, 12, 13, 14])
def test_no_suppressed_cell_of_the_published_set_can_be_recomputed_from_all_tables_together(seed: int) -> None:
    from pdp.algorithms.indicators import protect_published

    tables, links, defs = _published_set(seed)
    protected = protect_published(tables, links, defs)
    for group in links:  # a shared cell is hidden in every table or in none
        assert len({bool(protected[key].suppressed.loc[r, c]) for key, r, c in group}) == 1, group
    intervals = joint_intervals(tables, protected, defs)
    assert intervals, "nothing suppressed: the case tests nothing"
    for key, (low, high, value) in intervals.items():
        assert low - 1e-6 <= value <= high + 1e-6, f"attacker's LP is wrong at {key}"
    assert not _recomputed(intervals), _recomputed(intervals)[:5]
