"""NIR keys as the edge will check them: the generator must never emit an invalid key."""

from datetime import date

import pytest

from pdp.synth.nir import make_nir, nir_is_valid, nir_key


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("1841276451089", "46"),  # the textbook example
        ("2690599350123", f"{97 - 2690599350123 % 97:02d}"),  # born abroad (département 99)
    ],
)
def test_key_of_known_bodies(body: str, key: str) -> None:
    assert nir_key(body) == key


def test_corsica_uses_19_and_18_for_the_key() -> None:
    assert nir_key("155032A004012") == f"{97 - 1550319004012 % 97:02d}"
    assert nir_key("155032B033012") == f"{97 - 1550318033012 % 97:02d}"


def test_made_nirs_are_valid_and_wrong_keys_are_not() -> None:
    nir = make_nir("F", date(1961, 11, 3), "59178", 27)
    assert nir.startswith("2611159178027") and nir_is_valid(nir)
    bad = nir[:13] + f"{(int(nir[13:]) + 1) % 97:02d}"
    assert not nir_is_valid(bad)
    assert not nir_is_valid(nir[:14])
    assert not nir_is_valid("X" + nir[1:])


def test_order_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        make_nir("M", date(1990, 1, 1), "59178", 1000)
