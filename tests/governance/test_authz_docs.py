"""The authorisation modules' docstring examples run (the docstring is the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "pdp.governance.authz",
    "pdp.governance.authz.vocabulary",
    "pdp.governance.authz.policy",
    "pdp.governance.authz.authoriser",
    "pdp.governance.authz.relationships",
]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_benchmark_policy_has_ten_thousand_valid_lines() -> None:
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from pdp.bench import BENCHMARKS
    from pdp.bench.authz import generate_policy
    from pdp.governance.authz import Authoriser

    assert BENCHMARKS["authz"] == "pdp.bench.authz:bench_authz"
    text, territories = generate_policy()
    with TemporaryDirectory() as tmp:
        (Path(tmp) / "policy.csv").write_text(text, encoding="utf-8")
        authz = Authoriser(policy_path=Path(tmp) / "policy.csv")
    assert len(authz.policy_lines) == 10_000 and len(territories) > 500


def test_the_shared_authoriser_records_every_decision_in_the_audit_log(tmp_path, monkeypatch) -> None:
    import pdp.governance.authz as authz
    from pdp.config import get_settings
    from pdp.governance.audit import AuditLog
    from pdp.governance.authz import Principal, authorise

    monkeypatch.setenv("PDP_AUDIT_DB_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    get_settings.cache_clear()
    monkeypatch.setattr(authz, "_shared", None)
    try:
        ethics = Principal(sub="committee-1", role="ethics", territories={"*"})
        assert not authorise(ethics, "douaisis", "identity", "reidentify", "ethics_review").allowed
        assert authorise(ethics, "*", "audit_log", "read", "audit_review").allowed
        entries = AuditLog.from_settings(with_keys=False).query(action="authorisation_decision")
        assert [(e.actor, e.decision) for e in entries] == [("committee-1", "denied"), ("committee-1", "allowed")]
    finally:
        get_settings.cache_clear()
