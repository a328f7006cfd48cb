"""Resources of types the platform does not read: neither records nor quarantine, counted per source and type.

Why count them: a FHIR sender's bundles carry more than the platform reads (Claim,
ExplanationOfBenefit, CarePlan, Immunization...). Such a resource is not a record (no table
holds it) and not a fault (nothing is wrong with it), so without a count it would vanish from
every figure: a sender whose data is mostly of such types would look like it sent little, and
a type worth reading one day would never show. So the parsers count them per type
(:meth:`~pdp.ingest.parsers.base.FileContext.skip`), each file's counts carry them
(``Counts.skipped_resources``), and ``pdp ingest`` prints them per source, beside the codes
outside the concept sets (:mod:`pdp.ingest.unmapped`): what a sender sent is all accounted for.

Example::

    >>> skipped = SkippedResources()
    >>> skipped.add("gp_bundles", {"Claim": 12, "ExplanationOfBenefit": 12})
    >>> skipped.by_source()
    {'gp_bundles': 24}
    >>> skipped.of("gp_bundles")
    {'Claim': 12, 'ExplanationOfBenefit': 12}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

__all__ = ["SkippedResources"]


class SkippedResources:
    """Counts of skipped resources per (source, resource type), for a batch."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, source: str, per_type: Mapping[str, int]) -> None:
        """Add one file's counts (``Counts.skipped_resources``) to its source's."""
        for kind, count in per_type.items():
            self.counts[(source, kind)] += count

    def merge(self, other: SkippedResources) -> None:
        self.counts.update(other.counts)

    def by_source(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (source, _), count in self.counts.items():
            out[source] += count
        return dict(sorted(out.items()))

    def of(self, source: str) -> dict[str, int]:
        """One source's counts per type, the most frequent first (then by name)."""
        counts = [(kind, n) for (s, kind), n in self.counts.items() if s == source]
        return dict(sorted(counts, key=lambda item: (-item[1], item[0])))

    def __bool__(self) -> bool:
        return bool(self.counts)
