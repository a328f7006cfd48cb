"""Private set intersection end to end over HTTP: a real uvicorn server on the session's gold lake,
the partner's client (`pdp psi query`) run as a partner runs it, both modes, the limits, the audit.

The partner's list is made of registry members (found test-side, by pseudonymising the generator's
identities with the test's key store), variants of their names the normalisation unifies, persons
outside the registry, an opposed member and a row that does not normalise.
"""

from __future__ import annotations

import csv
import json
import socket
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import TERRITORY, consent, headers

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # the session's gold lake is built with Spark

REGISTRY = "t2d_at_risk_unscreened"
PHARMACY = "pharmacie-du-centre"  # the policy grants it the full intersection of this registry


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:
    """The session's app behind a real HTTP server on a free local port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def members(api_settings, gold_lake: Path, identities: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Registry members among the generator's identities with their own NIR: person id → identity."""
    from deltalake import DeltaTable

    from pdp.lake import table
    from pdp.pseudonym import CanonicalIdentity, KeyStore, Pseudonymiser
    from pdp.pseudonym.normalise import normalise

    rows = DeltaTable(table("gold.psi_registry").path(api_settings.lake_uri)).to_pyarrow_table(
        columns=["registry", "person_pseudonym"]).to_pylist()
    registry = {r["person_pseudonym"] for r in rows if r["registry"] == REGISTRY}
    pseudonymiser = Pseudonymiser(KeyStore.from_settings(api_settings))
    out = {}
    for pid, ident in identities.items():
        if not ident["nir"] or ident["nir"] != ident["insured_nir"]:
            continue
        canonical = normalise(raw_of(ident))
        if isinstance(canonical, CanonicalIdentity) and canonical.scheme == "nir" and (
                pseudonymiser.pseudonym(canonical) in registry):
            out[pid] = ident
    assert len(out) >= 14, f"the synthetic territory has {len(out)} members of {REGISTRY}: too few for the test"
    return out


def raw_of(ident: dict[str, str], *, nir: bool = True) -> Any:
    from pdp.pseudonym import RawIdentity

    return RawIdentity(birth_name=ident["birth_name"], first_names=ident["first_names"], sex=ident["sex"],
                       birth_date=ident["birth_date"], nir=ident["nir"] if nir else None)


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _row(ref: str, ident: dict[str, str], *, nir: bool = True, variant: bool = False) -> dict[str, str]:
    name, first = ident["birth_name"], ident["first_names"].split()[0]
    if variant:  # what another file makes of the same person: no accents, other case, hyphens
        name = _plain(name).lower().replace(" ", "-")
        first = _plain(first).upper()
    return {"ref": ref, "nir": ident["nir"] if nir else "", "birth_name": name, "first_names": first,
            "sex": {"M": "1", "F": "2"}[ident["sex"]], "birth_date": ident["birth_date"], "note": f"client {ref}"}


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    from pdp.cli import main

    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and "--json" in args else out), err


def test_a_partner_learns_exactly_its_persons_in_the_registry_in_both_modes(
    server: str, token, members, identities, app, client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pdp.pseudonym import Pseudonymiser, RawIdentity
    from pdp.pseudonym.normalise import normalise
    from pdp.pseudonym.psi import member_items, partner_item
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault

    ctx = app.state.ctx
    chosen = sorted(members)
    opposed = members[chosen[0]]
    # a variant without the NIR matches on traits when the vault knows the person under the same traits
    # (the generator's noise gives some persons another spelling in the sources: those are left out)
    pseudonymiser = Pseudonymiser(ctx.key_store)
    pseudonym = {pid: pseudonymiser.pseudonym(normalise(raw_of(members[pid]))) for pid in chosen[1:]}
    known = IdentityVault(ctx.engine, EdgeKeys(ctx.key_store)).linkage_view(list(pseudonym.values()))

    def same_traits(pid: str) -> bool:
        record = known.get(pseudonym[pid])
        if record is None:
            return False
        vault_items = member_items(RawIdentity(birth_name=record.birth_name, first_names=list(record.first_names or ()),
                                               sex=record.sex, birth_date=record.birth_date, nir=record.nir))
        return partner_item(raw_of(members[pid], nir=False)) in vault_items

    variants = [pid for pid in chosen[1:] if same_traits(pid)][:4]
    assert len(variants) >= 2
    with_nir = [pid for pid in chosen[1:] if pid not in variants][:10]
    outsiders = [pid for pid, i in sorted(identities.items()) if pid not in members and i["nir"]
                 and i["nir"] == i["insured_nir"]][:60]
    rows = ([_row(f"A{n}", members[pid]) for n, pid in enumerate(with_nir)]
            + [_row(f"V{n}", members[pid], nir=False, variant=True) for n, pid in enumerate(variants)]
            + [_row("OPP", opposed)]
            + [_row(f"O{n}", identities[pid]) for n, pid in enumerate(outsiders)]
            + [{"ref": "BAD", "nir": "", "birth_name": "X", "first_names": "", "sex": "2", "birth_date": "1950-01-01",
                "note": ""}])
    expected = {f"A{n}" for n in range(len(with_nir))} | {f"V{n}" for n in range(len(variants))}
    listing = _write(tmp_path / "partner.csv", rows)
    dmp = headers(token("dmp", ["*"]), "opposition_management")
    assert client.post("/dmp/oppositions", json=consent(opposed), headers=dmp).status_code == 201
    try:
        pharmacy = token("partner", [TERRITORY], sub=PHARMACY)
        base = ("--registry", REGISTRY, "--list", str(listing), "--territory", TERRITORY, "--api", server,
                "--token", pharmacy, "--json")
        code, full, err = _cli(capsys, "psi", "query", *base, "--out", str(tmp_path / "worklist.csv"))
        assert code == 0, err
        assert set(full["matched"]) == expected, "exactly the overlap; never the opposed member"
        assert full["rejected"] == [{"row": len(rows) + 1, "reason": "NAME_EMPTY", "field": "birth_name"}]
        assert full["sent"] == len(rows) - 1
        with (tmp_path / "worklist.csv").open(encoding="utf-8") as f:
            worklist = list(csv.DictReader(f))
        assert {r["ref"] for r in worklist} == expected and {r["registry"] for r in worklist} == {REGISTRY}

        code, count, err = _cli(capsys, "psi", "query", *base, "--cardinality")
        assert code == 0, err
        assert count["count"] == len(expected) and count["withheld"] is False and "matched" not in count

        # the same list, small enough that the count falls under the minimum: withheld
        small = _write(tmp_path / "small.csv", rows[:3] + [r for r in rows if r["ref"].startswith("O")])
        code, few, err = _cli(capsys, "psi", "query", "--registry", REGISTRY, "--list", str(small), "--territory",
                              TERRITORY, "--api", server, "--token", pharmacy, "--json", "--cardinality")
        assert code == 0, err
        assert few["withheld"] is True and few["count"] is None
    finally:
        withdraw = consent(opposed, status="inactive")
        assert client.post("/dmp/oppositions/withdraw", json=withdraw, headers=dmp).status_code == 200

    # the audit has every exchange, its sizes, and no item or name of the list
    entries = [e for e in ctx.audit.query(action="psi_query") if e.actor == PHARMACY]
    steps = [e.details.get("step") for e in entries]
    assert steps.count("setup") >= 3 and steps.count("request") >= 3 and steps.count("result") >= 3
    request = next(e for e in entries if e.details.get("step") == "request" and e.details.get("mode") == "query")
    assert request.details["client_set"] == len(rows) - 1 and request.details["registry"] == REGISTRY
    text = json.dumps([e.details for e in entries], ensure_ascii=False) + "".join(
        "|".join(e.data_ref) for e in entries)
    for row in rows:
        for value in (row["birth_name"], row["nir"]):
            assert not value or len(value) < 3 or value not in text
    assert "\\u001f" not in text and "\x1f" not in text


def test_a_tag_never_looks_like_an_identifier_to_the_audit() -> None:
    """Tags go into audit entries, which refuse NIR-shaped digit runs (a date and a digit-led digest made one)."""
    from datetime import date

    from pdp.api.routers.psi import _registry_version
    from pdp.api.snapshot import GoldSnapshot
    from pdp.governance.audit.entry import _NIR_SHAPE_RE

    tag = _registry_version(GoldSnapshot(versions={"psi_registry": 12}, as_of=date(2026, 6, 30)), 1) + "-g123456789012"
    assert tag == "r1-20260630-v12-g123456789012" and not _NIR_SHAPE_RE.search(tag)


def test_the_policy_and_the_limits_refuse_with_a_clear_reason(server: str, token, members, app, tmp_path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from pdp.pseudonym.psi.limits import Limits

    rows = [_row(f"A{n}", ident) for n, ident in enumerate(list(members.values())[:12])]
    listing = _write(tmp_path / "partner.csv", rows)

    def query(sub: str, *extra: str) -> tuple[int, Any, str]:
        return _cli(capsys, "psi", "query", "--registry", REGISTRY, "--list", str(listing), "--territory", TERRITORY,
                    "--api", server, "--token", token("partner", [TERRITORY], sub=sub), *extra)

    # a partner whose agreement does not name this registry for the full intersection: 403
    code, _, err = query("association-locale")
    assert code == 2 and "403" in err and "psi_registry/t2d_at_risk_unscreened" in err
    # cardinality from a list under the minimum size: 403 with the minimum
    code, _, err = query("association-locale", "--cardinality")
    assert code == 2 and "403" in err and "at least 50 items" in err
    service = app.state.ctx.psi
    saved = service.limits
    try:
        service.limits = Limits.model_validate({**saved.model_dump(), "partners": {
            PHARMACY: {"max_client_set": 5}, "association-locale": {"queries_per_period": 2,
                                                                 "min_client_set_for_count": 1}}})
        code, _, err = query(PHARMACY)
        assert code == 2 and "403" in err and "exceeds this partner's limit of 5" in err
        for _ in range(2):
            code, _, err = query("association-locale", "--cardinality")
            assert code == 0, err
        code, _, err = query("association-locale", "--cardinality")
        assert code == 2 and "429" in err and "limit is 2" in err
    finally:
        service.limits = saved


def test_a_stale_setup_or_a_malformed_request_is_refused(server: str, token, app) -> None:
    import httpx

    from pdp.pseudonym.psi import Client

    auth = headers(token("partner", [TERRITORY], sub=PHARMACY), "partner_follow_up")
    url = f"{server}/psi/{TERRITORY}/registries/{REGISTRY}/query"
    with httpx.Client(timeout=60) as http:
        setup = http.get(f"{url}/setup", headers=auth)
        assert setup.status_code == 200 and setup.headers["content-type"] == "application/x-protobuf"
        request = Client(reveal=True).request(["x"])
        stale = http.post(url, content=request, headers={**auth, "X-PSI-Tag": "r1-20260101-v0-g000000000000"})
        assert stale.status_code == 409 and "download it again" in stale.json()["detail"]
        junk = http.post(url, content=b"\xff\x00junk", headers={**auth, "X-PSI-Tag": setup.headers["X-PSI-Tag"]})
        assert junk.status_code == 400
        huge = http.post(url, content=b"\x00" * (64 * 10_000 + 5_000),
                         headers={**auth, "X-PSI-Tag": setup.headers["X-PSI-Tag"]})
        assert huge.status_code == 413 and "request body over" in huge.json()["detail"]
        unknown = http.get(f"{server}/psi/{TERRITORY}/registries/no_such_registry/query/setup", headers=auth)
        assert unknown.status_code == 404
        listing = http.get(f"{server}/psi/{TERRITORY}/registries", headers=auth).json()
        assert {r["name"]: r["modes"] for r in listing} == {"t2d_at_risk_unscreened": ["query"],
                                                            "t2d_stratum1_hba1c_overdue": ["query"]}
