#!/usr/bin/env bash
# Set-up of a fresh machine: virtual env, the package and its dependencies, the Delta jars, the JVM UDF jar.
# Idempotent; the Makefile runs it when pyproject.toml or the jar pins change.
set -euo pipefail
PYTHON=${1:-python3.11}
VENV=${2:-.venv}

command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found (Python 3.11+ is required)" >&2; exit 1; }
command -v java >/dev/null || { echo "error: java not found (Java 17+ is required by Spark)" >&2; exit 1; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[dev]'
# Delta jars: fetched once into the local Maven repository, then Spark starts offline.
"$VENV/bin/python" -m pdp.lake.jars >/dev/null
# The project's own JVM classes (keyed-pseudonym UDF), compiled once against pyspark's jars.
"$VENV/bin/python" -m pdp.lake.jvm >/dev/null
echo "set-up done: $VENV"
