"""`pdp synth`: a synthetic territory's raw nominative sources and their ground truth.

Streaming by chunks of persons: the main process draws each chunk's skeleton (the only
sequential state), worker processes turn chunks into file text, and the main process
appends that text in chunk order. Memory is bounded by the chunks in flight, and the
output is byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdp.synth.clinical import assign_t2d_strata, draw_memberships
from pdp.synth.formats.delimited import render_pharmacy, render_pmsi, render_social
from pdp.synth.formats.fhir_gp import render_gp_bundles
from pdp.synth.formats.hl7_lab import render_lab_messages
from pdp.synth.formats.insee import render_communes, render_deaths
from pdp.synth.formats.questionnaires import render_questionnaires
from pdp.synth.formats.reports import REPORT_STYLES, render_reports
from pdp.synth.ground_truth import render_ground_truth
from pdp.synth.history import build_history
from pdp.synth.identity_variants import identity_resolver, pair_households
from pdp.synth.model import ClinicalTruth, Identity, Person, age
from pdp.synth.output import FileSpec, Rendered, identity_errors
from pdp.synth.population import (
    Skeleton,
    SkeletonSource,
    build_world,
    choose_gp,
    make_contact,
    make_identity,
    stable_seed,
)
from pdp.synth.territory import TerritoryDef, load_calibration, load_territory
from pdp.synth.world import World

OUTPUT_FOLDERS = ("pmsi", "labs", "gp", "pharmacy", "social", "reports", "insee", "questionnaires", "ground_truth")
MAX_PERSONS = 20_000_000
SourceWriter = Callable[[list[Person], World, Callable], list[Rendered]]
SOURCE_WRITERS: dict[str, SourceWriter] = {
    "pmsi": render_pmsi,
    "lab_hl7": render_lab_messages,
    "gp_fhir": render_gp_bundles,
    "pharmacy": render_pharmacy,
    "social": render_social,
    "reports": render_reports,
    "questionnaires": render_questionnaires,
}


class SynthError(ValueError):
    """A user mistake in the generator's arguments (reported in one line)."""


@dataclass(slots=True)
class ChunkResult:
    index: int
    files: dict[str, tuple[FileSpec, str, int]]
    stats: Counter = field(default_factory=Counter)


_WORLD: World | None = None
_TERRITORY: TerritoryDef | None = None


def _init_worker(world: World, territory: TerritoryDef) -> None:
    global _WORLD, _TERRITORY
    _WORLD, _TERRITORY = world, territory


def _identity(sk: Skeleton, world: World, twin: Identity | None) -> tuple[Identity, random.Random]:
    """A skeleton's civil identity (a second twin's first name differs from the first twin's), and
    the person's random stream, which the rest of the person goes on drawing from."""
    rng = random.Random(stable_seed(world.seed, world.territory, "person", sk.person_id))
    avoid = twin.first_names[0] if twin is not None and twin.sex == sk.sex else None
    return make_identity(sk, world.reference_date, rng, avoid=avoid), rng


def person_identities(skeletons: list[Skeleton], world: World) -> list[Identity]:
    """The civil identities of a chunk's skeletons, as :func:`render_chunk` makes them (for tests)."""
    out: list[Identity] = []
    by_id: dict[int, Identity] = {}
    for sk in skeletons:
        identity, _ = _identity(sk, world, by_id.get(sk.twin_of) if sk.twin_of is not None else None)
        by_id[sk.person_id] = identity
        out.append(identity)
    return out


def _make_person(sk: Skeleton, world: World, territory: TerritoryDef, twin: Identity | None = None) -> Person:
    identity, rng = _identity(sk, world, twin)
    address, phone, email = make_contact(identity, world, rng)
    person = Person(
        person_id=sk.person_id,
        territory=world.territory,
        identity=identity,
        address=address,
        phone=phone,
        email=email,
        gp=choose_gp(world, address, rng),
        truth=ClinicalTruth(),
        insured_nir=sk.insured_nir,
    )
    draw_memberships(person, age(sk.birth_date, world.reference_date), territory, rng)
    return person


def _social_referral(person: Person, world: World) -> str | None:
    rates = load_calibration()["social_referral_rate"]
    t = person.truth
    rate = rates["t2d"] if t.t2d else rates["t2d_at_risk"] if t.t2d_at_risk else rates["base"]
    rng = random.Random(stable_seed(world.seed, person.person_id, "referral"))
    if age(person.identity.birth_date, world.reference_date) >= 18 and rng.random() < rate:
        return rng.choice(world.associations)
    return None


def _stats(persons: list[Person], rendered: list[Rendered], world: World) -> Counter:
    stats: Counter = Counter()
    for p in persons:
        t = p.truth
        stats["persons"] += 1
        if t.death_date is not None:
            stats["deceased"] += 1
            continue
        stats["alive"] += 1
        for name in ("t2d", "t2d_at_risk", "hf", "hf_at_risk", "insulin", "dialysis", "amputation"):
            stats[name] += int(getattr(t, name))
        if t.t2d_stratum:
            stats[f"t2d_stratum_{t.t2d_stratum}"] += 1
        if t.hf_stage:
            stats[f"hf_stage_{t.hf_stage}"] += 1
        for a in t.actions_due:
            stats[f"action_{a.action}_{a.status}"] += 1
        if p.observable is not None:
            _observable_stats(stats, p)
    for p in persons:
        stats["observed"] += int(p.observable is not None and p.observable.observed)
        for e in p.events:
            stats[f"event_{e.channel}_{e.kind}"] += 1
        stats["hospital_stays"] += len(p.stays)
        stats["reports"] += len(p.reports)
    for r in rendered:
        if not r.spec.path.startswith("ground_truth/") and not r.spec.path.endswith("index.csv"):
            stats[f"records_{r.spec.path.split('/')[0]}"] += r.records
    return stats


def _true_strata(t: ClinicalTruth) -> tuple[str | None, int | None]:
    """The true T2D stratum ("at_risk" for the at-risk population) and HF stratum, as the views write them."""
    t2d = str(t.t2d_stratum) if t.t2d and t.t2d_stratum else "at_risk" if t.t2d_at_risk else None
    return t2d, t.hf_stage if (t.hf or t.hf_at_risk) else None


def _observable_stats(stats: Counter, p: Person) -> None:
    """Counts of the coded and all-sources views of an alive person, and their agreement with the truth."""
    assert p.observable is not None
    seen = p.observable
    true_t2d, true_hf = _true_strata(p.truth)
    for name, view in (("coded", seen.coded), ("all", seen.all_sources)):
        for population in ("t2d", "t2d_at_risk", "hf", "hf_at_risk"):
            stats[f"{name}:population:{population}"] += int(getattr(view, population))
        if view.t2d_stratum:
            stats[f"{name}:t2d_stratum:{view.t2d_stratum}"] += 1
        if view.hf_stratum:
            stats[f"{name}:hf_stratum:{view.hf_stratum}"] += 1
        if true_t2d:
            stats[f"{name}:t2d_agree:{true_t2d}"] += int(view.t2d_stratum == true_t2d)
        if true_hf:
            stats[f"{name}:hf_agree:{true_hf}"] += int(view.hf_stratum == true_hf)
    if true_t2d:
        stats[f"true:t2d_stratum:{true_t2d}"] += 1
    if true_hf:
        stats[f"true:hf_stratum:{true_hf}"] += 1
    stats["observed_alive"] += int(seen.observed)
    for _, a in seen.coded_actions:
        stats[f"coded:action:{a.action}_{a.status}"] += 1


def _view_summary(stats: Counter, name: str) -> dict[str, Any]:
    """One view's populations, strata, and per true stratum the share the view puts in the same stratum."""

    def agreement(pyramid: str, strata: tuple[str, ...]) -> dict[str, Any]:
        out = {}
        for s in strata:
            n = stats[f"true:{pyramid}_stratum:{s}"]
            same = stats[f"{name}:{pyramid}_agree:{s}"]
            out[s] = {"true": n, "same": same, "share": round(same / n, 4) if n else None}
        return out

    t2d_strata = ("at_risk", "1", "2", "3", "4")
    hf_strata = ("1", "2", "3", "4")
    summary: dict[str, Any] = {
        "populations": {p: stats[f"{name}:population:{p}"] for p in ("t2d", "t2d_at_risk", "hf", "hf_at_risk")},
        "t2d_strata": {s: stats[f"{name}:t2d_stratum:{s}"] for s in t2d_strata},
        "hf_strata": {s: stats[f"{name}:hf_stratum:{s}"] for s in hf_strata},
        "agreement_with_truth": {"t2d": agreement("t2d", t2d_strata), "hf": agreement("hf", hf_strata)},
    }
    if name == "coded":
        prefix = "coded:action:"
        summary["actions"] = {k.removeprefix(prefix): v for k, v in sorted(stats.items()) if k.startswith(prefix)}
    return summary


_LINK_SOURCE = {"reports": "report"}  # identity_quality's source names → record_links.csv's


def render_chunk(index: int, skeletons: list[Skeleton], world: World, territory: TerritoryDef) -> ChunkResult:
    """Everything a chunk of persons writes, as text per file (pure: no disk access)."""
    persons: list[Person] = []
    by_id: dict[int, Person] = {}
    for sk in skeletons:
        twin = by_id.get(sk.twin_of) if sk.twin_of is not None else None
        person = by_id[sk.person_id] = _make_person(sk, world, territory, twin.identity if twin else None)
        persons.append(person)
    household_rng = random.Random(stable_seed(world.seed, world.territory, "households", index))
    pair_households(persons, household_rng, load_calibration()["household_couples_share"])
    rng = random.Random(stable_seed(world.seed, world.territory, "strata", index))
    diabetics = [(p, age(p.identity.birth_date, world.reference_date)) for p in persons if p.truth.t2d]
    assign_t2d_strata(diabetics, territory.t2d_strata_shares, rng)
    for sk, person in zip(skeletons, persons, strict=True):
        hist_rng = random.Random(stable_seed(world.seed, world.territory, "history", sk.person_id))
        build_history(person, age(sk.birth_date, world.reference_date), world, sk.deceased, hist_rng)
        person.social_referral = _social_referral(person, world)
    identity_of = identity_resolver(world.seed, world.communes)
    rendered: list[Rendered] = []
    for writer in SOURCE_WRITERS.values():
        rendered += writer(persons, world, identity_of)
    for person in persons:
        for source in load_calibration()["identity_quality"]:
            errors = identity_of(person, source).errors
            if errors:
                rendered.append(identity_errors(_LINK_SOURCE.get(source, source), person.person_id, errors))
    rendered += render_deaths(persons, world)
    rendered += render_ground_truth(persons, world)
    files: dict[str, tuple[FileSpec, str, int]] = {}
    pieces: dict[str, list[str]] = {}
    for r in rendered:
        spec, _, count = files.get(r.spec.path, (r.spec, "", 0))
        files[r.spec.path] = (spec, "", count + r.records)
        pieces.setdefault(r.spec.path, []).append(r.text)
    for path, (spec, _, count) in files.items():
        files[path] = (spec, "".join(pieces[path]), count)
    return ChunkResult(index, files, _stats(persons, rendered, world))


def _render_chunk_in_worker(index: int, skeletons: list[Skeleton]) -> ChunkResult:
    assert _WORLD is not None and _TERRITORY is not None
    return render_chunk(index, skeletons, _WORLD, _TERRITORY)


class _Sink:
    """Appends chunk text to the output files, writing headers once and footers at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs: dict[str, FileSpec] = {}
        self.counts: Counter = Counter()

    def write(self, spec: FileSpec, text: str, records: int) -> None:
        path = self.root / spec.path
        first = spec.path not in self.specs
        if first:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.specs[spec.path] = spec
        encoding = "utf-8" if spec.encoding == "utf-8-sig" and not first else spec.encoding
        with open(path, "w" if first else "a", encoding=encoding, newline="") as handle:
            if first:
                handle.write(spec.header)
            handle.write(text)
        self.counts[spec.path] += records

    def close(self) -> None:
        for rel, spec in self.specs.items():
            if spec.footer:
                with open(
                    self.root / rel,
                    "a",
                    encoding="utf-8" if spec.encoding == "utf-8-sig" else spec.encoding,
                    newline="",
                ) as handle:
                    handle.write(spec.footer.replace("{count}", str(self.counts[rel])))


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SynthError(f"output path {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SynthError(f"output directory {out} is not empty (use --force to replace a previous synth output)")
        unknown = [p.name for p in out.iterdir() if p.name not in (*OUTPUT_FOLDERS, "manifest.json")]
        if unknown:
            raise SynthError(
                f"output directory {out} holds files synth did not write ({unknown[0]}); refusing to clear it"
            )
        for name in (*OUTPUT_FOLDERS, "manifest.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SynthError(f"cannot write to {out}: {exc.strerror}") from None


def summarise(stats: Counter, territory: TerritoryDef, persons: int, seed: int, world: World) -> dict[str, Any]:
    """Shares in the generated population next to the territory's targets."""
    alive = max(1, stats["alive"])
    t2d = max(1, stats["t2d"])
    prevalence = {
        name: {"count": stats[name], "share": round(stats[name] / alive, 5), "target": round(territory.rate(name), 5)}
        for name in ("t2d", "t2d_at_risk", "hf", "hf_at_risk")
    }
    strata = {
        str(s): {
            "count": stats[f"t2d_stratum_{s}"],
            "share": round(stats[f"t2d_stratum_{s}"] / t2d, 4),
            "target": territory.t2d_strata_shares[s],
        }
        for s in (1, 2, 3, 4)
    }
    return {
        "territory": territory.key,
        "territory_name": territory.name,
        "seed": seed,
        "persons": persons,
        "alive_at_reference": stats["alive"],
        "deceased_in_window": stats["deceased"],
        "reference_date": world.reference_date.isoformat(),
        "history_start": world.history_start.isoformat(),
        "prevalence": prevalence,
        "t2d_strata": strata,
        "hf_stages": {str(s): stats[f"hf_stage_{s}"] for s in (1, 2, 3, 4)},
        "events": {k.removeprefix("event_"): v for k, v in sorted(stats.items()) if k.startswith("event_")},
        "records": {k.removeprefix("records_"): v for k, v in sorted(stats.items()) if k.startswith("records_")},
        "hospital_stays": stats["hospital_stays"],
        "reports": stats["reports"],
        "actions": {k.removeprefix("action_"): v for k, v in sorted(stats.items()) if k.startswith("action_")},
        # what the emitted sources support (alive persons; see pdp/synth/observable.py)
        "observed": {"persons": stats["observed"], "alive": stats["observed_alive"]},
        "coded": _view_summary(stats, "coded"),
        "all_sources": _view_summary(stats, "all"),
    }


def _manifest(root: Path, counts: Counter) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == "manifest.json":
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
        files[rel] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest(), "records": counts.get(rel, 0)}
    return files


def generate(
    out: Path,
    *,
    persons: int,
    seed: int,
    territory: str,
    workers: int = 0,
    chunk_size: int = 2000,
    force: bool = False,
    on_chunk: Callable[[int], None] | None = None,
    report_style: str = "standard",
) -> dict[str, Any]:
    """Write a territory's raw sources and ground truth under `out`; return the summary.

    `report_style` "varied" writes the free-text reports with held-out phrasing and style
    artefacts (typos, broken names, lab tables, dictation) for evaluating the NLP pipes; the
    other sources do not depend on it.
    """
    if persons <= 0:
        raise SynthError("--persons must be a positive number")
    if persons > MAX_PERSONS:
        raise SynthError(f"--persons must be at most {MAX_PERSONS:,}")
    if seed < 0:
        raise SynthError("--seed must be zero or positive")
    if report_style not in REPORT_STYLES:
        raise SynthError(f"--report-style must be one of {', '.join(REPORT_STYLES)}, not {report_style!r}")
    try:
        terr = load_territory(territory)
    except ValueError as exc:
        raise SynthError(str(exc)) from None
    _prepare_out(out, force)
    world = build_world(terr, seed, persons)
    if report_style != "standard":
        world = dataclasses.replace(world, report_style=report_style)
    skeletons = SkeletonSource(world, persons)
    sink = _Sink(out)
    sink.write(*_communes(terr))
    n_chunks = (persons + chunk_size - 1) // chunk_size
    workers = workers or os.cpu_count() or 1
    workers = min(workers, n_chunks)
    stats: Counter = Counter()

    def consume(result: ChunkResult) -> None:
        for spec, text, count in result.files.values():
            sink.write(spec, text, count)
        stats.update(result.stats)
        if on_chunk:
            on_chunk(min(chunk_size, persons - result.index * chunk_size))

    if workers <= 1:
        for i in range(n_chunks):
            consume(render_chunk(i, skeletons.chunk(i, chunk_size), world, terr))
    else:
        # spawn, not fork: forking a process that already runs threads (a Spark gateway, DuckDB)
        # can deadlock the children on locks held by those threads.
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(world, terr)) as pool:
            pending = []
            next_chunk = 0
            window = 2 * workers
            while next_chunk < n_chunks or pending:
                while next_chunk < n_chunks and len(pending) < window:
                    args = (next_chunk, skeletons.chunk(next_chunk, chunk_size))
                    pending.append(pool.apply_async(_render_chunk_in_worker, args))
                    next_chunk += 1
                consume(pending.pop(0).get())
    sink.close()
    summary = summarise(stats, terr, persons, seed, world)
    (out / "ground_truth" / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    manifest = {
        "generator": "pdp synth",
        "seed": seed,
        "territory": territory,
        "persons": persons,
        "report_style": report_style,
        "files": _manifest(out, sink.counts),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return summary


def _communes(territory: TerritoryDef) -> tuple[FileSpec, str, int]:
    rendered = render_communes(territory)
    return rendered.spec, rendered.text, rendered.records
