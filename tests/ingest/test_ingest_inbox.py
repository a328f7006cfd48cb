"""The edge's inbox refuses, with a real error, a source it cannot take (asserts vanish under -O)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pdp.ingest import Registry
from pdp.ingest.inbox import InboxError, accept
from pdp.ingest.spec import SourceSpec


@pytest.fixture
def held_back(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    data = registry.specs["questionnaires"].model_dump(exclude_unset=True)
    spec = SourceSpec.model_validate({"name": "questionnaires", "version": 1, "description": "held back",
                                      "files": data["files"], "hold_back": True})
    monkeypatch.setattr("pdp.ingest.inbox.load_registry", lambda: Registry({"questionnaires": spec}))


def test_a_held_back_source_is_refused_with_an_inbox_error(held_back: None) -> None:
    with pytest.raises(InboxError, match="held back"):
        accept(b'{"resourceType": "QuestionnaireResponse"}', source="questionnaires")


def test_an_unknown_source_is_an_inbox_error_not_a_key_error() -> None:
    with pytest.raises(InboxError, match="no source named"):
        accept(b"{}", source="no_such_source")


def test_the_checks_hold_under_python_optimise() -> None:
    """``python -O`` strips asserts: the inbox's checks must not be asserts."""
    code = ("import pdp.ingest.inbox as i\n"
            "from pdp.ingest import Registry\n"
            "from pdp.ingest.spec import SourceSpec\n"
            "s = SourceSpec(name='q', version=1, description='d', files=['q/*.ndjson'], hold_back=True)\n"
            "i.load_registry = lambda: Registry({'q': s})\n"
            "try:\n    i.accept(b'{}', source='q')\nexcept i.InboxError:\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "refused", out.stderr[-500:]
