"""The care protocol (care_protocol.yml) as code: its condition language and its scheduler.

Why a module of its own: two ground truths schedule the same pathways, the true one (from
the person's true state and all their events) and the coded-observable one (from what the
coded sources support); they must share one reading of the protocol file.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from pdp.synth.model import ActionDue
from pdp.synth.territory import load_care_protocol

DoneBy = list[dict[str, str]]


@lru_cache(maxsize=1)
def care_protocol() -> dict[str, Any]:
    """The parsed protocol, read once per process (the writers ask for it per person). Do not mutate."""
    return load_care_protocol()


def when(expression: str, variables: dict[str, Any]) -> bool:
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


def done_codes(done_by: DoneBy) -> frozenset[tuple[str, str]]:
    """(system, code) pairs that count as an action being done."""
    return frozenset((d["system"], str(d["code"])) for d in done_by)


def done_sources(done_by: DoneBy) -> frozenset[str] | None:
    """The sources (channels) whose records count, or None for any (e.g. vaccines: the pharmacy only)."""
    sources = {d["source"] for d in done_by if "source" in d}
    return frozenset(sources) or None


def schedule(
    pathways: Iterable[str],
    variables: dict[str, Any],
    done_days: Callable[[DoneBy], list[date]],
    reference: date,
    never_done_due: date,
    protocol: dict[str, Any],
) -> list[tuple[str, ActionDue]]:
    """Each pathway's actions with interval, last done, next due and status at `reference`.

    `done_days(done_by)` gives the days the action was done; `never_done_due` is the due date
    of an action never done (the two ground truths differ there, see their callers). An action
    never done is overdue whatever that date (docs/clinical-rules.md).
    """
    soon = timedelta(days=protocol["due_soon_days"])
    out: list[tuple[str, ActionDue]] = []
    for pathway in pathways:
        for action, variants in protocol["pathways"][pathway].items():
            interval = next(v["days"] for v in variants if when(v["when"], variables))
            days = done_days(protocol["actions"][action]["done_by"])
            last = max(days) if days else None
            due = last + timedelta(days=interval) if last else never_done_due
            if last is None or due < reference:
                status = "overdue"
            else:
                status = "due" if due <= reference + soon else "up_to_date"
            out.append((pathway, ActionDue(action, interval, last, due, status)))
    return out
