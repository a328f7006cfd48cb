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


def test_the_parse_only_reference_parses_split_files_in_parts_and_counts_alike(tmp_path: Path, spark) -> None:
    sources = tmp_path / "sources"
    generate(sources, persons=150, seed=11, territory="douaisis", workers=1)
    (tmp_path / "var").mkdir()
    settings = scratch_settings(tmp_path / "var").model_copy(update={"edge_split_bytes": 200_000})
    files = discover(sources, load_registry(settings=settings)).to_parse
    jobs = reference_jobs(sources, settings)
    split = {path for _, path, _, part in jobs if part is not None}
    assert split and len(jobs) > len(files), "some file is parsed in parts at this size"
    assert {path for _, path, _, _ in jobs} == {str(path) for _, path in files}, "every file, once or in parts"

    whole = _parse_only(sources, 0, settings)  # in-process: whole files
    apart = _parse_only(sources, 2, settings)  # two workers over the parts
    tasks = _parse_only(sources, 0, settings, spark)  # Spark tasks over the parts, as on a cluster
    assert apart.outcomes == tasks.outcomes == whole.outcomes > 0
    # where the parse's time goes, per source: every source parsed, the same outcomes whatever the units
    assert apart.by_source.keys() == tasks.by_source.keys() == whole.by_source.keys() == {s.name for s, _ in files}
    counts = [{k: n for k, (n, _) in run.by_source.items()} for run in (whole, apart, tasks)]
    assert counts[0] == counts[1] == counts[2] and sum(counts[0].values()) == whole.outcomes
    shares = whole.sources()
    assert abs(sum(v["share"] or 0 for v in shares.values()) - 1) < 0.01
    assert all(cpu > 0 for _, cpu in whole.by_source.values())


def test_the_reports_index_starts_first_when_its_documents_are_the_most_work(tmp_path: Path) -> None:
    """Tasks start by the bytes they read: an index of free-text reports reads its documents too."""
    from pdp.ingest.fanout import BatchContext, FileTask, longest_first

    root = tmp_path / "sources"
    (root / "reports" / "00").mkdir(parents=True)
    (root / "reports" / "index.csv").write_bytes(b"x" * 1_000)
    (root / "pharmacy").mkdir()
    (root / "pharmacy" / "big.csv").write_bytes(b"x" * 50_000)
    registry = load_registry()
    context = BatchContext(None, registry, root, root, "t", None, None)  # type: ignore[arg-type]
    tasks = [FileTask(0, "pharmacy", root / "pharmacy" / "big.csv", "pharmacy/big.csv", 50_000),
             FileTask(1, "reports", root / "reports" / "index.csv", "reports/index.csv", 1_000)]
    assert [t.source for t in longest_first(tasks, context)] == ["pharmacy", "reports"]  # no documents yet
    for i in range(30):
        (root / "reports" / "00" / f"{i}.txt").write_bytes(b"y" * 2_000)  # 60 kB of documents
    assert [t.source for t in longest_first(tasks, context)] == ["reports", "pharmacy"]
