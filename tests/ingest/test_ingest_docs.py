"""The examples in the ingest and semantic docstrings run."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from pdp.ingest import dedupe, model, registry, skipped, validate
from pdp.semantic import codes


@pytest.mark.parametrize("module", [model, validate, dedupe, registry, skipped, codes], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
