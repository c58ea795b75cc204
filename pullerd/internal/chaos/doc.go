// Package chaos holds the fault, bad-input and access tests of the whole pipe: real
// pullerd processes, real Spark JVMs and the embedded Pub/Sub emulator, killed, restarted,
// starved and fed bad bytes, each test ending with exact accounting (every published
// message reached the sink at least once, nothing was acked before its micro-batch was
// committed, duplicates counted).
//
// The package has only tests. Which run where:
//
//   - no build tag (go test ./..., part of make test): the checks that need no JVM:
//     access by another uid, a /dev/shm too small for a ring, a writer process killed
//     between claim and commit, a full ring (back-pressure), bad input through pullerd.
//   - -tags crossproc, tests named TestCrossProcess* (make test-cross, part of make test):
//     the same with a real Spark JVM: SIGKILL of the JVM mid-batch and restart from its
//     checkpoint, SIGKILL of pullerd under a running query, the emulator restarted under
//     load, the Java reader refused by another uid, messages at Pub/Sub's limits.
//   - -tags chaos (make chaos): TestChaosSoak, CHAOS_DURATION (default 3m) of traffic with
//     random kills of either side.
//   - -tags cluster (make cluster-test, as root): TestCluster*, a real Spark standalone
//     cluster on loopback whose executor hosts are mount namespaces with their own /dev/shm,
//     pullerd and Worker (cluster_test.go), reading into a file sink; hosts joining, leaving
//     and killed under the query; and its throughput beside local[2]
//     (cluster_throughput_test.go).
//
// The JVM tests need the Java side built (make jvm).
package chaos
