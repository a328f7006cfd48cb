"""Entry file for `spark-submit` in Kubernetes cluster mode (the Spark operator's mainApplicationFile).

Why a file: spark-submit runs a Python *file* as the driver, while `pdp` is a console script;
this file only hands its arguments to the CLI, e.g. `pdp_main.py ingest /data/inbox`.
Set PDP_SPARK_MASTER to the same k8s:// URL the operator submits to: pdp sets spark.master from it.
"""

from __future__ import annotations

import sys

from pdp.cli import main

if __name__ == "__main__":
    main(sys.argv[1:])
