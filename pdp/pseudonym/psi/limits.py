"""Per-partner PSI limits, declared in ``limits.yml`` beside this module (see that file for why).

>>> limits = load_limits()
>>> limits.for_partner("pharmacie-du-centre").max_client_set, limits.for_partner("anyone").max_client_set
(10000, 5000)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["DEFAULT_LIMITS_FILE", "Limits", "LimitsError", "PartnerLimits", "load_limits"]

DEFAULT_LIMITS_FILE = Path(__file__).with_name("limits.yml")


class LimitsError(ValueError):
    """The limits file is missing or invalid (one line naming the file and the field)."""


class PartnerLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_client_set: int = Field(ge=1)
    min_client_set_for_count: int = Field(ge=1)
    min_count: int = Field(ge=1)
    queries_per_period: int = Field(ge=1)
    period_hours: int = Field(ge=1, le=24 * 31)


class _Override(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_client_set: int | None = Field(None, ge=1)
    min_client_set_for_count: int | None = Field(None, ge=1)
    min_count: int | None = Field(None, ge=1)
    queries_per_period: int | None = Field(None, ge=1)
    period_hours: int | None = Field(None, ge=1, le=24 * 31)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    defaults: PartnerLimits
    partners: dict[str, _Override] = Field(default_factory=dict)

    def for_partner(self, subject: str) -> PartnerLimits:
        override = self.partners.get(subject)
        if override is None:
            return self.defaults
        return self.defaults.model_copy(update=override.model_dump(exclude_none=True))


@lru_cache(maxsize=4)
def load_limits(path: Path = DEFAULT_LIMITS_FILE) -> Limits:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Limits.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise LimitsError(f"{path}: not readable YAML ({type(exc).__name__})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise LimitsError(f"{path}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
