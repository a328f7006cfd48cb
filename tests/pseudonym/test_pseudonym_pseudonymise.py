"""Keyed pseudonyms: one person one pseudonym per key version, different people different
pseudonyms, the version in front, and nothing of the key or the identity in the output."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pdp.config import Settings
from pdp.pseudonym.keys import KeyStore, KeyStoreError
from pdp.pseudonym.nir import nir_key
from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, normalise
from pdp.pseudonym.pseudonymise import (
    PSEUDONYM_LENGTH,
    Pseudonymiser,
    canonical_bytes,
    parse_pseudonym,
    reference_hmac_loop,
)

TODAY = date(2025, 6, 1)
PSEUDONYM = re.compile(r"v[1-9][0-9]*:[A-Za-z0-9_\-]{43}")
MOTHER_NIR = "2520569123045" + nir_key("2520569123045")


def canon(**fields: Any) -> CanonicalIdentity:
    defaults = {"birth_name": "LEFEVRE", "first_names": "Jean", "sex": "M", "birth_date": "1980-05-12"}
    result = normalise(RawIdentity(**(defaults | fields)), today=TODAY)
    assert isinstance(result, CanonicalIdentity)
    return result


@pytest.fixture()
def store(tmp_path: Path) -> KeyStore:
    """An initialised key store in a private directory, under a random master key."""
    master_key = base64.b64encode(os.urandom(32)).decode("ascii")
    key_store = KeyStore.from_settings(Settings(_env_file=None, key_store=tmp_path / "keys", master_key=master_key))
    key_store.init()
    return key_store


@pytest.fixture()
def pseudonymiser(store: KeyStore) -> Pseudonymiser:
    return Pseudonymiser(store)


def test_a_pseudonym_is_the_keyed_hmac_of_the_canonical_bytes_with_its_version(
    store: KeyStore, pseudonymiser: Pseudonymiser
) -> None:
    identity = canon()
    key = store.current("pseudonym").material
    digest = hmac.new(key, canonical_bytes(identity), hashlib.sha256).digest()
    expected = "v1:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert pseudonymiser.pseudonym(identity) == expected
    assert PSEUDONYM.fullmatch(expected) and len(expected) == 3 + PSEUDONYM_LENGTH
    assert parse_pseudonym(expected) == (1, expected[3:])


def test_the_same_identity_gives_the_same_pseudonym(store: KeyStore, pseudonymiser: Pseudonymiser) -> None:
    assert pseudonymiser.pseudonym(canon()) == pseudonymiser.pseudonym(canon())
    assert Pseudonymiser(store).pseudonym(canon()) == pseudonymiser.pseudonym(canon())


def test_spelling_variants_of_one_person_get_one_pseudonym(pseudonymiser: Pseudonymiser) -> None:
    variants = [
        canon(birth_name="Lefèvre", first_names="Jean-Marie, Paul", birth_date="12/05/1980"),
        canon(birth_name="LE FEVRE", first_names="JEAN MARIE", sex="1"),
        canon(birth_name="le-fèvre", first_names=["Jean-Marie"], birth_date="19800512", used_name="Martin"),
    ]
    assert len(set(pseudonymiser.pseudonymise_many(variants))) == 1


def test_different_people_get_different_pseudonyms(pseudonymiser: Pseudonymiser) -> None:
    people = [
        canon(),
        canon(first_names="Jeanne", sex="F"),
        canon(birth_date="1980-05-13"),
        canon(birth_name="LEFEBVRE"),
        canon(nir="1800575056123" + nir_key("1800575056123")),
        canon(nir="1800575056124" + nir_key("1800575056124")),
    ]
    pseudonyms = pseudonymiser.pseudonymise_many(people)
    assert len(set(pseudonyms)) == len(people)


def test_twins_sharing_their_mothers_nir_get_different_pseudonyms(pseudonymiser: Pseudonymiser) -> None:
    louis = canon(nir=MOTHER_NIR, first_names="Louis", birth_date="2014-03-02")
    paul = canon(nir=MOTHER_NIR, first_names="Paul", birth_date="2014-03-02")
    emma = canon(nir=MOTHER_NIR, first_names="Emma", sex="F", birth_date="2014-03-02")
    assert len({pseudonymiser.pseudonym(louis), pseudonymiser.pseudonym(paul), pseudonymiser.pseudonym(emma)}) == 3


def test_another_key_version_gives_another_pseudonym_with_its_prefix(store: KeyStore) -> None:
    before = Pseudonymiser(store)
    store.rotate("pseudonym")
    after = Pseudonymiser(store)
    identity = canon()
    old, new = before.pseudonym(identity), after.pseudonym(identity)
    assert old.startswith("v1:") and new.startswith("v2:")
    assert old[3:] != new[3:]
    assert after.pseudonym(identity, version=1) == old  # the previous key still re-computes old pseudonyms
    assert after.verify(identity, old) and after.verify(identity, new)
    assert not after.verify(canon(first_names="Paul"), old)


def test_a_pseudonymiser_pins_its_version_across_a_rotation(store: KeyStore) -> None:
    pseudonymiser = Pseudonymiser(store)
    store.rotate("pseudonym")
    assert pseudonymiser.version == 1
    assert pseudonymiser.pseudonym(canon()).startswith("v1:")


def test_a_retired_key_makes_no_more_pseudonyms(store: KeyStore) -> None:
    store.rotate("pseudonym")
    store.retire("pseudonym", 1)
    pseudonymiser = Pseudonymiser(store)
    with pytest.raises(KeyStoreError, match="retired"):
        pseudonymiser.pseudonym(canon(), version=1)
    with pytest.raises(KeyStoreError, match="no pseudonym key version 5"):
        pseudonymiser.pseudonym(canon(), version=5)


def test_the_batch_equals_one_by_one(pseudonymiser: Pseudonymiser) -> None:
    people = [canon(birth_date=f"1980-05-{day:02d}") for day in range(1, 29)]
    assert pseudonymiser.pseudonymise_many(people) == [pseudonymiser.pseudonym(p) for p in people]
    assert pseudonymiser.pseudonymise_many([]) == []


def test_only_a_canonical_identity_is_pseudonymised(pseudonymiser: Pseudonymiser) -> None:
    rejection = normalise(RawIdentity(birth_name="", first_names="Jean", sex="M", birth_date="1980-05-12"))
    for wrong in (rejection, "LEFEVRE Jean 1980-05-12", b"pdp-pseudonym/1"):
        with pytest.raises(TypeError, match="only a CanonicalIdentity"):
            pseudonymiser.pseudonym(wrong)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="only a CanonicalIdentity"):
            pseudonymiser.pseudonymise_many([canon(), wrong])  # type: ignore[list-item]


def test_no_key_bytes_and_no_identity_in_the_output(store: KeyStore, pseudonymiser: Pseudonymiser) -> None:
    key = store.current("pseudonym").material
    identity = canon(birth_name="Lefèvre", nir="1800575056123" + nir_key("1800575056123"))
    outputs = [pseudonymiser.pseudonym(identity), *pseudonymiser.pseudonymise_many([identity]), repr(pseudonymiser)]
    leaks = [
        key.hex(),
        base64.b64encode(key).decode()[:20],
        base64.urlsafe_b64encode(key).decode()[:20],
        "LEFEVRE",
        "1800575056123",
        "1980",
        hashlib.sha256(canonical_bytes(identity)).hexdigest()[:16],  # no unkeyed hash either
        base64.urlsafe_b64encode(hashlib.sha256(canonical_bytes(identity)).digest()).decode()[:16],
    ]
    for output in outputs:
        for leak in leaks:
            assert leak not in output


def test_parse_pseudonym_refuses_what_is_not_one() -> None:
    for wrong in ("1800575056123", "v0:" + "A" * 43, "v1:" + "A" * 42, "v1:" + "+" * 43, "x1:" + "A" * 43):
        with pytest.raises(ValueError, match="not a pseudonym") as caught:
            parse_pseudonym(wrong)
        assert wrong not in str(caught.value)


def test_the_reference_loop_measures_a_rate() -> None:
    rate = reference_hmac_loop([b"record %d" % i for i in range(2000)], os.urandom(32))
    assert rate > 1000
    with pytest.raises(ValueError, match="at least one record"):
        reference_hmac_loop([], os.urandom(32))
