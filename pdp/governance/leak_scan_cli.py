"""`pdp scan-lake`: run the leak scanner on the configured lake and turn its report into an exit code.

Why a separate module: the scanner (:mod:`pdp.governance.leak_scan`) is a library that
returns counts; this is the operator's view — which vault was used, what was read, what was
found — printed without a single scanned value, and the exit code `make demo` and CI rely on:

- 0: every file was read and no direct identifier was found;
- 1: at least one finding (an identifier, or an ``UNREADABLE`` file);
- 2: the scan could not start (the lake root is not a directory).

The vault is optional on purpose: on a machine without the master key the scan still runs with
the pattern detectors (NIR with or without its key, phone, e-mail, birth date, sender numbers and
UUIDs) and says, on a warning line, that known names and
addresses were not looked for. The exit code still follows the findings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from pdp.governance.leak_scan import UNREADABLE, KnownIdentityDetector, LeakScanError, ScanReport, scan_lake

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = ["EXIT_BAD_INPUT", "load_known_identities", "render", "run_scan"]

EXIT_BAD_INPUT = 2


def load_known_identities(settings: Settings) -> tuple[KnownIdentityDetector | None, str | None]:
    """The vault's known people as a detector, or ``(None, why not)`` when the vault cannot be read.

    The key store is opened first, so a missing master key fails before the governance store
    is touched. Messages of key-store and vault errors are one line and never hold key
    material or identity values (their modules promise it); other errors show their class only.
    """
    from pdp.governance.db import GovernanceDbError, create_all, make_engine
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.kms import KeyStoreError
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault, VaultError

    try:
        store = KeyStore.from_settings(settings)
        engine = make_engine(settings=settings)
        try:
            create_all(engine)
            return KnownIdentityDetector.from_vault(IdentityVault(engine, EdgeKeys(store))), None
        finally:
            engine.dispose()
    except (KeyStoreError, VaultError, GovernanceDbError) as exc:
        return None, str(exc)
    except (SQLAlchemyError, OSError) as exc:
        return None, f"governance store unavailable ({type(exc).__name__})"


def render(report: ScanReport, console: Console, *, vault_warning: str | None = None) -> None:
    """Print the report: the warning if any, the findings table or the all-clear, and the figures."""
    if vault_warning is not None:
        console.print(
            f"[yellow]warning:[/] identity vault not used ({escape(vault_warning)}): scanned with the pattern"
            " detectors only (NIR, phone, e-mail, birth date, sender numbers); known names and addresses were"
            " NOT looked for",
            soft_wrap=True,
        )
    elif report.known_people == 0:
        console.print(
            "[yellow]warning:[/] the identity vault is empty: no known name or address to look for", soft_wrap=True
        )
    megabytes = report.bytes / 1e6
    seconds = max(report.seconds, 1e-9)
    scanned = f"{report.tables} tables, {report.files} files, {report.rows:,} rows"
    details = (
        f"{report.versions} versions; files: {report.data_files} data, {report.change_files} change-data, "
        f"{report.log_files} log, {report.other_files} other; {megabytes:,.1f} MB in {report.seconds:.1f} s "
        f"= {report.rows / seconds:,.0f} rows/s, {megabytes / seconds:,.1f} MB/s"
    )
    people = "" if report.known_people is None else f"; {report.known_people:,} known people from the vault"
    if report.dismissed:
        where = ", ".join(f"{d.table}.{d.column} ({d.detector} {d.cells:,})" for d in report.dismissed[:10])
        more = f" and {len(report.dismissed) - 10} more" if len(report.dismissed) > 10 else ""
        console.print(
            f"[dim]note: dismissed by a column rule (too few distinct matches to be a column of names): "
            f"{escape(where)}{more}[/]",
            soft_wrap=True,
        )
    if report.clean:
        console.print(
            f"[green]no direct identifier found[/] in {scanned} ({escape(details)}{people})",
            soft_wrap=True,
        )
        return
    table = Table(title="direct identifiers found in the lake (counts only, never values)")
    for header, justify in (("table", "left"), ("column", "left"), ("detector", "left"),
                            ("cells", "right"), ("files", "right")):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for finding in report.findings:
        cells = "-" if finding.detector == UNREADABLE else f"{finding.cells:,}"
        table.add_row(escape(finding.table), escape(finding.column), finding.detector, cells, f"{finding.files:,}")
    console.print(table)
    for unreadable in report.unreadable:
        console.print(
            f"[red]unreadable:[/] {escape(unreadable.table)}: {escape(unreadable.path)} ({unreadable.error})",
            soft_wrap=True,
        )
    totals = ", ".join(f"{detector} {count:,}" for detector, count in sorted(report.counts().items()))
    console.print(
        f"[red]leak scan failed[/]: {totals} — scanned {scanned} ({escape(details)}{people})", soft_wrap=True
    )


def run_scan(
    settings: Settings | None = None, *, console: Console | None = None, use_vault: bool = True,
    pseudonyms: Sequence[str] = (),
) -> int:
    """Scan the configured lake (``settings.lake_uri``), print the outcome, return the exit code.

    With `pseudonyms`, the scan looks for those pseudonyms and their person ids only: the proof
    that an erasure left nothing behind (exit 0: in no file).
    """
    from pdp.config import get_settings
    from pdp.governance.erased_check import PseudonymDetector

    settings = settings or get_settings()
    console = console or Console()
    known: KnownIdentityDetector | None = None
    warning: str | None = "disabled by the caller"
    if use_vault and not pseudonyms:
        known, warning = load_known_identities(settings)
    detectors = [PseudonymDetector(pseudonyms)] if pseudonyms else None
    if pseudonyms:
        warning = None
    try:
        report = scan_lake(settings.lake_uri, known=known, detectors=detectors)
    except LeakScanError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return EXIT_BAD_INPUT
    render(report, console, vault_warning=warning)
    return report.exit_code
