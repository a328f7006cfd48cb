"""Who wrote a commit: the run, the job and the definitions version, kept in Delta's commit log.

Why in the commit log: it is written atomically with the data, so every table version — and
through it every row — can be traced to the run and the rules that made it, without an extra
column or a second store that could disagree. ``LakeTable.history()`` reads it back.

>>> run = RunInfo.new("gold.indicators", definitions_version="2024.06")
>>> RunInfo.from_user_metadata(run.user_metadata()) == run
True
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_SCHEMA = "pdp.run/1"


class RunInfo(BaseModel):
    """The identity of one run; required by every write so no commit is anonymous."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str = Field(min_length=1, max_length=128)
    job: str = Field(min_length=1, max_length=128)
    definitions_version: str = Field(min_length=1, max_length=128)
    lineage: dict[str, str] | None = Field(
        None, description="What the run read and used (input table versions, definition versions, as-of date)."
    )

    @classmethod
    def new(cls, job: str, *, definitions_version: str, lineage: dict[str, str] | None = None) -> RunInfo:
        """A run with a fresh random id."""
        return cls(run_id=uuid.uuid4().hex, job=job, definitions_version=definitions_version, lineage=lineage)

    def user_metadata(self, **extra: str) -> str:
        """The JSON stored in Delta's ``userMetadata``; `extra` adds fields such as a commit token or a reason."""
        payload: dict[str, Any] = {"schema": _SCHEMA, **self.model_dump(exclude_none=True), **extra}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_user_metadata(cls, text: str | None) -> RunInfo | None:
        """The run recorded in a commit, or None when the commit was not written by pdp."""
        payload = parse_user_metadata(text)
        if payload.get("schema") != _SCHEMA:
            return None
        try:
            return cls.model_validate({k: payload.get(k) for k in cls.model_fields})
        except ValidationError:
            return None


def new_commit_id() -> str:
    """A unique token stored with one commit, so a writer can find the exact version it made."""
    return uuid.uuid4().hex


def parse_user_metadata(text: str | None) -> dict[str, Any]:
    """The commit's userMetadata as a dict ({} when absent or not JSON)."""
    if not text:
        return {}
    try:
        payload = json.loads(text)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


@dataclass(frozen=True)
class Commit:
    """One table version as the commit log tells it."""

    version: int
    timestamp: datetime  # time-zone aware
    operation: str
    parameters: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    run: RunInfo | None = None
    reason: str | None = None
    user_metadata: str | None = None

    def metric(self, name: str, default: int = 0) -> int:
        """An operation metric as an int (Delta reports them as strings)."""
        value = self.metrics.get(name)
        return int(value) if value is not None else default
