"""Property-based run of the whole OpenAPI schema (schemathesis), authenticated as each operation's
role with an allowed purpose: no server error, and every response conforms to the schema
(status code documented, content type, body shape, headers)."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pdp.governance.authz import Authoriser, Principal
from tests.api.conftest import TERRITORY, headers

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # the session's gold lake is built with Spark

NATIONAL = ("dmp", "ethics", "data_engineer")
_AUTHZ = Authoriser()


_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
           response_headers_conformance]


def _credentials(access: dict, token) -> dict[str, str]:
    role = "siop_platform" if access["roles"] == "any" else access["roles"][-1]
    territories = ["*"] if role in NATIONAL else [TERRITORY]
    rpps = "10000000001" if role == "professional" else None
    principal = Principal(sub="s", role=role, territories=frozenset(territories), rpps=rpps)
    tied = [p for p, d in _AUTHZ.purposes.purposes.items() if role in d.roles]
    purpose = next((p for p in tied if access["roles"] == "any" or _AUTHZ.authorise(
        principal, TERRITORY if access["territorial"] else "*", access["object"], access["action"], p).allowed),
        tied[0])
    return headers(token(role, territories, rpps=rpps), purpose)


def test_the_api_conforms_to_its_schema(app, token) -> None:
    """Each operation with generated requests (schemathesis' lazy pytest fixture does not run on pytest 9:
    the operations are driven here, one Hypothesis run each)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    statuses: Counter[int] = Counter()
    for operation in operations:
        raw = operation.definition.raw
        access = raw.get("x-pdp-access")
        hdrs = {} if access in (None, "public") else _credentials(access, token)
        stream = "max_seconds" in {p["name"] for p in raw.get("parameters", [])}
        _runner(operation, hdrs, stream, statuses)()
    assert sum(statuses.values()) >= 10 * len(operations) // 2, statuses
    assert statuses[200] + statuses[201] > 0 and not any(code >= 500 for code in statuses), statuses


def _runner(operation, hdrs: dict[str, str], stream: bool, statuses: Counter[int]):
    @given(case=operation.as_strategy())
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case) -> None:
        if stream:  # a stream: its current events, then closed
            case.query = {**(case.query or {}), "max_seconds": 0}
        response = case.call_and_validate(headers=hdrs, checks=_CHECKS)
        statuses[response.status_code] += 1

    return run
