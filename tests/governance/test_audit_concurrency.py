"""Concurrent writers never fork the chain: 4 OS processes append at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections import Counter

from sqlalchemy import Engine, select

from pdp.bench.audit import run_writers
from pdp.governance.audit import AuditLog
from pdp.governance.audit.tables import audit_log

WRITERS = 4
PER_WRITER = 30


def test_four_processes_appending_at_once_leave_one_contiguous_verified_chain(governance_engine: Engine) -> None:
    url = governance_engine.url.render_as_string(hide_password=False)
    run = run_writers(url, writers=WRITERS, per_writer=PER_WRITER)
    assert run["appends"] == WRITERS * PER_WRITER

    log = AuditLog(governance_engine)
    report = log.verify(trusted_keys={})
    assert report.ok, report.line()
    assert report.size == WRITERS * PER_WRITER
    with governance_engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.idx, audit_log.c.actor, audit_log.c.details)).all()
    assert sorted(r.idx for r in rows) == list(range(WRITERS * PER_WRITER))
    assert Counter(r.actor for r in rows) == {f"bench-writer-{w}": PER_WRITER for w in range(WRITERS)}
    if governance_engine.dialect.name == "postgresql":
        # The writers really interleaved (the advisory lock queues them): many switches between actors.
        # (SQLite's busy handler lets one writer run on, so its order proves nothing either way.)
        ordered = [r.actor for r in sorted(rows, key=lambda r: r.idx)]
        assert sum(a != b for a, b in itertools.pairwise(ordered)) >= WRITERS


def test_the_benchmark_is_registered_for_pdp_bench() -> None:
    from pdp.bench import BENCHMARKS, takes_persons

    assert BENCHMARKS["audit"] == "pdp.bench.audit:bench_audit"
    assert not takes_persons("audit")
