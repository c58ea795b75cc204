#!/usr/bin/env bash
# make run: the main job on one machine.
#   embedded Pub/Sub emulator -> sample publisher -> pullerd -> Spark Structured Streaming
#   query reading format("pubsub-shm"), printing per-batch counts, bytes and lag, and
#   acking as it commits. Ctrl-C stops everything: no processes and no /dev/shm files left.
# Environment: RATE (msgs/s, default 2000), SIZE (bytes, default 256), PARTITIONS (default 2),
#   TRIGGER (Spark trigger interval, default "2 seconds"), DURATION (seconds; 0 = until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2000}
SIZE=${SIZE:-256}
PARTITIONS=${PARTITIONS:-2}
TRIGGER=${TRIGGER:-2 seconds}
DURATION=${DURATION:-0}
PROJECT=demo TOPIC=events SUB=events-sub

work=$(mktemp -d /tmp/pubsub-shm-run.XXXXXX)
export PUBSUB_SHM_DIR=/dev/shm/pubsub-shm-run-$$
pids=()

cleanup() {
  local rc=$?
  trap - INT TERM EXIT
  echo
  echo "make run: stopping (Spark query, publisher, pullerd, emulator)..."
  # Stop in data-path order: the query first (its last commit is acked), then the
  # publisher, then pullerd (it nacks what is uncommitted and removes its rings), then
  # the emulator.
  for pid in "${pids[@]:-}"; do
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -d "$PUBSUB_SHM_DIR" ]; then
    echo "make run: pullerd left $(find "$PUBSUB_SHM_DIR" | wc -l) entries in $PUBSUB_SHM_DIR; removing them" >&2
    rm -rf "$PUBSUB_SHM_DIR"
    rc=1
  fi
  rm -rf "$work"
  echo "make run: stopped cleanly; nothing left running, nothing left in /dev/shm."
  exit $rc
}
trap cleanup INT TERM EXIT

echo "make run: building pullerd, the emulator, the publisher and the Java connector..."
go build -o "$work/bin/" ./pullerd ./pullerd/cmd/pubsub-emulator ./bench/cmd/publisher
mvn -B -q -f jvm-reader/pom.xml -DskipTests package

# Stop order in cleanup is the reverse of start order.
start() { "$@" & pids=("$!" "${pids[@]:-}"); }

"$work/bin/pubsub-emulator" -project "$PROJECT" -topic "$TOPIC" -subscription "$SUB=$TOPIC" \
  -addr-file "$work/emulator.addr" -log-level warn > "$work/emulator.out" &
pids=("$!")
for _ in $(seq 1 100); do [ -s "$work/emulator.addr" ] && break; sleep 0.1; done
[ -s "$work/emulator.addr" ] || { echo "make run: the emulator did not start" >&2; cat "$work/emulator.out" >&2; exit 1; }
export PUBSUB_EMULATOR_HOST=$(cat "$work/emulator.addr")
echo "make run: emulator on $PUBSUB_EMULATOR_HOST (project $PROJECT, topic $TOPIC, subscription $SUB)"

mkdir -m 0700 -p "$PUBSUB_SHM_DIR"
start "$work/bin/pullerd" -project "$PROJECT" -subscription "$SUB" -shm-dir "$PUBSUB_SHM_DIR" \
  -partitions "$PARTITIONS" -streams "$PARTITIONS" -stagger 0 -log-level warn -log-format console
for _ in $(seq 1 100); do [ -S "$PUBSUB_SHM_DIR/$PROJECT.$SUB/control.sock" ] && break; sleep 0.1; done
[ -S "$PUBSUB_SHM_DIR/$PROJECT.$SUB/control.sock" ] || { echo "make run: pullerd did not start" >&2; exit 1; }
echo "make run: pullerd serving ring set $PUBSUB_SHM_DIR/$PROJECT.$SUB ($PARTITIONS partitions)"

start "$work/bin/publisher" -project "$PROJECT" -topic "$TOPIC" -rate "$RATE" -size "$SIZE" > "$work/publisher.out"
echo "make run: publishing $RATE msgs/s of ~$SIZE bytes; starting the Spark query (local[2])..."

cp=$(cat jvm-reader/target/classpath.txt)
start java --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED \
  --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
  --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED \
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
  --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED \
  --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED \
  -Dio.netty.tryReflectionSetAccessible=true -Xmx1g \
  -cp "jvm-reader/target/classes:$cp" dev.pubsubshm.spark.examples.StreamDemo \
  --project "$PROJECT" --subscription "$SUB" --ring-root "$PUBSUB_SHM_DIR" --trigger "$TRIGGER" --duration "$DURATION"
spark_pid=${pids[0]}

echo "make run: press Ctrl-C to stop."
wait "$spark_pid"
