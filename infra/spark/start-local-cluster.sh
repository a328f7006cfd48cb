#!/usr/bin/env bash
# Start a one-machine Spark standalone cluster (one master, one worker) from the pyspark
# installation of the project's virtual env, to try the cluster path locally:
#   infra/spark/start-local-cluster.sh && PDP_SPARK_MASTER=spark://127.0.0.1:7077 .venv/bin/pdp ...
# Stop it with infra/spark/stop-local-cluster.sh.
set -euo pipefail
VENV=${VENV:-.venv}
SPARK_HOME=$("$VENV/bin/python" -c "import pyspark, os; print(os.path.dirname(pyspark.__file__))")
export SPARK_HOME
RUN=${PDP_VAR_DIR:-./var}/spark-cluster
mkdir -p "$RUN"
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port 7077 --webui-port 8080 \
  >"$RUN/master.log" 2>&1 &
echo $! >"$RUN/master.pid"
for _ in $(seq 1 30); do grep -q "I have been elected leader" "$RUN/master.log" && break; sleep 1; done
"$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --cores "${WORKER_CORES:-2}" \
  --memory "${WORKER_MEMORY:-6g}" spark://127.0.0.1:7077 >"$RUN/worker.log" 2>&1 &
echo $! >"$RUN/worker.pid"
for _ in $(seq 1 30); do grep -q "Successfully registered with master" "$RUN/worker.log" && break; sleep 1; done
echo "spark://127.0.0.1:7077"
