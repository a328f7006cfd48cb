"""The lake: Delta tables defined in a declarative catalog, written through one table noun.

>>> from pdp.lake import LakeTable, RunInfo, get_spark, table          # doctest: +SKIP
>>> quarantine = LakeTable(get_spark(), table("ops.quarantine")).create()  # doctest: +SKIP

Everything else in this package is internal.
"""

from pdp.lake.catalog import Catalog, ColumnDef, TableDef, load_catalog, table
from pdp.lake.errors import (
    CatalogError,
    LakeError,
    SchemaMismatchError,
    TableNotFoundError,
    UnsafeOperationError,
)
from pdp.lake.laketable import LakeTable
from pdp.lake.maintenance import ErasureReport, PurgeReport, delete_where, erase, erase_pseudonyms, optimize, vacuum
from pdp.lake.runinfo import Commit, RunInfo
from pdp.lake.session import get_spark
from pdp.lake.workarea import WorkArea

__all__ = [
    "Catalog",
    "CatalogError",
    "ColumnDef",
    "Commit",
    "ErasureReport",
    "LakeError",
    "LakeTable",
    "PurgeReport",
    "RunInfo",
    "SchemaMismatchError",
    "TableDef",
    "TableNotFoundError",
    "UnsafeOperationError",
    "WorkArea",
    "delete_where",
    "erase",
    "erase_pseudonyms",
    "get_spark",
    "load_catalog",
    "optimize",
    "table",
    "vacuum",
]
