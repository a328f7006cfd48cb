"""The small rule language of the definitions: boolean expressions over named facts.

Why a language of our own and not SQL in YAML: a rule must be readable by a clinician, checked
for unknown names before any job runs, compiled to SQL for every engine (Spark, DuckDB) and
walked for explanations (which criteria made it true). Five forms are enough for the
pyramids of DOMAIN.md:

    t2d_dx                                   a criterion (or a person criterion) holds
    true                                     always (the default stratum of a pyramid)
    {any: [...]}  {all: [...]}  {not: ...}   or, and, not
    {at_least: 2, of: [...]}                 at least n of the list hold
    {population: t2d}                        the person is in another population
    {stratum: "4"}                           (pathways only) the person's stratum in the pathway's pyramid

>>> e = parse_expr({"any": ["a", {"at_least": 2, "of": ["b", "c", "d"]}]}, "when")
>>> sorted(e.criteria())
['a', 'b', 'c', 'd']
>>> to_sql(e, lambda n: f"c_{n}", lambda p: f"p_{p}", lambda s: f"s = '{s}'")
'(c_a OR ((CASE WHEN c_b THEN 1 ELSE 0 END + CASE WHEN c_c THEN 1 ELSE 0 END + CASE WHEN c_d THEN 1 ELSE 0 END) >= 2))'
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class ExprError(ValueError):
    """A rule that does not parse; the message names the field path."""


@dataclass(frozen=True)
class Expr:
    """One node: `op` in {name, true, any, all, not, at_least, population, stratum}."""

    op: str
    value: str | int | None = None
    children: tuple[Expr, ...] = ()

    def walk(self) -> Iterator[Expr]:
        yield self
        for child in self.children:
            yield from child.walk()

    def criteria(self) -> set[str]:
        """Every criterion name the rule reads."""
        return {str(n.value) for n in self.walk() if n.op == "name"}

    def populations(self) -> set[str]:
        return {str(n.value) for n in self.walk() if n.op == "population"}

    def strata(self) -> set[str]:
        return {str(n.value) for n in self.walk() if n.op == "stratum"}


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _NAME_CHARS or not value[0].isalpha():
        raise ExprError(f"{where}: expected a lower-case name, got {value!r}")
    return value


def parse_expr(raw: Any, where: str) -> Expr:
    """Parse the YAML form of a rule; errors name the field path (`where`)."""
    if raw is True:
        return Expr("true")
    if isinstance(raw, str):
        return Expr("name", _name(raw, where))
    if not isinstance(raw, dict) or not raw:
        raise ExprError(f"{where}: expected a criterion name, true, or one of any/all/not/at_least/population/stratum")
    keys = set(raw)
    if keys == {"any"} or keys == {"all"}:
        op = next(iter(keys))
        items = raw[op]
        if not isinstance(items, list) or not items:
            raise ExprError(f"{where}.{op}: expected a non-empty list")
        return Expr(op, children=tuple(parse_expr(item, f"{where}.{op}[{i}]") for i, item in enumerate(items)))
    if keys == {"not"}:
        return Expr("not", children=(parse_expr(raw["not"], f"{where}.not"),))
    if keys == {"at_least", "of"}:
        n, items = raw["at_least"], raw["of"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ExprError(f"{where}.at_least: expected a positive integer")
        if not isinstance(items, list) or len(items) < n:
            raise ExprError(f"{where}.of: expected a list of at least {n} rules")
        return Expr("at_least", n, tuple(parse_expr(item, f"{where}.of[{i}]") for i, item in enumerate(items)))
    if keys == {"population"}:
        return Expr("population", _name(raw["population"], f"{where}.population"))
    if keys == {"stratum"}:
        value = raw["stratum"]
        if not isinstance(value, str) or not value:
            raise ExprError(f"{where}.stratum: expected a stratum label in quotes, e.g. \"4\"")
        return Expr("stratum", value)
    raise ExprError(f"{where}: unknown rule form {sorted(keys)} (any, all, not, at_least+of, population, stratum)")


def to_sql(
    expr: Expr,
    criterion: Callable[[str], str],
    population: Callable[[str], str],
    stratum: Callable[[str], str] | None = None,
) -> str:
    """The rule as a SQL boolean over the flag columns the callbacks name."""

    def go(e: Expr) -> str:
        if e.op == "true":
            return "TRUE"
        if e.op == "name":
            return criterion(str(e.value))
        if e.op == "population":
            return population(str(e.value))
        if e.op == "stratum":
            if stratum is None:
                raise ExprError("a {stratum: ...} rule is only allowed in a pathway")
            return stratum(str(e.value))
        if e.op == "not":
            return f"(NOT {go(e.children[0])})"
        if e.op in ("any", "all"):
            joiner = " OR " if e.op == "any" else " AND "
            return "(" + joiner.join(go(c) for c in e.children) + ")"
        if e.op == "at_least":
            terms = " + ".join(f"CASE WHEN {go(c)} THEN 1 ELSE 0 END" for c in e.children)
            return f"(({terms}) >= {e.value})"
        raise ExprError(f"unknown node {e.op}")

    return go(expr)


def evaluate(expr: Expr, facts: Callable[[Expr], bool]) -> bool:
    """Evaluate in Python, with `facts` answering the leaves (name, population, stratum)."""
    if expr.op == "true":
        return True
    if expr.op in ("name", "population", "stratum"):
        return facts(expr)
    if expr.op == "not":
        return not evaluate(expr.children[0], facts)
    if expr.op == "any":
        return any(evaluate(c, facts) for c in expr.children)
    if expr.op == "all":
        return all(evaluate(c, facts) for c in expr.children)
    return sum(evaluate(c, facts) for c in expr.children) >= int(expr.value or 0)


def citations(expr: Expr) -> list[tuple[str, tuple[Expr, ...]]]:
    """Each criterion a rule may cite, with the branches that must hold for the citation to stand.

    A criterion under `not` is never cited. One under `all` or `at_least` is cited only when
    that branch holds as a whole: in `any(a, all(b, c))`, b alone (without c) supports nothing.

    >>> [(n, len(g)) for n, g in citations(parse_expr({"any": ["a", {"all": ["b", {"not": "c"}]}]}, "w"))]
    [('a', 0), ('b', 1)]
    """
    out: list[tuple[str, tuple[Expr, ...]]] = []

    def go(e: Expr, guards: tuple[Expr, ...]) -> None:
        if e.op == "name":
            out.append((str(e.value), guards))
        elif e.op == "any":
            for child in e.children:
                go(child, guards)
        elif e.op in ("all", "at_least"):
            for child in e.children:
                go(child, (*guards, e))

    go(expr, ())
    return out
