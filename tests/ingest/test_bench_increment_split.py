"""`pdp bench increment`'s increment: the most recent lab messages, moved out of the lab files into
one new batch file, every batch's trailer count still right and no message lost or doubled."""

from __future__ import annotations

from pathlib import Path

from pdp.bench.increment import split_lab_day
from pdp.synth import generate


def _messages(path: Path) -> list[str]:
    segments = path.read_text(encoding="latin-1").replace("\n", "\r").split("\r")
    assert f"BTS|{sum(s.startswith('MSH') for s in segments)}" in segments  # the trailer counts them
    return [s for s in segments if s.startswith("MSH")]


def test_the_day_of_lab_results_is_the_latest_messages_taken_out_of_the_lab_files(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    generate(sources, persons=60, seed=1, territory="douaisis")
    before = sorted(m for f in (sources / "labs").glob("*.hl7") for m in _messages(f))

    day = split_lab_day(sources, messages=5)

    taken = _messages(day)
    kept = [m for f in (sources / "labs").glob("*.hl7") for m in _messages(f)]
    assert len(taken) == 5 and day.parent.name == "labs" and not day.is_relative_to(sources)
    assert sorted(taken + kept) == before
    assert min(m.split("|")[6] for m in taken) >= max(m.split("|")[6] for m in kept)
