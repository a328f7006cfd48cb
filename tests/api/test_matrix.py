"""The role × route × territory × purpose matrix, generated from the app's own OpenAPI.

Every operation declares its access rule (``x-pdp-access``: roles served, policy object and
action, whether a territory applies). For each one: no token → 401; every role the route does
not serve → 403; the right role in another territory → 403; the right role in the territory,
for each purpose of its role → 2xx where the policy allows that purpose, 403 where it does not.
A route added without a declared rule fails here (it would be public).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pdp.governance.authz import Authoriser, Principal, Role
from tests.api.conftest import TERRITORY, citizen, consent, headers

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # the session's gold lake is built with Spark

OTHER_TERRITORY = "cornouaille"
PUBLIC = {("/healthz", "get")}
PATH_VALUES = {"territory": TERRITORY, "kind": "pathways", "name": "t2d", "rpps": "10000000042",
               "registry": "t2d_at_risk_unscreened", "mode": "count"}
NATIONAL = ("dmp", "ethics", "data_engineer")


@dataclass
class Operation:
    method: str
    path: str
    url: str
    access: dict[str, Any]
    params: dict[str, str]
    body: Any
    failures: list[str] = field(default_factory=list)
    checked: int = 0

    def call(self, client: Any, hdrs: dict[str, str]) -> Any:
        return client.request(self.method.upper(), self.url, params=self.params, json=self.body, headers=hdrs)

    def expect(self, what: str, response: Any, codes: range | set[int]) -> None:
        self.checked += 1
        if response.status_code not in codes:
            self.failures.append(f"{self.method.upper()} {self.path} [{what}]: {response.status_code} "
                                 f"{response.text[:160]}")


def _token_for(token: Callable[..., str], role: str, territories: list[str], rpps: str | None) -> str:
    if role in NATIONAL and territories == [TERRITORY]:
        territories = ["*"]
    return token(role, territories, rpps=rpps if role == "professional" else None)


def _example_body(spec: dict[str, Any], op: dict[str, Any]) -> Any:
    content = op["requestBody"]["content"]["application/json"]
    ref = content["schema"].get("$ref", "").rsplit("/", 1)[-1]
    return content.get("example") or spec["components"]["schemas"].get(ref, {}).get("example")


def _operations(spec: dict[str, Any], bodies: dict[tuple[str, str], Any]) -> list[Operation]:
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            access = op.get("x-pdp-access")
            assert access is not None, f"{method} {path} declares no access rule"
            if access == "public":
                assert (path, method) in PUBLIC, f"{method} {path} is public but not meant to be"
                continue
            query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
            body = bodies.get((path, method))
            if body is None and "requestBody" in op:
                body = _example_body(spec, op)
                assert body is not None, f"{method} {path}: no example body"
            params = {"territory": TERRITORY} if "territory" in query else {}
            if "max_seconds" in query:  # a stream: its current events, then closed
                params["max_seconds"] = "0"
            out.append(Operation(method, path, re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path),
                                 access, params, body))
    return out


def _check(op: Operation, client: Any, token: Callable[..., str], authz: Authoriser, rpps: str) -> None:
    access = op.access
    roles = [str(r) for r in Role] if access["roles"] == "any" else access["roles"]
    op.expect("no token", op.call(client, {"X-Purpose": "care_coordination"}), {401})
    for role in (str(r) for r in Role):
        tied = [p for p, d in authz.purposes.purposes.items() if role in d.roles]
        if role not in roles:
            op.expect(f"wrong role {role}", op.call(client, headers(_token_for(token, role, [TERRITORY], "10000000009"),
                                                                    tied[0])), {403})
            continue
        if access["territorial"]:
            tok = _token_for(token, role, [OTHER_TERRITORY], rpps)
            op.expect(f"{role} of another territory", op.call(client, headers(tok, tied[0])), {403})
        principal = Principal(sub="m", role=role, territories=frozenset(["*"] if role in NATIONAL else [TERRITORY]),
                              rpps=rpps if role == "professional" else None)
        tok = _token_for(token, role, [TERRITORY], rpps)
        for purpose in tied:
            obj, action = (access.get("object", ""), access.get("action", ""))
            per_path = "{" in obj  # /psi: the object and action come from the path
            if per_path and "{registry}" not in op.path:  # the list of registries: any partner purpose
                allowed = True
            else:
                obj, action = obj.format(**PATH_VALUES), action.format(**PATH_VALUES)
                allowed = access["roles"] == "any" or authz.authorise(
                    principal, TERRITORY if access["territorial"] else "*", obj, action, purpose).allowed
            # a PSI exchange carries protobuf bytes and a setup tag this generic call has not: past the
            # policy it is refused for its body (400/409/422), which shows the decision let it through
            ok: range | set[int] = set(range(200, 300)) | {400, 409, 422} if per_path else range(200, 300)
            op.expect(f"{role} for {purpose}", op.call(client, headers(tok, purpose)), ok if allowed else {403})


def test_every_operation_enforces_role_territory_and_purpose(client, token, people) -> None:
    main, matrix_person = people[0], people[1]
    bodies: dict[tuple[str, str], Any] = {
        ("/siop/contextual", "post"): citizen(main),
        ("/siop/{territory}/care-team/{rpps}", "put"): {"patient": citizen(main), "consent": "recorded"},
        ("/siop/{territory}/care-team/{rpps}", "delete"): citizen(main),
        ("/dmp/oppositions", "post"): consent(matrix_person),
        ("/dmp/oppositions/withdraw", "post"): consent(matrix_person, status="inactive"),
        ("/dmp/oppositions/status", "post"): citizen(matrix_person),
        ("/dmp/transparency", "post"): citizen(matrix_person),
        ("/dmp/pathway", "post"): citizen(matrix_person),
    }
    authz = Authoriser()  # no hooks: asking it what to expect records nothing
    operations = _operations(client.get("/openapi.json").json(), bodies)
    for op in operations:
        _check(op, client, token, authz, main["gp_rpps"])
    failures = [f for op in operations for f in op.failures]
    assert failures == [], "\n".join(failures)
    assert sum(op.checked for op in operations) > 100
