"""The table catalog: one YAML file per table under ``tables/<zone>/<name>.yml``.

Why declarative files: a table's contract (columns, types, nullability, which columns are
quasi-identifiers, whether a downstream job reads its change feed) is reviewed like code and
read by people who do not read Spark. Adding a table = adding one file; nothing else changes.

Why fail closed: a bad file stops the process with one line naming the file and the fault —
a silently skipped table would be a silently missing privacy rule.

>>> from pdp.lake.catalog import table
>>> table("ops.quarantine").path("/lake")
'/lake/ops/quarantine'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pyspark.sql.types import DataType, StructField, StructType

from pdp.lake.errors import CatalogError, TableNotFoundError
from pdp.lake.sqltypes import parse_type, sql_type, stats_eligible

Zone = Literal["bronze", "silver", "gold", "ops"]
ZONES: tuple[Zone, ...] = ("bronze", "silver", "gold", "ops")

_IDENTIFIER = r"^[a-z][a-z0-9_]*$"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


BUCKETS_MAX = 1024


class BucketDef(BaseModel):
    """A person bucket: a small INT the table computes itself (a Delta generated column) from the
    person's pseudonym or id, so that a table laid out by it keeps one person's rows in one bucket.

    ``pmod(xxhash64(<pseudonym>), buckets)`` from a pseudonym column, ``pmod(<id>, buckets)`` from a
    BIGINT person id (``person_id`` is ``xxhash64`` of the pseudonym, so both give the same number).
    Not a quasi-identifier: with ``buckets`` persons per bucket in the tens of thousands at a
    territory's size, the number says nothing about the person.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    of: str = Field(pattern=_IDENTIFIER, description="The pseudonym (STRING) or person id (BIGINT) column.")
    buckets: int = Field(ge=2, le=BUCKETS_MAX)

    def expression(self, source_type: str, column: str | None = None) -> str:
        """The SQL expression of the bucket over `column` (default: the ``of`` column)."""
        name = column or self.of
        value = name if source_type == "BIGINT" else f"xxhash64({name})"
        return f"CAST(pmod({value}, {self.buckets}) AS INT)"


class ColumnDef(BaseModel):
    """One column's contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_IDENTIFIER, max_length=64)
    type: str = Field(description="Spark SQL type, e.g. STRING, BIGINT, DECIMAL(10,2), ARRAY<STRING>.")
    nullable: bool = True
    description: str = Field(min_length=1)
    quasi_identifier: bool = Field(
        False, description="Re-identifying in combination (birth date, postcode, sex...): never gets statistics."
    )
    pseudonym: bool = Field(
        False, description="Holds a person pseudonym (v<N>:...): re-keyed by `pdp keys rotate`."
    )
    sender_id: bool = Field(
        False, description="Holds a sender-local id (stay, invoice, message, order, resource, death act number)"
        " as the edge's keyed hash (i<N>:...), never in clear: `pdp scan-lake` checks the form of every value.",
    )
    sender_id_fields: list[str] = Field(
        default_factory=list,
        description="The same, for fields of a STRUCT or ARRAY<STRUCT> column (bronze events' visit_key).",
    )
    platform_uuid: bool = Field(
        False, description="Holds UUIDs (8-4-4-4-12 hex) this platform makes itself, never a sender's: `pdp"
        " scan-lake` does not report them as FHIR resource ids (SENDER_UUID). Not with sender_id or pseudonym.",
    )
    bucket: BucketDef | None = Field(
        None, description="A person bucket the table computes (generated column): writers never supply it."
    )

    @field_validator("type")
    @classmethod
    def _valid_type(cls, value: str) -> str:
        return sql_type(parse_type(value))

    @model_validator(mode="after")
    def _sender_id_fields_exist(self) -> ColumnDef:
        if self.bucket is not None and (self.type != "INT" or self.pseudonym or self.quasi_identifier
                                        or self.sender_id or self.nullable is False):
            raise ValueError(f"bucket column {self.name} must be a nullable INT, neither pseudonym, sender id nor"
                             " quasi-identifier")
        if self.platform_uuid and (self.sender_id or self.sender_id_fields or self.pseudonym):
            raise ValueError(f"platform_uuid column {self.name} cannot hold sender ids or pseudonyms: the platform's"
                             " own UUIDs are neither")
        if self.sender_id_fields:
            inner = self.spark_type
            inner = getattr(inner, "elementType", inner)
            names = set(inner.fieldNames()) if isinstance(inner, StructType) else set()
            unknown = sorted(set(self.sender_id_fields) - names)
            if unknown:
                raise ValueError(f"sender_id_fields {unknown} are not fields of {self.name}'s struct")
        return self

    @cached_property
    def spark_type(self) -> DataType:
        return parse_type(self.type)

    @property
    def sender_id_paths(self) -> list[str]:
        """The scanner's names of the sender-id values this column holds (``record_id``,
        ``events[].visit_key``): how :mod:`pdp.governance.leak_scan` names nested columns."""
        paths = [self.name] if self.sender_id else []
        if self.sender_id_fields:
            nested = f"{self.name}[]" if not isinstance(self.spark_type, StructType) else self.name
            paths += [f"{nested}.{name}" for name in self.sender_id_fields]
        return paths


class TableDef(BaseModel):
    """One table's contract: schema, layout, and the Delta features it needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_IDENTIFIER, max_length=64)
    zone: Zone
    description: str = Field(min_length=1)
    columns: list[ColumnDef] = Field(min_length=1)
    partition_by: list[str] = Field(
        default_factory=list, description="Hive-style partition columns: never a quasi-identifier or a pseudonym."
    )
    cluster_by: list[str] = Field(
        default_factory=list,
        description="Liquid clustering columns (Delta CLUSTER BY): same rule; not with partition_by.",
    )
    change_data_feed: bool = Field(False, description="Turn on when a downstream job reads this table's changes.")
    append_only: bool = Field(False, description="Refuse updates and deletes (logs that must never be rewritten).")
    stats_columns: list[str] | None = Field(
        None, description="Columns allowed data-skipping statistics; default: every eligible non-quasi-identifier."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TableDef:
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate columns {duplicates}")
        by_name = {c.name: c for c in self.columns}
        for key, layout in (("partition", self.partition_by), ("cluster", self.cluster_by)):
            for part in layout:
                if part not in by_name:
                    raise ValueError(f"{key} column {part!r} is not a column")
                if by_name[part].quasi_identifier:
                    raise ValueError(f"{key} column {part!r} is a quasi-identifier (its values would be paths or"
                                     " statistics in the log)")
                if by_name[part].pseudonym or by_name[part].sender_id:
                    raise ValueError(f"{key} column {part!r} holds pseudonyms or sender ids (its values would be"
                                     " paths or statistics in the log)")
            if len(set(layout)) != len(layout):
                raise ValueError(f"{key}_by lists a column twice")
        if self.partition_by and self.cluster_by:
            raise ValueError("partition_by and cluster_by exclude each other (Delta refuses both on one table)")
        for column in self.columns:
            if column.bucket is None:
                continue
            source = by_name.get(column.bucket.of)
            if source is None:
                raise ValueError(f"bucket column {column.name!r} is computed from {column.bucket.of!r}, not a column")
            if source.type not in ("STRING", "BIGINT") or source.bucket is not None:
                raise ValueError(f"bucket column {column.name!r}: {column.bucket.of!r} must be a STRING pseudonym or"
                                 " a BIGINT person id")
            if source.type == "STRING" and not source.pseudonym:
                raise ValueError(f"bucket column {column.name!r}: {column.bucket.of!r} is not a pseudonym column")
        if len(self.partition_by) == len(self.columns):
            raise ValueError("every column is a partition column; Delta needs at least one data column")
        for stat in self.stats_columns or []:
            column = by_name.get(stat)
            if column is None:
                raise ValueError(f"stats column {stat!r} is not a column")
            if column.quasi_identifier:
                raise ValueError(f"stats column {stat!r} is a quasi-identifier; its values would sit in the log")
            if column.pseudonym:
                raise ValueError(f"stats column {stat!r} holds pseudonyms; erasure could not remove them from the log")
            if stat in self.partition_by:
                raise ValueError(f"stats column {stat!r} is a partition column (Delta refuses statistics on it)")
            if not stats_eligible(column.spark_type):
                raise ValueError(f"stats column {stat!r} has type {column.type}, which Delta keeps no statistics on")
        if self.stats_columns is not None and len(set(self.stats_columns)) != len(self.stats_columns):
            raise ValueError("stats_columns lists a column twice")
        unskipped = [c for c in self.cluster_by if c not in self.effective_stats_columns()]
        if unskipped:
            raise ValueError(f"cluster column(s) {unskipped} need statistics (add them to stats_columns)")
        return self

    @property
    def qualified_name(self) -> str:
        """``<zone>.<name>``, the name used in messages and look-ups."""
        return f"{self.zone}.{self.name}"

    def column(self, name: str) -> ColumnDef:
        for column in self.columns:
            if column.name == name:
                return column
        raise TableNotFoundError(f"{self.qualified_name} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def written_columns(self) -> list[str]:
        """The columns a writer supplies: every column but the ones the table computes (buckets)."""
        return [c.name for c in self.columns if c.bucket is None]

    @property
    def bucket_column(self) -> ColumnDef | None:
        """The table's person bucket column, if it has one."""
        return next((c for c in self.columns if c.bucket is not None), None)

    def generation_expression(self, column: ColumnDef) -> str | None:
        """The Delta generation expression of a computed column (None for a written one)."""
        if column.bucket is None:
            return None
        return column.bucket.expression(self.column(column.bucket.of).type)

    def effective_stats_columns(self) -> list[str]:
        """The columns that get min/max statistics: the explicit list, or every eligible safe column."""
        if self.stats_columns is not None:
            return list(self.stats_columns)
        return [
            c.name for c in self.columns
            if not c.quasi_identifier and not c.pseudonym and c.name not in self.partition_by
            and stats_eligible(c.spark_type)
        ]

    def path(self, lake_root: str | Path | None = None) -> str:
        """Physical location ``<lake root>/<zone>/<name>``; local roots are made absolute."""
        from pdp.config import get_settings

        root = str(lake_root) if lake_root is not None else get_settings().lake_uri
        if _URI.match(root):
            return f"{root.rstrip('/')}/{self.zone}/{self.name}"
        return str(Path(root).expanduser().resolve() / self.zone / self.name)

    def spark_schema(self) -> StructType:
        """The schema as Spark sees it; descriptions travel as column comments."""
        return StructType([
            StructField(c.name, c.spark_type, nullable=c.nullable, metadata={"comment": c.description})
            for c in self.columns
        ])

    def properties(self) -> dict[str, str]:
        from pdp.lake.properties import table_properties

        return table_properties(self)

    def ddl(self, lake_root: str | Path | None = None) -> str:
        """The idempotent ``CREATE TABLE IF NOT EXISTS`` statement for this table at its path."""
        def generated(column: ColumnDef) -> str:
            expression = self.generation_expression(column)
            return f" GENERATED ALWAYS AS ({expression})" if expression else ""

        columns = ",\n".join(
            f"  {c.name} {c.type}{'' if c.nullable else ' NOT NULL'}{generated(c)} COMMENT {_literal(c.description)}"
            for c in self.columns
        )
        parts = [
            f"CREATE TABLE IF NOT EXISTS delta.{_quote_ident(self.path(lake_root))} (\n{columns}\n)",
            "USING DELTA",
        ]
        if self.partition_by:
            parts.append(f"PARTITIONED BY ({', '.join(self.partition_by)})")
        if self.cluster_by:
            parts.append(f"CLUSTER BY ({', '.join(self.cluster_by)})")
        parts.append(f"COMMENT {_literal(self.description)}")
        props = ",\n".join(f"  {_literal(k)} = {_literal(v)}" for k, v in self.properties().items())
        parts.append(f"TBLPROPERTIES (\n{props}\n)")
        return "\n".join(parts)


def _literal(text: str) -> str:
    """A Spark SQL string literal (backslash escapes are on by default in Spark's parser)."""
    escaped = text.strip().replace("\\", "\\\\").replace("'", "\\'").replace("\n", " ")
    return f"'{escaped}'"


def _quote_ident(text: str) -> str:
    return "`" + text.replace("`", "``") + "`"


class Catalog:
    """Every table definition, by name; names are unique across zones."""

    @property
    def person_buckets(self) -> int | None:
        """How many person buckets the lake's bucketed tables use (one number for all), or None."""
        return next((c.bucket.buckets for t in self._tables.values() for c in t.columns if c.bucket), None)

    def __init__(self, tables: dict[str, TableDef], directory: Path) -> None:
        self._tables = tables
        self.directory = directory

    def __iter__(self) -> Iterator[TableDef]:
        return iter(self._tables.values())

    def __len__(self) -> int:
        return len(self._tables)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.table(name)
        except TableNotFoundError:
            return False
        return True

    def names(self) -> list[str]:
        """Qualified names (``zone.name``), sorted."""
        return sorted(t.qualified_name for t in self._tables.values())

    def in_zone(self, zone: Zone) -> list[TableDef]:
        return sorted((t for t in self._tables.values() if t.zone == zone), key=lambda t: t.name)

    def table(self, name: str) -> TableDef:
        """Look a table up by ``name``, ``zone.name`` or ``zone/name``."""
        zone, _, bare = name.replace("/", ".").rpartition(".")
        found = self._tables.get(bare)
        if found is None or (zone and found.zone != zone):
            raise TableNotFoundError(f"no table {name!r} in the catalog at {self.directory} (known: {self.names()})")
        return found


def default_directory() -> Path:
    """The catalog shipped with the package: ``pdp/lake/tables``."""
    return Path(str(resources.files("pdp.lake").joinpath("tables")))


def load_table_file(path: Path) -> TableDef:
    """Read and validate one table file; its folder must be its zone and its stem its name."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read YAML: {_one_line(str(exc))}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: expected a mapping of table fields, got {type(raw).__name__}")
    try:
        table = TableDef.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{path}: {_describe(exc)}") from exc
    if table.name != path.stem:
        raise CatalogError(f"{path}: table name {table.name!r} must match the file name {path.stem!r}")
    if table.zone != path.parent.name:
        raise CatalogError(f"{path}: zone {table.zone!r} must match the folder {path.parent.name!r}")
    return table


def load_catalog(directory: str | Path | None = None) -> Catalog:
    """Load and validate every ``<zone>/<name>.yml`` under `directory` (default: the package's).

    Raises CatalogError on the first bad file, on a file outside a zone folder, and on a
    table name used in two zones.
    """
    if directory is None:
        return _default_catalog()
    return _load(Path(directory))


@lru_cache(maxsize=1)
def _default_catalog() -> Catalog:
    return _load(default_directory())


def _load(directory: Path) -> Catalog:
    if not directory.is_dir():
        raise CatalogError(f"{directory}: catalog directory not found")
    tables: dict[str, TableDef] = {}
    files: dict[str, Path] = {}
    for path in sorted([*directory.rglob("*.yml"), *directory.rglob("*.yaml")]):
        relative = path.relative_to(directory)
        if len(relative.parts) != 2 or relative.parts[0] not in ZONES:
            raise CatalogError(f"{path}: table files live in <zone>/<name>.yml with zone one of {list(ZONES)}")
        table = load_table_file(path)
        if table.name in tables:
            raise CatalogError(f"{path}: table name {table.name!r} is already defined in {files[table.name]}")
        tables[table.name] = table
        files[table.name] = path
        buckets = {c.bucket.buckets for t in tables.values() for c in t.columns if c.bucket is not None}
        if len(buckets) > 1:
            raise CatalogError(f"{path}: person buckets must number the same in every table (found {sorted(buckets)}):"
                               " a person's bucket is one number across the lake")
    return Catalog(tables, directory)


def table(name: str) -> TableDef:
    """A table of the package's catalog, by ``name``, ``zone.name`` or ``zone/name``."""
    return load_catalog().table(name)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return _one_line("; ".join(parts))


def _one_line(text: str) -> str:
    return " ".join(text.split())
