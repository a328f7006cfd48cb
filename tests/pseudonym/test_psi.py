"""PSI without a server: items from the normalisation, the protocol's halves, the limits file, the
partner's list and the command's one-line errors (the exchange over HTTP: tests/api/test_psi.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.pseudonym import RawIdentity, Rejection
from pdp.pseudonym.psi import (
    Client,
    LimitsError,
    ProtocolError,
    build_setup,
    load_limits,
    member_items,
    partner_item,
    process_request,
    server_key,
)
from pdp.pseudonym.psi.client import read_partner_list

NIR_PERSON = {"birth_name": "Lefèvre", "first_names": "Zoé Anne", "sex": "F", "birth_date": "1950-03-14",
              "nir": "250037512345657"}


def raw(**fields: str | None) -> RawIdentity:
    return RawIdentity(**{**NIR_PERSON, **fields})


def test_the_partner_and_the_registry_make_the_same_item_from_variants_of_one_person() -> None:
    member = set(member_items(raw()))
    assert len(member) == 2  # the NIR form and the traits form
    for variant in (raw(), raw(nir=None), raw(nir=None, birth_name="LEFEVRE", first_names="zoe"),
                    raw(nir=None, birth_name="lefèvre", first_names="Zoé, Anne", sex="2", birth_date="14/03/1950")):
        assert partner_item(variant) in member
    assert partner_item(raw(nir=None, birth_date="1950-03-15")) not in member
    assert partner_item(raw(nir=None, first_names="Anne Zoé")) not in member  # the first first name counts


def test_a_record_that_does_not_normalise_is_a_rejection_with_its_reason_never_an_item() -> None:
    rejected = partner_item(raw(birth_name="X"))
    assert isinstance(rejected, Rejection) and (str(rejected.reason_code), rejected.field) == ("NAME_EMPTY",
                                                                                              "birth_name")
    assert member_items(raw(birth_name="")) == []


def test_parallel_and_single_setups_are_the_same_and_answer_exactly() -> None:
    key = server_key(b"s" * 32, "r", "r1-20260630-v1-gabc", "query", "1")
    items = [f"item-{n}" for n in range(9000)]
    setup = build_setup(key, items, reveal=True, workers=2)
    assert setup == build_setup(key, items, reveal=True, workers=1)
    client = Client(reveal=True)
    asked = ["item-5", "nobody", "item-8999", "item-9000"]
    assert client.intersection(setup, process_request(key, client.request(asked), reveal=True)) == [0, 2]
    counter = Client(reveal=False)
    assert counter.count(setup, process_request(key, counter.request(asked), reveal=False)) == 2
    with pytest.raises(ProtocolError):
        counter.intersection(setup, b"")


def test_keys_differ_per_registry_version_mode_and_secret() -> None:
    base = server_key(b"s" * 32, "r", "v1", "query", "1")
    assert len(base) == 32 and base == server_key(b"s" * 32, "r", "v1", "query", "1")
    others = {server_key(b"s" * 32, "r", "v2", "query", "1"), server_key(b"s" * 32, "r", "v1", "count", "1"),
              server_key(b"t" * 32, "r", "v1", "query", "1"), server_key(b"s" * 32, "q", "v1", "query", "1")}
    assert base not in others and len(others) == 4


def test_a_malformed_request_is_a_protocol_error_without_its_bytes() -> None:
    key = server_key(b"s" * 32, "r", "v1", "query", "1")
    with pytest.raises(ProtocolError) as caught:
        process_request(key, b"\xff\x00 NIR 250037512345657", reveal=True)
    assert "2500375" not in str(caught.value)


def test_limits_are_validated_and_merged_per_partner(tmp_path: Path) -> None:
    limits = load_limits()
    assert limits.for_partner("pharmacie-du-centre").max_client_set == 10_000
    assert limits.for_partner("someone").queries_per_period == limits.defaults.queries_per_period
    bad = tmp_path / "limits.yml"
    bad.write_text("version: 1\ndefaults: {max_client_set: 5, min_client_set_for_count: 1, min_count: 1,\n"
                   "  queries_per_period: 1, period_hours: 1, max_queries: 3}\n", encoding="utf-8")
    with pytest.raises(LimitsError, match=r"defaults\.max_queries"):
        load_limits(bad)


def test_the_partner_list_is_normalised_row_by_row(tmp_path: Path) -> None:
    listing = tmp_path / "clients.csv"
    listing.write_text(
        "ref,nir,birth_name,first_names,sex,birth_date,phone\n"
        "c1,250037512345657,Lefèvre,Zoé,F,1950-03-14,0600000000\n"
        "c2,,LEFEVRE,zoe,2,14/03/1950,\n"  # the same person without the NIR: another item, sent
        "c3,,Martin,,M,1960-01-01,\n"
        "c4,,Lefevre,Zoe,F,1950-03-14,\n",  # c2 again: sent once
        encoding="utf-8")
    plist = read_partner_list(listing)
    assert plist.accepted == [0, 1]
    assert plist.rejected == [(4, "NAME_EMPTY", "first_names"), (5, "DUPLICATE_RECORD", "identity")]
    assert plist.rows[0]["phone"] == "0600000000"  # the partner's own columns stay with its rows


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from pdp.cli import main

    with pytest.raises(SystemExit) as caught:
        main(list(args))
    return int(caught.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"ref,birth_name\nc1,Martin\n", (), "missing column(s) first_names, sex, birth_date"),
        (b"ref,birth_name,first_names,sex,birth_date\nc1,L\xe9a,Zo\xe9,F,1950-03-14\n", (), "not UTF-8"),
        (b"ref,birth_name,first_names,sex,birth_date\nc1,X,,F,1950-03-14\n", (),
         "no row of the list could be normalised"),
        (b"ref,birth_name,first_names,sex,birth_date\nc1,Martin,Jean,M,1950-03-14\n", ("--cardinality", "--out",
                                                                                        "x.csv"), "--out"),
        (b"ref,birth_name,first_names,sex,birth_date\nc1,Martin,Jean,M,1950-03-14\n", (), "platform unreachable"),
    ],
)
def test_pdp_psi_query_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
                                         extra: tuple[str, ...], message: str) -> None:
    listing = tmp_path / "clients.csv"
    listing.write_bytes(content)
    code, err = _cli(capsys, "psi", "query", "--registry", "t2d_at_risk_unscreened", "--list", str(listing),
                     "--territory", "douaisis", "--api", "http://127.0.0.1:9", "--token", "t", *extra)
    assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert "Martin" not in err and "Léa" not in err


def test_pdp_psi_needs_a_token(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDP_PSI_TOKEN", raising=False)
    code, err = _cli(capsys, "psi", "registries", "--territory", "douaisis")
    assert code == 2 and "no token" in err
