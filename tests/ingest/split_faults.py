"""A parser that raises on a marked record, for the split tests: imported by worker processes and
shipped to Spark executors (``SparkContext.addPyFile``), so that every engine meets the same fault."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

from pdp.ingest.model import ParseOutcome
from pdp.ingest.parsers.base import FileContext, get_parser, parser
from pdp.ingest.parsers.delimited import split_delimited

MARK = b"BOOM"  # a record holding it makes the parser raise (a parser bug on that record)
EDGE_MARK = b"EDGEBUG"  # a record holding it makes the edge raise (a parser bug the edge meets)
_DELIMITED = get_parser("delimited")


@parser("test_split_flaky_delimited", options=_DELIMITED.options, mapped=True, split=split_delimited)
def flaky_delimited(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """The delimited parser, raising on the first record that holds the mark."""
    for outcome in _DELIMITED.func(stream, ctx):
        if MARK in outcome.raw:
            raise RuntimeError("parser bug")
        yield outcome


@parser("test_split_edge_flaky_delimited", options=_DELIMITED.options, mapped=True, split=split_delimited)
def edge_flaky_delimited(stream: BinaryIO, ctx: FileContext) -> Iterator[ParseOutcome]:
    """The delimited parser, handing the edge a record without identity fields where the mark is: the
    edge raises on it, after the duplicate check has seen it."""
    for outcome in _DELIMITED.func(stream, ctx):
        yield replace(outcome, identity=None) if EDGE_MARK in outcome.raw else outcome  # type: ignore[arg-type]
