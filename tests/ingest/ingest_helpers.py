"""Helpers of the ingest tests: copying and mutating synthetic files, reading outcomes, scanning messages."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shared_territory import lake_settings as lake_settings  # re-exported: the ingest tests import it here

from pdp.ingest import Counts, Quarantined, Registry, SourceRecord, parse_directory

if TYPE_CHECKING:
    from pdp.config import Settings
    from pdp.ingest.identity_stage import IdentityCipher
    from pdp.pseudonym.vault import VaultRecord

BOM = b"\xef\xbb\xbf"


def manifest_records(territory: Path) -> dict[str, int]:
    files = json.loads((territory / "manifest.json").read_text(encoding="utf-8"))["files"]
    return {path: entry["records"] for path, entry in files.items()}


def files_of(territory: Path, folder: str, *, encoding: str | None = None) -> list[str]:
    """Relative paths of a folder's files, optionally only those in one encoding (utf-8, utf-8-sig, latin-1)."""
    out = []
    for path in sorted((territory / folder).iterdir()):
        if encoding is None or sniff(path.read_bytes()) == encoding:
            out.append(path.relative_to(territory).as_posix())
    return out


def sniff(data: bytes) -> str:
    if data.startswith(BOM):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def copy_into(territory: Path, rel: str, root: Path) -> Path:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(territory / rel, target)
    return target


@dataclass
class CsvFile:
    """A delimited file as lists of cells, written back in its own encoding and line endings."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    encoding: str
    newline: str

    @classmethod
    def load(cls, path: Path) -> CsvFile:
        data = path.read_bytes()
        encoding = sniff(data)
        text = data.decode(encoding)
        newline = "\r\n" if "\r\n" in text else "\n"
        lines = list(csv.reader(text.splitlines(), delimiter=";"))
        return cls(path, lines[0], lines[1:], encoding, newline)

    def column(self, name: str) -> int:
        return self.header.index(name)

    def row_where(self, predicate) -> int:
        """0-based index of the first row satisfying predicate(row dict)."""
        for i, row in enumerate(self.rows):
            if predicate(dict(zip(self.header, row, strict=True))):
                return i
        raise AssertionError("no row satisfies the predicate")

    def set(self, row: int, column: str, value: str) -> None:
        self.rows[row][self.column(column)] = value

    def text(self, rows: list[list[str]] | None = None) -> str:
        lines = [";".join(self.header), *(";".join(r) for r in (self.rows if rows is None else rows))]
        return self.newline.join(lines) + self.newline

    def save(self) -> None:
        self.path.write_bytes(self.text().encode(self.encoding))


@dataclass
class Hl7File:
    """An HL7 batch file as envelope segments and messages (lists of segments)."""

    path: Path
    head: list[bytes]
    messages: list[list[bytes]]
    tail: list[bytes]
    end: bytes

    @classmethod
    def load(cls, path: Path) -> Hl7File:
        data = path.read_bytes()
        end = b"\r\n" if b"\r\n" in data else b"\r"
        head, messages, tail = [], [], []
        for segment in (s for s in re.split(rb"[\r\n]+", data) if s):
            kind = segment[:3]
            if kind in (b"FHS", b"BHS"):
                head.append(segment)
            elif kind in (b"BTS", b"FTS"):
                tail.append(segment)
            elif kind == b"MSH":
                messages.append([segment])
            else:
                messages[-1].append(segment)
        return cls(path, head, messages, tail, end)

    def dump(self) -> bytes:
        parts = [s + self.end for s in self.head]
        parts += [b"\r".join(m) + self.end for m in self.messages]
        parts += [s + self.end for s in self.tail]
        return b"".join(parts)

    def save(self) -> None:
        self.path.write_bytes(self.dump())


@dataclass
class Outcomes:
    records: list[SourceRecord]
    quarantined: list[Quarantined]
    counts: dict[tuple[str, str], Counts]
    held_back: list
    unmatched: tuple[Path, ...]

    @property
    def reasons(self) -> list[tuple[int, str]]:
        return sorted((q.position, str(q.reason_code)) for q in self.quarantined)


def parse_root(root: Path, registry: Registry | None = None, today: date | None = None) -> Outcomes:
    run = parse_directory(root, registry, today=today)
    records: list[SourceRecord] = []
    quarantined: list[Quarantined] = []
    for outcome in run:
        (records if isinstance(outcome, SourceRecord) else quarantined).append(outcome)  # type: ignore[arg-type]
    return Outcomes(records, quarantined, run.counts, run.held_back, run.unmatched)


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).upper()


_WORD = re.compile(r"[A-Z][A-Z'-]+")
_LONG_NUMBER = re.compile(r"[0-9][0-9 .]{3,}[0-9]")
_DATE = re.compile(r"\b[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}\b|\b[0-9]{4}-[0-9]{2}-[0-9]{2}\b|\b(?:19|20)[0-9]{6}\b")


@dataclass
class NominativeScanner:
    """Finds identity values of the territory (names, NIRs, dates, addresses, phones, emails) in a text."""

    words: set[str] = field(default_factory=set)
    phrases: set[str] = field(default_factory=set)

    @classmethod
    def from_ground_truth(cls, identities_csv: Path) -> NominativeScanner:
        scanner = cls()
        with identities_csv.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                for key in ("birth_name", "used_name", "first_names"):
                    scanner.words.update(w for w in _WORD.findall(_fold(row[key])) if len(w) >= 3)
                for key in ("address", "email", "phone"):
                    if row[key]:
                        scanner.phrases.add(_fold(row[key]))
        return scanner

    def leaks(self, message: str) -> list[str]:
        folded = _fold(message)
        found = sorted(set(_WORD.findall(folded)) & self.words)
        found += [p for p in self.phrases if p in folded]
        found += _LONG_NUMBER.findall(message) + _DATE.findall(message)
        return found

    def assert_clean(self, quarantined: list[Quarantined]) -> None:
        leaks = {q.message: self.leaks(q.message) for q in quarantined}
        assert not {m: found for m, found in leaks.items() if found}, "quarantine messages echo record values"


def pdp_env(var: Path, master_key: str) -> dict[str, str]:
    """The environment of a `pdp` subprocess on its own var/ (the test's PDP_ settings removed)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PDP_")}
    env.update(PDP_VAR_DIR=str(var), PDP_LAKE_URI=str(var / "lake"), PDP_DB_URL=f"sqlite:///{var / 'pdp.db'}",
               PDP_KEY_STORE=str(var / "keys"), PDP_MASTER_KEY=master_key, PDP_SPARK_MASTER="local[2]",
               PDP_SPARK_DRIVER_MEMORY="2g", PDP_SPARK_SHUFFLE_PARTITIONS="4")
    return env


def pdp_process(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen:
    """`pdp ARGS` in its own process group (so a test can SIGKILL it and every child)."""
    return subprocess.Popen([sys.executable, "-c", "from pdp.cli import main; main()", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **kwargs)


def _stage_rows(directory: Path) -> list[str]:
    import pyarrow.parquet as pq

    if not directory.exists():
        return []
    return sorted(repr(sorted(row.items())) for row in pq.read_table(directory).to_pylist())


def edge_run(root: Path, registry: Registry, settings: Settings, staging: Path, *, workers: int = 0,
             spark: Any = None, split: int | None = None, fold_on: Any = None) -> dict[str, Any]:
    """Every file under `root` through the edge's per-file work and fold (`run_files`), as a batch
    runs it: staged rows, counts, vault records, canonicals and tasks per file, comparable between
    engines, worker counts and split sizes (`split`: `edge_split_bytes`, None keeps the setting).
    `fold_on`: a Spark session: the files stage their identities and that session folds them
    (:mod:`pdp.ingest.identity_stage`), the vault records read back as the batch's commit streams them."""
    from datetime import UTC, datetime

    from pdp.ingest.edge import Edge
    from pdp.ingest.fanout import BatchContext, FileTask, run_files
    from pdp.ingest.parse import Duplicates
    from pdp.ingest.registry import discover
    from pdp.pseudonym.keys import KeyStore

    tasks = [FileTask(i, spec.name, path, path.relative_to(root).as_posix(), path.stat().st_size)
             for i, (spec, path) in enumerate(discover(root, registry).to_parse)]
    if split is not None:
        settings = settings.model_copy(update={"edge_split_bytes": split})
    context = BatchContext(settings, registry, root, staging, "batch-1", datetime(2026, 1, 2, tzinfo=UTC), None,
                           stage_identities=fold_on is not None)
    store = KeyStore.from_settings(settings)
    edge = Edge(store)
    counts, tasks_run = {}, {}
    for task, result in run_files(tasks, context, workers=workers, duplicates=Duplicates(), spark=spark,
                                  session=fold_on):
        counts[(task.source, task.rel)] = result.counts
        tasks_run[task.rel] = result.tasks
        edge.absorb(result.state)
    vault = edge.vault_records
    if fold_on is not None:
        from pdp.ingest.edge import EdgeState
        from pdp.ingest.identity_stage import IdentityCipher, fold, read_canonicals

        assert not vault, "staged identities are not handed back"
        cipher = IdentityCipher(store, "batch-1")
        fold(fold_on, staging / "identities", settings, cipher, staging / "folded")
        canonicals, postcodes = read_canonicals(staging / "folded", cipher)
        edge.absorb(EdgeState(canonicals=canonicals, postcodes=postcodes))
        vault = {p: r for chunk in vault_chunks(staging / "folded", cipher, {}, {}, set()) for p, r in chunk}
    return {
        "counts": counts,
        "bronze": _stage_rows(staging / "bronze"),
        "quarantine": _stage_rows(staging / "quarantine"),
        "vault": {p: r.model_dump() for p, r in vault.items()},
        "canonicals": dict(edge.canonicals),
        "postcodes": dict(edge.postcodes),
        "by_reason": dict(edge.stats.by_reason),
        "tasks": tasks_run,
    }


def vault_chunks(folded: Path, cipher: IdentityCipher, mapping: dict[str, str], owners: dict[str, str | None],
                 withheld: set[str]) -> Iterator[list[tuple[str, VaultRecord]]]:
    from pdp.ingest.edge import pack_record
    from pdp.ingest.identity_stage import VAULT_CHUNK, _rows

    """The tests' driver-side reference for :func:`pdp.ingest.identity_stage.prepare_vault`: the
    batch's vault records, re-keyed by linkage, in chunks, as :meth:`Edge.link` and
    :meth:`Edge.forget` leave them in memory, read from the folded parts here rather than routed
    and merged on the executors.

    A record whose person is withheld (an opposition) is skipped. One that linkage re-keys, or
    that others join, waits for the end and is merged there in file order
    (:func:`~pdp.ingest.edge.rekey_record`, taking its person's canonical identity from `owners`);
    the others go as they come. Only the re-keyed ones are ever held together.
    """
    routing = _Routing(mapping, owners, withheld)
    chunk: list[tuple[str, VaultRecord]] = []
    for pseudonym, order, box in _rows(folded):
        way = routing.way(pseudonym)
        if way == "skip":
            continue
        record = pack_record(cipher.open(pseudonym, box, role="folded"))
        if way == "hold":
            routing.hold(pseudonym, record, order)
            continue
        chunk.append((pseudonym, record))
        if len(chunk) >= VAULT_CHUNK:
            yield chunk
            chunk = []
    chunk.extend(routing.held())
    for start in range(0, len(chunk), VAULT_CHUNK):
        yield chunk[start : start + VAULT_CHUNK]


class _Routing:
    """Where linkage sends a person's vault record: skipped (withheld), held to be merged at the end in
    file order (re-keyed, or joined by others), or written as it comes."""

    def __init__(self, mapping: dict[str, str], owners: dict[str, str | None], withheld: set[str]) -> None:
        self._mapping, self._owners, self._withheld = mapping, owners, withheld
        self._targets = set(mapping.values())
        self._held: list[tuple[int, str, VaultRecord]] = []

    def way(self, pseudonym: str) -> Literal["skip", "hold", "go"]:
        if self._mapping.get(pseudonym, pseudonym) in self._withheld:
            return "skip"
        return "hold" if pseudonym in self._mapping or pseudonym in self._targets else "go"

    def hold(self, pseudonym: str, record: VaultRecord, order: int) -> None:
        """Keep a record (`order`: its person's place in the batch's files) for :meth:`held`."""
        self._held.append((order, self._mapping.get(pseudonym, pseudonym), record))

    def held(self) -> list[tuple[str, VaultRecord]]:
        """The held records merged per person in file order (whatever order they came in), as
        :meth:`Edge.link` merges them."""
        merged: dict[str, VaultRecord] = {}
        from pdp.ingest.edge import rekey_record

        for _, target, record in sorted(self._held, key=lambda held: held[0]):
            merged[target] = rekey_record(merged.get(target), record, self._owners.get(target, record.canonical))
        return list(merged.items())
