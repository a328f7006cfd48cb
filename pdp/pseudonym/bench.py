"""`pdp bench pseudonymise`: the Spark path's records/s per core against the single-core
reference, a pre-keyed `cryptography` HMAC loop over the same records in the same process.

The records are canonical identities in the exact form the edge produces (NIR scheme and
traits scheme, half each), built inside Spark so that the input does not go through the
driver. The key is a fresh random key in a throw-away key store: no real key is touched.
"""

from __future__ import annotations

import base64
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RECORDS = 5_000_000
REFERENCE_RECORDS = 1_000_000


def _canonical_sql() -> str:
    """Spark SQL building `CanonicalIdentity.canonical_bytes` for synthetic people (see normalise.py)."""
    from pdp.pseudonym.normalise import CANONICAL_FORMAT

    birth = "date_add(date'1920-01-01', cast(id % 36500 as int))"
    nir = (
        "concat(cast(1 + id % 2 as string), lpad(cast(id % 9999999 as string), 7, '0'),"
        " lpad(cast(id % 99999 as string), 5, '0'))"
    )
    traits = (
        "concat_ws(' ', element_at(array('MARTIN','LEFEVRE','DUBOIS','LE GALL','DARCY'), cast(id % 5 + 1 as int)),"
        " cast(id % 1000 as string))"
    )
    return (
        f"cast(CASE WHEN id % 2 = 0 "
        f"THEN concat_ws('\\u001f', '{CANONICAL_FORMAT}', 'nir', {nir}, cast({birth} as string)) "
        f"ELSE concat_ws('\\u001f', '{CANONICAL_FORMAT}', 'traits', replace({traits}, ' ', ''), 'JEAN', "
        f"cast({birth} as string), if(id % 3 = 0, 'F', 'M')) END as binary) AS canonical"
    )


def bench_pseudonymise(records: int = RECORDS) -> dict[str, Any]:
    """Spark path over `records` canonical identities; reference loop over 1 M of the same records."""
    from pdp.config import Settings
    from pdp.lake.session import compute_cores, get_spark
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.pseudonymise import reference_hmac_loop
    from pdp.pseudonym.spark_path import SparkPseudonymiser

    spark = get_spark(app_name="pdp-bench-pseudonymise")
    cores = compute_cores(spark)
    with tempfile.TemporaryDirectory(prefix="pdp-bench-keys-") as tmp:
        master = base64.b64encode(os.urandom(32)).decode("ascii")
        store = KeyStore.from_settings(Settings(_env_file=None, key_store=Path(tmp) / "keys", master_key=master))
        store.init()
        source = spark.range(records).selectExpr("id", _canonical_sql()).repartition(cores * 4).cache()
        source.count()  # materialise the input: the bench measures pseudonymisation, not the generator
        with SparkPseudonymiser(spark, store) as sp:
            start = time.perf_counter()
            sp.apply(source).write.format("noop").mode("overwrite").save()
            spark_seconds = time.perf_counter() - start
        sample = [row.canonical for row in source.limit(REFERENCE_RECORDS).collect()]
        source.unpersist()
        reference = reference_hmac_loop([bytes(b) for b in sample], store.current("pseudonym").material)
    per_core = records / spark_seconds / cores
    return {
        "records": records,
        "cores": cores,
        "seconds": round(spark_seconds, 2),
        "records_per_s": round(records / spark_seconds),
        "records_per_s_per_core": round(per_core),
        "reference_hmac_loop_records_per_s": round(reference),
        "ratio_per_core_vs_reference": round(per_core / reference, 3),
        "goal_ratio": 0.5,
    }
