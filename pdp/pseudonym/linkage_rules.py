"""Deterministic linkage: distinct identity variants, a union-find, and the rules that never guess.

Internal to :mod:`pdp.pseudonym.linkage` (see its docstring for the whole pipeline). Works on
*variants* — distinct (canonical identity, postcode) values — not on records: a pharmacy
sends the same card identity with every delivery, so 215 000 records of a 20 000-person
territory are ~33 000 variants, and every later step (rules, Splink, clustering) scales with
variants.

Rules, in order (each only ever merges; the own-NIR constraint is checked by
:class:`UnionFind` on every merge):

1. **Same NIR-scheme canonical** (own NIR body + birth date) → same person.
2. **Traits key of a NIR-identified record**: a record without an own NIR whose traits key
   (compact birth name, first token of the first first name, birth date, sex — the traits
   pseudonym's fields) equals the traits key of records of exactly one NIR group, whose
   first names are compatible with all of them (one list of first-name tokens is a prefix of
   the other: ``MARIE`` fits ``MARIE CLAIRE``; ``MARIE CLAIRE`` does not fit ``MARIE FRANCE``),
   and whose birthplace, if it has one, is the one the NIR encodes, is attached to that
   group. Two NIR groups sharing a traits key (twins named ``Agnès Suzanne`` and ``Agnès
   Amélie``, homonyms) make the key ambiguous: no attachment.
3. **Same traits key** among the records left: merged when their first names are compatible
   and they do not name two birthplaces. ``MARIE`` alone next to ``MARIE CLAIRE`` and
   ``MARIE FRANCE`` is left apart (it could be either twin): the probabilistic stage sees it,
   with the rest of its evidence. Records whose
   key is ambiguous under rule 2 are not grouped either: twins ``JEAN CLAUDE`` and
   ``JEAN FRANCOIS`` both have NIR records, and their pharmacy cards say ``JEAN`` and
   ``JEAN FRANCOIS`` — compatible first names, two people.
4. The **insured NIR** (a parent's or spouse's, see :mod:`pdp.pseudonym.normalise`) is never
   an identifier: it appears in no rule here (the probabilistic stage uses it to block only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise

from pdp.pseudonym.normalise import CanonicalIdentity

__all__ = ["UnionFind", "Variant", "apply_rules", "build_variants", "compatible_first_names", "traits_key"]

TraitsKey = tuple[str, str, date, str]


@dataclass(slots=True, eq=False)
class Variant:
    """One distinct identity value and the records (keys) that carry it."""

    index: int
    canonical: CanonicalIdentity
    postcode: str | None
    records: list[str] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # pseudonyms of known persons with this identity
    rule: str = "singleton"  # which deterministic rule linked it: nir, traits_to_nir, traits

    @property
    def own_nir(self) -> str | None:
        """The own NIR's 13-character body (the person's identifier), or None."""
        nir = self.canonical.nir
        return nir[:13] if nir else None

    @property
    def birth_place(self) -> str | None:
        """The record's birthplace, else the one its own NIR encodes (characters 6-10: the INSEE
        code of the birth commune, or 99 + the country code for a birth abroad)."""
        c = self.canonical
        return c.birth_place or (c.nir[5:10] if c.nir else None)

    @property
    def first_name_tokens(self) -> tuple[str, ...]:
        return tuple(tok for name in self.canonical.first_names for tok in name.split())

    def __repr__(self) -> str:
        return f"Variant(index={self.index}, records={len(self.records)}, <identity hidden>)"


def traits_key(canonical: CanonicalIdentity) -> TraitsKey:
    """The traits pseudonym's fields, whatever the record's scheme."""
    return (canonical.birth_name_compact, canonical.first_name_first_token, canonical.birth_date, canonical.sex)


def compatible_first_names(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """True when one list of first-name tokens is a prefix of the other."""
    return a[: len(b)] == b[: len(a)]


def _sort_key(signature: tuple[CanonicalIdentity, str | None]) -> tuple[bytes, str]:
    c, postcode = signature
    rest = "\x1f".join(
        (
            c.nir or "",
            c.insured_nir or "",
            c.birth_name,
            c.used_name or "",
            "/".join(c.first_names),
            c.birth_place or "",
            postcode or "",
        )
    )
    return c.canonical_bytes, rest


def build_variants(
    records: Iterable[tuple[str, CanonicalIdentity, str | None]],
    known: Iterable[tuple[str, CanonicalIdentity]] = (),
) -> list[Variant]:
    """Distinct (identity, postcode) values, sorted so the result does not depend on input order.

    ``records``: ``(record_key, canonical, postcode)``; ``known``: ``(pseudonym, canonical)``
    of persons seen in earlier batches (their variant carries the pseudonym, no record).
    """
    groups: dict[tuple[CanonicalIdentity, str | None], tuple[list[str], set[str]]] = {}
    for key, canonical, postcode in records:
        entry = groups.get((canonical, postcode))
        if entry is None:
            entry = groups[(canonical, postcode)] = ([], set())
        entry[0].append(key)
    for pseudonym, canonical in known:
        entry = groups.get((canonical, None))
        if entry is None:
            entry = groups[(canonical, None)] = ([], set())
        entry[1].add(pseudonym)
    ordered = sorted(groups, key=_sort_key)
    return [
        Variant(index=i, canonical=sig[0], postcode=sig[1], records=groups[sig][0], known=groups[sig][1])
        for i, sig in enumerate(ordered)
    ]


class UnionFind:
    """Disjoint sets of variants that never hold two different own NIRs.

    ``union`` refuses (returns False) a merge that would put two different own-NIR bodies in
    one person: two valid own NIRs are two people (twins, homonyms), whatever the traits say;
    and a merge that would bring an own NIR into a set marked by :meth:`forbid_nir`. The root
    is always the smaller index.
    """

    def __init__(self, variants: list[Variant]) -> None:
        self.parent = list(range(len(variants)))
        self.nir: list[str | None] = [v.own_nir for v in variants]
        self.no_nir: list[bool] = [False] * len(variants)  # may never join an own NIR (ambiguous)
        self.refused = 0

    @classmethod
    def of_nirs(cls, nirs: list[str | None]) -> UnionFind:
        """A union-find over sets already formed elsewhere, each with its own NIR (or None): the
        Spark engine clusters one connected component of deterministic groups with it."""
        uf = cls([])
        uf.parent = list(range(len(nirs)))
        uf.nir = list(nirs)
        uf.no_nir = [False] * len(nirs)
        return uf

    def forbid_nir(self, i: int) -> None:
        """Keep ``i``'s set away from every own-NIR person (it could be either of two)."""
        root = self.find(i)
        if self.nir[root] is None:
            self.no_nir[root] = True

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def can_merge(self, a: int, b: int) -> bool:
        na, nb = self.nir[self.find(a)], self.nir[self.find(b)]
        return na is None or nb is None or na == nb

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        na, nb = self.nir[ra], self.nir[rb]
        forbidden = self.no_nir[ra] or self.no_nir[rb]
        if (na is not None and nb is not None and na != nb) or (forbidden and (na or nb) is not None):
            self.refused += 1
            return False
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.nir[ra] = na or nb
        self.no_nir[ra] = forbidden
        return True

    def groups(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            out[self.find(i)].append(i)
        return out


def _chain(items: list[int]) -> Iterator[tuple[int, int]]:
    return pairwise(items)


def _places_conflict(variants: list[Variant]) -> bool:
    """True when the variants name two different birthplaces (homonyms born in two places)."""
    return len({v.birth_place for v in variants} - {None}) > 1


def apply_rules(variants: list[Variant], uf: UnionFind) -> None:
    """Rules 1-3 of the module docstring, merged into ``uf``; sets ``Variant.rule``."""
    # Rule 1: same NIR-scheme canonical.
    by_nir: dict[bytes, list[int]] = defaultdict(list)
    for v in variants:
        if v.canonical.scheme == "nir":
            by_nir[v.canonical.canonical_bytes].append(v.index)
            v.rule = "nir"
    for members in by_nir.values():
        for a, b in _chain(members):
            uf.union(a, b)

    # Rule 2: a traits record → the one NIR group with its traits key, compatible first names
    # and no other birthplace than the NIR's.
    nir_groups_by_key: dict[TraitsKey, dict[int, list[Variant]]] = defaultdict(lambda: defaultdict(list))
    for v in variants:
        if v.canonical.scheme == "nir":
            nir_groups_by_key[traits_key(v.canonical)][uf.find(v.index)].append(v)
    left: dict[TraitsKey, list[Variant]] = defaultdict(list)
    for v in variants:
        if v.canonical.scheme == "nir":
            continue
        key = traits_key(v.canonical)
        groups = nir_groups_by_key.get(key)
        if groups is not None and len(groups) > 1:
            continue  # ambiguous key: the records may belong to different NIR persons (rule 3 skips them too)
        if groups is not None:
            ((root, others),) = groups.items()
            tokens = v.first_name_tokens
            if (
                all(compatible_first_names(tokens, other.first_name_tokens) for other in others)
                and not _places_conflict([v, *others])
                and uf.union(root, v.index)
            ):
                v.rule = "traits_to_nir"
                continue
        left[key].append(v)

    # Rule 3: same traits key, compatible first names (ambiguous short forms left apart).
    for members in left.values():
        if len(members) == 1 or _places_conflict(members):
            continue
        token_lists = {v.first_name_tokens for v in members}
        anchors = [t for t in token_lists if not any(o != t and o[: len(t)] == t for o in token_lists)]
        by_anchor: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for v in members:
            fits = [a for a in anchors if a[: len(v.first_name_tokens)] == v.first_name_tokens]
            if len(fits) == 1:
                by_anchor[fits[0]].append(v.index)
        for indices in by_anchor.values():
            if len(indices) > 1:
                for a, b in _chain(indices):
                    uf.union(a, b)
                for i in indices:
                    variants[i].rule = "traits"
