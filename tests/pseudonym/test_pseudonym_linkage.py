"""Linkage inside the edge: the same person in any of its spellings gets one pseudonym, and
different people — twins, homonyms — keep theirs, with or without a NIR."""

from __future__ import annotations

import base64
import logging
import os
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from pdp.config import Settings
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.linkage import LinkageOptions, LinkInput, LinkResult, link
from pdp.pseudonym.linkage_eval import baseline, evaluate
from pdp.pseudonym.linkage_rules import UnionFind, build_variants, compatible_first_names
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise
from pdp.pseudonym.pseudonymise import Pseudonymiser
from pdp.synth.nir import make_nir

TODAY = date(2026, 7, 1)
PLACE = "59178"  # Douai

_NAMES = """
MARTIN BERNARD DUBOIS THOMAS ROBERT RICHARD PETIT DURAND LEROY MOREAU SIMON LAURENT LEFEBVRE MICHEL
GARCIA DAVID BERTRAND ROUX VINCENT FOURNIER MOREL GIRARD ANDRE LEFEVRE MERCIER DUPONT LAMBERT BONNET
FRANCOIS MARTINEZ LEGRAND GARNIER FAURE ROUSSEAU BLANC GUERIN MULLER HENRY ROUSSEL NICOLAS PERRIN
MORIN MATHIEU CLEMENT GAUTHIER DUMONT LOPEZ FONTAINE CHEVALIER ROBIN MASSON SANCHEZ GERARD NGUYEN
BOYER DENIS LEMAIRE DUVAL JOLY GAUTIER
/
JEAN PIERRE MICHEL ANDRE PHILIPPE RENE LOUIS ALAIN JACQUES BERNARD MARCEL DANIEL ROGER ROBERT PAUL
/
MARIE JEANNE FRANCOISE MONIQUE CATHERINE NATHALIE ISABELLE SYLVIE ANNE MARTINE CHRISTINE SUZANNE
"""
_SURNAMES, _MALE, _FEMALE = (part.split() for part in _NAMES.split("/"))


def canon(**fields: Any) -> CanonicalIdentity:
    result = normalise(RawIdentity(**fields), today=TODAY)
    assert isinstance(result, CanonicalIdentity), result
    return result


def nir(sex: str, birth: str, order: int) -> str:
    return make_nir(sex, date.fromisoformat(birth), PLACE, order)


@pytest.fixture(scope="module")
def pseudonymiser(tmp_path_factory: pytest.TempPathFactory) -> Pseudonymiser:
    """A pseudonymiser over a throw-away key store (random master key)."""
    master = base64.b64encode(os.urandom(32)).decode("ascii")
    store = KeyStore.from_settings(
        Settings(_env_file=None, key_store=tmp_path_factory.mktemp("linkage") / "keys", master_key=master)
    )
    store.init()
    return Pseudonymiser(store)


def background(persons: int = 400, seed: int = 1) -> list[LinkInput]:
    """A small population around the records under test, as a source would send it: most
    persons with their own NIR, some twice (with and without it), so the model sees a realistic
    mix of names, dates and non-matches."""
    rng = random.Random(seed)
    out = []
    for i in range(persons):
        sex = rng.choice("MF")
        birth = (date(1930, 1, 1) + timedelta(days=rng.randrange(30_000))).isoformat()
        fields = {
            "birth_name": rng.choice(_SURNAMES),
            "first_names": rng.choice(_MALE if sex == "M" else _FEMALE),
            "sex": sex,
            "birth_date": birth,
        }
        out.append(LinkInput(f"bg-{i}-a", canon(**fields, nir=nir(sex, birth, 500 + i % 400))))
        if i % 3 == 0:
            out.append(LinkInput(f"bg-{i}-b", canon(**fields)))
    return out


def linked(pseudonymiser: Pseudonymiser, *records: tuple[str, CanonicalIdentity], **options: Any) -> LinkResult:
    inputs = [LinkInput(key, canonical) for key, canonical in records] + background()
    return link(inputs, pseudonymiser, options=LinkageOptions(**options))


# --- the same person, spelled differently: one pseudonym ---------------------------------------


def test_a_married_name_written_as_birth_name_without_nir_is_linked_to_her_nir_records(pseudonymiser) -> None:
    hospital = canon(
        birth_name="Dupont",
        used_name="Martin",
        first_names="Claire, Anne",
        sex="F",
        birth_date="1975-03-14",
        nir=nir("F", "1975-03-14", 1),
    )
    social = canon(birth_name="MARTIN", first_names="Claire", sex="F", birth_date="14/03/1975")
    result = linked(pseudonymiser, ("pmsi", hospital), ("social", social))
    assert result.pseudonyms["social"] == result.pseudonyms["pmsi"] == pseudonymiser.pseudonym(hospital)
    assert result.rule_counts["probabilistic"] >= 1


def test_a_typo_in_the_birth_name_is_linked(pseudonymiser) -> None:
    gp = canon(
        birth_name="Fontaine",
        first_names="Jean-Claude",
        sex="M",
        birth_date="1950-08-05",
        nir=nir("M", "1950-08-05", 2),
    )
    pharmacy = canon(birth_name="FOTAINE", first_names="JEAN CLAUDE", sex="M", birth_date="1950-08-05")
    result = linked(pseudonymiser, ("gp", gp), ("pharmacy", pharmacy))
    assert result.pseudonyms["pharmacy"] == result.pseudonyms["gp"]


def test_a_day_month_swap_of_the_birth_date_is_linked(pseudonymiser) -> None:
    lab = canon(
        birth_name="Vaillant",
        first_names="Rémy Antoine",
        sex="M",
        birth_date="1962-04-03",
        nir=nir("M", "1962-04-03", 3),
    )
    swapped = canon(birth_name="VAILLANT", first_names="Remy", sex="M", birth_date="1962-03-04")
    result = linked(pseudonymiser, ("lab", lab), ("report", swapped))
    assert result.pseudonyms["report"] == result.pseudonyms["lab"]


def test_a_traits_record_equal_to_a_nir_records_traits_takes_the_nir_pseudonym(pseudonymiser) -> None:
    """Rule 2: no model needed when the traits key is that of exactly one NIR person."""
    with_nir = canon(
        birth_name="Le Fèvre",
        first_names="Jean-Marie, Paul",
        sex="M",
        birth_date="1980-05-12",
        nir=nir("M", "1980-05-12", 4),
    )
    without = canon(birth_name="LEFEVRE", first_names="JEAN MARIE", sex="1", birth_date="12/05/1980")
    result = link(
        [LinkInput("a", with_nir), LinkInput("b", without)], pseudonymiser, options=LinkageOptions(probabilistic=False)
    )
    assert result.pseudonyms["a"] == result.pseudonyms["b"] == pseudonymiser.pseudonym(with_nir)
    assert result.rule_counts == {"deterministic_nir": 1, "deterministic_traits": 1, "probabilistic": 0, "singleton": 0}


# --- different people: never one pseudonym ------------------------------------------------------


def test_twins_with_the_same_birth_date_name_parent_nir_and_address_are_not_linked(pseudonymiser) -> None:
    parent = nir("F", "1985-06-20", 5)
    twins = [
        LinkInput(
            key,
            canon(birth_name="Vandenbussche", first_names=first, sex="F", birth_date="2015-09-01", nir=parent),
            postcode="59500",
        )
        for key, first in (("lea", "Léa"), ("chloe", "Chloé"))
    ]
    result = link([*twins, *background()], pseudonymiser)
    assert result.pseudonyms["lea"] != result.pseudonyms["chloe"]


def test_two_people_with_the_same_name_and_birth_date_but_different_own_nirs_are_not_linked(pseudonymiser) -> None:
    a = canon(birth_name="Martin", first_names="Marie", sex="F", birth_date="1970-08-05", nir=nir("F", "1970-08-05", 6))
    b = canon(birth_name="Martin", first_names="Marie", sex="F", birth_date="1970-08-05", nir=nir("F", "1970-08-05", 7))
    either = canon(birth_name="MARTIN", first_names="MARIE", sex="F", birth_date="1970-08-05")
    result = linked(pseudonymiser, ("a", a), ("b", b), ("either", either))
    assert result.pseudonyms["a"] != result.pseudonyms["b"]
    assert result.pseudonyms["either"] not in {result.pseudonyms["a"], result.pseudonyms["b"]}  # ambiguous: apart


def test_a_common_name_and_birth_date_without_nir_and_different_first_names_are_not_linked(pseudonymiser) -> None:
    a = canon(birth_name="Martin", first_names="Jean", sex="M", birth_date="1960-01-01")
    b = canon(birth_name="Martin", first_names="Pierre", sex="M", birth_date="1960-01-01")
    result = linked(pseudonymiser, ("a", a), ("b", b))
    assert result.pseudonyms["a"] != result.pseudonyms["b"]


def test_twins_whose_compound_first_names_share_the_first_token_are_not_merged_by_the_traits_rule(
    pseudonymiser,
) -> None:
    """Rule 3 merges equal traits keys only when the first names fit (one a prefix of the other)."""
    common = {"birth_name": "Gay", "sex": "F", "birth_date": "2012-02-02"}
    claire = canon(**common, first_names="Marie-Claire")
    france = canon(**common, first_names="Marie-France")
    result = link(
        [LinkInput("claire", claire), LinkInput("france", france)],
        pseudonymiser,
        options=LinkageOptions(probabilistic=False),
    )
    assert result.pseudonyms["claire"] != result.pseudonyms["france"]
    assert result.parameters["counts"]["disambiguated_pseudonyms"] == 1
    # the vault keeps what makes each pseudonym, the disambiguated one included: rotation re-keys both
    twins = {result.pseudonyms["claire"], result.pseudonyms["france"]}
    assert twins <= set(result.canonicals)
    assert {pseudonymiser.pseudonym(result.canonicals[p]) for p in twins} == twins


def test_a_homonym_born_elsewhere_than_the_nir_says_is_not_attached_to_the_nir_person(pseudonymiser) -> None:
    """Same name, first name, birth date and sex: only the birthplace (which the NIR encodes) differs."""
    common = {"birth_name": "Kerjean", "first_names": "Guillaume", "sex": "M", "birth_date": "2008-06-19"}
    pharmacy = canon(**common, nir=make_nir("M", date(2008, 6, 19), "59654", 2))  # born in 59654
    gp = canon(**common, birth_place="59019")
    result = linked(pseudonymiser, ("pharmacy", pharmacy), ("gp", gp))
    assert result.pseudonyms["pharmacy"] != result.pseudonyms["gp"]


def test_the_insured_parents_nir_is_not_an_identifier_of_the_child(pseudonymiser) -> None:
    mother_nir = nir("F", "1984-02-10", 8)
    mother = canon(birth_name="Roux", first_names="Nadia", sex="F", birth_date="1984-02-10", nir=mother_nir)
    child = canon(birth_name="Roux", first_names="Inès", sex="F", birth_date="2016-07-22", nir=mother_nir)
    assert child.insured_nir is not None and child.nir is None
    result = linked(pseudonymiser, ("mother", mother), ("child", child))
    assert result.pseudonyms["mother"] != result.pseudonyms["child"]


def test_a_merge_that_would_join_two_different_own_nirs_is_refused() -> None:
    a = canon(birth_name="Durand", first_names="Paul", sex="M", birth_date="1970-01-01", nir=nir("M", "1970-01-01", 9))
    b = canon(birth_name="Durand", first_names="Paul", sex="M", birth_date="1970-01-01", nir=nir("M", "1970-01-01", 10))
    c = canon(birth_name="Durand", first_names="Paul", sex="M", birth_date="1970-01-01")
    variants = build_variants([("a", a, None), ("b", b, None), ("c", c, None)])
    index = {v.records[0]: v.index for v in variants}
    uf = UnionFind(variants)
    assert uf.union(index["a"], index["c"])
    assert not uf.union(index["c"], index["b"])
    assert uf.find(index["b"]) != uf.find(index["a"])


@pytest.mark.parametrize(
    ("a", "b", "fit"),
    [(("MARIE",), ("MARIE", "CLAIRE"), True), (("MARIE", "CLAIRE"), ("MARIE", "FRANCE"), False), ((), ("A",), True)],
)
def test_first_names_fit_when_one_list_is_a_prefix_of_the_other(a, b, fit) -> None:
    assert compatible_first_names(a, b) is fit


# --- batches, determinism, privacy ---------------------------------------------------------------


def test_a_new_batch_links_to_persons_known_from_earlier_batches(pseudonymiser) -> None:
    first = canon(birth_name="Guyot", first_names="Pénélope", sex="F", birth_date="1982-02-19")
    batch1 = link([LinkInput("r1", first)], pseudonymiser)
    known = [(batch1.pseudonyms["r1"], first)]

    typo = canon(birth_name="GUYOT", first_names="PENELPOE", sex="F", birth_date="1982-02-19")
    batch2 = link([LinkInput("r2", typo), *background()], pseudonymiser, known=known)
    assert batch2.pseudonyms["r2"] == batch1.pseudonyms["r1"]

    with_nir = canon(
        birth_name="Guyot", first_names="Pénélope", sex="F", birth_date="1982-02-19", nir=nir("F", "1982-02-19", 11)
    )
    batch3 = link([LinkInput("r3", with_nir)], pseudonymiser, known=known)
    assert batch3.pseudonyms["r3"] == pseudonymiser.pseudonym(with_nir)
    assert batch3.superseded == {batch1.pseudonyms["r1"]: batch3.pseudonyms["r3"]}


def test_the_same_records_in_any_order_give_the_same_pseudonyms(pseudonymiser) -> None:
    inputs = background(persons=300, seed=3)
    shuffled = inputs[:]
    random.Random(5).shuffle(shuffled)
    assert link(inputs, pseudonymiser).pseudonyms == link(shuffled, pseudonymiser).pseudonyms


def test_linkage_logs_counts_only_and_writes_no_file(pseudonymiser, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    secret = canon(
        birth_name="Zybertowicz",
        first_names="Wladyslawa",
        sex="F",
        birth_date="1944-05-02",
        nir=nir("F", "1944-05-02", 12),
    )
    with caplog.at_level(logging.DEBUG):
        result = link([LinkInput("s", secret), *background()], pseudonymiser)
    text = caplog.text + repr(result) + repr(result.parameters)
    for value in ("ZYBERTOWICZ", "WLADYSLAWA", "1944-05-02", secret.nir):
        assert value not in text
    assert list(tmp_path.iterdir()) == []  # DuckDB stayed in memory: no database, no spill file


def test_a_record_key_twice_in_a_batch_is_refused(pseudonymiser) -> None:
    a = canon(birth_name="Durand", first_names="Paul", sex="M", birth_date="1970-01-01")
    with pytest.raises(ValueError, match="unique"):
        link([LinkInput("k", a), LinkInput("k", a)], pseudonymiser)


# --- evaluation --------------------------------------------------------------------------------


def test_pairwise_precision_and_recall_come_from_the_contingency_table() -> None:
    truth = {"a1": 1, "a2": 1, "a3": 1, "b1": 2, "b2": 2}
    merged = {"a1": "p", "a2": "p", "a3": "p", "b1": "p", "b2": "q"}  # b1 wrongly with person 1
    m = evaluate(merged, truth)
    # predicted pairs: C(4,2) = 6, of which 3 true; true pairs: C(3,2) + C(2,2) = 4
    assert (m.predicted_pairs, m.correct_pairs, m.true_pairs) == (6, 3, 4)
    assert (m.precision, m.recall) == (0.5, 0.75)
    assert (m.collisions, m.splits, m.persons_in_collisions) == (1, 1, 2)


# --- end to end on a generated territory ---------------------------------------------------------


@pytest.mark.slow
def test_on_a_5000_person_territory_linkage_reaches_the_precision_and_recall_targets_without_collision(
    pseudonymiser, tmp_path: Path
) -> None:
    from pdp.pseudonym.linkage_bench import load_inputs
    from pdp.pseudonym.linkage_sources import read_truth
    from pdp.synth import generate

    generate(tmp_path / "territory", persons=5000, seed=7, territory="douaisis", workers=2)
    inputs, rejected = load_inputs(tmp_path / "territory")
    truth = read_truth(tmp_path / "territory")
    # every record carrying an identity is read: a GP bundle's Patient (its other resources point to it)
    identified = [k for k in truth if not k.startswith("gp_fhir|") or "|Patient/" in k]
    assert rejected == 0 and sorted(item.record_key for item in inputs) == sorted(identified)

    result = link(inputs, pseudonymiser)
    metrics = evaluate(result, truth)
    before = baseline(inputs, pseudonymiser, truth)
    assert metrics.precision >= 0.995
    assert metrics.recall >= 0.98
    assert metrics.collisions == 0
    assert metrics.splits < before.splits / 10
    assert result.parameters["trained"] is True


def test_figures_per_error_kind_count_records_linked_to_their_persons_main_pseudonym() -> None:
    from pdp.pseudonym.linkage_eval import by_kind

    truth = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 3}
    assignment = {"a": "p", "b": "p", "c": "q", "d": "r", "e": "r"}  # c split off; d and e merged
    kinds = {"c": ("names_swapped",), "b": ("names_swapped", "moved"), "e": ("moved",)}
    figures = by_kind(assignment, truth, kinds)
    assert figures["names_swapped"].records == 2 and figures["names_swapped"].linked == 0.5
    assert figures["names_swapped"].persons_split == 1 and figures["names_swapped"].persons_in_collisions == 0
    assert figures["moved"].persons_in_collisions == 1 and figures["moved"].linked == 1.0
