"""Every parser under hostile input: random, mutated and truncated files, in a short budget.

The properties (``fuzz_harness``): the parse never raises and never yields PARSER_ERROR, never
hangs (a time bound per outcome), holds bounded memory per outcome (tracemalloc), accounts for
every line or segment (in = landed + quarantined + file issues), and quotes no identity value
in a message or a log line. The budget here is derandomised and small (about 20 s for the
whole file on one core); ``make fuzz`` runs the same tests with the ``fuzz`` profile (thousands
of examples per parser) and the coverage-guided targets (``atheris_target.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzz_harness import CORPUS, FORMATS, apply, corpus_files, run, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,  # the harness bounds each outcome's time itself
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("PDP_FUZZ_EXAMPLES", "3000")),
    derandomize=False,
    database=DirectoryBasedExampleDatabase(Path(__file__).resolve().parents[2] / "var" / "fuzz" / "hypothesis"),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("PDP_FUZZ_PROFILE", "ci")
settings.load_profile(PROFILE)

# python-hl7 calls the deprecated Logger.warn on odd escapes (its loggers are silenced, the warning is not)
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
ALL = sorted(FORMATS)
_offset = st.integers(min_value=0, max_value=1 << 16)
_op = st.one_of(
    st.tuples(st.just("flip"), _offset, st.integers(0, 255)),
    st.tuples(st.just("insert"), _offset, st.sampled_from(__import__("fuzz_harness").TOKENS)),
    st.tuples(st.just("insert"), _offset, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _offset, st.integers(1, 64)),
    st.tuples(st.just("truncate"), _offset),
    st.tuples(st.just("repeat"), _offset, st.integers(1, 64), st.integers(2, 40)),
    st.tuples(st.just("line"), _offset, st.integers(1, 30)),
    st.tuples(st.just("huge"), _offset, st.sampled_from(b'A ";|^\\\x00\xe9{['), st.integers(1 << 10, 1 << 17)),
)


def _seeds(format_name: str) -> list[bytes]:
    return [p.read_bytes() for p in corpus_files(format_name) if p.name.startswith("seed")]


def test_every_registered_parser_is_fuzzed() -> None:
    """A new format must join the harness: an entry in ``fuzz_harness.FORMATS`` (a built-in spec of that
    format, the file's path under the ingest root) and a small valid ``seed-*`` file in
    ``tests/fuzz/corpus/<format>/``. (Parsers other tests register, named ``test_*``, are not built in.)"""
    from pdp.ingest.parsers import parser_names

    missing = sorted(set(parser_names()) - set(ALL) - {n for n in parser_names() if n.startswith("test_")})
    assert missing == [], f"parsers without a fuzz entry: {missing}"
    assert all(_seeds(f) for f in ALL), "every format has a seed-* file in its corpus"


@pytest.mark.parametrize(
    "path",
    [p for f in ALL for p in corpus_files(f)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_corpus_file_holds_the_properties(path) -> None:
    """The kept corpus, crashes found included, replayed: seeds land, every other file holds the properties."""
    result = run(path.parent.name, path.read_bytes(), trace_memory=True)
    if path.name.startswith("seed"):
        assert result.reasons == [], "a seed is a valid file: every record lands"


@pytest.mark.parametrize("format_name", ALL)
def test_truncation_at_every_offset(format_name: str) -> None:
    """A transfer cut anywhere: every prefix of a valid file."""
    data = seed(format_name)
    for end in range(len(data) + 1):
        run(format_name, data[:end])


@pytest.mark.parametrize("format_name", ALL)
def test_random_bytes(format_name: str) -> None:
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        run(format_name, data)

    check()


@pytest.mark.parametrize("format_name", ALL)
def test_mutated_valid_file(format_name: str) -> None:
    seeds = _seeds(format_name)

    @given(st.sampled_from(seeds), st.lists(_op, min_size=1, max_size=6))
    @settings(max_examples=settings().max_examples * 2)
    def check(base: bytes, ops: list[tuple]) -> None:
        run(format_name, apply(base, ops), trace_memory=True, memory_bound=24 << 20)

    check()


def test_corpus_folders_are_formats() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == ALL
