"""Proof of erasure: look for one person's pseudonym, and the person id derived from it, in the lake.

Why a detector of its own: after ``pdp oppose apply`` (or a key rotation's purge) the claim is
that no file under the lake holds the pseudonym any more, in any version, change-data file,
log or checkpoint. ``pdp scan-lake --pseudonym P`` checks that claim with the leak scanner's
file walk: string cells (substring match, so a pseudonym inside a JSON document counts) and
integer cells equal to the person id (``xxhash64(P)``, Spark's seed-42 XXH64, computed here
without Spark so the check runs wherever the lake is readable).

>>> spark_xxhash64("v1:abc")   # equals Spark's SELECT xxhash64('v1:abc')    # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from pdp.governance.leak_scan import Detector
from pdp.lake.layout import spark_xxhash64

__all__ = ["PseudonymDetector", "spark_xxhash64"]



class PseudonymDetector(Detector):
    """Finds given pseudonyms, and their person ids, in string cells; their person ids in integer cells.

    A person id inside text counts when it stands as a whole number (``person_id IN (-123, …)``
    in a commit's predicate, a JSON statistic): the scan covers the Delta logs as text.
    """

    labels = ("PSEUDONYM", "PERSON_ID")

    def __init__(self, pseudonyms: Iterable[str]) -> None:
        self.pseudonyms = sorted(set(pseudonyms))
        self.person_ids = sorted({spark_xxhash64(p) for p in self.pseudonyms})
        self._id_pattern = (r"(?:^|[^0-9])(?:" + "|".join(re.escape(str(i)) for i in self.person_ids) + r")(?:[^0-9]|$)"
                            if self.person_ids else None)

    def find(self, text: str) -> set[str]:
        found = {"PSEUDONYM"} if any(p in text for p in self.pseudonyms) else set()
        if self._id_pattern and re.search(self._id_pattern, text):
            found.add("PERSON_ID")
        return found

    def count(self, values: pa.Array) -> Counter[str]:
        found: Counter[str] = Counter()
        hits = None
        for p in self.pseudonyms:
            match = pc.fill_null(pc.match_substring(values, p), False)
            hits = match if hits is None else pc.or_(hits, match)
        if hits is not None and (total := int(pc.sum(hits).as_py() or 0)):
            found["PSEUDONYM"] = total
        if self._id_pattern:
            ids = int(pc.sum(pc.fill_null(pc.match_substring_regex(values, self._id_pattern), False)).as_py() or 0)
            if ids:
                found["PERSON_ID"] = ids
        return found

    def count_integers(self, values: pa.Array) -> Counter[str]:
        if values.type.bit_width < 64 or not pa.types.is_signed_integer(values.type):
            return Counter()
        total = int(pc.sum(pc.fill_null(pc.is_in(values, pa.array(self.person_ids, pa.int64())), False)).as_py() or 0)
        return Counter({"PERSON_ID": total}) if total else Counter()
