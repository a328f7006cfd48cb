"""Codes outside the concept sets: kept with their vocabulary, counted per source, reported.

Why count them: a landed event whose code no concept set holds (a SNOMED CT finding the
platform has no concept for, every RxNorm code, a local code) is kept in silver with its
vocabulary — never dropped — but no population, stratum or indicator will see it. A new
sender coding in a vocabulary the concept sets barely cover would otherwise look ingested
and be invisible. So the edge counts such codes per (source, vocabulary, code), and
``pdp ingest`` prints the most frequent per vocabulary: the list a terminologist maps next.

Example::

    >>> tally = UnmappedCodes()
    >>> tally.add("gp_bundles", "SNOMED", "10509002"); tally.add("gp_bundles", "SNOMED", "44054006")
    >>> tally.by_source()
    {'gp_bundles': 1}
    >>> tally.top(per_vocabulary=3)
    {'SNOMED': [('10509002', 1)]}
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from pdp.semantic.concepts import concept_of

__all__ = ["UNCOUNTED_DOMAINS", "UnmappedCodes"]

UNCOUNTED_DOMAINS = frozenset({"survey", "text"})
"""Domains whose codes are not meant for concept sets (questionnaire items, note facts)."""


@lru_cache(maxsize=1 << 16)
def _mapped(vocabulary: str, code: str) -> bool:
    return concept_of(vocabulary, code) is not None


class UnmappedCodes:
    """Counts of landed codes outside every concept set, per (source, vocabulary, code)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, source: str, vocabulary: str, code: str, domain: str = "") -> None:
        """Count the code if no concept set holds it (silently nothing when one does)."""
        if domain not in UNCOUNTED_DOMAINS and not _mapped(vocabulary, code):
            self.counts[(source, vocabulary, code)] += 1

    def merge(self, other: UnmappedCodes) -> None:
        self.counts.update(other.counts)

    def by_source(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (source, _, _), count in self.counts.items():
            out[source] += count
        return dict(out)

    def top(self, *, per_vocabulary: int = 5) -> dict[str, list[tuple[str, int]]]:
        """The most frequent unmapped codes of each vocabulary, all sources together."""
        by_vocabulary: dict[str, Counter[str]] = {}
        for (_, vocabulary, code), count in self.counts.items():
            by_vocabulary.setdefault(vocabulary, Counter())[code] += count
        return {v: counts.most_common(per_vocabulary) for v, counts in sorted(by_vocabulary.items())}

    def __bool__(self) -> bool:
        return bool(self.counts)
