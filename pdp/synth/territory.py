"""Territory and calibration definitions: versioned YAML files, validated on load.

A bad or unknown territory stops `pdp synth` with a one-line message; nothing is guessed.
"""

from __future__ import annotations

from datetime import date
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class UnknownTerritory(ValueError):
    """The territory key names no definition file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommuneDef(_Strict):
    code: str = Field(pattern=r"^(\d{5}|2[AB]\d{3})$")
    name: str
    postcode: str = Field(pattern=r"^\d{5}$")
    population: int = Field(gt=0)


class Targets(_Strict):
    t2d: int = Field(gt=0)
    t2d_at_risk: int = Field(gt=0)
    hf: int = Field(gt=0)
    hf_at_risk: int = Field(gt=0)


class TerritoryDef(_Strict):
    key: str
    name: str
    population: int = Field(gt=0)
    targets: Targets
    t2d_strata_shares: dict[int, float]
    communes: list[CommuneDef] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> TerritoryDef:
        if sorted(self.t2d_strata_shares) != [1, 2, 3, 4]:
            raise ValueError("t2d_strata_shares needs strata 1, 2, 3 and 4")
        if abs(sum(self.t2d_strata_shares.values()) - 1) > 0.01:
            raise ValueError("t2d_strata_shares must sum to 1")
        return self

    def rate(self, population: str) -> float:
        """Target prevalence of `population` (t2d, t2d_at_risk, hf, hf_at_risk)."""
        return getattr(self.targets, population) / self.population


def territory_keys() -> list[str]:
    folder = resources.files("pdp.synth").joinpath("territories")
    return sorted(p.name.removesuffix(".yml") for p in folder.iterdir() if p.name.endswith(".yml"))


@cache
def load_territory(key: str) -> TerritoryDef:
    """Parse and validate `territories/<key>.yml`."""
    if key not in territory_keys():
        raise UnknownTerritory(f"unknown territory {key!r}; known: {', '.join(territory_keys())}")
    path = resources.files("pdp.synth").joinpath("territories", f"{key}.yml")
    try:
        return TerritoryDef.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        raise ValueError(f"invalid territory file {key}.yml: {exc.errors()[0]['msg']}") from None


@lru_cache(maxsize=1)
def load_calibration() -> dict[str, Any]:
    """The shared calibration (calibration.yml); checked for the keys the generator reads."""
    data = yaml.safe_load(resources.files("pdp.synth").joinpath("calibration.yml").read_text(encoding="utf-8"))
    required = {
        "reference_date",
        "history_years",
        "age_bands",
        "t2d_relative_risk",
        "hf_relative_risk",
        "identity_quality",
        "gp_share",
        "patients_per_gp",
    }
    missing = required - set(data)
    if missing:
        raise ValueError(f"calibration.yml lacks {sorted(missing)}")
    if not isinstance(data["reference_date"], date):
        raise ValueError("calibration.yml: reference_date must be a date")
    return data


@lru_cache(maxsize=1)
def load_identity_data() -> dict[str, Any]:
    return yaml.safe_load(resources.files("pdp.synth").joinpath("identity_data.yml").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_care_protocol() -> dict[str, Any]:
    return yaml.safe_load(resources.files("pdp.synth").joinpath("care_protocol.yml").read_text(encoding="utf-8"))
