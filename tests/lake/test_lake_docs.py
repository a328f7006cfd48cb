"""The examples in the lake's docstrings run (those that need Spark are marked to skip)."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from pdp.lake import catalog, laketable, runinfo, sqltypes


@pytest.mark.parametrize("module", [catalog, sqltypes, runinfo, laketable], ids=lambda m: m.__name__)
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
