"""The whole role × object × action × purpose × territory matrix, against the expected table in authz_matrix.yml.

Every combination generated from the vocabulary is decided by the shipped policy
(``infra/policy/``); only the combinations listed in the table may be allowed. One test case
per principal × domain, each deciding every object × action × purpose and listing all
mismatches at once, so a policy change shows its whole effect in one readable failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.governance.authz import Action, Authoriser, Principal, Resource, Role
from pdp.governance.authz.vocabulary import NAMED, PATIENT_LEVEL

MATRIX = yaml.safe_load((Path(__file__).parent / "authz_matrix.yml").read_text(encoding="utf-8"))
UNDECLARED = "marketing"
# named objects are decided per instance: the matrix's instances plus one no line names
OBJECTS = [f"{r}/{i}" for r in Resource if r in NAMED for i in [*MATRIX["instances"][r.value], "not_declared"]] + [
    r.value for r in Resource if r not in NAMED]


@pytest.fixture(scope="module")
def authz() -> Authoriser:
    return Authoriser()


def expected_allowed() -> set[tuple[str, str, str, str, str]]:
    """(principal, domain, object, action, purpose) listed as allowed; checked against the vocabulary."""
    allowed = set()
    for block in MATRIX["allow"]:
        for principal in block["principals"]:
            assert principal in MATRIX["principals"], f"unknown principal {principal!r} in the matrix"
            for domain in block["domains"]:
                assert domain in MATRIX["domains"], f"unknown domain {domain!r} in the matrix"
                for grant, purposes in block["grants"].items():
                    obj, action = grant.split()
                    assert obj in OBJECTS and action in set(Action), f"unknown grant {grant!r} in the matrix"
                    allowed.update((principal, domain, obj, action, purpose) for purpose in purposes)
    return allowed


EXPECTED = expected_allowed()
CASES = [(p, d) for p in MATRIX["principals"] for d in MATRIX["domains"]]


def principal(name: str) -> Principal:
    claims: dict[str, Any] = MATRIX["principals"][name]
    return Principal(sub=claims.get("sub", f"test-{name}"), role=claims["role"], territories=claims["territories"],
                     rpps=claims.get("rpps"))


@pytest.mark.parametrize(("name", "domain"), CASES, ids=[f"{p}@{d}" for p, d in CASES])
def test_the_policy_allows_exactly_the_expected_table(authz: Authoriser, name: str, domain: str) -> None:
    who = principal(name)
    purposes = [*authz.purposes.purposes, UNDECLARED]
    unexpected_allow, unexpected_deny = [], []
    for obj in OBJECTS:
        for action in Action:
            for purpose in purposes:
                decision = authz.authorise(who, domain, obj, action, purpose)
                wanted = (name, domain, obj, action.value, purpose) in EXPECTED
                if decision.allowed and not wanted:
                    unexpected_allow.append(f"{obj} {action} {purpose}  <- {decision.rule}")
                elif wanted and not decision.allowed:
                    unexpected_deny.append(f"{obj} {action} {purpose}  <- {decision.rule}")
                if decision.allowed:
                    assert decision.rule.endswith(", allow") and "policy.csv:" in decision.rule
    assert not unexpected_allow and not unexpected_deny, (
        f"{name} ({who.role}, claims {sorted(who.territories)}) in {domain}:\n"
        + "".join(f"  ALLOWED but not in the table: {line}\n" for line in unexpected_allow)
        + "".join(f"  DENIED but listed as allowed: {line}\n" for line in unexpected_deny)
    )


def test_the_table_covers_every_role() -> None:
    assert {claims["role"] for claims in MATRIX["principals"].values()} == {r.value for r in Role}


def test_no_listed_grant_breaks_the_platform_invariants() -> None:
    """Ethics never re-identifies; data engineers never see patient-level data (the table itself)."""
    for name, _domain, obj, _action, _purpose in EXPECTED:
        role = MATRIX["principals"][name]["role"]
        if role == "ethics":
            assert obj not in {"identity", "worklist", "lookup"}
        if role == "data_engineer":
            assert Resource(obj) not in PATIENT_LEVEL


def test_the_matrix_names_every_registry_declared() -> None:
    from pdp.algorithms import load_definitions

    assert sorted(MATRIX["instances"]["psi_registry"]) == sorted(load_definitions().registries)
