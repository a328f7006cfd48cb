"""Synthetic territory generator: raw nominative sources in real formats + ground truth.

Public surface: `generate` (what `pdp synth` runs), `SynthError`, and the territory catalogue.
Loaded lazily so that importing a small part (a territory, the NIR helpers) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SynthError": "pdp.synth.generator",
    "generate": "pdp.synth.generator",
    "load_territory": "pdp.synth.territory",
    "territory_keys": "pdp.synth.territory",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pdp.synth' has no attribute {name!r}")
