"""The generator's concept catalog (codes and French labels per concept), read from catalog.yml."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Any]:
    """Parsed catalog.yml: sections diagnoses, measurements, procedures, drugs."""
    text = resources.files("pdp.synth").joinpath("catalog.yml").read_text(encoding="utf-8")
    return yaml.safe_load(text)
