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
