"""Serving against a real gold lake: worklists re-identified only through `reidentify`, pagination,
FHIR outputs valid R4, the BOLA cases, the ethics draw, and opposition through the API end to end."""

from __future__ import annotations

import base64
import json

import pytest
from fhir.resources.R4B.bundle import Bundle

from pdp.api.schemas import WorklistPage
from tests.api.conftest import TERRITORY, citizen, consent, headers

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # the session's gold lake is built with Spark

SIOP = ("siop_platform", [TERRITORY])


def siop_headers(token, purpose: str = "care_coordination") -> dict[str, str]:
    return headers(token(*SIOP), purpose)


def whole_worklist(client, token, **params) -> list[dict]:
    response = client.get(f"/siop/{TERRITORY}/worklist", params={"limit": 2000, **params},
                          headers=siop_headers(token))
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return response.json()["items"]


def test_the_worklist_is_re_identified_filtered_and_never_carries_a_pseudonym(client, token) -> None:
    response = client.get(f"/siop/{TERRITORY}/worklist", params={"limit": 2000}, headers=siop_headers(token))
    page = response.json()
    assert page["items"] and page["as_of"] == "2026-06-30"
    assert "v1:" not in response.text, "a pseudonym travelled beside the identity it hides"
    for item in page["items"]:
        assert item["patient"]["ins_nir"] and item["patient"]["birth_name"]
        assert item["actions"] and all(a["status"] in ("due", "overdue") for a in item["actions"])
        assert all(a["reason"] and a["rule_id"].startswith("pathway.") for a in item["actions"])
    assert page["total"] == len(page["items"]) + page["withheld"]
    # the page is rendered from memoised bytes, not through the model: it must be exactly what the
    # declared response model gives for the same content (shape, field order, formatting)
    assert WorklistPage.model_validate_json(response.content).model_dump_json().encode() == response.content
    lean = client.get(f"/siop/{TERRITORY}/worklist", params={"limit": 2000, "explain": "false"},
                      headers=siop_headers(token)).json()
    assert [i["patient"] for i in lean["items"]] == [i["patient"] for i in page["items"]]
    assert all(a["explanation"] == [] for i in lean["items"] for a in i["actions"])
    assert any(a["explanation"] for i in page["items"] for a in i["actions"])
    overdue = whole_worklist(client, token, status="overdue", pathway="t2d")
    assert overdue and all(a["status"] == "overdue" and a["pathway"] == "t2d" for i in overdue for a in i["actions"])
    gp = page["items"][0]["gp_rpps"]
    mine = whole_worklist(client, token, gp=gp)
    assert mine and {i["gp_rpps"] for i in mine} == {gp}
    # every page was released by `reidentify`, which recorded who, why and which pseudonyms
    audit = client.get("/ethics/audit", params={"action": "reidentification", "decision": "allowed"},
                       headers=headers(token("ethics", ["*"]), "audit_review")).json()["entries"]
    assert audit and all(e["purpose"] in ("care_coordination", "prevention_outreach") for e in audit)
    assert all(e["actor_role"] == "siop_platform" and e["data_ref"] for e in audit)


def test_cursor_pages_cover_the_worklist_once(client, token) -> None:
    everyone = [i["patient"]["ins_nir"] for i in whole_worklist(client, token)]
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/siop/{TERRITORY}/worklist", params=params, headers=siop_headers(token)).json()
        seen += [i["patient"]["ins_nir"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everyone


def test_forged_or_foreign_cursors_are_refused(client, token) -> None:
    page = client.get(f"/siop/{TERRITORY}/worklist", params={"limit": 3}, headers=siop_headers(token)).json()
    cursor = page["next_cursor"]
    body, mac = cursor.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    both = headers(token("siop_platform", [TERRITORY, "cornouaille"]), "care_coordination")
    forged = base64.urlsafe_b64encode(json.dumps({**data, "t": "cornouaille"}).encode()).rstrip(b"=").decode()
    cases = {
        "another territory, original signature": ("/siop/cornouaille/worklist", {"cursor": cursor}),
        "territory edited in the cursor": ("/siop/cornouaille/worklist", {"cursor": f"{forged}.{mac}"}),
        "offset edited in the cursor": (f"/siop/{TERRITORY}/worklist", {"cursor": f"{body[:-2]}xx.{mac}"}),
        "other filters": (f"/siop/{TERRITORY}/worklist", {"cursor": cursor, "status": "overdue"}),
        "worklist cursor on the alerts feed": (f"/siop/{TERRITORY}/alerts", {"cursor": cursor}),
        "garbage": (f"/siop/{TERRITORY}/worklist", {"cursor": "garbage"}),
    }
    for case, (url, params) in cases.items():
        response = client.get(url, params={"limit": 3, **params}, headers=both)
        assert response.status_code == 400, (case, response.status_code, response.text)
    assert client.get("/siop/cornouaille/worklist", headers=siop_headers(token)).status_code == 403


def test_the_fhir_bundle_is_valid_r4_with_a_list_per_gp_and_a_task_per_due_action(client, token) -> None:
    plain = client.get(f"/siop/{TERRITORY}/worklist", params={"limit": 5}, headers=siop_headers(token)).json()
    response = client.get(f"/siop/{TERRITORY}/worklist/fhir", params={"limit": 5}, headers=siop_headers(token))
    assert response.status_code == 200 and "v1:" not in response.text
    bundle = Bundle.model_validate(response.json())
    by_type: dict[str, list] = {}
    for entry in bundle.entry:
        by_type.setdefault(entry.resource.get_resource_type(), []).append(entry.resource)
    assert len(by_type["Patient"]) == len(plain["items"])
    assert len(by_type["Task"]) == sum(len(i["actions"]) for i in plain["items"])
    assert len(by_type["List"]) == len({i["gp_rpps"] for i in plain["items"]})
    for task in by_type["Task"]:
        assert task.owner and task.restriction.period.end and task.reasonCode.text and task.for_fhir
    assert {link.relation for link in bundle.link or []} == {"next"}


def test_alerts_feed_pages_with_a_cursor(client, token) -> None:
    response = client.get(f"/siop/{TERRITORY}/alerts", params={"limit": 2}, headers=siop_headers(token))
    assert response.status_code == 200 and "v1:" not in response.text
    page = response.json()
    assert all(a["patient"]["ins_nir"] and a["rule_id"].startswith("alert.") for a in page["items"])
    if page["next_cursor"]:
        nxt = client.get(f"/siop/{TERRITORY}/alerts", params={"limit": 2, "cursor": page["next_cursor"]},
                         headers=siop_headers(token))
        assert nxt.status_code == 200


def test_alerts_stream_as_server_sent_events(client, token) -> None:
    polled = client.get(f"/siop/{TERRITORY}/alerts", params={"limit": 2000}, headers=siop_headers(token)).json()
    response = client.get(f"/siop/{TERRITORY}/alerts/stream", params={"max_seconds": 0},
                          headers=siop_headers(token))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    blocks = [block for block in response.text.split("\n\n") if block.strip()]
    assert blocks[0].startswith("retry: ")
    events = blocks[1:]
    assert polled["items"], "the test territory has alerts"
    (event,) = events
    lines = dict(line.split(": ", 1) for line in event.splitlines())
    assert lines["event"] == "alerts" and "v1:" not in response.text
    streamed = json.loads(lines["data"])["items"]
    assert [(a["alert"], a["patient"]["ins_nir"]) for a in streamed] == \
        [(a["alert"], a["patient"]["ins_nir"]) for a in polled["items"]]
    # a client resuming after the last event it received gets nothing it has seen
    resumed = client.get(f"/siop/{TERRITORY}/alerts/stream", params={"max_seconds": 0},
                         headers={**siop_headers(token), "Last-Event-ID": lines["id"]})
    assert resumed.status_code == 200 and "event: alerts" not in resumed.text
    # a malformed id is a 422, not a silent replay of everything
    bad = client.get(f"/siop/{TERRITORY}/alerts/stream", params={"max_seconds": 0},
                     headers={**siop_headers(token), "Last-Event-ID": "abc"})
    assert bad.status_code == 422


def test_bola_a_professional_gets_only_their_own_patients(client, token, people) -> None:
    main = people[0]
    other_gp = next(p["gp_rpps"] for p in people if p["gp_rpps"] != main["gp_rpps"])
    url = "/siop/contextual"
    params = {"territory": TERRITORY}
    own = client.post(url, params=params, json=citizen(main),
                      headers=headers(token("professional", rpps=main["gp_rpps"]), "care_coordination"))
    assert own.status_code == 200, own.text
    answer = own.json()
    assert answer["strata"] and answer["logigrammes"] and "v1:" not in own.text
    assert main["nir"] not in own.text, "the contextual answer echoes no identity"
    stranger = token("professional", rpps=other_gp, sub="gp-not-theirs")
    refused = client.post(url, params=params, json=citizen(main), headers=headers(stranger, "care_coordination"))
    assert refused.status_code == 403
    entries = client.get("/ethics/audit", params={"action": "data_access", "decision": "denied",
                                                   "actor": "gp-not-theirs"},
                         headers=headers(token("ethics", ["*"]), "audit_review")).json()["entries"]
    assert len(entries) == 1 and len(entries[0]["data_ref"]) == 1, "the BOLA attempt is audited with the pseudonym"
    # the SIOP records the stranger in the patient's care team: they see the patient until it ends
    siop = siop_headers(token)
    team = f"/siop/{TERRITORY}/care-team/{other_gp}"
    joined = client.put(team, json={"patient": citizen(main), "consent": "recorded"}, headers=siop)
    assert joined.status_code == 200 and joined.json()["member"] is True, joined.text
    assert main["nir"] not in joined.text and "v1:" not in joined.text
    assert client.post(url, params=params, json=citizen(main), headers=headers(stranger, "care_coordination")) \
        .status_code == 200
    assert client.put(team, json={"patient": citizen(main)}, headers=siop).status_code == 422, "consent attested"
    assert client.request("DELETE", team, json=citizen(main), headers=siop).json()["member"] is False
    assert client.post(url, params=params, json=citizen(main), headers=headers(stranger, "care_coordination")) \
        .status_code == 403
    # the SIOP platform of another territory gets nothing, and the identity never goes in the URL
    assert client.post(url, params={"territory": "cornouaille"}, json=citizen(main),
                       headers=headers(token("siop_platform", ["cornouaille"]), "care_coordination")).status_code == 404
    assert client.post(url, params=params, json=citizen(main),
                       headers=headers(token("siop_platform", ["cornouaille"]), "care_coordination")).status_code == 403


def test_ethics_sample_is_reproducible_and_pseudonymised(client, token) -> None:
    h = headers(token("ethics", ["*"]), "ethics_review")
    body = {"pyramid": "t2d", "stratum": "1", "n": 4, "seed": 7}
    first = client.post("/ethics/samples", params={"territory": TERRITORY}, json=body, headers=h)
    again = client.post("/ethics/samples", params={"territory": TERRITORY}, json=body, headers=h)
    other = client.post("/ethics/samples", params={"territory": TERRITORY}, json={**body, "seed": 8}, headers=h)
    assert first.status_code == 200, first.text
    drawn = [r["person_pseudonym"] for r in first.json()["records"]]
    assert drawn == [r["person_pseudonym"] for r in again.json()["records"]] and len(drawn) == 4
    from pdp.governance.ethics import rank

    # the draw is the first n of the stratum ranked by the seed (another seed, another ranking;
    # comparing two draws would be flaky: a small stratum can rank the same 4 first by chance)
    whole = client.post("/ethics/samples", params={"territory": TERRITORY}, json={**body, "n": 200}, headers=h)
    everyone = [r["person_pseudonym"] for r in whole.json()["records"]]
    assert len(everyone) > 4
    assert drawn == sorted(everyone, key=lambda p: rank(7, p))[:4]
    assert [r["person_pseudonym"] for r in other.json()["records"]] == sorted(everyone, key=lambda p: rank(8, p))[:4]
    for record in first.json()["records"]:
        assert [s["stratum"] for s in record["strata"] if s["pyramid"] == "t2d"] == ["1"]
        assert not {"nir", "birth_name", "first_names", "phone", "ins_nir"} & set(json.dumps(record).split('"'))


def test_admin_sees_sources_logs_and_quarantine_counts_only(client, token) -> None:
    h = headers(token("data_engineer", ["*"]), "data_operations")
    assert client.get("/admin/sources", headers=h).json()
    logs = client.get("/admin/ingestion-log", headers=h).json()
    assert logs and all(r["records_in"] == r["records_landed"] + r["records_quarantined"] for r in logs)
    stats = client.get("/admin/quarantine-stats", headers=h)
    assert stats.status_code == 200 and "v1:" not in stats.text


def test_definitions_are_readable_by_every_role(client, token) -> None:
    index = client.get("/definitions", headers=headers(token("partner"), "psi_screening")).json()
    assert {(i["kind"], i["name"]) for i in index["items"]} >= {("pathways", "t2d"), ("alerts", "hba1c_high")}
    t2d = client.get("/definitions/pathways/t2d", headers=headers(token("dmp", ["*"]), "citizen_information")).json()
    assert t2d["version"] >= 1 and t2d["definition"]["actions"] and t2d["criteria"]


def test_opposition_through_the_api_end_to_end(client, token, people) -> None:
    """Submit → out of the next worklist, contextual call and pathway → transparency shows it → withdraw.

    The erasure by the propagation job is `pdp oppose apply`'s (tests/governance/test_opposition_e2e.py);
    the snapshot following gold's new version is tests/api/test_snapshot.py.
    """
    person = people[2]
    nirs = {i["patient"]["ins_nir"] for i in whole_worklist(client, token)}
    assert person["nir"] in nirs, "the chosen person is on the worklist before opposing"
    ctx_call = {"params": {"territory": TERRITORY}, "json": citizen(person), "headers": siop_headers(token)}
    assert client.post("/siop/contextual", **ctx_call).status_code == 200
    dmp = headers(token("dmp", ["*"]), "opposition_management")
    submitted = client.post("/dmp/oppositions", json=consent(person), headers=dmp)
    assert submitted.status_code == 201 and submitted.json()["status"] == "active"
    # effective on the very next request: worklist, contextual call, citizen pathway
    assert person["nir"] not in {i["patient"]["ins_nir"] for i in whole_worklist(client, token)}
    assert client.post("/siop/contextual", **ctx_call).status_code == 404
    info = headers(token("dmp", ["*"]), "citizen_information")
    assert client.post("/dmp/pathway", json=citizen(person), headers=info).json()["opposed"] is True
    assert client.post("/dmp/oppositions/status", json=citizen(person), headers=dmp).json()["status"] == "active"

    uses = client.post("/dmp/transparency", json=citizen(person), headers=info).json()["uses"]
    actions = [u["action"] for u in uses]
    assert "opposition_submit" in actions
    assert any(u["action"] == "reidentification" and u["identity_released"] for u in uses)
    assert all(set(u) == {"at", "action", "actor_role", "purpose", "decision", "identity_released"} for u in uses)
    withdrawn = client.post("/dmp/oppositions/withdraw", json=consent(person, status="inactive"), headers=dmp)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"


def test_the_territory_report_is_served_as_html(client, token) -> None:
    response = client.get(f"/siop/{TERRITORY}/report", headers=siop_headers(token, "quality_review"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower() and "v1:" not in response.text


def test_worklist_changes_since_the_last_pull_come_from_gold_change_data(client, token, api_settings) -> None:
    """A SIOP pulls a cursor, gold changes (a status updated, a person's rows removed), the next pull
    returns exactly those persons: the one still on a pathway re-identified, the other counted."""
    from deltalake import DeltaTable

    from pdp.lake import table

    url = f"/siop/{TERRITORY}/worklist/changes"
    first = client.get(url, headers=siop_headers(token))
    assert first.status_code == 200 and first.json()["changed"] == []
    since = first.json()["next_since"]
    assert client.get(url, params={"since": since}, headers=siop_headers(token)).json()["changed"] == []
    snapshot = client.app.state.ctx.snapshots.current()
    updated, removed, restratified = [p for p in snapshot.worklist_order if p in snapshot.strata][:3]
    gold = DeltaTable(table("gold.care_action").path(api_settings.lake_uri))
    gold.update(predicate=f"person_pseudonym = '{updated}'", updates={"status": "'overdue'"})
    gold.delete(f"person_pseudonym = '{removed}'")
    # a stratum changes with the same due actions: still a change of the worklist item
    DeltaTable(table("gold.stratum").path(api_settings.lake_uri)).update(
        predicate=f"person_pseudonym = '{restratified}'", updates={"rule_id": "'pyramid.t2d.test@9'"})
    changes = client.get(url, params={"since": since}, headers=siop_headers(token))
    assert changes.status_code == 200 and "v1:" not in changes.text
    body = changes.json()
    assert len(body["changed"]) == 2 and body["gone"] == 1 and body["withheld"] == 0
    assert {a["status"] for a in body["changed"][0]["actions"] + body["changed"][1]["actions"]} >= {"overdue"}
    assert any(s["rule_id"] == "pyramid.t2d.test@9" for i in body["changed"] for s in i["strata"])
    assert client.get(url, params={"since": body["next_since"]}, headers=siop_headers(token)).json()["changed"] == []
    other = headers(token("siop_platform", [TERRITORY, "cornouaille"]), "care_coordination")
    assert client.get("/siop/cornouaille/worklist/changes", params={"since": since}, headers=other).status_code == 400


def test_a_large_page_is_released_in_several_audited_calls(client, token, monkeypatch) -> None:
    """An audit entry's details are capped (64 KiB): a big page is re-identified in batches, each audited."""
    import pdp.api.reid

    monkeypatch.setattr(pdp.api.reid, "BATCH", 3)
    ethics = headers(token("ethics", ["*"]), "audit_review")

    def entries() -> int:
        return len(client.get("/ethics/audit", params={"action": "reidentification", "limit": 5000},
                              headers=ethics).json()["entries"])

    before = entries()
    page = client.get(f"/siop/{TERRITORY}/worklist", params={"limit": 7}, headers=siop_headers(token)).json()
    assert len(page["items"]) + page["withheld"] == 7
    assert entries() - before == 3
