"""The partner's side of PSI, over HTTP: read the partner's list, normalise it, query, match back.

Runs on the partner's machine (``pdp psi query``): the list never leaves it in clear. Each row is
normalised with the platform's own normalisation (:mod:`.items`); a row that does not normalise is
reported to the partner with its row number and reason code and never sent. The rest go as one
encrypted request against the setup downloaded for the registry and mode; the matches are the
partner's own rows (its worklist), or only their number in cardinality mode, withheld below the
partner's ``min_count`` (the server cannot withhold it: in this protocol only the client learns
the result, so the rule lives in the client the platform distributes). The result size is then
reported to the platform for its audit (no item, no row).

The list: CSV (UTF-8, header row) with the columns ``ref`` (the partner's own record number,
never sent), ``birth_name``, ``first_names``, ``sex``, ``birth_date`` and optionally ``nir``,
``used_name``; other columns stay with the partner's rows in the worklist it writes.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdp.ingest.reasons import ReasonCode as IngestReason
from pdp.pseudonym.normalise import RawIdentity, Rejection
from pdp.pseudonym.psi.items import partner_item
from pdp.pseudonym.psi.protocol import Client

__all__ = ["PartnerList", "PsiClientError", "PsiHttpClient", "QueryResult", "read_partner_list", "worklist_rows"]

REQUIRED = ("ref", "birth_name", "first_names", "sex", "birth_date")
OPTIONAL = ("nir", "used_name")
MODE_PURPOSE = {"count": "psi_screening", "query": "partner_follow_up"}
_MAX_ROWS = 1_000_000


class PsiClientError(Exception):
    """A partner-side problem (list, server refusal, network) in one line, never a list value."""


@dataclass
class PartnerList:
    rows: list[dict[str, str]]
    items: list[str]  # one per accepted row, same order as `accepted`
    accepted: list[int]  # indexes into `rows`
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, reason code, field)


def read_partner_list(path: Path) -> PartnerList:
    """The partner's CSV, normalised row by row (rejections kept with their reason, never sent)."""
    try:
        with Path(path).open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise PsiClientError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
            rows = []
            for row in reader:
                rows.append({k: (v or "").strip() for k, v in row.items() if k is not None})
                if len(rows) > _MAX_ROWS:
                    raise PsiClientError(f"{path}: more than {_MAX_ROWS} rows")
    except UnicodeDecodeError:
        raise PsiClientError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise PsiClientError(f"{path}: cannot be read ({exc.strerror})") from None
    except csv.Error:
        raise PsiClientError(f"{path}: not a readable CSV file") from None
    out = PartnerList(rows=rows, items=[], accepted=[])
    seen: set[str] = set()
    for i, row in enumerate(rows):
        raw = RawIdentity(birth_name=row.get("birth_name") or None, used_name=row.get("used_name") or None,
                          first_names=row.get("first_names") or None, sex=row.get("sex") or None,
                          birth_date=row.get("birth_date") or None, nir=row.get("nir") or None)
        item = partner_item(raw)
        if isinstance(item, Rejection):
            out.rejected.append((i + 2, str(item.reason_code), item.field))  # +2: header line, 1-based
        elif item in seen:
            # the same person twice would count twice: the edge's code for a record seen again
            out.rejected.append((i + 2, str(IngestReason.DUPLICATE_RECORD), "identity"))
        else:
            seen.add(item)
            out.items.append(item)
            out.accepted.append(i)
    return out


@dataclass
class QueryResult:
    registry: str
    tag: str
    mode: str
    sent: int
    matched_rows: list[int] | None  # indexes into the list's rows (full mode)
    count: int | None  # cardinality mode: None when withheld
    withheld: bool
    min_count: int
    sizes: dict[str, int]


class PsiHttpClient:
    """Talks to ``/psi`` with a bearer token; the purpose follows the mode (see ``MODE_PURPOSE``)."""

    def __init__(self, base_url: str, token: str, territory: str, *, transport: Any = None,
                 timeout: float = 120.0) -> None:
        import httpx

        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})
        self.territory = territory

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, purpose: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, f"/psi/{self.territory}{path}",
                                          headers={"X-Purpose": purpose, **kwargs.pop("headers", {})}, **kwargs)
        except httpx.HTTPError as exc:
            raise PsiClientError(f"platform unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise PsiClientError(f"platform refused ({response.status_code}): {detail}")
        return response

    def registries(self) -> list[dict[str, Any]]:
        """Every registry this partner may query, with the modes of each (both purposes asked)."""
        merged: dict[str, dict[str, Any]] = {}
        for mode, purpose in MODE_PURPOSE.items():
            for r in self._call("GET", "/registries", purpose).json():
                entry = merged.setdefault(r["name"], {**r, "modes": []})
                if mode in r["modes"]:
                    entry["modes"].append(mode)
        return [merged[k] for k in sorted(merged) if merged[k]["modes"]]

    def limits(self, mode: str = "count") -> dict[str, int]:
        return self._call("GET", "/limits", MODE_PURPOSE[mode]).json()

    def query(self, registry: str, items: list[str], *, mode: str) -> tuple[str, list[int] | int, dict[str, int]]:
        """(tag, matched indexes of `items` | count, sizes) for one exchange; retried once on a stale setup."""
        purpose = MODE_PURPOSE[mode]
        for attempt in range(2):
            setup = self._call("GET", f"/registries/{registry}/{mode}/setup", purpose)
            tag = setup.headers["X-PSI-Tag"]
            client = Client(reveal=mode == "query")
            request = client.request(items)
            try:
                response = self._call("POST", f"/registries/{registry}/{mode}", purpose, content=request,
                                      headers={"X-PSI-Tag": tag, "Content-Type": "application/x-protobuf"})
            except PsiClientError as exc:
                if "(409)" in str(exc) and attempt == 0:
                    continue
                raise
            sizes = {"setup_bytes": len(setup.content), "request_bytes": len(request),
                     "response_bytes": len(response.content)}
            result = client.intersection(setup.content, response.content) if mode == "query" else client.count(
                setup.content, response.content)
            return tag, result, sizes
        raise PsiClientError("the registry kept changing during the query")

    def report(self, registry: str, mode: str, tag: str, matched: int, sent: int) -> None:
        self._call("POST", f"/registries/{registry}/{mode}/result", MODE_PURPOSE[mode],
                   json={"tag": tag, "matched": matched, "client_set": sent})

    def run(self, registry: str, partner_list: PartnerList, *, cardinality: bool) -> QueryResult:
        mode = "count" if cardinality else "query"
        if not partner_list.items:
            raise PsiClientError("no row of the list could be normalised: nothing to send")
        min_count = int(self.limits(mode)["min_count"])
        tag, result, sizes = self.query(registry, partner_list.items, mode=mode)
        if isinstance(result, int):
            matched, rows, count = result, None, result
        else:
            rows = [partner_list.accepted[i] for i in result]
            matched, count = len(rows), None
        withheld = cardinality and matched < min_count
        self.report(registry, mode, tag, matched, len(partner_list.items))
        return QueryResult(registry=registry, tag=tag, mode=mode, sent=len(partner_list.items), matched_rows=rows,
                           count=None if withheld else count, withheld=withheld, min_count=min_count, sizes=sizes)


def worklist_rows(partner_list: PartnerList, result: QueryResult) -> Iterator[dict[str, str]]:
    """The partner's own matched rows, tagged with the registry and its version (its follow-up worklist)."""
    for i in result.matched_rows or []:
        yield {**partner_list.rows[i], "registry": result.registry, "registry_version": result.tag}
