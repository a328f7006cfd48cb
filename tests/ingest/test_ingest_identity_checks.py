"""The identity traits that land in the lake as person attributes (commune, GP) are codes or the record's fault.

``silver.person.location_id`` and ``gp_rpps`` come from these traits: a sender that puts an address
or a name where the commune or the GP's RPPS number goes must not have it kept.
"""

from __future__ import annotations

from datetime import date

import pytest

from pdp.ingest import ReasonCode
from pdp.ingest.validate import Checks, Invalid

CHECKS = Checks(min_date=date(1880, 1, 1), max_date=date(2026, 12, 31), code_systems=frozenset())
BASE = {"birth_name": "MARTIN", "birth_date": "1950-03-04"}


@pytest.mark.parametrize(("field", "text", "kept"), [
    ("commune_code", "59178", "59178"),
    ("commune_code", "59 178", "59178"),
    ("commune_code", "2a004", "2A004"),
    ("commune_code", "99134", "99134"),  # abroad
    ("gp_rpps", "10001234567", "10001234567"),
    ("gp_rpps", "100 0123 4567", "10001234567"),
    ("commune_code", None, None),
    ("gp_rpps", "", None),
])
def test_a_coded_trait_is_kept_compacted(field: str, text: str | None, kept: str | None) -> None:
    fields = CHECKS.identity({**BASE, field: text}, "%Y-%m-%d", where="PID")
    assert getattr(fields, field) == kept


@pytest.mark.parametrize(("field", "text", "message"), [
    ("commune_code", "12 rue des Lilas tel 0612345678", "PID commune_code: not an INSEE commune code"),
    ("commune_code", "DOUAI", "PID commune_code: not an INSEE commune code"),
    ("commune_code", "591780", "PID commune_code: not an INSEE commune code"),
    ("gp_rpps", "Dr DUPONT", "PID gp_rpps: not an 11-digit RPPS number"),
    ("gp_rpps", "1000123456", "PID gp_rpps: not an 11-digit RPPS number"),
])
def test_a_coded_trait_that_is_not_a_code_is_the_records_fault(field: str, text: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        CHECKS.identity({**BASE, field: text}, "%Y-%m-%d", where="PID")
    assert (caught.value.reason, caught.value.message) == (ReasonCode.VALUE_INVALID, message)
