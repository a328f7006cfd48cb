"""`pdp bench labfeed`: how long a lab file dropped into the running feed takes to reach silver.

Set-up (a throw-away directory, a fresh random master key): a synthetic territory is ingested
with `pdp ingest` except one lab file, which is cut into small HL7 batch files (a few messages
each, as a lab system sends them). Then, on two copies of that lake:

- **reference**: each small file through the batch path (`ingest_directory`, what `pdp ingest`
  and the feed's large micro-batches run: the pipeline's batch mode), timed end to end;
- **feed**: the lab stream running on a processing-time trigger; each small file is dropped
  (atomic rename) and timed from the drop to the end of its micro-batch (bronze, silver,
  quarantine and the ingestion log committed), which includes waiting for the trigger; also
  derived: drop to the moment its results are readable in silver.measurement (the
  micro-batch's later stages subtracted).

Figures: the median of each, their ratio (feed / reference: below 1 is faster), the median
seconds per stage of both, and how many drops needed linkage (a new person or one without an
own NIR: the feed then links against the vault like `pdp ingest`). The first file of each
side is a warm-up and is not counted. These machines are shared: compare ratios, not seconds.

Measured 2026-12-05, the feed being `pdp ingest`'s small-batch mode (one pipeline): ``pdp bench
labfeed`` with the defaults (300 persons, 5 drops of 5 messages), 2-core machine at load 1.5-3.7
(a test run beside it during its first half): feed drop-to-silver median **11.06 s**, reference
20.06 s, ratio **0.551**; the feed's median time per stage: silver persons 5.71 s, bronze 2.01,
silver events 1.77, log 1.17, lookup 0.34. The earlier figure (separate fast path, 150 persons,
4 drops, load 14-20: feed 40.1 s, reference 104.9 s, ratio 0.383) is not comparable in load;
the batch path's own fixed cost has fallen since (empty silver MERGEs skipped, MERGEs pruned
to the batch's buckets), which narrows the ratio. The person refresh is the feed's next cost.

`PDP_BENCH_LABFEED_PERSONS` (default 300), `PDP_BENCH_LABFEED_DROPS` (default 5) and
`PDP_BENCH_LABFEED_MESSAGES` (messages per dropped file, default 5) size it.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.bench import setting

if TYPE_CHECKING:
    from pdp.config import Settings
    from pdp.ingest.pipeline import IngestReport

PERSONS = 300
DROPS = 5
MESSAGES = 5
_WAIT_S = 600.0


def split_hl7_batch(data: bytes, size: int) -> list[bytes]:
    """An HL7 batch file cut into batch files of `size` messages (same FHS/BHS, recounted BTS)."""
    end = b"\r\n" if b"\r\n" in data else b"\r"
    head: list[bytes] = []
    messages: list[list[bytes]] = []
    for segment in (s for s in re.split(rb"[\r\n]+", data) if s):
        kind = segment[:3]
        if kind in (b"FHS", b"BHS"):
            head.append(segment)
        elif kind == b"MSH":
            messages.append([segment])
        elif kind not in (b"BTS", b"FTS") and messages:
            messages[-1].append(segment)
    out = []
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        body = [s + end for s in head] + [b"\r".join(m) + end for m in chunk]
        out.append(b"".join([*body, f"BTS|{len(chunk)}".encode() + end, b"FTS|1" + end]))
    return out


def bench_labfeed() -> dict[str, Any]:
    from pdp.ingest.pipeline import ingest_directory
    from pdp.lake.session import get_spark
    from pdp.pseudonym.keys import KeyStore
    from pdp.synth import generate

    persons = setting("PDP_BENCH_LABFEED_PERSONS", PERSONS)
    drops = setting("PDP_BENCH_LABFEED_DROPS", DROPS)
    size = setting("PDP_BENCH_LABFEED_MESSAGES", MESSAGES)
    with tempfile.TemporaryDirectory(prefix="pdp-bench-labfeed-") as tmp:
        root = Path(tmp)
        master_key = base64.b64encode(os.urandom(32)).decode("ascii")
        feed_settings = _settings(root / "feed", master_key)
        KeyStore.from_settings(feed_settings).init()
        sources = root / "sources"
        generate(sources, persons=persons, seed=1, territory="douaisis")
        shutil.rmtree(sources / "reports", ignore_errors=True)  # held back by the registry anyway
        held = max((sources / "labs").glob("*.hl7"), key=lambda p: p.stat().st_size)
        files = split_hl7_batch(held.read_bytes(), size)[: drops + 1]
        held.unlink()
        spark = get_spark(app_name="pdp-bench-labfeed")
        ingest_directory(sources, spark=spark, settings=feed_settings)
        ref_settings = _settings(root / "reference", master_key)
        shutil.copytree(feed_settings.var_dir, ref_settings.var_dir)

        reference = [_batch_once(content, i, root, spark, ref_settings) for i, content in enumerate(files)][1:]
        feed = _feed(files, root / "landing", spark, feed_settings)[1:]
    ref_s = statistics.median(s for s, _ in reference)
    feed_s = statistics.median(s for s, _ in feed)
    return {
        "persons": persons,
        "drops": len(feed),
        "messages_per_drop": size,
        "feed_drop_to_silver_median_s": round(feed_s, 2),
        "feed_drop_to_silver_s": [round(s, 2) for s, _ in feed],
        "feed_drop_to_measurement_median_s": round(statistics.median(s - _after_events(r) for s, r in feed), 2),
        "feed_drops_needing_linkage": sum(1 for _, r in feed if _linked(r)),
        "reference": "the same files through the batch path (pdp ingest), one at a time",
        "reference_median_s": round(ref_s, 2),
        "reference_s": [round(s, 2) for s, _ in reference],
        "ratio_feed_vs_reference": round(feed_s / ref_s, 3),
        "feed_stage_median_s": _stage_medians([r for _, r in feed]),
        "reference_stage_median_s": _stage_medians([r for _, r in reference]),
    }


def _settings(var: Path, master_key: str) -> Settings:

    from pdp.bench.scratch import throwaway_keys

    return throwaway_keys(master_key, var_dir=var, lake_uri=str(var / "lake"), db_url=f"sqlite:///{var / 'pdp.db'}",
                          key_store=var / "keys")


def _batch_once(content: bytes, i: int, root: Path, spark: Any, settings: Settings) -> tuple[float, IngestReport]:
    from pdp.ingest.pipeline import ingest_directory

    folder = root / f"batch-{i:03d}"
    (folder / "labs").mkdir(parents=True)
    (folder / "labs" / f"drop-{i:03d}.hl7").write_bytes(content)
    start = time.perf_counter()
    report = ingest_directory(folder, spark=spark, settings=settings)
    return time.perf_counter() - start, report


def _feed(files: list[bytes], landing: Path, spark: Any, settings: Settings) -> list[tuple[float, IngestReport]]:
    """Drop each file into the running feed, one at a time; seconds from drop to the end of its micro-batch."""
    from pdp.ingest.stream import start_lab_stream

    landing.mkdir()
    done: list[tuple[float, IngestReport]] = []
    query = start_lab_stream(
        landing,
        spark=spark,
        settings=settings,
        trigger_seconds=0.5,
        on_batch=lambda report: done.append((time.perf_counter(), report)),
    )
    out = []
    try:
        for i, content in enumerate(files):
            part = landing / f"drop-{i:03d}.hl7.part"
            part.write_bytes(content)
            dropped = time.perf_counter()
            part.rename(landing / f"drop-{i:03d}.hl7")  # atomic, as senders must
            deadline = dropped + _WAIT_S
            while len(done) <= i and time.perf_counter() < deadline and query.isActive:
                time.sleep(0.05)
            if len(done) <= i:
                raise RuntimeError("the lab feed did not take a dropped file")
            finished, report = done[i]
            out.append((finished - dropped, report))
    finally:
        query.stop()
    return out


def _after_events(report: IngestReport) -> float:
    """Seconds the micro-batch spent after its silver event rows were committed (quarantine, persons, log)."""
    return sum(report.seconds.get(stage, 0.0) for stage in ("quarantine", "silver_people", "log"))


def _linked(report: IngestReport) -> bool:
    return bool(set(report.link_rules) - {"deterministic_nir"})


def _stage_medians(reports: list[IngestReport]) -> dict[str, float]:
    stages = dict.fromkeys(stage for r in reports for stage in r.seconds)
    return {stage: round(statistics.median(r.seconds.get(stage, 0.0) for r in reports), 2) for stage in stages}
