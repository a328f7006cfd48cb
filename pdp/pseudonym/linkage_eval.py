"""Linkage quality against a ground truth: pairwise precision/recall/F1, collisions, splits.

Definitions (the usual ones of record linkage, on *records*, not on distinct identities):

* a **predicted pair** is two records that got the same pseudonym; a **true pair** two records
  of the same true person; **precision** = true pairs predicted / predicted pairs, **recall**
  = true pairs predicted / true pairs, F1 their harmonic mean. They are computed from the
  contingency table (pseudonym × true person) — ``Σ C(n_ij, 2)`` over its cells against
  ``Σ C(a_i, 2)`` over pseudonyms and ``Σ C(b_j, 2)`` over persons — never by enumerating
  pairs, so a million records cost a few dictionary passes;
* a **collision** is a pseudonym that covers more than one true person (two people merged —
  the costly error: one patient's care attached to another); a **split** a true person spread
  over more than one pseudonym (one person counted twice).

Pairwise figures weigh heavy users quadratically (a person with 60 pharmacy deliveries makes
1 770 pairs); collisions and splits count persons, each once. Both views are reported.

Example::

    >>> truth = {"a": 1, "b": 1, "c": 2}
    >>> m = evaluate({"a": "p", "b": "p", "c": "q"}, truth)
    >>> (m.precision, m.recall, m.collisions, m.splits)
    (1.0, 1.0, 0, 0)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.pseudonym.linkage import LinkInput, LinkResult
    from pdp.pseudonym.pseudonymise import Pseudonymiser

__all__ = ["KindMetrics", "LinkageMetrics", "baseline", "by_kind", "evaluate"]


@dataclass(frozen=True, slots=True)
class LinkageMetrics:
    """Pairwise and per-person quality of a record → pseudonym assignment against a truth."""

    records: int
    persons: int
    pseudonyms: int
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    precision: float
    recall: float
    f1: float
    collisions: int  # pseudonyms covering more than one true person
    splits: int  # true persons spread over more than one pseudonym
    persons_in_collisions: int
    extra_pseudonyms: int  # pseudonyms minus persons among split persons (how much splitting)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def evaluate(result: LinkResult | Mapping[str, str], truth: Mapping[str, Any]) -> LinkageMetrics:
    """Metrics of ``result`` (a :class:`LinkResult` or a ``record_key → pseudonym`` mapping)
    against ``truth`` (``record_key → true person id``).

    Only records present in both are counted; a record of ``result`` missing from ``truth``
    raises KeyError (a harness bug, not a linkage error).
    """
    assignment: Mapping[str, str] = getattr(result, "pseudonyms", result)  # type: ignore[arg-type]
    cells: Counter[tuple[str, Any]] = Counter()
    for key, pseudonym in assignment.items():
        cells[(pseudonym, truth[key])] += 1
    by_pseudonym: Counter[str] = Counter()
    by_person: Counter[Any] = Counter()
    persons_of: defaultdict[str, int] = defaultdict(int)
    pseudonyms_of: defaultdict[Any, int] = defaultdict(int)
    correct = 0
    for (pseudonym, person), n in cells.items():
        by_pseudonym[pseudonym] += n
        by_person[person] += n
        persons_of[pseudonym] += 1
        pseudonyms_of[person] += 1
        correct += _pairs(n)
    predicted = sum(_pairs(n) for n in by_pseudonym.values())
    true = sum(_pairs(n) for n in by_person.values())
    precision = correct / predicted if predicted else 1.0
    recall = correct / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    colliding = [p for p, k in persons_of.items() if k > 1]
    split = [k for k in pseudonyms_of.values() if k > 1]
    return LinkageMetrics(
        records=sum(cells.values()),
        persons=len(by_person),
        pseudonyms=len(by_pseudonym),
        true_pairs=true,
        predicted_pairs=predicted,
        correct_pairs=correct,
        precision=precision,
        recall=recall,
        f1=f1,
        collisions=len(colliding),
        splits=len(split),
        persons_in_collisions=sum(persons_of[p] for p in colliding),
        extra_pseudonyms=sum(k - 1 for k in split),
    )


def baseline(inputs: Iterable[LinkInput], pseudonymiser: Pseudonymiser, truth: Mapping[str, Any]) -> LinkageMetrics:
    """The same metrics when each record's pseudonym is ``normalise`` + ``Pseudonymiser`` alone
    (no linkage): what the edge would give without this module."""
    inputs = list(inputs)
    pseudonyms = pseudonymiser.pseudonymise_many(item.canonical for item in inputs)
    return evaluate({item.record_key: p for item, p in zip(inputs, pseudonyms, strict=True)}, truth)


@dataclass(frozen=True, slots=True)
class KindMetrics:
    """How the records carrying one identity error kind fared.

    ``linked``: the share of those records that got their person's main pseudonym (the one
    holding most of the person's records) — a per-record recall; ``persons_split``: persons
    with such a record spread over more than one pseudonym; ``persons_in_collisions``: persons
    with such a record whose pseudonym covers another person too.
    """

    records: int
    persons: int
    linked: float
    persons_split: int
    persons_in_collisions: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def by_kind(
    result: LinkResult | Mapping[str, str], truth: Mapping[str, Any], kinds: Mapping[str, Iterable[str]]
) -> dict[str, KindMetrics]:
    """:class:`KindMetrics` per error kind; ``kinds``: ``record_key → kinds it carries`` (records
    without any may be left out). Records of ``result`` only."""
    assignment: Mapping[str, str] = getattr(result, "pseudonyms", result)  # type: ignore[arg-type]
    per_person: defaultdict[Any, Counter[str]] = defaultdict(Counter)
    persons_of: defaultdict[str, set[Any]] = defaultdict(set)
    for key, pseudonym in assignment.items():
        per_person[truth[key]][pseudonym] += 1
        persons_of[pseudonym].add(truth[key])
    main = {person: min(c, key=lambda p, c=c: (-c[p], p)) for person, c in per_person.items()}
    records: Counter[str] = Counter()
    linked: Counter[str] = Counter()
    persons: defaultdict[str, set[Any]] = defaultdict(set)
    for key, record_kinds in kinds.items():
        pseudonym = assignment.get(key)
        if pseudonym is None:
            continue
        person = truth[key]
        for kind in record_kinds:
            records[kind] += 1
            linked[kind] += pseudonym == main[person]
            persons[kind].add(person)
    out = {}
    for kind in sorted(records):
        people = persons[kind]
        out[kind] = KindMetrics(
            records=records[kind],
            persons=len(people),
            linked=linked[kind] / records[kind],
            persons_split=sum(1 for p in people if len(per_person[p]) > 1),
            persons_in_collisions=sum(1 for p in people if any(len(persons_of[q]) > 1 for q in per_person[p])),
        )
    return out
