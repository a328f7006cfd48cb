"""Shared synth fixtures: the acceptance territory, generated once per run for every test file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from builders import TERRITORY_PERSONS, TERRITORY_SEED

from pdp.synth import generate


@pytest.fixture(scope="session")
def territory_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The acceptance territory: 20 000 persons, seed 7, generated once for the whole run."""
    out = tmp_path_factory.mktemp("synth") / "douaisis"
    generate(out, persons=TERRITORY_PERSONS, seed=TERRITORY_SEED, territory="douaisis", workers=2)
    return out


@pytest.fixture(scope="session")
def summary(territory_dir: Path) -> dict:
    return json.loads((territory_dir / "ground_truth" / "summary.json").read_text())
