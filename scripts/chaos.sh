#!/usr/bin/env bash
# make chaos: the checks that take minutes, on a fresh clone.
#   1. TestChaosSoak (pullerd/internal/chaos, -tags chaos): CHAOS_DURATION (default 3m) of
#      traffic through the embedded emulator, pullerd and a Spark query with a file sink,
#      with a random fault every 5-15 s (Spark JVM SIGKILL mid-batch + restart from its
#      checkpoint, pullerd SIGKILL + restart, both at once, emulator restart). It ends with
#      exact accounting: every published message in the sink and acked, none acked before
#      its micro-batch committed, duplicates counted and bounded (crashes x max outstanding).
#   2. Every Go fuzz target of the ring parsers for FUZZTIME each (make fuzz).
#   3. Nothing left in /dev/shm, no process left running (checked by the test binary), and
#      nothing under /dev/shm/pubsub-shm-* writable by group or others.
# Environment: CHAOS_DURATION (Go duration, default 3m), CHAOS_RATE (msgs/s, default 1000),
#   CHAOS_SEED (repeat a run), FUZZTIME (default 30s per target).
set -euo pipefail
cd "$(dirname "$0")/.."

export CHAOS_DURATION=${CHAOS_DURATION:-3m}
FUZZTIME=${FUZZTIME:-30s}
mkdir -p bench/out
log=bench/out/chaos.log

echo "make chaos: building the Go side and the Java connector..."
go build ./...
mvn -B -q -f jvm-reader/pom.xml -DskipTests package

echo "make chaos: soak for $CHAOS_DURATION (CHAOS_SEED=${CHAOS_SEED:-random}); log in $log, process logs kept on failure"
start=$(date +%s)
set +e
go test -tags chaos -count=1 -timeout 90m -run '^TestChaosSoak$' -v ./pullerd/internal/chaos 2>&1 | tee "$log" |
  grep --line-buffered -E '^(=== RUN|--- |    soak_test|    world_test|CHAOS RESULT|FAIL|ok|PASS)'
rc=${PIPESTATUS[0]}
set -e
echo "make chaos: soak finished in $(( $(date +%s) - start )) s with status $rc"
[ "$rc" -eq 0 ] || { echo "make chaos: the soak FAILED (full log: $log)" >&2; exit 1; }

echo "make chaos: fuzzing every ring parser for $FUZZTIME each..."
make --no-print-directory fuzz FUZZTIME="$FUZZTIME"

# The test binary itself fails if it left a ring root or a process behind; here, nothing
# under any pubsub-shm root may be writable by group or others.
open=$(find /dev/shm -maxdepth 1 -name 'pubsub-shm-*' -exec find {} -perm /022 \; 2>/dev/null || true)
if [ -n "$open" ]; then echo "make chaos: group/world-writable under /dev/shm: $open" >&2; exit 1; fi
grep '^CHAOS RESULT' "$log"
echo "make chaos: passed."
