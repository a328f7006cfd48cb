"""The examples in the de-identification modules' docstrings run (they are the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pdp.semantic.deid.text",
    "pdp.semantic.deid.allowlist",
    "pdp.semantic.deid.traits",
    "pdp.semantic.deid.recognizers.nir",
    "pdp.semantic.deid.recognizers.phone",
    "pdp.semantic.deid.recognizers.email",
    "pdp.semantic.deid.recognizers.address",
    "pdp.semantic.deid.recognizers.dates",
    "pdp.semantic.deid.recognizers.hospital_id",
    "pdp.semantic.deid.recognizers.person",
    "pdp.semantic.deid.recognizers.identity",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name}: no example"
    assert result.failed == 0


def test_package_example(deid) -> None:
    from pdp.semantic.deid import PersonTraits, deidentify

    traits = PersonTraits(birth_name="Dupont", used_name="Martin", first_names="Jeanne")
    result = deidentify("Mme Jeanne MARTIN née DUPONT, DDN : 14/03/1950, sous Metformine.", traits)
    assert result.text == "Mme <PRENOM> <NOM> née <NOM>, DDN : <DATE_NAISSANCE>, sous Metformine."


def test_exposed_by_the_semantic_package() -> None:
    import pdp.semantic as semantic
    from pdp.semantic.deid import PersonTraits, deidentify

    assert semantic.deidentify is deidentify and semantic.PersonTraits is PersonTraits
    assert {"deidentify", "deidentify_many", "PersonTraits"} <= set(semantic.__all__)
