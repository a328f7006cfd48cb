"""Source identities are degraded the way French sources really degrade them."""

import random
from datetime import date

import pytest
from builders import COMMUNES, make_person

from pdp.synth import identity_variants as iv
from pdp.synth.identity_variants import _hyphen_variant, _typo, strip_accents


def test_accents_and_ligatures_are_stripped() -> None:
    assert strip_accents("LEFÈVRE") == "LEFEVRE"
    assert strip_accents("LECŒUR") == "LECOEUR"
    assert strip_accents("Anaïs-Noëlle") == "Anais-Noelle"


def test_hyphen_and_particle_variants() -> None:
    rng = random.Random(1)
    assert _hyphen_variant("SAINT-ANDRÉ", rng) == "ST ANDRÉ"
    assert _hyphen_variant("Jean-Marie", rng) == "Jean Marie"
    assert _hyphen_variant("D'ARCY", rng) in {"DARCY", "D ARCY"}
    assert _hyphen_variant("LE GALL", rng) in {"LE-GALL", "LEGALL"}


def test_a_typo_changes_one_character_at_most_by_one_edit() -> None:
    rng = random.Random(3)
    for _ in range(50):
        out = _typo("DUBOIS", rng)
        assert out != "" and abs(len(out) - 6) <= 1
        assert out[0] == "D"  # the first letter is kept: typos happen inside names


# Error kinds the linkage model was not designed around (issue 14): each one, forced to rate 1
# on a known person, gives the spelling a registry would see.

_ZERO = {"no_nir": 0.0, "no_accents": 0.0, "hyphen_variant": 0.0, "used_name_only": 0.0, "typo": 0.0,
         "first_name_only": 0.0}  # fmt: skip


def _with_rates(monkeypatch: pytest.MonkeyPatch, **rates: float) -> None:
    calibration = dict(iv.load_calibration())
    calibration["identity_quality"] = {"social": {**_ZERO, **rates}}
    monkeypatch.setattr(iv, "load_calibration", lambda: calibration)


def test_the_default_calibration_draws_every_new_kind_at_a_small_rate() -> None:
    for source, rates in iv.load_calibration()["identity_quality"].items():
        for kind in ("names_swapped", "default_birth_date", "year_digit", "short_first_name"):
            assert rates.get(kind, 0.0) <= 0.1, (source, kind)
    assert iv.load_calibration()["identity_quality"]["social"]["names_swapped"] > 0


def test_first_and_last_names_swapped(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_rates(monkeypatch, names_swapped=1.0)
    person = make_person(1, birth_name="DUBOIS", first_names=("Pierre",))
    ident = iv.source_identity(person, "social", seed=3)
    assert (ident.birth_name, ident.first_names) == ("PIERRE", "Dubois")
    assert "names_swapped" in ident.errors


def test_compound_first_name_merged_and_particle_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_rates(monkeypatch, compound_first_name_merged=1.0, particle_dropped=1.0)
    person = make_person(2, birth_name="LE GALL", first_names=("Jean-Pierre", "Louis"))
    ident = iv.source_identity(person, "social", seed=3)
    assert ident.first_names.startswith("JeanPierre")
    assert ident.birth_name == "GALL"
    assert {"compound_first_name_merged", "particle_dropped"} <= set(ident.errors)


def test_short_first_name_from_the_declared_table(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_rates(monkeypatch, short_first_name=1.0)
    assert iv.source_identity(make_person(3, first_names=("Frédéric",)), "social", seed=3).first_names == "Fred"
    unlisted = iv.source_identity(make_person(4, first_names=("Pierre",)), "social", seed=3)
    assert unlisted.first_names == "Pierre" and "short_first_name" not in unlisted.errors


def test_default_birth_date_and_mistyped_year(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_rates(monkeypatch, default_birth_date=1.0)
    person = make_person(5, birth_date=date(1958, 4, 12))
    assert iv.source_identity(person, "social", seed=3).birth_date == date(1958, 1, 1)
    _with_rates(monkeypatch, year_digit=1.0)
    typed = iv.source_identity(person, "social", seed=3).birth_date
    assert (typed.month, typed.day) == (4, 12) and typed.year != 1958 and str(typed.year)[:2] == "19"


def test_a_move_gives_another_postcode_of_the_territory(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_rates(monkeypatch, moved=1.0)
    person = make_person(6, commune=COMMUNES[0])
    ident = iv.source_identity(person, "social", seed=3, communes=tuple(COMMUNES))
    assert ident.address is not None and ident.address.postcode != person.address.postcode
    assert ident.address.postcode in {c.postcode for c in COMMUNES}
    assert iv.source_identity(person, "social", seed=3).address is None  # no territory, no move


def test_new_kinds_are_deterministic_and_leave_the_first_family_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    person = make_person(7, birth_name="LE GALL", first_names=("Jean-Pierre",))
    _with_rates(monkeypatch, no_accents=0.5, hyphen_variant=0.5)
    plain = iv.source_identity(person, "social", seed=3)
    _with_rates(monkeypatch, no_accents=0.5, hyphen_variant=0.5, short_first_name=1.0)
    twice = [iv.source_identity(person, "social", seed=3) for _ in range(2)]
    assert twice[0] == twice[1]
    assert [k for k in twice[0].errors if k not in iv.NEW_KINDS] == list(plain.errors)


def test_spouses_share_address_and_phone_and_her_used_name_is_his_name() -> None:
    man = make_person(10, birth_name="DUBOIS", sex="M", birth_date=date(1960, 1, 2), phone="03 27 00 00 00")
    woman = make_person(11, birth_name="MARTIN", used_name="PETIT", first_names=("Claire",), sex="F",
                        birth_date=date(1963, 5, 6), commune=COMMUNES[1], street="3 rue Pasteur")  # fmt: skip
    child = make_person(12, sex="F", birth_date=date(2015, 1, 1))
    assert iv.pair_households([man, woman, child], random.Random(1), share=1.0) == 1
    assert woman.address == man.address and woman.phone == man.phone
    assert woman.identity.used_name == "DUBOIS" and (woman.household, man.household) == (10, 11)
    assert child.household is None
