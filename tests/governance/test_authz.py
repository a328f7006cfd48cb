"""Authorisation: deny overrides allow, purposes tied to roles, fail closed, reload, audit hook, threads."""

from __future__ import annotations

import random
import shutil
import threading
from pathlib import Path

import pytest

from pdp.governance.authz import (
    DEFAULT_MODEL_FILE,
    DEFAULT_POLICY_FILE,
    DENY_BY_DEFAULT,
    PURPOSE_NOT_ALLOWED,
    TERRITORY_NOT_IN_CLAIMS,
    Action,
    Authoriser,
    AuthzConfigError,
    DecisionRecord,
    Principal,
    PrincipalError,
    Resource,
)
from pdp.pseudonym.reidentify import DEFAULT_PURPOSES_FILE

SIOP = Principal(sub="siop-douaisis-1", role="siop_platform", territories={"douaisis"})
PRO = Principal(sub="dr-house", role="professional", territories={"douaisis"}, rpps="10000000001")
ETHICS = Principal(sub="committee-1", role="ethics", territories={"*"})
ENGINEER = Principal(sub="eng-1", role="data_engineer", territories={"*"})
MODEL = DEFAULT_MODEL_FILE.read_text(encoding="utf-8")
PURPOSES = DEFAULT_PURPOSES_FILE.read_text(encoding="utf-8")
HEADER = "# test policy\n"
SIOP_WORKLIST = "p, siop_platform, douaisis, worklist, read, care_coordination, allow\n"


@pytest.fixture(scope="module")
def shipped() -> Authoriser:
    return Authoriser()


def files(tmp_path: Path, policy: str, *, model: str = MODEL, purposes: str = PURPOSES) -> dict[str, Path]:
    (tmp_path / "model.conf").write_text(model, encoding="utf-8")
    (tmp_path / "policy.csv").write_text(policy, encoding="utf-8")
    (tmp_path / "purposes.yml").write_text(purposes, encoding="utf-8")
    return {"model_path": tmp_path / "model.conf", "policy_path": tmp_path / "policy.csv",
            "purposes_path": tmp_path / "purposes.yml"}


# --- deny by default, deny overrides allow -----------------------------------------------------


def test_a_line_naming_one_partner_and_one_registry_grants_only_them(tmp_path: Path) -> None:
    policy = (HEADER + "p, partner, douaisis, psi_registry/r_one, count, psi_screening, allow\n"
              "p, partner=pharmacy-1, douaisis, psi_registry/r_one, query, partner_follow_up, allow\n"
              "p, partner=pharmacy-2, douaisis, psi_registry/r_one, count, psi_screening, deny\n")
    authz = Authoriser(**files(tmp_path, policy))
    one, two, other = (Principal(sub=s, role="partner", territories={"douaisis"})
                       for s in ("pharmacy-1", "pharmacy-2", "pharmacy-3"))
    query = ("douaisis", "psi_registry/r_one", "query", "partner_follow_up")
    count = ("douaisis", "psi_registry/r_one", "count", "psi_screening")
    assert authz.authorise(one, *query).allowed and "partner=pharmacy-1" in authz.authorise(one, *query).rule
    assert not authz.authorise(other, *query).allowed  # and the cache does not hand pharmacy-1's answer over
    assert authz.authorise(other, *count).allowed and authz.authorise(one, *count).allowed
    assert not authz.authorise(two, *count).allowed  # its own deny line overrides the role's allow
    assert authz.authorise(two, *count).rule.endswith("partner=pharmacy-2, douaisis, psi_registry/r_one, count, "
                                                      "psi_screening, deny")
    assert not authz.authorise(one, "douaisis", "psi_registry/r_two", "query", "partner_follow_up").allowed
    assert not authz.authorise(one, "douaisis", "psi_registry", "count", "psi_screening").allowed
    assert authz.authorise(one, "douaisis", "psi_registry/../x", "count", "psi_screening").rule == "unknown-object"


def test_a_deny_line_overrides_an_allow_line_and_is_named_as_the_rule(tmp_path: Path) -> None:
    allow_only = Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST))
    decision = allow_only.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination")
    assert decision.allowed and decision.rule == f"policy.csv:2: p, {SIOP_WORKLIST.strip()[3:]}"

    deny = "p, siop_platform, douaisis, worklist, read, *, deny\n"
    for policy in (HEADER + SIOP_WORKLIST + deny, HEADER + deny + SIOP_WORKLIST):  # whatever the order
        both = Authoriser(**files(tmp_path, policy))
        decision = both.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination")
        assert not decision.allowed
        assert decision.rule.endswith("p, siop_platform, douaisis, worklist, read, *, deny")


def test_nothing_is_allowed_without_a_line(shipped: Authoriser) -> None:
    decision = shipped.authorise(SIOP, "douaisis", "indicator", "read", "care_coordination")
    assert decision.allowed is False and decision.rule == DENY_BY_DEFAULT


def test_the_shipped_deny_lines_explain_why_ethics_never_reidentifies(shipped: Authoriser) -> None:
    decision = shipped.authorise(ETHICS, "douaisis", "identity", "reidentify", "ethics_review")
    assert not decision.allowed
    assert decision.rule.endswith("p, ethics, *, identity, reidentify, *, deny")


def test_a_territory_outside_the_claims_is_denied_by_name(shipped: Authoriser) -> None:
    decision = shipped.authorise(SIOP, "cornouaille", "worklist", "read", "care_coordination")
    assert (decision.allowed, decision.rule) == (False, TERRITORY_NOT_IN_CLAIMS)


# --- purposes tied to roles --------------------------------------------------------------------


def test_a_purpose_not_tied_to_the_role_is_denied_even_if_a_policy_line_allows_it(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("    roles: [siop_platform, professional]\n", "    roles: [professional]\n", 1)
    assert purposes != PURPOSES
    authz = Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST, purposes=purposes))
    decision = authz.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination")
    assert (decision.allowed, decision.rule) == (False, PURPOSE_NOT_ALLOWED)
    assert [line.source for line in authz.inert_lines] == ["policy.csv:2"]


def test_every_declared_purpose_names_known_roles_and_is_used_by_the_policy(shipped: Authoriser) -> None:
    used = {line.purpose for line in shipped.policy_lines if line.effect == "allow"}
    for name, purpose in shipped.purposes.purposes.items():
        assert purpose.roles, f"purpose {name} is tied to no role"
        assert name in used, f"purpose {name} opens nothing in the policy"
    assert shipped.inert_lines == ()


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("douaisis", "worklist", "read", "marketing"), "unknown-purpose"),
        (("douaisis", "worklists", "read", "care_coordination"), "unknown-object"),
        (("douaisis", "worklist", "delete", "care_coordination"), "unknown-action"),
        (("douaisis", "worklist", "reidentify", "care_coordination"), "action-not-defined-for-object"),
        (("Douaisis; DROP", "worklist", "read", "care_coordination"), "invalid-domain"),
        ((None, "worklist", "read", "care_coordination"), "invalid-domain"),
    ],
)
def test_a_malformed_request_is_denied_with_its_reason(shipped: Authoriser, args: tuple, rule: str) -> None:
    assert shipped.authorise(SIOP, *args).rule == rule
    assert shipped.authorise(SIOP, *args).allowed is False


def test_something_that_is_not_a_principal_is_denied(shipped: Authoriser) -> None:
    decision = shipped.authorise("siop_platform", "douaisis", "worklist", "read", "care_coordination")  # type: ignore[arg-type]
    assert (decision.allowed, decision.rule) == (False, "invalid-principal")


# --- principals from claims --------------------------------------------------------------------


def test_a_principal_is_built_from_token_claims() -> None:
    claims = {"sub": "u-1", "pdp_role": "professional", "pdp_territories": ["douaisis"], "pdp_rpps": "10000000001"}
    principal = Principal.from_claims(claims)
    assert (principal.role, principal.territories, principal.rpps) == ("professional", {"douaisis"}, "10000000001")
    assert principal.holds("douaisis") and not principal.holds("cornouaille") and not principal.holds("*")


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"sub": "u", "pdp_role": "admin", "pdp_territories": ["douaisis"]}, "unknown role"),
        ({"sub": "u", "pdp_role": "siop_platform", "pdp_territories": []}, "at least one territory"),
        ({"sub": "u", "pdp_role": "siop_platform", "pdp_territories": "douaisis"}, "list"),
        ({"sub": "u", "pdp_role": "siop_platform", "pdp_territories": ["*"]}, "territorial"),
        ({"sub": "u", "pdp_role": "siop_platform", "pdp_territories": ["Douaisis!"]}, "malformed territory"),
        ({"sub": "u", "pdp_role": "professional", "pdp_territories": ["douaisis"]}, "RPPS"),
        ({"sub": "", "pdp_role": "ethics", "pdp_territories": ["*"]}, "subject"),
        ({"pdp_role": "ethics", "pdp_territories": ["*"]}, "subject"),
    ],
)
def test_bad_claims_make_no_principal(claims: dict, message: str) -> None:
    with pytest.raises(PrincipalError, match=message):
        Principal.from_claims(claims)


# --- fail closed on bad files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p, admin, douaisis, worklist, read, care_coordination, allow", "unknown role 'admin'"),
        ("p, siop_platform, douaisis, worklists, read, care_coordination, allow", "unknown object 'worklists'"),
        ("p, siop_platform, douaisis, worklist, delete, care_coordination, allow", "unknown action 'delete'"),
        ("p, siop_platform, douaisis, worklist, query, care_coordination, allow", "not defined for object"),
        ("p, siop_platform, douaisis, worklist, read, care-coordination, allow", "unknown purpose"),
        ("p, siop_platform, douaisis, worklist, read, *, allow", "deny lines only"),
        ("p, siop_platform, *, worklist, read, care_coordination, allow", "territorial"),
        ("p, ethics, douaisis, audit_log, read, audit_review, allow", "national"),
        ("p, ethics, *, identity, reidentify, ethics_review, allow", "may never grant"),
        ("p, data_engineer, *, stratum, read, data_operations, allow", "may never grant"),
        ("p, siop_platform, douaisis, worklist, read, care_coordination, maybe", "effect"),
        ("p, siop_platform, douaisis, worklist, read, care_coordination", "fields"),
        ("g, alice, siop_platform, douaisis", "only 'p' lines"),
        ("p, partner, douaisis, psi_registry, count, psi_screening, allow", "must name its instance"),
        ("p, siop_platform, douaisis, worklist/mine, read, care_coordination, allow", "has no named instances"),
        ("p, partner, douaisis, psi_registry/T2D-x, count, psi_screening, allow", "malformed instance"),
        ("p, siop_platform=siop-1, douaisis, worklist, read, care_coordination, allow", "cannot name one principal"),
        (SIOP_WORKLIST.strip(), "duplicate"),
    ],
)
def test_a_bad_policy_line_stops_the_load_naming_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(AuthzConfigError, match=message) as caught:
        Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST + line + "\n"))
    text = str(caught.value)
    assert "\n" not in text and "policy.csv" in text and "line 3" in text


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("", "not a valid Casbin model"),
        ("[request_definition]\nr = sub, obj, act\n", "not a valid Casbin model"),
        (MODEL.replace("!some(where (p.eft == deny))", "true"), "deny-overrides-allow"),
        (MODEL.replace("r = sub, dom, obj, act, purpose", "r = sub, dom, obj, act"), "request must be"),
        (MODEL.replace("role_in(r.sub, p.sub, r.dom) && ", ""), "role_in"),
        (MODEL + "\n[role_definition]\ng = _, _, _\n", "no role_definition"),
        (MODEL.replace("r.obj == p.obj", "r.obj === p.obj"), "does not evaluate"),
    ],
)
def test_a_bad_model_stops_the_load_naming_the_file(tmp_path: Path, model: str, message: str) -> None:
    with pytest.raises(AuthzConfigError, match=message) as caught:
        Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST, model=model))
    assert "\n" not in str(caught.value) and "model.conf" in str(caught.value)


def test_missing_files_stop_the_load_naming_them(tmp_path: Path) -> None:
    paths = files(tmp_path, HEADER + SIOP_WORKLIST)
    for key in paths:
        broken = dict(paths, **{key: tmp_path / "missing" / paths[key].name})
        with pytest.raises(AuthzConfigError, match=str(broken[key].name)):
            Authoriser(**broken)


def test_a_purpose_tied_to_an_unknown_role_stops_the_load(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("roles: [partner]", "roles: [partners]")
    with pytest.raises(AuthzConfigError, match="unknown role 'partners'"):
        Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST, purposes=purposes))


def test_a_policy_without_any_allow_line_stops_the_load(tmp_path: Path) -> None:
    with pytest.raises(AuthzConfigError, match="no allow line"):
        Authoriser(**files(tmp_path, HEADER))


# --- reload and the decision cache -------------------------------------------------------------


def test_reload_empties_the_cache_and_applies_the_new_policy(tmp_path: Path) -> None:
    paths = files(tmp_path, HEADER + SIOP_WORKLIST)
    authz = Authoriser(**paths)
    ask = ("douaisis", "worklist", "read", "care_coordination")
    assert authz.authorise(SIOP, *ask).allowed and authz.authorise(SIOP, *ask).allowed
    assert authz.cache_info().hits == 1
    version = authz.policy_version

    paths["policy_path"].write_text(HEADER + SIOP_WORKLIST + "p, siop_platform, douaisis, worklist, read, *, deny\n")
    assert authz.authorise(SIOP, *ask).allowed, "no reload yet: the cached decision stands"
    changes: list[tuple[str, str]] = []
    authz.on_reload = lambda previous, new: changes.append((previous, new))
    authz.reload()
    assert authz.cache_info().size == 0
    assert not authz.authorise(SIOP, *ask).allowed
    assert authz.policy_version != version
    assert changes == [(version, authz.policy_version)]


def test_a_failed_reload_keeps_the_policy_in_force(tmp_path: Path) -> None:
    paths = files(tmp_path, HEADER + SIOP_WORKLIST)
    authz = Authoriser(**paths)
    version = authz.policy_version
    paths["policy_path"].write_text(HEADER + "p, siop_platform, douaisis, worklist, read, marketing, allow\n")
    with pytest.raises(AuthzConfigError, match="unknown purpose"):
        authz.reload()
    assert authz.policy_version == version
    assert authz.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination").allowed


def test_the_cache_is_bounded(tmp_path: Path) -> None:
    authz = Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST), cache_size=3)
    for obj in ("worklist", "stratum", "population", "alert", "indicator"):
        authz.authorise(SIOP, "douaisis", obj, "read", "care_coordination")
    assert authz.cache_info().size == 3


def test_the_cache_distinguishes_principals_whose_claims_differ(shipped: Authoriser) -> None:
    other = Principal(sub="siop-cornouaille", role="siop_platform", territories={"cornouaille"})
    ask = ("douaisis", "worklist", "read", "care_coordination")
    assert shipped.authorise(SIOP, *ask).allowed
    assert not shipped.authorise(other, *ask).allowed


# --- the audit hook ----------------------------------------------------------------------------


def test_every_decision_allowed_or_denied_cached_or_not_is_reported(tmp_path: Path) -> None:
    records: list[DecisionRecord] = []
    authz = Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST), on_decision=records.append)
    authz.authorise(PRO, "douaisis", "worklist", "read", "care_coordination")
    authz.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination")
    authz.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination")
    authz.authorise(SIOP, "douaisis", "audit_log", "read", "audit_review")
    assert [(r.subject, r.allowed, r.cached) for r in records] == [
        ("dr-house", False, False), ("siop-douaisis-1", True, False), ("siop-douaisis-1", True, True),
        ("siop-douaisis-1", False, False),
    ]
    assert records[3].rule == PURPOSE_NOT_ALLOWED
    assert {r.policy_version for r in records} == {authz.policy_version}
    assert records[0].purposes_version == authz.purposes.version
    assert all("10000000001" not in repr(r) for r in records), "no RPPS (nor any identity) in the record"


def test_a_decision_that_cannot_be_recorded_is_a_denial(tmp_path: Path) -> None:
    def broken(record: DecisionRecord) -> None:
        raise OSError("audit store down")

    authz = Authoriser(**files(tmp_path, HEADER + SIOP_WORKLIST), on_decision=broken)
    decision = authz.authorise(SIOP, "douaisis", "worklist", "read", "care_coordination")
    assert (decision.allowed, decision.rule) == (False, "decision-not-recorded")


# --- threads -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_size", [0, 7, 65_536])
def test_concurrent_decisions_equal_serial_ones(cache_size: int, tmp_path: Path) -> None:
    principals = [SIOP, PRO, ETHICS, ENGINEER,
                  Principal(sub="siop-2", role="siop_platform", territories={"douaisis", "cornouaille"})]
    purposes = ["care_coordination", "quality_review", "audit_review", "data_operations", "ethics_review"]
    requests = [(p, d, o, a, u) for p in principals for d in ("douaisis", "cornouaille") for o in Resource
                for a in (Action.READ, Action.REIDENTIFY, Action.QUERY) for u in purposes]
    serial = Authoriser(cache_size=0)
    expected = {r: serial.authorise(*r) for r in requests}

    shared = Authoriser(cache_size=cache_size)
    mismatches: list[tuple] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        order = requests * 2
        random.Random(seed).shuffle(order)
        try:
            for r in order:
                if shared.authorise(*r) != expected[r]:
                    mismatches.append(r)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    reloader = threading.Thread(target=lambda: [shared.reload() for _ in range(3)])
    reloader.start()
    for t in [*threads, reloader]:
        t.join()
    assert not errors and not mismatches
    assert sum(d.allowed for d in expected.values()) > 10, "the sample must include allowed decisions"


def test_the_shipped_files_are_the_defaults(tmp_path: Path) -> None:
    shutil.copy(DEFAULT_POLICY_FILE, tmp_path / "policy.csv")
    copy = Authoriser(model_path=DEFAULT_MODEL_FILE, policy_path=tmp_path / "policy.csv")
    assert copy.policy_version == Authoriser().policy_version
    assert copy.authorise(ENGINEER, "*", Resource.SOURCE, Action.READ, "data_operations").allowed


def test_the_policy_directory_comes_from_the_settings(tmp_path: Path) -> None:
    from pdp.config import Settings

    files(tmp_path, HEADER + SIOP_WORKLIST)
    authz = Authoriser.from_settings(Settings(_env_file=None, policy_dir=tmp_path))
    assert [line.source for line in authz.policy_lines] == ["policy.csv:2"]
    with pytest.raises(AuthzConfigError, match=r"model\.conf"):
        Authoriser.from_settings(Settings(_env_file=None, policy_dir=tmp_path / "nowhere"))
