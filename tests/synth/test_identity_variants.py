"""Source identities are degraded the way French sources really degrade them."""

import random

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
