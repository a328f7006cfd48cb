"""How one ingest run pays its fixed costs: the pipeline's modes (`pdp ingest` and the lab feed).

There is one ingest loop (:mod:`pdp.ingest.pipeline`): the same parse, quarantine, edge, vault,
insert-only MERGEs, versions, silver and ingestion log, whichever mode runs it. A mode only
chooses how the costs that do not depend on the batch's size are paid:

- **batch** (:data:`BATCH`, `pdp ingest DIR`, a feed backlog): rows staged in Parquet parts on
  disk (bounded memory, parse worker processes), the ingestion log read whole, linkage always
  run, silver built from bronze by the batch's record hashes (every table, deaths, notes,
  communes).
- **small** (:data:`SMALL`, the lab feed's micro-batch of a few HL7 messages, where these fixed
  costs are almost all the time):

  - *rows in memory*, in-process: a local DataFrame instead of a Parquet round trip;
  - *ingestion log read for the batch's keyed fingerprints only*; a file whose bytes were already
    ingested is skipped under any name (a lab re-sending a file under a new name);
  - *linkage only when it can change something*: a record with a valid own NIR gets the
    NIR-scheme pseudonym (:mod:`pdp.pseudonym.normalise`), which linkage would give it too,
    unless the person is new to the vault (the NIR may absorb persons known so far by their
    traits) or a person keyed on the record's own traits is in the vault (rule 2 of
    :mod:`pdp.pseudonym.linkage_rules` would attach it). So linkage is skipped only when every
    identity is NIR-scheme, its pseudonym is in the vault and its traits pseudonym is not —
    looked up in the vault's index, nothing decrypted; any other batch links as `pdp ingest` does;
  - *silver for what the batch holds*: only the event tables of the domains present and the
    person/observation_period rows of the batch's persons, from the rows in hand (a batch with
    rows silver's small form does not cover — deaths, reports, communes — gets the batch's silver);
  - *one shuffle partition* for the micro-batch's tiny joins (on the feed's own session).

  Tables are created or checked once per :class:`~pdp.ingest.pipeline.Pipeline` (the feed keeps
  one for its life), not once per write — in both modes.

Measured by `pdp bench labfeed`: a small drop through the feed (small mode) against the same
drop through `pdp ingest` (batch mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BATCH", "SMALL", "SMALL_MAX_BYTES", "Mode", "mode_for"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    """The cost choices of one run; every guarantee is the pipeline's and does not depend on them."""

    name: str
    staging: Literal["disk", "memory"]
    """disk: Parquet parts (bounded memory, worker processes); memory: rows in hand, in-process."""
    log_lookup: Literal["all", "fingerprints"]
    """all: every complete file of the log, matched by (source, file, fingerprint); fingerprints:
    only the batch's fingerprints, matched by (source, fingerprint) — the same bytes under any name."""
    linkage: Literal["always", "when_needed"]
    silver: Literal["batch", "present"]
    """batch: :func:`~pdp.ingest.silver.build_silver`; present: the domains and persons the rows hold."""
    shuffle_partitions: int | None = None
    """Set on the session for the run (and restored); None leaves the session as it is."""


BATCH = Mode(name="batch", staging="disk", log_lookup="all", linkage="always", silver="batch")
SMALL = Mode(name="small", staging="memory", log_lookup="fingerprints", linkage="when_needed", silver="present",
             shuffle_partitions=1)

SMALL_MAX_BYTES = 8 << 20
"""Batches up to this many bytes may run in :data:`SMALL` mode (rows kept in memory); larger ones in :data:`BATCH`."""


def mode_for(size: int, *, small_max_bytes: int = SMALL_MAX_BYTES) -> Mode:
    """The mode for a batch of `size` bytes: small up to `small_max_bytes` (0: always batch)."""
    return SMALL if small_max_bytes > 0 and size <= small_max_bytes else BATCH
