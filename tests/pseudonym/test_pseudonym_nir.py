"""NIR parsing: valid NIRs of every shape are accepted with their parts; each fault has its code.

The control keys of the valid examples are literal (two are public INSEE examples) and are
re-checked here with an independent formula, so a wrong key rule in the code cannot pass.
"""

from __future__ import annotations

import doctest

import pytest

import pdp.pseudonym.nir as nir_module
from pdp.pseudonym.nir import Nir, NirInvalid, NirReason, nir_key, parse_nir


def independent_key(body13: str) -> str:
    numeric = body13.replace("2A", "19").replace("2B", "18")
    return f"{97 - int(numeric) % 97:02d}"


VALID = [
    # (as written,                 sex, year2, month, département, commune, order, abroad)
    ("2 55 08 14 168 025 38", "F", 55, 8, "14", "168", 25, False),  # public INSEE example
    ("1 84 12 76 451 089 46", "M", 84, 12, "76", "451", 89, False),  # public INSEE example
    ("180057505612342", "M", 80, 5, "75", "056", 123, False),  # compact, Paris
    ("1.80.05.2A.004.123.10", "M", 80, 5, "2A", "004", 123, False),  # Corse-du-Sud, dots
    ("2 93 03 2b 003 345 96", "F", 93, 3, "2B", "003", 345, False),  # Haute-Corse, lower case
    ("2-85-12-971-05-012-40", "F", 85, 12, "971", "05", 12, False),  # Guadeloupe: 3-digit dept
    ("1 69 03 99 350 045 83", "M", 69, 3, "99", "350", 45, True),  # born abroad (Morocco)
    ("7 90 12 99 135 001 57", "M", 90, 12, "99", "135", 1, True),  # temporary NIA
    ("1 75 50 20 004 123 75", "M", 75, None, "20", "004", 123, False),  # month unknown (50), Corsica pre-1976
    ("3 02 01 99 350 007 71", "M", 2, 1, "99", "350", 7, True),  # sex digit 3 (registration)
]


@pytest.mark.parametrize(("written", "sex", "year2", "month", "department", "commune", "order", "abroad"), VALID)
def test_a_valid_nir_is_accepted_with_its_parts(
    written: str, sex: str, year2: int, month: int | None, department: str, commune: str, order: int, abroad: bool
) -> None:
    parsed = parse_nir(written)
    assert isinstance(parsed, Nir)
    assert parsed.key == independent_key(parsed.body)
    assert (parsed.sex, parsed.year2, parsed.month) == (sex, year2, month)
    assert (parsed.department, parsed.commune, parsed.order, parsed.born_abroad) == (
        department,
        commune,
        order,
        abroad,
    )
    assert len(parsed.value) == 15 and " " not in parsed.value and parsed.value == parsed.value.upper()


def test_the_key_rule_reads_corsica_as_19_and_18() -> None:
    assert nir_key("180052A004123") == independent_key("180052A004123") == "10"
    assert nir_key("293032B003345") == "96"
    assert nir_key("180052A004123") != f"{97 - int('1800520004123') % 97:02d}"  # 2A is not 20


def test_the_temporary_nia_and_the_month_range_are_flagged() -> None:
    nia = parse_nir("7 90 12 99 135 001 57")
    assert isinstance(nia, Nir) and nia.temporary
    unknown_month = parse_nir("1 75 20 20 004 123 " + independent_key("1752020004123"))
    assert isinstance(unknown_month, Nir) and unknown_month.month is None


INVALID = [
    # (why it is wrong,                        as written,                         reason)
    ("one digit missing", "18005750561234", NirReason.NIR_LENGTH),
    ("the key omitted", "1800575056123", NirReason.NIR_LENGTH),
    ("one digit too many", "1800575056123420", NirReason.NIR_LENGTH),
    ("empty", "", NirReason.NIR_LENGTH),
    ("a letter in the order", "18005750561X342", NirReason.NIR_CHARSET),
    ("2C is not Corsica", "180052C00412310", NirReason.NIR_CHARSET),
    ("Corsica letter in the commune", "1800575A0412310", NirReason.NIR_CHARSET),
    ("sex digit 5", "5800575056123" + independent_key("5800575056123"), NirReason.NIR_SEX),
    ("sex digit 0", "0800575056123" + independent_key("0800575056123"), NirReason.NIR_SEX),
    ("month 00", "1800075056123" + independent_key("1800075056123"), NirReason.NIR_MONTH),
    ("month 13", "1801375056123" + independent_key("1801375056123"), NirReason.NIR_MONTH),
    ("month 45", "1804575056123" + independent_key("1804575056123"), NirReason.NIR_MONTH),
    ("département 00", "1800500056123" + independent_key("1800500056123"), NirReason.NIR_DEPARTMENT),
    ("order 000", "1800575056000" + independent_key("1800575056000"), NirReason.NIR_ORDER),
    ("a wrong key", "180057505612343", NirReason.NIR_KEY),
    ("two digits swapped", "108057505612342", NirReason.NIR_KEY),
    ("Corsica key computed as 20", "180052A004123" + independent_key("1800520004123"), NirReason.NIR_KEY),
]


@pytest.mark.parametrize(("why", "written", "reason"), INVALID, ids=[case[0] for case in INVALID])
def test_an_invalid_nir_is_refused_with_its_reason(why: str, written: str, reason: NirReason) -> None:
    parsed = parse_nir(written)
    assert isinstance(parsed, NirInvalid), why
    assert parsed.reason is reason
    assert not parsed


def test_a_nir_never_shows_in_its_repr() -> None:
    parsed = parse_nir("180057505612342")
    assert isinstance(parsed, Nir)
    for text in (repr(parsed), str(parsed), f"{parsed}"):
        assert "1800575" not in text and "42" not in text


def test_the_module_examples_run() -> None:
    assert doctest.testmod(nir_module).failed == 0
