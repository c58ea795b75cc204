#!/usr/bin/env bash
# Submits a pubsub-shm streaming query to Spark 4.1 on Kubernetes (cluster deploy mode), with
# one pullerd beside every executor (executor-pod-template.yaml, next to this script).
#
#   K8S_API=https://10.0.0.1:443 IMAGE=REGISTRY/spark-pubsub-shm:4.1.1 \
#   APP_JAR=local:///opt/app/orders.jar MAIN_CLASS=com.example.Orders \
#   SPARK_HOME=/opt/spark docs/deploy/k8s/spark-submit.sh [application arguments]
#
# IMAGE: a Spark 4.1.1 image that holds the connector jar at CONNECTOR_JAR
# (docs/deploy/README.md, "Images"). APP_JAR: your query, e.g. a main class that runs
# spark.readStream.format("pubsub-shm") with projectId/subscriptionId as in the template.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${K8S_API:?set K8S_API to the API server URL, e.g. https://10.0.0.1:443}"
: "${IMAGE:?set IMAGE to a Spark 4.1.1 image that holds the connector jar}"
: "${APP_JAR:?set APP_JAR to the application jar, e.g. local:///opt/app/orders.jar}"
: "${MAIN_CLASS:?set MAIN_CLASS to the application main class}"
: "${SPARK_HOME:?set SPARK_HOME to a Spark 4.1.1 distribution}"
NAMESPACE=${NAMESPACE:-spark}
CONNECTOR_JAR=${CONNECTOR_JAR:-local:///opt/pubsub-shm/pubsub-shm-spark-0.1.0-SNAPSHOT.jar}
TEMPLATE=${TEMPLATE:-$here/executor-pod-template.yaml}
RING_ROOT=/dev/shm/pubsub-shm   # PUBSUB_SHM_DIR in the template

# Executors: 4 pods of 4 cores and 8g (heap; Spark adds the overhead to the container's
# memory). The template matches: pullerd -partitions=8 (2 x 4 cores) and -hosts=4 (the
# number of executor pods). Change them together.
#
# spark.plugins: commit propagation and per-host ring reports; without it only the driver's
# host is read, and in cluster mode the driver pod has no rings at all.
#
# PUBSUB_SHM_DIR for the driver: the driver names every ring set by <ringRoot>/<project>.<sub>
# and the executors open that path, so the driver needs the executors' ring root (or pass
# .option("ringRoot", "/dev/shm/pubsub-shm") in the query). The driver pod needs no pullerd:
# with the plugin on a cluster the source does not look for rings on the driver's host.
#
# spark.locality.wait: each micro-batch's task for a ring prefers the executor pod that holds
# the ring (host = pod IP). The scheduler waits this long for a free core there before it
# places the task elsewhere, where it fails (the error names both hosts) and is retried,
# counting against spark.task.maxFailures. Keep it at least at Spark's default, 3s; never 0
# (a common setting for other streaming sources).
#
# Speculation must stay off (docs/SPARK.md, Limits); false is Spark's default.
#
# spark.decommission.enabled: an executor pod that is deleted (scale-down, node drain) is
# decommissioned: it finishes its tasks and leaves before its pullerd stops, instead of
# dying mid-task (docs/SPARK.md, "Hosts come and go").
#
# spark.kubernetes.executor.terminationGracePeriodSeconds: Spark 4.1 writes it into every
# executor pod (default 30s), overriding the template's terminationGracePeriodSeconds: the
# executor's exit plus pullerd's shutdown (acks and nacks, up to about 21 s) must fit.
#
# No --add-opens options: spark-submit adds Spark's own module options (every --add-opens of
# jvm-reader/pom.xml's jvm.opens, and more) to the driver and executor JVMs. Only a JVM you
# start yourself with Spark on its classpath needs them (the tests, scripts/run.sh).
exec "$SPARK_HOME/bin/spark-submit" \
  --master "k8s://$K8S_API" \
  --deploy-mode cluster \
  --name pubsub-shm-orders \
  --class "$MAIN_CLASS" \
  --conf spark.kubernetes.namespace="$NAMESPACE" \
  --conf spark.kubernetes.container.image="$IMAGE" \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName=spark \
  --conf spark.kubernetes.executor.podTemplateFile="$TEMPLATE" \
  --conf spark.kubernetes.executor.podTemplateContainerName=spark-kubernetes-executor \
  --conf spark.kubernetes.executor.terminationGracePeriodSeconds=60s \
  --conf spark.executor.instances=4 \
  --conf spark.executor.cores=4 \
  --conf spark.executor.memory=8g \
  --conf spark.plugins=dev.pubsubshm.spark.PubSubShmPlugin \
  --conf spark.kubernetes.driverEnv.PUBSUB_SHM_DIR="$RING_ROOT" \
  --conf spark.locality.wait=3s \
  --conf spark.speculation=false \
  --conf spark.decommission.enabled=true \
  --jars "$CONNECTOR_JAR" \
  "$APP_JAR" "$@"
