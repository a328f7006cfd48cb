"""The `pdp` command.

Every user mistake ends in one line on stderr and a non-zero exit, never a traceback:
`main()` runs Typer in non-standalone mode and turns usage errors and the platform's own
input errors into `error: ...`.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import Abort, Exit, TyperException

if TYPE_CHECKING:
    from pdp.ingest.pipeline import IngestReport
    from pdp.ingest.skipped import SkippedResources
    from pdp.ingest.unmapped import UnmappedCodes

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Population data platform: synthetic territories, lakehouse, population algorithms.",
)
console = Console(stderr=False)


class UserError(Exception):
    """A mistake in what the user asked for; reported in one line."""


def _progress(total: int, label: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )


def run_synth(
    out: Path, persons: int, seed: int, territory: str, force: bool, workers: int, report_style: str = "standard"
) -> dict:
    from pdp.config import get_settings
    from pdp.synth import SynthError, generate

    settings = get_settings()
    try:
        with _progress(persons, f"synth {territory}") as progress:
            task = progress.add_task("persons", total=persons)
            return generate(
                out,
                persons=persons,
                seed=seed,
                territory=territory,
                force=force,
                workers=workers or settings.synth_workers,
                chunk_size=settings.synth_chunk_persons,
                on_chunk=lambda n: progress.advance(task, n),
                report_style=report_style,
            )
    except SynthError as exc:
        raise UserError(str(exc)) from None


def _summary_table(summary: dict) -> Table:
    table = Table(
        title=f"{summary['territory_name']}: {summary['alive_at_reference']:,} residents "
        f"at {summary['reference_date']} (seed {summary['seed']})"
    )
    for col in ("population", "count", "share", "target", "ratio"):
        table.add_column(col, justify="right" if col != "population" else "left")
    for name, row in summary["prevalence"].items():
        ratio = row["share"] / row["target"] if row["target"] else 0
        table.add_row(name, f"{row['count']:,}", f"{row['share']:.2%}", f"{row['target']:.2%}", f"{ratio:.2f}")
    for stratum, row in summary["t2d_strata"].items():
        ratio = row["share"] / row["target"] if row["target"] else 0
        table.add_row(
            f"T2D stratum {stratum}", f"{row['count']:,}", f"{row['share']:.2%}", f"{row['target']:.2%}", f"{ratio:.2f}"
        )
    return table


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Output directory (created; must be empty unless --force).")],
    persons: Annotated[int, typer.Option(min=1, help="Number of residents to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed: same seed, same bytes.")] = 7,
    territory: Annotated[str, typer.Option(help="Territory key (see territories/*.yml).")] = "douaisis",
    force: Annotated[bool, typer.Option(help="Replace a previous synth output in --out.")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0 = settings / one per core).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    report_style: Annotated[
        str,
        typer.Option(help="Free-text reports: 'standard', or 'varied' (held-out phrasing, artefacts)."),
    ] = "standard",
) -> None:
    """Generate a synthetic territory's raw nominative sources and its ground truth."""
    summary = run_synth(out, persons, seed, territory, force, workers, report_style)
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        console.print(_summary_table(summary))
        console.print(f"sources and ground_truth/ written to {out}")


@app.command()
def demo(
    persons: Annotated[int, typer.Option(min=1, help="Residents of the demo territory.")] = 20_000,
    seed: Annotated[int, typer.Option(min=0)] = 7,
    territory: Annotated[str, typer.Option()] = "douaisis",
) -> None:
    """Synthetic territory → (later stages as they land) → summary of the pyramid against its targets."""
    import os

    from pdp.config import get_settings

    settings = get_settings()
    out = settings.var_dir / "demo" / "sources"
    summary = run_synth(out, persons, seed, territory, True, 0)
    console.print(_summary_table(summary))
    records = ", ".join(f"{k} {v:,}" for k, v in summary["records"].items())
    console.print(f"raw sources in {out}: {records}")
    actions = summary["actions"]
    overdue = sum(v for k, v in actions.items() if k.endswith("_overdue"))
    total = sum(actions.values())
    console.print(
        f"care actions at {summary['reference_date']}: {total:,} on pathways, {overdue:,} overdue (ground truth)"
    )
    no_local_key = settings.master_key is None and settings.master_key_file is None
    if settings.kms == "local" and no_local_key and "PDP_MASTER_KEY" not in os.environ:  # pkcs11: the token's key
        demo_key = (settings.var_dir / "demo-master.key").resolve()
        if not demo_key.exists():
            from pdp.pseudonym.kms import create_master_key_file

            create_master_key_file(demo_key)
            console.print(f"demo: created a development master key in {demo_key} (production: a KMS or a secret)")
        os.environ["PDP_MASTER_KEY_FILE"] = str(demo_key)
        get_settings.cache_clear()
    from pdp.pseudonym.keys import KeyStore

    with _key_store_errors():
        store = KeyStore.from_settings()
        if not store.status():
            store.init()
    result = run_ingest(out)
    _demo_reconcile(out, result)
    as_of = date.fromisoformat(summary["reference_date"])
    run_gold(as_of, summary["territory_name"])
    _demo_pyramids(out, as_of)
    from pdp.governance.leak_scan_cli import run_scan

    if run_scan(console=console):
        raise UserError("the leak scanner found direct identifiers in the lake (see above)")
    _demo_audit()


def _demo_audit() -> None:
    """The demo ends by signing the audit log's head and verifying the whole log (`pdp audit verify`)."""
    from pdp.governance.audit import AuditIntegrityError, AuditLog

    with _key_store_errors():
        log = AuditLog.from_settings()
        try:
            head = log.checkpoint()
        except AuditIntegrityError as exc:
            raise UserError(f"audit log: {exc}") from None
        report = log.verify()
    console.print(f"audit: {report.line()} (signed head {head.tree_size} entries, key {head.key_id})", soft_wrap=True)
    if not report.ok:
        raise UserError("the audit log does not verify (see above)")


def _demo_reconcile(sources: Path, result: dict) -> None:
    """Lake counts against the generator's manifest (what landed is what was sent)."""
    files = json.loads((sources / "manifest.json").read_text(encoding="utf-8"))["files"]
    sent = sum(m["records"] for rel, m in files.items() if rel.split("/")[0] not in {"reports", "ground_truth"})
    console.print(f"demo: {sent:,} structured records sent, {result['in']:,} read this run, "
                  f"{result['landed']:,} landed, {result['quarantined']:,} quarantined")


def _as_of(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserError(f"--as-of must be a date YYYY-MM-DD, not {text!r}") from None


def run_gold(as_of: date | None = None, territory: str = "territoire", trend_months: int = 12) -> dict:
    """`pdp run` as a function (the demo reuses it): silver → gold at `as_of` (default: today), the
    territory's indicators under disclosure control, and its HTML report."""
    from pdp.algorithms import DefinitionError, build_gold, load_definitions
    from pdp.algorithms.indicators import publish_indicators
    from pdp.config import get_settings
    from pdp.lake import LakeError, get_spark

    try:
        defs = load_definitions()
    except DefinitionError as exc:
        raise UserError(str(exc)) from None
    day = as_of or date.today()
    spark = get_spark(app_name="pdp-run")
    applied = apply_oppositions(spark)
    if applied.persons:
        console.print(f"oppositions: {applied.persons} person(s) erased from the lake and the vault "
                      f"in {applied.seconds:.1f} s")
    try:
        report = build_gold(spark, as_of=day, definitions=defs)
        published = publish_indicators(spark, as_of=day, territory=territory, definitions=defs,
                                       report_dir=get_settings().var_dir / "reports", trend_months=trend_months)
    except LakeError as exc:
        raise UserError(str(exc)) from None
    if report.skipped:
        console.print(f"gold at {day.isoformat()} is up to date with silver and {defs.version}: nothing written")
    else:
        rows = ", ".join(f"{k} {v:,}" for k, v in report.rows.items())
        console.print(f"gold at {day.isoformat()} ({defs.version}): {rows} in {report.seconds['total']:.1f} s")
    console.print(f"indicators: {published.rows:,} published aggregates"
                  f"{'' if published.written else ' (unchanged)'}; report: {published.report}")
    if trend_months > 1:
        console.print(f"trend: {trend_months - 1} earlier month ends, {published.trend_rows:,} aggregates"
                      f"{'' if published.trend_written else ' (unchanged)'} in {published.seconds['trend']:.1f} s "
                      f"(DuckDB over silver read once)")
    return {"as_of": day, "skipped": report.skipped, "rows": report.rows, "definitions": defs.version,
            "report": published.report}


oppose_app = typer.Typer(no_args_is_help=True, help="Citizens' opposition (FHIR Consent, deny): registry and erasure.")
app.add_typer(oppose_app, name="oppose")


def _governance_engine():
    from pdp.governance import create_all, make_engine

    engine = make_engine()
    create_all(engine)
    return engine


def _governance():
    from pdp.pseudonym.keys import KeyStore

    return _governance_engine(), KeyStore.from_settings()


def audit_event(
    *,
    action: str,
    actor_role: str = "system",
    decision: str = "done",
    data_ref=(),
    purpose: str | None = None,
    rule: str = "",
    details: dict | None = None,
) -> None:
    """Record a command's governance event in the audit log (``PDP_AUDIT_DB_URL``, else the governance store).

    The actor is the command line itself (``pdp-cli``): the operator's OS login is not recorded.
    A refused entry (an identity in it) or an unwritable store is a one-line error.
    """
    from pdp.governance.audit import AuditEntryError, AuditLog

    try:
        AuditLog.from_settings(with_keys=False).append(
            actor="pdp-cli", actor_role=actor_role, action=action, decision=decision, data_ref=data_ref,
            purpose=purpose, rule=rule, details=details,
        )
    except AuditEntryError as exc:
        raise UserError(str(exc)) from None


def _ingest_lock():
    """The lake's ingest lock (waited for): oppositions never interleave with an ingest's edge and commit."""
    from pdp.config import get_settings
    from pdp.ingest.lock import waiting_ingest_lock

    return waiting_ingest_lock(get_settings().var_dir / "ingest.lock")


def apply_oppositions(spark):
    """`pdp oppose apply` as a function (`pdp run` starts with it): erase every pending opposed person."""
    from pdp.governance.audit import AuditLog
    from pdp.governance.opposition import apply

    with _key_store_errors():
        engine, store = _governance()
        return apply(spark=spark, engine=engine, store=store, audit=AuditLog.from_settings(with_keys=False),
                     lock=_ingest_lock())


def _consent_command(path: Path, *, withdrawal: bool) -> None:
    from pdp.governance.audit import AuditLog
    from pdp.governance.opposition import ConsentError, submit
    from pdp.lake import get_spark

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with _key_store_errors():
        engine, store = _governance()
        try:
            spark = None if withdrawal else get_spark(app_name="pdp-oppose")
            outcome = submit(path, engine=engine, store=store, spark=spark, withdrawal=withdrawal, lock=_ingest_lock(),
                             audit=AuditLog.from_settings(with_keys=False))
        except ConsentError as exc:
            raise UserError(f"{path.name}: {exc}") from None
    verb = "withdrawn" if withdrawal else "registered"
    console.print(f"opposition {verb}: {len(outcome.changed)} of {len(outcome.pseudonyms)} pseudonym(s) changed state "
                  f"({', '.join(outcome.pseudonyms)})")
    if outcome.gold:
        rows = sum(int(t["rows_deleted"]) for t in outcome.gold)
        console.print(f"gold: {rows:,} row(s) removed at once from {len(outcome.gold)} table(s); "
                      "`pdp oppose apply` (or `pdp run`) erases the rest of the lake and the vault")


@oppose_app.command("submit")
def oppose_submit_command(
    consent: Annotated[Path, typer.Argument(help="A FHIR R4 Consent (JSON), provision deny.")],
) -> None:
    """Register an opposition: the person leaves every result now (gold at once), the lake at `apply`."""
    _consent_command(consent, withdrawal=False)


@oppose_app.command("withdraw")
def oppose_withdraw_command(
    consent: Annotated[Path, typer.Argument(help="The FHIR R4 Consent naming the patient.")],
) -> None:
    """Withdraw an opposition: data arriving from now on are used again (erased data stay erased)."""
    _consent_command(consent, withdrawal=True)


@oppose_app.command("apply")
def oppose_apply_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the proof as JSON.")] = False,
) -> None:
    """Erase every opposed person from every lake table and version (data, change data) and the vault."""
    from pdp.lake import get_spark

    report = apply_oppositions(get_spark(app_name="pdp-oppose-apply"))
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    console.print(f"erased {report.persons} person(s) in {report.seconds:.1f} s: "
                  f"{sum(t['rows_deleted'] for t in report.tables):,} rows, "
                  f"{sum(t['files_removed'] for t in report.tables):,} files removed, {report.vault_rows} vault row(s)")


ethics_app = typer.Typer(no_args_is_help=True, help="The ethics committee: reproducible, audited samples of gold.")
app.add_typer(ethics_app, name="ethics")


@ethics_app.command("sample")
def ethics_sample_command(
    territory: Annotated[str, typer.Option(help="Territory label of the gold run (pdp run --territory).")],
    stratum: Annotated[str, typer.Option(help="Stratum to draw from (at_risk, 1, 2, 3, 4).")],
    n: Annotated[int, typer.Option("--n", help="Number of persons to draw.")],
    seed: Annotated[int, typer.Option(help="Seed of the draw: same seed and parameters, same persons.")],
    pyramid: Annotated[str, typer.Option(help="Pyramid (t2d or hf).")] = "t2d",
    as_of: Annotated[str | None, typer.Option("--as-of", help="Date of the gold run (default: latest).")] = None,
) -> None:
    """Draw pseudonymised records (facts, assignment, explanation) for review; the draw is audited."""
    from pdp.governance.ethics import SampleError, draw_sample
    from pdp.lake import get_spark

    engine = _governance_engine()  # the draw reads gold and the registry: no key needed
    try:
        sample = draw_sample(get_spark(app_name="pdp-ethics"), engine, territory=territory, pyramid=pyramid,
                             stratum=stratum, n=n, seed=seed, as_of=_as_of(as_of) if as_of else None)
    except SampleError as exc:
        raise UserError(str(exc)) from None
    audit_event(action="ethics_sampling", actor_role="ethics", data_ref=sample.pseudonyms, purpose="ethics_review",
                details=sample.parameters())
    print(json.dumps({"parameters": sample.parameters(), "records": sample.records}, indent=2,
                     ensure_ascii=False, default=str))


@app.command("run")
def run_command(
    as_of: Annotated[str | None, typer.Option("--as-of", help="Reference date YYYY-MM-DD (default: today).")] = None,
    territory: Annotated[str, typer.Option(help="Territory label of the indicators and the report.")] = "territoire",
    trend_months: Annotated[int, typer.Option(min=1, max=36, help="Months of indicator trend: the as-of date and "
                                              "the month ends before it (1: the as-of date only).")] = 12,
) -> None:
    """Silver → gold: populations, pyramids, care actions, alerts (with the facts behind each), the
    territory's indicators under disclosure control (with their monthly trend), and its HTML report (var/reports/)."""
    run_gold(_as_of(as_of), territory, trend_months)


@app.command("explain")
def explain_command(
    person: Annotated[str, typer.Argument(help="A pseudonym (v<N>:...) or a numeric person id from gold "
                                            "(negative ids after `--`: pdp explain -- -123).")],
    as_of: Annotated[str | None, typer.Option("--as-of", help="Date of the gold run (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """One person's populations, strata, due actions and alerts, with the rules and facts behind them."""
    from pdp.algorithms.explain import PersonNotFound, explain_person
    from pdp.lake import get_spark

    if not (person.removeprefix("-").isdigit() or (person.startswith("v") and ":" in person)):
        raise UserError("PERSON must be a pseudonym (v<N>:...) or a numeric person id (a negative one after `--`)")
    try:
        found = explain_person(get_spark(app_name="pdp-explain"), person, as_of=_as_of(as_of))
    except PersonNotFound as exc:
        raise UserError(str(exc)) from None
    if as_json:
        print(json.dumps(found.as_json(), indent=2, ensure_ascii=False, default=str))
        return
    _print_explanation(found)


def _print_explanation(found) -> None:
    console.print(f"[bold]{found.person_pseudonym}[/bold] (person {found.person_id}) at {found.as_of}, "
                  f"definitions {found.definitions}")

    def facts(kind: str, subject: str) -> None:
        for f in found.facts(kind, subject):
            value = f" = {f['value']:g}" if f["value"] is not None else ""
            where = f"{f['fact_table']}#{f['event_id']}"
            console.print(f"      · {f['criterion']}: {f['vocabulary'] or ''} {f['source_code'] or ''}{value} "
                          f"on {f['fact_date'] or '-'} from {f['source'] or '-'} ({where})")

    for p in found.populations:
        console.print(f"  population {p['population']}: {p['rule_id']} (first evidence: {p['primary_evidence']})")
        facts("population", p["population"])
    for s in found.strata:
        console.print(f"  pyramid {s['pyramid']}: stratum {s['stratum']} by {s['rule_id']}")
        facts("stratum", f"{s['pyramid']}:{s['stratum']}")
    for a in found.actions:
        console.print(f"  action {a['pathway']}.{a['action']} ({a['professional']}): {a['status']}, last done "
                      f"{a['last_done'] or 'never'}, next due {a['next_due']}, every {a['interval_days']} days "
                      f"({a['rule_id']})")
        facts("action", f"{a['pathway']}.{a['action']}")
    for a in found.alerts:
        console.print(f"  alert {a['alert']} ({a['severity']}, for {a['professional']}): {a['rule_id']}")
        facts("alert", a["alert"])


def _demo_pyramids(sources: Path, as_of: date) -> None:
    """Both pyramids as gold computes them, beside the ground truth (true, coded-only, all sources)."""
    from pdp.bench.evaluate import STRATA, evaluate
    from pdp.lake import get_spark

    result = evaluate(get_spark(app_name="pdp-demo"), sources, as_of=as_of)
    for pyramid, strata in STRATA.items():
        coded, true, every = (result.score(pyramid, w) for w in ("coded", "true", "all"))
        table = Table(title=f"{pyramid.upper()} pyramid at {as_of} — gold (from the lake) against the ground truth")
        for col in ("stratum", "gold", "truth: coded sources", "truth: all sources", "truth: real state",
                    "recall (coded)"):
            table.add_column(col, justify="right" if col != "stratum" else "left")
        g, c, a, t = coded.counts("gold"), coded.counts("truth"), every.counts("truth"), true.counts("truth")
        for stratum in reversed(strata):
            table.add_row(stratum, f"{g[stratum]:,}", f"{c[stratum]:,}", f"{a[stratum]:,}", f"{t[stratum]:,}",
                          f"{coded.recall[stratum]:.3f}")
        console.print(table)
        console.print(f"{pyramid}: agreement (share of {coded.persons:,} alive residents in the right stratum, "
                      f"'none' included) — coded {coded.agreement:.4f}, all sources {every.agreement:.4f}, "
                      f"real state {true.agreement:.4f}")
    console.print(f"care actions: person × action status agreement with the coded truth "
                  f"{result.actions['agreement']:.4f} over {int(result.actions['rows']):,} rows")
    per_action = {k: v for k, v in result.actions.items() if "." in k}
    console.print("  per action: " + ", ".join(f"{k} {v:.4f}" for k, v in per_action.items()))


@app.command("scan-lake")
def scan_lake_command(
    pseudonym: Annotated[list[str] | None, typer.Option(
        "--pseudonym", help="Look only for this pseudonym and its person id (proof of erasure); repeatable.")] = None,
) -> None:
    """Scan every table, retained version, change-data file and log of the lake for direct identifiers.

    Exit 0 when clean, 1 with table/column/count (never a value) when anything is found.
    """
    from pdp.governance.leak_scan_cli import run_scan
    from pdp.pseudonym.vault import VaultError, check_pseudonym

    try:
        wanted = [check_pseudonym(p) for p in pseudonym or []]
    except VaultError as exc:
        raise UserError(str(exc)) from None
    code = run_scan(console=console, pseudonyms=wanted)
    if code:
        raise typer.Exit(code)


@app.command("uniqueness")
def uniqueness_command(
    k: Annotated[int, typer.Option("--k", help="Also count persons in classes smaller than k (k-anonymity).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Share of persons of silver.person unique on (sex, birth year and month, commune): re-identification risk.

    Counts only, never a value or a pseudonym.
    """
    from pdp.governance.uniqueness import UniquenessError, person_uniqueness
    from pdp.lake import LakeError, get_spark

    if k < 2:
        raise UserError(f"--k must be at least 2 (got {k})")
    try:
        result = person_uniqueness(get_spark(app_name="pdp-uniqueness"), k=k)
    except (UniquenessError, LakeError) as exc:
        raise UserError(str(exc)) from None
    if as_json:
        print(json.dumps({"persons": result.persons, "classes": result.classes, "unique": result.unique,
                          "unique_share": round(result.unique_share, 4), "k": result.k,
                          "below_k": result.below_k, "below_k_share": round(result.below_k_share, 4),
                          "columns": list(result.columns)}))
        return
    console.print(f"silver.person on ({', '.join(result.columns)}): {result.persons:,} persons in "
                  f"{result.classes:,} classes; unique {result.unique:,} ({result.unique_share:.1%}); "
                  f"in classes below k={result.k} {result.below_k:,} ({result.below_k_share:.1%})", soft_wrap=True)


sources_app = typer.Typer(no_args_is_help=True, help="The source registry (declarative specs, pdp/ingest/sources/).")
app.add_typer(sources_app, name="sources")


@sources_app.command("list")
def sources_list_command() -> None:
    """Every registered source: format, files, what it produces."""
    from pdp.ingest.registry import SpecError, sources_list

    try:
        rows = sources_list()
    except SpecError as exc:
        raise UserError(str(exc)) from None
    table = Table(title="sources")
    for col in ("name", "version", "format", "files", "produces", "subject"):
        table.add_column(col)
    for row in rows:
        held = " (held back)" if row["hold_back"] else ""
        table.add_row(row["name"], str(row["version"]), row["format"], ", ".join(row["files"]),
                      ", ".join(map(str, row["produces"])) + held, row["subject"])
    console.print(table)


@sources_app.command("validate")
def sources_validate_command(spec: Annotated[Path, typer.Argument(help="A source spec YAML file.")]) -> None:
    """Validate one source spec; one line: ok or the first problem."""
    from pdp.ingest.registry import SpecError, sources_validate

    try:
        valid = sources_validate(spec)
    except SpecError as exc:
        raise UserError(str(exc)) from None
    console.print(f"ok: {valid.name} v{valid.version} ({valid.format})")


def _os_error(exc: OSError) -> str:
    """An OS error in one line: its reason and, if it has one, the path (the platform's or the sender's file)."""
    import os

    reason = os.strerror(exc.errno) if exc.errno else " ".join(str(exc).split())[:200]
    return f"{reason} ({exc.filename})" if exc.filename else reason


PARTIAL_EXIT = 3
"""`pdp ingest`'s exit when the batch committed but some file's reading stopped before its end (a parser
or the edge raised): not 0, so a scheduler flags the parser bug; not 1 or 2, since nothing failed to
commit and the input was not wrong. Those files are logged ``partial`` and read again by the next run."""


def run_ingest(directory: Path) -> dict:
    """`pdp ingest DIR` as a function (the demo reuses it): counts per file and per table.

    A partial file (its parser raised mid-file) does not stop the batch: the rest commits, then one
    ``warning:`` line per such file names it and the exception type (never its message, which may
    quote a value), and the command exits :data:`PARTIAL_EXIT`.
    """
    from pdp.ingest.fanout import ParseWorkerError
    from pdp.ingest.pipeline import IngestBusy, ingest_directory
    from pdp.ingest.registry import SpecError
    from pdp.lake import LakeError, get_spark
    from pdp.pseudonym.linkage_trained import LinkageModelError

    if not directory.is_dir():
        raise UserError(f"ingest directory {directory} does not exist")
    with _key_store_errors():
        try:
            report = ingest_directory(directory, spark=get_spark(app_name="pdp-ingest"))
        except (SpecError, LakeError, IngestBusy, LinkageModelError) as exc:
            raise UserError(str(exc)) from None
        except ParseWorkerError as exc:  # names the file and the exception's type (or the secret missing), no value
            raise UserError(f"ingest stopped: {exc}; the batch's files are not logged as ingested") from None
        except OSError as exc:  # a full disk, a file gone or unreadable mid-run (also from a parse worker)
            raise UserError(f"ingest stopped: {_os_error(exc)}; the batch's files are not logged as ingested, "
                            "run it again once this is fixed") from None
    console.print(ingest_table(report))
    engine = "Spark tasks" if report.parse_engine == "spark" else (
        f"{report.parse_workers} worker processes" if report.parse_workers else "in-process")
    console.print(f"edge: parse and pseudonymise as {engine}, {report.parse_tasks} task(s) "
                  "(PDP_EDGE_ENGINE, PDP_EDGE_SPLIT_BYTES)")
    records_in, landed, quarantined = report.totals()
    console.print(f"in {records_in:,} = landed {landed:,} + quarantined {quarantined:,}; "
                  f"bronze +{report.bronze_inserted:,}, quarantine +{report.quarantine_inserted:,}, "
                  f"vault {report.vault_records:,} identities; held back {report.held_back} file(s), "
                  f"unmatched {report.unmatched}")
    if report.vault_prepared:
        console.print(f"vault: {report.vault_prepared:,} new identities' writes made ready on Spark's executors "
                      "(sealed, encrypted, hashed), copied in")
    if report.link_rules:
        rules = ", ".join(f"{k} {v:,}" for k, v in sorted(report.link_rules.items()))
        console.print(f"linkage: {report.relinked:,} batch identities re-keyed to their person ({rules})")
    if report.link_engine:
        where = "" if report.identities_on_driver else (
            "; from the batch's sealed staged identities, opened on Spark's executors only")
        console.print(f"linkage engine: {report.link_engine} (PDP_LINKAGE_ENGINE){where}")
    if report.link_model:
        console.print(f"linkage model: {_model_line(report.link_model)}")
    superseded = sum(f.superseded for f in report.files)
    if superseded or report.replaced.records:
        console.print(f"versions: {report.replaced.records:,} earlier version(s) replaced, {superseded:,} superseded "
                      "within the batch by a later version of the same sender record")
    if report.silver:
        console.print("silver: " + ", ".join(f"{k} +{v:,}" for k, v in report.silver.items()))
    if report.seconds:
        console.print("seconds: " + ", ".join(f"{k} {v:,.1f}" for k, v in report.seconds.items()))
    if report.driver_peak_mib:
        console.print("driver peak MiB at each stage's end: "
                      + ", ".join(f"{k} {v:,.0f}" for k, v in report.driver_peak_mib.items()))
    if report.by_reason:
        console.print("quarantine reasons: " + ", ".join(f"{k} {v}" for k, v in report.by_reason.most_common()))
    if report.fields_dropped:  # malformed identity values and attributes left out, their records kept
        console.print("malformed values left out (records kept): "
                      + ", ".join(f"{k} {v:,}" for k, v in sorted(report.fields_dropped.items())))
    if report.id_collisions:  # 64-bit id collisions: in ops.quarantine (ID_COLLISION), their records in bronze
        print("warning: silver id collisions (events quarantined ID_COLLISION, records in bronze): "
              + ", ".join(f"{k} {v}" for k, v in sorted(report.id_collisions.items())), file=sys.stderr)
    for line in unmapped_lines(report.unmapped) + skipped_lines(report.skipped_resources):
        console.print(line)
    if any(not f.balanced for f in report.files):
        raise UserError("counts do not reconcile for some file (in != landed + quarantined)")
    _ingest_inbox(directory)
    partial = report.partial_files()
    for f in partial:
        print(f"warning: {f.source} {f.file}: partial ({f.stopped}); logged partial, read again by the next "
              "`pdp ingest` once the cause is fixed", file=sys.stderr)
    if partial:
        raise Exit(PARTIAL_EXIT)
    return {"in": records_in, "landed": landed, "quarantined": quarantined, "silver": report.silver}


def ingest_table(report: IngestReport) -> Table:
    """`pdp ingest`'s per-file table: in = landed + quarantined, file issues, resources skipped, status."""
    table = Table(title=f"ingest {report.batch_id}")
    for col in ("source", "file", "in", "landed", "quarantined", "file issues", "skipped", ""):
        table.add_column(col, justify="left" if col in ("source", "file") else "right")
    for f in report.files:
        status = "already ingested" if f.skipped else ("ok" if f.balanced else "UNBALANCED")
        status = "PARTIAL" if f.partial and not f.skipped else status
        issues = f"{f.file_issues:,}" if f.file_issues else ""
        skipped = sum(f.skipped_resources.values())
        table.add_row(f.source, f.file, f"{f.records_in:,}", f"{f.landed:,}", f"{f.quarantined:,}", issues,
                      f"{skipped:,}" if skipped else "", status)
    return table


def _model_line(version: str) -> str:
    """What the ingest report says of the linkage model it used."""
    from pdp.pseudonym.linkage import MODEL_BUILTIN, MODEL_EM_BATCH, MODEL_NOT_RUN

    return {
        MODEL_EM_BATCH: "none trained (`pdp linkage train`): m/u estimated by EM on this batch",
        MODEL_BUILTIN: "none trained (`pdp linkage train`): built-in parameters (batch too small for EM, "
                       "or EM underflowed or found no match class)",
        MODEL_NOT_RUN: "not needed (every identity decided by its own NIR)",
    }.get(version, f"trained {version}")


def unmapped_lines(unmapped: UnmappedCodes, *, per_vocabulary: int = 5) -> list[str]:
    """What `pdp ingest` prints of the codes outside the concept sets: counts per source, top codes per vocabulary."""
    if not unmapped:
        return []
    per_source = ", ".join(f"{k} {v:,}" for k, v in sorted(unmapped.by_source().items()))
    lines = [f"codes outside the concept sets (kept, unmapped): {per_source}"]
    for vocabulary, codes in unmapped.top(per_vocabulary=per_vocabulary).items():
        lines.append(f"  {vocabulary}: " + ", ".join(f"{code} ×{count:,}" for code, count in codes))
    return lines


def skipped_lines(skipped: SkippedResources) -> list[str]:
    """What `pdp ingest` prints of what was read and not kept (resource types the platform does not read,
    units that are not units): per source, per kind."""
    if not skipped:
        return []
    per_source = ", ".join(f"{k} {v:,}" for k, v in skipped.by_source().items())
    lines = [f"read and not kept (resource types the platform does not read, units that are not units; not "
             f"records, not quarantined): {per_source}"]
    for source in skipped.by_source():
        lines.append(f"  {source}: " + ", ".join(f"{kind} {count:,}" for kind, count in skipped.of(source).items()))
    return lines


def _ingest_inbox(directory: Path) -> None:
    """What API routes handed to the edge (var/inbox: PREM / PROM responses) goes in after DIR, then leaves it."""
    from pdp.ingest.inbox import inbox_dir, pending, remove_ingested
    from pdp.ingest.pipeline import ingest_directory
    from pdp.lake import get_spark

    root = inbox_dir()
    if not pending() or root.resolve() == directory.resolve():
        return
    with _key_store_errors():
        report = ingest_directory(root, spark=get_spark(app_name="pdp-ingest"))
    records_in, landed, quarantined = report.totals()
    removed = remove_ingested(root, [(f.file, f.balanced and not f.partial) for f in report.files])
    console.print(f"inbox: in {records_in:,} = landed {landed:,} + quarantined {quarantined:,}; "
                  f"{removed} file(s) taken out of the inbox")


@app.command()
def ingest(
    directory: Annotated[Path, typer.Argument(help="Directory of source files (e.g. a `pdp synth` output).")],
    stream: Annotated[bool, typer.Option("--stream", help="Run the lab feed on DIR as a landing folder.")] = False,
    once: Annotated[bool, typer.Option("--once", help="With --stream: take what is there, then stop.")] = False,
) -> None:
    """Every new source file in DIR through the edge into bronze and silver; prints the counts.

    With --stream, DIR is the lab feed's landing folder: HL7 files dropped there are ingested
    as they arrive (Spark Structured Streaming, exactly-once), until interrupted.
    """
    if not stream:
        run_ingest(directory)
        return
    from pdp.ingest.stream import start_lab_stream
    from pdp.lake import get_spark

    if not directory.is_dir():
        raise UserError(f"landing folder {directory} does not exist")

    spark = get_spark(app_name="pdp-lab-feed")

    def show(report) -> None:
        from pdp.algorithms.realtime import refresh_alerts

        records_in, landed, quarantined = report.totals()
        console.print(f"lab feed: {records_in:,} in = {landed:,} landed + {quarantined:,} quarantined")
        if report.persons:  # the same definitions as `pdp run`, on the touched persons only, at once
            done = refresh_alerts(spark, report.persons, as_of=date.today())
            console.print(f"alerts: {done.alerts} for {done.persons} person(s) recomputed in {done.seconds:.1f} s")

    with _key_store_errors():
        query = start_lab_stream(directory, spark=spark, available_now=once, on_batch=show)
        console.print(f"lab feed watching {directory} (Ctrl-C to stop)" if not once else "lab feed: one pass")
        try:
            query.awaitTermination()
        except KeyboardInterrupt:
            query.stop()


linkage_app = typer.Typer(no_args_is_help=True, help="Record linkage at the edge: its trained, versioned model.")
app.add_typer(linkage_app, name="linkage")


def _training_identities(from_dir: Path | None, sample: int, seed: int, settings=None) -> tuple[list, str]:
    """(canonical, postcode) items to train on, and where they come from (never printed)."""

    from pdp.pseudonym.normalise import CanonicalIdentity, normalise

    if from_dir is not None:
        from pdp.pseudonym.linkage_sources import read_identities

        if not from_dir.is_dir():
            raise UserError(f"directory {from_dir} does not exist")
        items = []
        for record in read_identities(from_dir):
            canonical = normalise(record.raw)
            if isinstance(canonical, CanonicalIdentity):
                items.append((canonical, record.postcode))
        return items, "batch"
    from pdp.pseudonym.linkage_trained import vault_sample
    from pdp.pseudonym.vault import IdentityVault

    vault = IdentityVault.from_settings(settings, edge=True)  # the linkage view only; opens no sealed record
    return vault_sample(vault, sample, seed), "vault_sample"


@linkage_app.command("train")
def linkage_train_command(
    from_dir: Annotated[Path | None, typer.Option("--from", help="Train on this batch directory's identities "
                        "(source files, as `pdp ingest` takes them) instead of a sample of the vault.")] = None,
    sample: Annotated[int, typer.Option(min=1000, help="Vault identities to sample.")] = 100_000,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the vault sample and of u's random pairs.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's version and counts as JSON.")] = False,
) -> None:
    """Train the linkage model (EM, no labels) and make it current: every later batch links with it.

    The file holds the prior and m/u per comparison level, a version and counts; no name, date
    or NIR (see pdp/pseudonym/linkage_trained.py). With --from, EM on a batch of source files,
    which shows each person's spellings: m (how matches agree) and u (how strangers agree).
    Without it, a sample of the identity vault: it holds each person once, so EM finds no
    matches in it; only u is trained there, the prior and m are kept from the current model
    (or the built-in one).
    """
    from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS, ModelOptions
    from pdp.pseudonym.linkage_trained import LinkageModelError, ModelStore, train

    with _key_store_errors():
        items, trained_on = _training_identities(from_dir, sample, seed)
    try:
        store = ModelStore.from_settings()
        m_from, kept_name = None, None
        if from_dir is None:  # the vault: u only; the prior and m of the current model, else the built-in
            try:
                kept = store.current()
            except LinkageModelError as exc:  # a refused model (say, one EM made on the vault before)
                print(f"warning: {exc}: its m is not kept, the built-in's is", file=sys.stderr)
                kept = None
            m_from, kept_name = ((kept.parameters(), kept.m_from or kept.version) if kept
                                 else (DEFAULT_PARAMETERS, "builtin"))
        parameters, variants = train(items, ModelOptions(seed=seed), m_from=m_from)
        model = store.save(parameters, trained_on=trained_on, variants=variants, m_from=kept_name)
    except LinkageModelError as exc:
        raise UserError(str(exc)) from None
    drawn = {"sample": sample, "seed": seed} if from_dir is None else {}  # the vault draw, reproducible
    audit_event(action="linkage_training", rule="linkage model trained and made current",
                details={"model": model.version, "trained_on": model.trained_on, "identities": len(items),
                         "variants": model.variants, "m_from": model.m_from, **drawn})
    if as_json:
        print(json.dumps({"version": model.version, "trained_on": model.trained_on, "variants": model.variants,
                          "m_from": model.m_from}))
    else:
        console.print(f"linkage model {model.version}: trained on {model.variants:,} distinct identities "
                      f"({model.trained_on.replace('_', ' ')}); current from now on")


@linkage_app.command("status")
def linkage_status_command() -> None:
    """The linkage model every batch uses now."""
    from pdp.pseudonym.linkage_trained import LinkageModelError, ModelStore

    try:
        model = ModelStore.from_settings().current()
    except LinkageModelError as exc:
        raise UserError(str(exc)) from None
    if model is None:
        console.print("linkage model: none trained; batches train by EM (built-in parameters under 5,000 identities)")
    else:
        console.print(f"linkage model {model.version}: trained {model.trained_at:%Y-%m-%d %H:%M} UTC on "
                      f"{model.variants:,} distinct identities ({model.trained_on.replace('_', ' ')})")


keys_app = typer.Typer(no_args_is_help=True, help="Versioned pseudonymisation and vault keys (envelope-encrypted).")
app.add_typer(keys_app, name="keys")


def _key_store_errors():
    from contextlib import contextmanager

    from pdp.pseudonym.kms import KeyStoreError

    @contextmanager
    def guard():
        try:
            yield
        except KeyStoreError as exc:
            raise UserError(str(exc)) from None

    return guard()


@keys_app.command("init")
def keys_init_command(
    new_master_key_file: Annotated[
        Path | None,
        typer.Option(help="Create a new random master key in this file first (development and demo only)."),
    ] = None,
    create_hsm_key: Annotated[
        bool,
        typer.Option(help="PDP_KMS=pkcs11: first create the token's non-extractable AES master key if it is absent."),
    ] = False,
) -> None:
    """Create version 1 of the pseudonym and vault keys, wrapped under the master key."""
    from pdp.config import Settings, get_settings
    from pdp.pseudonym.keys import keys_init, keys_status

    with _key_store_errors():
        settings = get_settings()
        if create_hsm_key:
            if settings.kms != "pkcs11" or new_master_key_file is not None:
                raise UserError("--create-hsm-key needs PDP_KMS=pkcs11 (and no --new-master-key-file)")
            from pdp.pseudonym.hsm import create_pkcs11_master_key

            kek = create_pkcs11_master_key(settings)
            console.print(f"HSM master key {kek.kek_id}: {'created' if kek.created else 'already there'}")
        if new_master_key_file is not None:
            from pdp.pseudonym.kms import create_master_key_file

            create_master_key_file(new_master_key_file)
            settings = Settings(master_key_file=new_master_key_file)
        summary = keys_init(settings)
        purposes = sorted({info.purpose for info in keys_status(settings)})
    audit_event(action="key_operation", rule="key store initialised",
                details={"operation": "init", "purposes": purposes})
    console.print(summary)


@keys_app.command("status")
def keys_status_command() -> None:
    """Every key version with its status (never key material)."""
    from pdp.pseudonym.keys import keys_status

    with _key_store_errors():
        infos = keys_status()
    table = Table(title="key store")
    for col in ("purpose", "version", "status", "created", "retired"):
        table.add_column(col)
    for info in infos:
        table.add_row(info.purpose, str(info.version), info.status, str(info.created_at), str(info.retired_at or ""))
    console.print(table)


@keys_app.command("rotate")
def keys_rotate_command() -> None:
    """New pseudonym key version; re-key every lake table and the vault; retire the old version."""
    from pdp.governance.opposition import OppositionRegistry
    from pdp.lake import load_catalog
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.rotation import RotationError, rotate_pseudonym_key
    from pdp.pseudonym.vault import IdentityVault

    with _key_store_errors():
        store = KeyStore.from_settings()
        vault = IdentityVault.from_settings(edge=True)  # re-keys from the linkage view; opens nothing
        catalog = load_catalog()
        needs_spark = any(c.pseudonym for name in catalog.names() for c in catalog.table(name).columns)
        spark = None
        if needs_spark:
            from pdp.lake import get_spark

            spark = get_spark(app_name="pdp-keys-rotate")
        try:
            # an opposition follows its person's pseudonym, page by page, before the vault renames it
            report = rotate_pseudonym_key(store=store, vault=vault, spark=spark, catalog=catalog,
                                          follow=OppositionRegistry(vault.engine).follow)
        except RotationError as exc:
            raise UserError(str(exc)) from None
    removed = sum(int(t["files_removed"]) for t in report.purged)
    audit_event(action="key_operation", rule="pseudonym key rotated; lake and vault re-keyed, purged; old retired",
                details={"operation": "rotate", "purpose": "pseudonym", "old_version": report.old_version,
                         "new_version": report.new_version, "resumed": report.resumed,
                         "vault_records": report.vault_rows, "tables": dict(report.tables), "purge": report.purged})
    tables = ", ".join(f"{k} {v:,}" for k, v in report.tables.items()) or "no lake table yet"
    console.print(f"purge: {removed:,} file(s) holding old pseudonyms removed from the lake")
    console.print(
        f"pseudonym key v{report.old_version} -> v{report.new_version}{' (resumed)' if report.resumed else ''}: "
        f"vault {report.vault_rows:,} records, lake {tables}; v{report.old_version} retired"
    )


audit_app = typer.Typer(
    no_args_is_help=True, help="The tamper-evident audit trail: verify, sign and export the head, review."
)
app.add_typer(audit_app, name="audit")


def _audit_errors():
    from contextlib import contextmanager

    from pdp.governance.audit import AuditEntryError, CheckpointFileError
    from pdp.governance.db import GovernanceDbError
    from pdp.pseudonym.kms import KeyStoreError

    @contextmanager
    def guard():
        try:
            yield
        except (AuditEntryError, CheckpointFileError, GovernanceDbError, KeyStoreError) as exc:
            raise UserError(str(exc)) from None

    return guard()


def _audit_log(*, with_keys: bool):
    from pdp.governance.audit import AuditLog

    return AuditLog.from_settings(with_keys=with_keys)


def _moment(value: str | None, option: str):
    """A --since/--until value: a date (YYYY-MM-DD) or an ISO datetime (UTC if no offset)."""
    from datetime import datetime

    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option} must be a date (YYYY-MM-DD) or an ISO datetime") from None


@audit_app.command("verify")
def audit_verify_command(
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="An exported signed tree head kept by a witness (repeatable)."),
    ] = None,
    public_keys: Annotated[
        Path | None,
        typer.Option(help="Trust these public keys (`pdp audit public-keys`) instead of opening the key store."),
    ] = None,
) -> None:
    """Recompute every entry, the hash chain and the Merkle tree; check every signed tree head.

    Exit 0 when the log verifies, 1 naming the first bad index and why.
    """
    from pdp.governance.audit.signing import load_public_keys
    from pdp.pseudonym.kms import KeyStoreError

    with _audit_errors():
        files = list(checkpoint or [])
        trusted = None
        if public_keys is not None:
            try:
                trusted = load_public_keys(public_keys)
            except ValueError as exc:
                raise UserError(str(exc)) from None
            log = _audit_log(with_keys=False)
        else:
            try:
                log = _audit_log(with_keys=True)
                log.trusted_keys()  # opens the key store now: a wrong master key is a user error
            except KeyStoreError as exc:
                if not files:
                    raise UserError(
                        f"{exc} (needed to check signed tree heads; or pass --public-keys or --checkpoint FILE)"
                    ) from None
                log = _audit_log(with_keys=False)
        report = log.verify(checkpoints=files, trusted_keys=trusted)
    if report.ok:
        console.print(report.line())
        return
    print(f"error: {report.line()}", file=sys.stderr)
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint_command(
    out: Annotated[Path | None, typer.Option(help="Where to export the signed head (default: var/audit/).")] = None,
) -> None:
    """Verify the log, sign its head (Ed25519, key in the key store), store it and export it as JSON."""
    from pdp.config import get_settings
    from pdp.governance.audit import AuditIntegrityError

    with _audit_errors():
        if out is not None and out.exists():
            raise UserError(f"{out} already exists: refusing to overwrite it")
        log = _audit_log(with_keys=True)
        try:
            head = log.checkpoint()
        except AuditIntegrityError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        stamp = head.timestamp[:19].replace(":", "")
        target = out or get_settings().var_dir / "audit" / f"checkpoint-{head.tree_size:010d}-{stamp}.json"
        head.export(target)
    console.print(
        f"signed tree head: size {head.tree_size}, root {head.root_hash}, key {head.key_id}; exported to {target}",
        soft_wrap=True,
    )


@audit_app.command("public-keys")
def audit_public_keys_command(
    out: Annotated[Path | None, typer.Option(help="Write the JSON to this file (default: print it).")] = None,
) -> None:
    """Export the audit signing public keys, for reviewers and witnesses who verify without the master key."""
    from pdp.governance.audit import AuditSigningKeys

    with _audit_errors():
        keys = AuditSigningKeys.from_settings()
        keys.ensure()
        document = json.dumps(keys.public_keys_document(), indent=2, sort_keys=True) + "\n"
        if out is None:
            print(document, end="")
            return
        if out.exists():
            raise UserError(f"{out} already exists: refusing to overwrite it")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(document, encoding="utf-8")
    console.print(f"audit public keys exported to {out}")


@audit_app.command("query")
def audit_query_command(
    actor: Annotated[str | None, typer.Option(help="Only this actor id.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Only this purpose.")] = None,
    decision: Annotated[str | None, typer.Option(help="allowed, denied, failed or done.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action (e.g. reidentification).")] = None,
    since: Annotated[str | None, typer.Option(help="From this date or datetime (inclusive).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date (inclusive) or datetime (exclusive).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many entries.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Filtered review of the audit log (for the ethics committee): pseudonyms and counts, never identities."""
    with _audit_errors():
        entries = _audit_log(with_keys=False).query(
            actor=actor, purpose=purpose, decision=decision, action=action,
            since=_moment(since, "--since"), until=_moment(until, "--until"), limit=limit,
        )
    if as_json:
        for entry in entries:
            print(json.dumps({**entry.as_dict(), "entry_hash": entry.entry_hash}, ensure_ascii=False))
        return
    table = Table(title=f"audit log: {len(entries)} entries")
    for col in ("index", "at", "actor", "role", "action", "purpose", "decision", "refs", "rule"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            str(e.index), e.at, e.actor, e.actor_role, str(e.action), e.purpose or "", str(e.decision),
            str(len(e.data_ref)), e.rule,
        )
    console.print(table)


@audit_app.command("transparency")
def audit_transparency_command(
    pseudonym: Annotated[str, typer.Argument(help="The citizen's pseudonym (v<N>:...).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON out.")] = False,
) -> None:
    """Which uses were made of a citizen's data: when, by which kind of actor, for which purpose."""
    with _audit_errors():
        items = _audit_log(with_keys=False).transparency(pseudonym)
    if as_json:
        print(json.dumps([item.to_json() for item in items], ensure_ascii=False))
        return
    table = Table(title=f"{len(items)} recorded use(s)")
    for col in ("at", "action", "actor role", "purpose", "decision", "identity released"):
        table.add_column(col)
    for i in items:
        released = "" if i.identity_released is None else ("yes" if i.identity_released else "no")
        table.add_row(i.at, i.action, i.actor_role, i.purpose or "", i.decision, released)
    console.print(table)


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="Benchmark name, or 'all'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print figures as JSON.")] = False,
    persons: Annotated[int | None, typer.Option(min=1, help="Territory size, for benchmarks that take one.")] = None,
    split_bytes: Annotated[int | None, typer.Option(
        "--split-bytes", min=1,
        help="Edge split size in bytes (edge, scaling); edge also times one big file split vs whole.")] = None,
) -> None:
    """Run a benchmark; prints its figures and its ratio against the reference it names."""
    from pdp.bench import BENCHMARKS, BenchSettingError, run_benchmark, takes
    from pdp.lake.local_cluster import ClusterError

    names = sorted(BENCHMARKS) if name == "all" else [name]
    for n in names:
        if n not in BENCHMARKS:
            raise UserError(f"unknown benchmark {n!r}; known: {', '.join(sorted(BENCHMARKS))}, all")
        for option, value in (("persons", persons), ("split_bytes", split_bytes)):
            if value is not None and name != "all" and not takes(n, option):
                raise UserError(f"benchmark {n!r} takes no --{option.replace('_', '-')}")
        try:
            result = run_benchmark(n, persons=persons if takes(n, "persons") else None,
                                   split_bytes=split_bytes if takes(n, "split_bytes") else None)
        except (ClusterError, BenchSettingError) as exc:  # a local cluster that did not start, a bad setting
            raise UserError(str(exc)) from None
        if as_json:
            print(json.dumps(result))
        else:
            console.print(f"[bold]{n}[/bold]: " + ", ".join(f"{k}={v}" for k, v in result.items() if k != "name"))


nlp_app = typer.Typer(no_args_is_help=True,
                      help="Free-text reports: de-identification and clinical facts (JSON out).")
app.add_typer(nlp_app, name="nlp")

_MAX_TEXT_BYTES = 5_000_000


def _read_text(source: str) -> str:
    """UTF-8 text from FILE or stdin ('-'): binary, wrong encoding or empty input is a UserError (no text in it)."""
    if source == "-":
        data = sys.stdin.buffer.read(_MAX_TEXT_BYTES + 1)
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"{source}: no such file")
        try:
            with path.open("rb") as f:
                data = f.read(_MAX_TEXT_BYTES + 1)
        except OSError as exc:
            raise UserError(f"{source}: cannot be read ({type(exc).__name__})") from None
    where = "stdin" if source == "-" else source
    if len(data) > _MAX_TEXT_BYTES:
        raise UserError(f"{where}: larger than {_MAX_TEXT_BYTES} bytes")
    if b"\x00" in data:
        raise UserError(f"{where}: binary input (NUL bytes), expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    if not text.strip():
        raise UserError(f"{where}: empty input")
    return text


def _read_identity(value: str | None):
    from pdp.semantic.deid import PersonTraits, TraitsError

    if value is None:
        return None
    raw = value
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise UserError("--identity: expected a JSON object or the path of a JSON file")
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--identity: the file cannot be read ({type(exc).__name__})") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UserError(f"--identity: not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    try:
        return PersonTraits.from_json(data)
    except TraitsError as exc:
        raise UserError(str(exc)) from None


@nlp_app.command("deid")
def nlp_deid_command(
    source: Annotated[str, typer.Argument(help="A UTF-8 text file, or '-' for stdin.")] = "-",
    identity: Annotated[
        str | None,
        typer.Option(help="The person's known traits: a JSON object or a JSON file (birth_name, used_name, "
                     "first_names, birth_date, nir, address, postcode, phone, email)."),
    ] = None,
    no_ner: Annotated[bool, typer.Option("--no-ner", help="Rules only, without the spaCy model.")] = False,
) -> None:
    """De-identify one report: prints JSON with the de-identified text and the spans (type, start, end, score)."""
    traits = _read_identity(identity)
    text = _read_text(source)
    from pdp.semantic.deid import DeidError, deidentify

    try:
        result = deidentify(text, traits, ner=not no_ner)
    except DeidError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(result.to_json(), ensure_ascii=False))


@nlp_app.command("extract")
def nlp_extract_command(
    source: Annotated[str, typer.Argument(help="A UTF-8 text file, or '-' for stdin.")] = "-",
) -> None:
    """Clinical facts of one report: prints JSON, one object per fact (concept, kind, code, value and
    unit, date, assertion — affirmed / negated / hypothesis / family — history, span, rule)."""
    text = _read_text(source)
    from pdp.semantic.facts import extract_facts, lexicon, qualifiers

    facts = [f.as_dict() for f in extract_facts(text)]
    print(json.dumps({"lexicon_version": lexicon().version, "qualifiers_version": qualifiers().version,
                      "facts": facts}, ensure_ascii=False))


token_app = typer.Typer(no_args_is_help=True,
                        help="Development tokens for trying the API (refused outside development).")
app.add_typer(token_app, name="token")


@token_app.command("mint")
def token_mint_command(
    role: Annotated[str, typer.Option(help="pdp_role: siop_platform, professional, dmp, ethics, data_engineer...")],
    territory: Annotated[list[str], typer.Option(help="A territory the role is held in (repeatable; '*' national).")],
    rpps: Annotated[str | None, typer.Option(help="The professional's 11-digit RPPS number.")] = None,
    ttl: Annotated[int, typer.Option(min=1, max=86_400, help="Lifetime in seconds.")] = 3600,
    sub: Annotated[str | None, typer.Option(help="Subject (default: dev-<role>-<random>).")] = None,
) -> None:
    """Print a bearer token signed by the development key (ES256, under var/api/; its JWKS beside it).

    Refused unless PDP_DEV_TOKENS=1; the API must be started with PDP_OIDC_JWKS pointing at the JWKS.
    """
    from pdp.api.devtokens import DevSigner, DevTokenError
    from pdp.config import get_settings
    from pdp.governance.authz import Principal, PrincipalError

    try:
        Principal(sub=sub or "dev-check", role=role, territories=frozenset(territory), rpps=rpps)  # type: ignore[arg-type]
        signer = DevSigner.ensure(get_settings())
        print(signer.mint(role=role, territories=list(territory), rpps=rpps, ttl=ttl, sub=sub))
    except (DevTokenError, PrincipalError) as exc:
        raise UserError(str(exc)) from None


psi_app = typer.Typer(no_args_is_help=True,
                      help="Private set intersection, the partner's side: which of your persons are in a registry.")
app.add_typer(psi_app, name="psi")

_PSI_API = typer.Option("--api", envvar="PDP_PSI_API", help="Base URL of the platform's API.")
_PSI_TOKEN = typer.Option("--token", envvar="PDP_PSI_TOKEN", help="The partner's bearer token (or PDP_PSI_TOKEN).")
_PSI_TERRITORY = typer.Option("--territory", help="The territory whose registries are queried.")


@psi_app.command("registries")
def psi_registries_command(
    territory: Annotated[str, _PSI_TERRITORY],
    api: Annotated[str, _PSI_API] = "http://127.0.0.1:8000",
    token: Annotated[str, _PSI_TOKEN] = "",
) -> None:
    """List the registries this partner may query, and how (count, query)."""
    from pdp.pseudonym.psi.client import PsiClientError, PsiHttpClient

    if not token:
        raise UserError("no token: pass --token or set PDP_PSI_TOKEN")
    client = PsiHttpClient(api, token, territory)
    try:
        rows = client.registries()
    except PsiClientError as exc:
        raise UserError(str(exc)) from None
    finally:
        client.close()
    table = Table(title=f"PSI registries of {territory}")
    for col in ("registry", "modes", "version", "label"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], ", ".join(r["modes"]), r["version"], r["label"])
    console.print(table)


@psi_app.command("query")
def psi_query_command(
    registry: Annotated[str, typer.Option(help="The registry's name (see `pdp psi registries`).")],
    partner_list: Annotated[Path, typer.Option("--list", help="The partner's list: CSV with ref, birth_name, "
                                                "first_names, sex, birth_date[, nir, used_name].")],
    territory: Annotated[str, _PSI_TERRITORY],
    cardinality: Annotated[bool, typer.Option("--cardinality", help="Learn only how many (statistics).")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the matched rows (your worklist) to this CSV.")] = None,
    api: Annotated[str, _PSI_API] = "http://127.0.0.1:8000",
    token: Annotated[str, _PSI_TOKEN] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run the client side of PSI over HTTP: your list never leaves this machine in clear.

    Prints the rows of your list that are in the registry (their `ref`), or only their number with
    --cardinality; rows that cannot be normalised are listed with their reason and not sent.
    """
    import csv as _csv

    from pdp.pseudonym.psi.client import PsiClientError, PsiHttpClient, read_partner_list, worklist_rows

    if not token:
        raise UserError("no token: pass --token or set PDP_PSI_TOKEN")
    if out is not None and cardinality:
        raise UserError("--out writes the matched rows: it needs the full intersection, not --cardinality")
    try:
        plist = read_partner_list(partner_list)
    except PsiClientError as exc:
        raise UserError(str(exc)) from None
    client = PsiHttpClient(api, token, territory)
    try:
        result = client.run(registry, plist, cardinality=cardinality)
    except PsiClientError as exc:
        raise UserError(str(exc)) from None
    finally:
        client.close()
    refs = [plist.rows[i].get("ref", "") for i in result.matched_rows or []]
    if out is not None and not cardinality:
        rows = list(worklist_rows(plist, result))
        with out.open("w", encoding="utf-8", newline="") as f:
            fields = list(dict.fromkeys([*plist.rows[0].keys(), "registry", "registry_version"])) if plist.rows else []
            writer = _csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    summary = {"registry": result.registry, "version": result.tag, "mode": result.mode, "rows": len(plist.rows),
               "sent": result.sent, "rejected": [{"row": r, "reason": c, "field": f} for r, c, f in plist.rejected],
               **({"count": result.count, "withheld": result.withheld, "min_count": result.min_count}
                  if cardinality else {"matched": refs}), **result.sizes}
    if as_json:
        print(json.dumps(summary))
        return
    for row, code, field in plist.rejected:
        print(f"row {row}: not sent ({code} {field})", file=sys.stderr)
    if cardinality:
        what = f"fewer than {result.min_count} (withheld)" if result.withheld else str(result.count)
        console.print(f"{result.registry} ({result.tag}): {what} of {result.sent} sent rows are in the registry")
    else:
        console.print(f"{result.registry} ({result.tag}): {len(refs)} of {result.sent} sent rows are in the registry")
        for ref in refs:
            print(ref)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Start the API (uvicorn) against the configured lake and governance store."""
    import uvicorn

    from pdp.api.auth import JwksError
    from pdp.api.devtokens import DevSigner, DevTokenError
    from pdp.config import get_settings

    settings = get_settings()
    if settings.dev_tokens:  # development: the dev key's JWKS exists before the first token is checked
        try:
            DevSigner.ensure(settings)
        except DevTokenError as exc:
            raise UserError(str(exc)) from None
    try:
        from pdp.api import create_app

        create_app(settings)  # fail closed here, in one line, rather than in a worker
    except (JwksError, ValueError) as exc:
        raise UserError(str(exc)) from None
    console.print(f"pdp API on http://{host}:{port} (lake {settings.lake_uri})")
    uvicorn.run("pdp.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors, exit 2 for user mistakes."""
    try:
        result = app(args=argv, standalone_mode=False)
    except Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:  # usage errors: bad option, missing argument, value out of range
        if exc.format_message():  # empty for "no arguments": the help was printed instead
            print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(result, int) and result:
        sys.exit(result)
