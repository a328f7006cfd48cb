"""`pdp bench ingest`'s parse-only reference parses the ingest's own units: split files as parts.

Why: the reference must run with the parallelism of what it is compared with. Parsing whole files,
the biggest kept one worker busy long after the other had finished (at 100 000 persons), a tail
the ingest, which splits it, does not have: the ratio flattered the ingest.
"""

from __future__ import annotations

from pathlib import Path

from pdp.bench.scratch import scratch_settings
from pdp.ingest.bench import _parse_only, reference_jobs
from pdp.ingest.registry import discover, load_registry
from pdp.synth import generate


def test_the_parse_only_reference_parses_split_files_in_parts_and_counts_alike(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    generate(sources, persons=150, seed=11, territory="douaisis", workers=1)
    (tmp_path / "var").mkdir()
    settings = scratch_settings(tmp_path / "var").model_copy(update={"edge_split_bytes": 200_000})
    files = discover(sources, load_registry(settings=settings)).to_parse
    jobs = reference_jobs(sources, settings)
    split = {path for _, path, _, part in jobs if part is not None}
    assert split and len(jobs) > len(files), "some file is parsed in parts at this size"
    assert {path for _, path, _, _ in jobs} == {str(path) for _, path in files}, "every file, once or in parts"

    whole, _ = _parse_only(sources, 0, settings)  # in-process: whole files
    apart, _ = _parse_only(sources, 2, settings)  # two workers over the parts
    assert apart == whole > 0
