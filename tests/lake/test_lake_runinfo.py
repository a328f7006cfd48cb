"""Commit metadata: a run is written as JSON into Delta's userMetadata and read back exactly."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pdp.lake import RunInfo
from pdp.lake.runinfo import parse_user_metadata


def test_a_run_survives_the_round_trip_through_user_metadata() -> None:
    run = RunInfo.new("gold.indicators", definitions_version="2024.06")
    text = run.user_metadata(commit_id="abc", reason="erasure request 42")
    assert RunInfo.from_user_metadata(text) == run
    assert parse_user_metadata(text)["reason"] == "erasure request 42"
    assert json.loads(text)["schema"] == "pdp.run/1"


def test_commits_not_written_by_pdp_have_no_run() -> None:
    assert RunInfo.from_user_metadata(None) is None
    assert RunInfo.from_user_metadata("written by hand") is None
    assert RunInfo.from_user_metadata('{"run_id": "x"}') is None


def test_each_new_run_has_its_own_id_and_unknown_fields_are_refused() -> None:
    assert RunInfo.new("j", definitions_version="1").run_id != RunInfo.new("j", definitions_version="1").run_id
    with pytest.raises(ValidationError):
        RunInfo(run_id="r", job="j", definitions_version="1", user="someone")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RunInfo(run_id="", job="j", definitions_version="1")
