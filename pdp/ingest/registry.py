"""The source registry: every ``sources/<name>.yml`` loaded, validated, and matched against an ingest directory.

Why fail closed: a spec decides which columns are identity (kept at the edge) and which go to
silver, so a spec that does not validate must stop the run before any file is read, with one
line naming the file and the field. A file of the ingest directory that no spec matches is
reported (:attr:`Discovery.unmatched`), never silently skipped: it is a source nobody mapped
yet, or a misplaced file. Files the registry knows must never be ingested (the synthetic
ground truth, the manifest) are listed in ``sources/_registry.yml`` (``ignore`` globs).

Example::

    >>> registry = load_registry()
    >>> sorted(registry.names)[:3]
    ['gp_fhir', 'insee_communes', 'insee_deaths']
    >>> registry["pmsi"].format
    'delimited'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pdp.ingest.spec import SourceSpec, format_validation_error

if TYPE_CHECKING:
    from pdp.config import Settings

__all__ = [
    "SOURCES_DIR",
    "Discovery",
    "Registry",
    "SpecError",
    "discover",
    "load_registry",
    "sources_list",
    "sources_validate",
    "validate_spec",
]

SOURCES_DIR = Path(__file__).resolve().parent / "sources"
SETTINGS_FILE = "_registry.yml"


class SpecError(ValueError):
    """A source spec (or the registry settings) is invalid; the message is one line naming file and field."""


class RegistrySettings(BaseModel):
    """``_registry.yml``: directory-level settings shared by every spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ignore: list[str] = Field(default_factory=list)  # globs of the ingest root never ingested nor reported


@dataclass(frozen=True)
class Registry:
    """The validated specs of one directory, by name."""

    specs: dict[str, SourceSpec]
    ignore: tuple[str, ...] = ()
    directory: Path | None = None

    def __getitem__(self, name: str) -> SourceSpec:
        return self.specs[name]

    def __iter__(self) -> Iterator[SourceSpec]:
        return iter(self.specs[name] for name in sorted(self.specs))

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def names(self) -> list[str]:
        return sorted(self.specs)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path.name}: cannot be read ({type(exc).__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path.name}: not valid YAML{where}") from None


def validate_spec(path: Path | str) -> SourceSpec:
    """The spec in `path`, validated; :class:`SpecError` (one line: file and field) otherwise."""
    path = Path(path)
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path.name}: a source spec is a YAML mapping")
    try:
        spec = SourceSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{path.name}: {format_validation_error(exc)}") from None
    except ValueError as exc:  # raised while validating parser options outside pydantic's context
        raise SpecError(f"{path.name}: {exc}") from None
    if spec.name != path.stem:
        raise SpecError(f"{path.name}: name: {spec.name!r} must match the file name ({path.stem!r})")
    return spec


def load_registry(directory: Path | str | None = None, *, settings: Settings | None = None) -> Registry:
    """The validated specs of `directory`, or by default of the built-in ``pdp/ingest/sources``
    followed by every directory of ``PDP_SOURCES_DIR`` (:attr:`pdp.config.Settings.sources_dir`).

    Why extra directories: a data engineer adds a sender to an installed platform by dropping a
    spec in a directory of their own, without editing the package; the built-in specs stay
    (a spec name defined twice, in two directories, is an error: a sender is added, never a
    built-in silently replaced). Files starting with ``_`` are settings, not specs; each
    directory's ``_registry.yml`` ``ignore`` globs add up. The first invalid spec raises
    :class:`SpecError`; a missing or spec-less directory too (a typo must not drop a sender).
    """
    if directory is not None:
        folders = [Path(directory)]
    else:
        from pdp.config import get_settings

        folders = [SOURCES_DIR, *(settings or get_settings()).source_dirs()]
    specs: dict[str, SourceSpec] = {}
    origin: dict[str, Path] = {}
    ignore: list[str] = []
    for folder in folders:
        folder_specs, folder_settings = _load_folder(folder)
        for name, spec in folder_specs.items():
            if name in specs:
                raise SpecError(f"{name}.yml: source {name!r} is defined in both {origin[name]} and {folder}")
            specs[name], origin[name] = spec, folder
        ignore += [glob for glob in folder_settings.ignore if glob not in ignore]
    return Registry(specs=specs, ignore=tuple(ignore), directory=folders[0])


def _load_folder(folder: Path) -> tuple[dict[str, SourceSpec], RegistrySettings]:
    if not folder.is_dir():
        raise SpecError(f"{folder}: not a directory of source specs")
    specs: dict[str, SourceSpec] = {}
    for path in sorted(folder.glob("*.yml")):
        if path.name.startswith("_"):
            continue
        spec = validate_spec(path)
        specs[spec.name] = spec
    if not specs:
        raise SpecError(f"{folder}: no source spec (*.yml)")
    settings = RegistrySettings()
    settings_path = folder / SETTINGS_FILE
    if settings_path.exists():
        try:
            settings = RegistrySettings.model_validate(_read_yaml(settings_path) or {})
        except ValidationError as exc:
            raise SpecError(f"{SETTINGS_FILE}: {format_validation_error(exc)}") from None
    return specs, settings


@dataclass(frozen=True)
class Discovery:
    """The files of an ingest root, by spec. Iterating gives (spec, path) for every matched file,
    held-back sources included; :attr:`to_parse` leaves those out."""

    root: Path
    matched: tuple[tuple[SourceSpec, Path], ...]
    unmatched: tuple[Path, ...]
    ignored: int
    companions: int = 0  # files a source reads through its index (free-text documents), never parsed alone

    def __iter__(self) -> Iterator[tuple[SourceSpec, Path]]:
        return iter(self.matched)

    def __len__(self) -> int:
        return len(self.matched)

    @property
    def to_parse(self) -> list[tuple[SourceSpec, Path]]:
        return [(spec, path) for spec, path in self.matched if not spec.hold_back]

    @property
    def held_back(self) -> list[tuple[SourceSpec, Path]]:
        return [(spec, path) for spec, path in self.matched if spec.hold_back]


def discover(root: Path | str, registry: Registry | None = None) -> Discovery:
    """Match every file under `root` to the spec whose globs select it.

    A file two specs select is a registry error (:class:`SpecError`): which mapping applies
    must never depend on load order.
    """
    root = Path(root)
    if not root.is_dir():
        raise SpecError(f"{root}: not a directory")
    registry = registry if registry is not None else load_registry()
    owner: dict[Path, SourceSpec] = {}
    for spec in registry:
        for pattern in spec.files:
            for path in root.glob(pattern):
                if not path.is_file():
                    continue
                other = owner.get(path)
                if other is not None and other.name != spec.name:
                    rel = path.relative_to(root).as_posix()
                    raise SpecError(f"{rel}: matched by two sources ({other.name}, {spec.name}); narrow their files")
                owner[path] = spec
    ignored = {p for pattern in registry.ignore for p in root.glob(pattern) if p.is_file()}
    companions = {p for spec in registry for pattern in spec.companions for p in root.glob(pattern)
                  if p.is_file() and p not in owner}
    unmatched = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path not in owner and path not in ignored and path not in companions:
            unmatched.append(path)
    matched = sorted(owner.items(), key=lambda item: (item[1].name, item[0].relative_to(root).as_posix()))
    return Discovery(
        root=root,
        matched=tuple((spec, path) for path, spec in matched),
        unmatched=tuple(unmatched),
        ignored=len(ignored - set(owner) - companions),
        companions=len(companions),
    )


def sources_list(registry: Registry | None = None) -> list[dict[str, Any]]:
    """One row per source for ``pdp sources list``: name, version, format, files, what it produces."""
    registry = registry if registry is not None else load_registry()
    return [
        {
            "name": spec.name,
            "version": spec.version,
            "format": spec.format or "-",
            "files": list(spec.files),
            "produces": spec.produces(),
            "subject": spec.subject,
            "hold_back": spec.hold_back,
            "description": " ".join(spec.description.split()),
        }
        for spec in registry
    ]


def sources_validate(path: Path | str) -> SourceSpec:
    """``pdp sources validate SPEC``: the validated spec, or :class:`SpecError` with one line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    return validate_spec(path)
