"""``/definitions``: the population, pyramid, pathway and alert definitions in force, with versions.

Every authenticated role may read them (the seed asks that every actor of the territory can
read the inclusion and alert criteria); no patient data is involved.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, status

from pdp.api.deps import ContextDep, any_role
from pdp.api.schemas import DefinitionOut, DefinitionsIndex, DefinitionSummary
from pdp.governance.authz import Principal

router = APIRouter(prefix="/definitions", tags=["definitions"])

Kind = Literal["populations", "pyramids", "pathways", "alerts"]
Reader = Annotated[Principal, Depends(any_role)]


def _group(defs: Any, kind: str) -> dict[str, Any]:
    return getattr(defs, kind)


def _criteria_named(value: Any, defs: Any, found: set[str]) -> None:
    if isinstance(value, str) and value in defs.criteria:
        found.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _criteria_named(v, defs, found)
    elif isinstance(value, list):
        for v in value:
            _criteria_named(v, defs, found)


@router.get("", response_model=DefinitionsIndex)
def index(ctx: ContextDep, _reader: Reader) -> DefinitionsIndex:
    """Every definition in force: kind, name, version, label."""
    defs = ctx.definitions
    items = [
        DefinitionSummary(kind=kind, name=name, version=item.version, label=getattr(item, "label", name),
                          description=" ".join(str(getattr(item, "description", "")).split()))
        for kind in ("populations", "pyramids", "pathways", "alerts")
        for name, item in sorted(_group(defs, kind).items())
    ]
    return DefinitionsIndex(definitions=defs.version, criteria_version=defs.criteria_version, items=items)


@router.get("/{kind}/{name}", response_model=DefinitionOut)
def definition(
    ctx: ContextDep, _reader: Reader, kind: Kind, name: Annotated[str, Path(pattern=r"^[a-z0-9_]{1,64}$")]
) -> DefinitionOut:
    """One definition as declared (rules, intervals, reasons) and the criteria it names, in words."""
    defs = ctx.definitions
    item = _group(defs, kind).get(name)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind[:-1]} named {name!r}")
    body = item.model_dump(mode="json")
    named: set[str] = set()
    _criteria_named(body, defs, named)
    return DefinitionOut(kind=kind, name=name, version=item.version, definition=body,
                         criteria={c: " ".join(defs.criteria[c].description.split()) for c in sorted(named)})
