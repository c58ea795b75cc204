# pubsub-shm: the commands a user needs. Everything is fetched by the build itself
# (Go modules from the module proxy, Maven artifacts from Maven Central).
SHELL := /bin/bash
GO    ?= go
MVN   ?= mvn -B -q -f jvm-reader/pom.xml
GOTEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all build jvm go-build test test-go test-cross test-java check-clean bench-ring fuzz clean run

all: build

build: go-build jvm

go-build:
	$(GO) build ./...
	$(GO) vet ./...

# The Java side: compiled classes, test classes, the shaded connector jar, and
# target/classpath.txt for the Go tests that start real JVMs.
jvm:
	$(MVN) -DskipTests package

## test: every test. Go unit tests with -race, the Java tests, the cross-language golden
## files both ways, and the cross-process tests (real Go and Java processes).
test: go-build jvm bench-jvm test-go test-java test-cross check-clean

test-go:
	$(GO) test $(GOTEST_FLAGS) ./...

test-java:
	$(MVN) test

test-cross:
	$(GO) test -tags crossproc -count=1 -timeout 20m -run 'CrossProcess' -v ./...

# Fails if a test left ring files in /dev/shm: anything of ours that was not there when
# make started (so a pullerd or bench running beside the tests is not blamed).
SHM_BEFORE := $(shell ls -A /dev/shm 2>/dev/null)
check-clean:
	@left=$$(for f in $$(ls -A /dev/shm 2>/dev/null); do \
	  case " $(SHM_BEFORE) " in *" $$f "*) ;; *) echo $$f;; esac; done | grep -E '^(ringbuf-test-|arrowbatch-test-|pubsub-shm)' || true); \
	if [ -n "$$left" ]; then echo "tests left files in /dev/shm: $$left"; exit 1; fi

## run: the main job: embedded emulator, sample publisher, pullerd and a Spark query
## reading format("pubsub-shm"); Ctrl-C stops everything (RATE, SIZE, PARTITIONS, TRIGGER, DURATION)
run:
	bash scripts/run.sh

## bench-ring: Go generator -> ring -> JVM consumer verifying every byte (bench/out/ring.json)
bench-ring: go-build jvm
	mkdir -p bench/out
	$(GO) run ./bench/cmd/benchring -out bench/out/ring.json

## bench-sink: the sink (Spark -> pullerd -> emulator) beside Google's Java publisher (bench/out/sink.json)
bench-sink: go-build jvm
	mvn -B -q -f bench/java-publisher/pom.xml package
	mkdir -p bench/out
	$(GO) run ./bench/cmd/sinkbench -out bench/out/sink.json

## fuzz: each Go fuzz target for a fixed time (FUZZTIME, default 30s)
FUZZTIME ?= 30s
fuzz:
	for f in FuzzRingImage FuzzParseRecord FuzzParseCommitRecord; do \
	  $(GO) test ./ringbuf -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -parallel 1 || exit 1; done
	$(GO) test ./pullerd/internal/outbatch -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -parallel 1

clean:
	rm -rf bench/out jvm-reader/target bench/java/*/target bench/java-publisher/target

## bench-jvm: the JVM sides of the flight and javaclient peers, each with its own
## classpath (bench/java: flight-core and Google's Pub/Sub client stay off Spark's)
bench-jvm:
	mvn -B -q -f bench/java/pom.xml -DskipTests package

## bench: every peer side by side, same messages, 100 B / 1 KiB / 16 KiB, a few seconds
## each: shm, uds, flight, memcpy, pullerd, javaclient (bench/out/bench.json, bench.png).
## BENCH_FLAGS passes flags to bench/cmd/bench (e.g. BENCH_FLAGS='-duration 5s').
bench: go-build jvm bench-jvm
	mkdir -p bench/out
	$(GO) run ./bench/cmd/bench -out bench/out $(BENCH_FLAGS)

## bench-pull: pullerd -> rings -> JVM against Google's Java subscriber on the embedded
## emulator only (bench/out/pull.json, pull.png)
bench-pull: go-build jvm bench-jvm
	mkdir -p bench/out
	$(GO) run ./bench/cmd/bench -peers pullerd,javaclient -name pull -out bench/out $(BENCH_FLAGS)

## soak: synthetic source -> batcher -> rings -> JVM checking every byte, at RATE
## (default 1GB/s) for DURATION (default 60s; plain seconds work too, as does
## SECONDS=600) with SIZE-byte messages (default 1024); bench/out/soak.json, soak.png;
## fails if the rate was not held, data was lost or corrupted, or memory grew.
soak: go-build jvm
	mkdir -p bench/out
	$(GO) run ./bench/cmd/soak -duration $(or $(DURATION),$(SECONDS),60s) -size $(or $(SIZE),1024) \
	  -rate '$(or $(RATE),1GB/s)' -out bench/out $(SOAK_FLAGS)

.PHONY: bench-jvm bench bench-pull soak

## chaos: the multi-minute fault checks: a soak of CHAOS_DURATION (default 3m) with random
## SIGKILLs of Spark and pullerd and emulator restarts, ending with exact accounting and a
## duplicate count, then every Go fuzz target for FUZZTIME (scripts/chaos.sh)
CHAOS_DURATION ?= 3m
.PHONY: chaos
chaos:
	CHAOS_DURATION=$(CHAOS_DURATION) FUZZTIME=$(FUZZTIME) bash scripts/chaos.sh

## cluster-test: a real Spark standalone cluster on loopback (master and driver on 127.0.0.1,
## two simulated executor hosts 127.0.0.2/.3, each a mount namespace with its own /dev/shm,
## pullerd and Worker), a query from format("pubsub-shm") into a file sink, exact accounting,
## a heap-dump check that the driver holds no ack id; hosts joining, leaving and killed under
## the query; the StreamingPull budget; and the two-executor query's throughput beside
## local[2] (JSON lines). Needs root (unshare, mount, nsenter). .ci/run runs it after make test.
.PHONY: cluster-test
cluster-test: go-build jvm
	$(GO) test -tags cluster -count=1 -timeout 30m -run TestCluster -v ./pullerd/internal/chaos
